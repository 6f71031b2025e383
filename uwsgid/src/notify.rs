//! The master's notify socket: a datagram socket in the abstract namespace on which workers say
//! `READY=1` (sd_notify's format). Built-in workers send with [`send`]; exec workers find the
//! address in `NOTIFY_SOCKET`. The master trusts only the kernel's sender credentials.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn sockaddr(addr: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = addr.as_bytes();
    if bytes.is_empty() || bytes.len() >= sa.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad notify socket address",
        ));
    }
    for (i, &b) in bytes.iter().enumerate() {
        sa.sun_path[i] = if i == 0 && b == b'@' {
            0
        } else {
            b as libc::c_char
        };
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len();
    Ok((sa, len as libc::socklen_t))
}

/// Send one datagram to the notify socket at `addr` (`@name` for the abstract namespace).
pub fn send(addr: &str, message: &[u8]) -> io::Result<()> {
    let (sa, len) = sockaddr(addr)?;
    // SAFETY: a new datagram socket we own.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sa is a valid sockaddr_un of `len` bytes; message is our buffer.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr() as *const libc::c_void,
            message.len(),
            libc::MSG_NOSIGNAL,
            &sa as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
