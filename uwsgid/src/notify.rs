//! The master's notify socket: a datagram socket on which workers say `READY=1` (sd_notify's
//! format). The master binds it ([`bind`]) and reads it ([`recv`], [`parse`]); built-in workers
//! send with [`send`]; exec workers find the address in `NOTIFY_SOCKET`. The master trusts only
//! the kernel's sender credentials: a pid written in the payload is never believed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Largest notify datagram read; longer ones are dropped, as systemd does.
const NOTIFY_MAX: usize = 4096;

/// The one address function: `@name` is in the abstract namespace, anything else a path.
fn sockaddr(addr: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("notify socket {addr:?}: {why}"),
        )
    };
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = addr.as_bytes();
    if bytes.is_empty() {
        return Err(invalid("empty name"));
    }
    if bytes == b"@" {
        return Err(invalid("empty abstract name"));
    }
    if bytes.len() >= sa.sun_path.len() {
        return Err(invalid("name too long"));
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

/// Bind the master's notify socket: a non-blocking, close-on-exec `SOCK_DGRAM` Unix socket
/// with `SO_PASSCRED`, so every datagram arrives with its sender's credentials.
///
/// `name` is what workers get as `NOTIFY_SOCKET`: `@name` for the abstract namespace (nothing
/// to clean up; reachable by any process in the same network namespace, which is why senders
/// are identified by credentials), or a filesystem path, which must not exist yet.
pub fn bind(name: &str) -> io::Result<OwnedFd> {
    let (sa, len) = sockaddr(name)?;
    let context = |e: io::Error| io::Error::new(e.kind(), format!("notify socket {name}: {e}"));
    // SAFETY: a new datagram socket we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(context(io::Error::last_os_error()));
    }
    // SAFETY: fd was just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from our local; bind reads `len` bytes of `sa`.
    let ok = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                len,
            ) == 0
    };
    if !ok {
        return Err(context(io::Error::last_os_error()));
    }
    Ok(fd)
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

/// One sd_notify datagram, attributed to the pid the kernel vouched for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// The sender's pid from `SCM_CREDENTIALS` (never from the payload).
    pub pid: i32,
    /// `READY=1`: the worker accepts connections.
    pub ready: bool,
    /// `STOPPING=1`: the worker is shutting down.
    pub stopping: bool,
    /// `STATUS=…`: free-form text for stats (the last one in the datagram).
    pub status: Option<String>,
    /// `RELOADING=1`: the worker reloads its own configuration; not ready until `READY=1`.
    pub reloading: bool,
    /// `UWSGID_SLOT=k`: a worker forked by a preload zygote says which slot it serves.
    pub slot: Option<u32>,
    /// `UWSGID_GENERATION=g`: and which generation it belongs to.
    pub generation: Option<u64>,
}

/// Parse an sd_notify datagram: newline-separated `KEY=VALUE` assignments.
///
/// Flags count only with the value `1`, as in systemd; unknown keys (`MAINPID`, `WATCHDOG`,
/// `ERRNO`, …) and malformed lines are ignored; invalid UTF-8 in `STATUS` is replaced.
pub fn parse(pid: i32, datagram: &[u8]) -> NotifyMessage {
    let mut msg = NotifyMessage {
        pid,
        ..NotifyMessage::default()
    };
    for line in datagram.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => msg.ready |= value == b"1",
            b"STOPPING" => msg.stopping |= value == b"1",
            b"RELOADING" => msg.reloading |= value == b"1",
            b"STATUS" => msg.status = Some(String::from_utf8_lossy(value).into_owned()),
            b"UWSGID_SLOT" => {
                msg.slot = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            b"UWSGID_GENERATION" => {
                msg.generation = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    msg
}

/// Read the next notify datagram from the socket of [`bind`].
///
/// `Ok(None)` when nothing is queued (the socket is non-blocking). Datagrams without
/// credentials, from pid 0 (a sender outside our pid namespace), or longer than 4096 bytes are
/// dropped; so are fds passed along (closed at once, never kept). After 64 dropped datagrams
/// in one call it returns `Ok(None)` to let the master loop run; the socket stays readable.
pub fn recv(fd: impl AsFd) -> io::Result<Option<NotifyMessage>> {
    let fd = fd.as_fd().as_raw_fd();
    let mut data = [0u8; NOTIFY_MAX];
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    for _ in 0..64 {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg points at iov and control, both live and writable for the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(err),
            }
        }
        let pid = take_control_messages(&msg);
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        match pid {
            Some(pid) if pid > 0 => return Ok(Some(parse(pid, &data[..n as usize]))),
            _ => continue,
        }
    }
    Ok(None)
}

/// The sender pid from `SCM_CREDENTIALS`, closing any fds that came along in `SCM_RIGHTS`.
fn take_control_messages(msg: &libc::msghdr) -> Option<i32> {
    let mut pid = None;
    // SAFETY: msg was filled by a successful recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk only the
    // msg_controllen bytes the kernel wrote (complete headers even when MSG_CTRUNC is set), and
    // the data of each header is read unaligned within its cmsg_len.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let len = header.cmsg_len as usize;
            let data_len = len.saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET {
                if header.cmsg_type == libc::SCM_CREDENTIALS
                    && data_len >= std::mem::size_of::<libc::ucred>()
                {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    pid = Some(cred.pid);
                } else if header.cmsg_type == libc::SCM_RIGHTS {
                    let count = data_len / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let passed = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        libc::close(passed);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    pid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    #[test]
    fn notify_datagrams_parse_like_sd_notify() {
        let m = parse(7, b"READY=1\nSTATUS=serving 4 threads\nMAINPID=1\n");
        assert_eq!(
            m,
            NotifyMessage {
                pid: 7,
                ready: true,
                stopping: false,
                status: Some("serving 4 threads".into()),
                reloading: false,
                slot: None,
                generation: None,
            }
        );
        let m = parse(7, b"STOPPING=1\nSTATUS=a=b\nSTATUS=last\xff");
        assert!(m.stopping && !m.ready);
        assert_eq!(m.status.as_deref(), Some("last\u{fffd}"));
        let m = parse(7, b"READY=0\nRELOADING=1\ngarbage\n\nREADY");
        assert!(!m.ready && m.reloading && m.status.is_none());
        let m = parse(7, b"READY=1\nUWSGID_SLOT=3\nUWSGID_GENERATION=12\n");
        assert_eq!((m.slot, m.generation), (Some(3), Some(12)));
        let m = parse(7, b"UWSGID_SLOT=x\nUWSGID_GENERATION=-1");
        assert_eq!((m.slot, m.generation), (None, None));
        assert_eq!(
            parse(3, b""),
            NotifyMessage {
                pid: 3,
                ..Default::default()
            }
        );
    }

    use crate::test_support::{unique, TempDir};

    fn send_datagram(to: &str, payload: &[u8]) {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let addr = SocketAddr::from_abstract_name(to.strip_prefix('@').unwrap()).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(payload, &addr)
            .unwrap();
    }

    /// Not a test: the sender half of `notify_pid_comes_from_credentials`, run in a child
    /// process (this test binary, re-executed) so the datagram comes from another pid.
    #[test]
    #[ignore = "helper run by notify_pid_comes_from_credentials"]
    fn notify_sender_helper() {
        if let Ok(to) = std::env::var("UWSGID_TEST_NOTIFY_TO") {
            send_datagram(&to, b"MAINPID=1\nREADY=1\nSTATUS=from the helper");
        }
    }

    fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis() as u64).unwrap();
        poll(&mut fds, ms).unwrap() > 0
    }

    #[test]
    fn notify_pid_comes_from_credentials() {
        let name = format!("@{}", unique("notify"));
        let sock = bind(&name).unwrap();
        assert_eq!(recv(&sock).unwrap(), None, "nothing queued yet");

        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "notify::tests::notify_sender_helper",
                "--quiet",
            ])
            .env("UWSGID_TEST_NOTIFY_TO", &name)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let helper_pid = helper.id() as i32;
        assert!(helper.wait().unwrap().success());
        assert!(wait_readable(&sock, Duration::from_secs(5)));
        let msg = recv(&sock).unwrap().expect("a datagram");
        assert_eq!(
            msg.pid, helper_pid,
            "pid from SCM_CREDENTIALS, not MAINPID=1"
        );
        assert!(msg.ready);
        assert_eq!(msg.status.as_deref(), Some("from the helper"));

        // Oversized datagrams are dropped whole; the next one is read.
        send_datagram(&name, &[b'x'; NOTIFY_MAX + 10]);
        send_datagram(&name, b"STOPPING=1");
        let msg = recv(&sock).unwrap().expect("the second datagram");
        assert_eq!(msg.pid, std::process::id() as i32);
        assert!(msg.stopping);
        assert_eq!(recv(&sock).unwrap(), None);
    }

    #[test]
    fn notify_socket_names_are_checked() {
        assert!(bind("@").is_err());
        assert!(bind("").is_err());
        let dir = TempDir::new();
        let path = dir.path.join("notify.sock");
        let path = path.to_str().unwrap();
        let _sock = bind(path).unwrap();
        let e = bind(path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains(path), "{e}");
    }
}
