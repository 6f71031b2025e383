//! A handle on one process that can never point at another: a pidfd where the kernel has them.
//!
//! `pidfd_open(2)` pins the process: once opened, `pidfd_send_signal(2)` on it fails with
//! `ESRCH` if that process has exited, even if its pid was since reused, and the fd becomes
//! readable when it exits. On kernels without pidfds (`ENOSYS`, before Linux 5.3) the handle
//! falls back to the bare pid and says so once on stderr: between the check and `kill(2)` a
//! reused pid could then be hit, a window uwsgictl and `uwsgid --reload` keep as small as they
//! can.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static WARNED: AtomicBool = AtomicBool::new(false);

/// A process to signal and watch.
#[derive(Debug)]
pub enum PidHandle {
    Fd {
        pid: i32,
        fd: OwnedFd,
    },
    /// No pidfd support in this kernel: signals go by pid.
    Pid(i32),
}

impl PidHandle {
    /// Open a handle on `pid`. `ESRCH` means no such process.
    pub fn open(pid: i32) -> io::Result<PidHandle> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
        // passed.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if ret >= 0 {
            // SAFETY: the kernel just returned this fd to us and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };
            return Ok(PidHandle::Fd { pid, fd });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: this kernel has no pidfd_open (Linux < 5.3); signalling by pid, so a \
                     pid reused in the instant after the check could be hit"
                );
            }
            // SAFETY: kill with signal 0 only checks existence and permission.
            if unsafe { libc::kill(pid, 0) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    return Err(e);
                }
            }
            return Ok(PidHandle::Pid(pid));
        }
        Err(err)
    }

    pub fn pid(&self) -> i32 {
        match self {
            PidHandle::Fd { pid, .. } => *pid,
            PidHandle::Pid(pid) => *pid,
        }
    }

    /// Send `signal` (0 only checks that the process still exists).
    pub fn send(&self, signal: i32) -> io::Result<()> {
        let ret = match self {
            PidHandle::Fd { fd, .. } => {
                // SAFETY: the fd is a valid pidfd we own; a null siginfo asks the kernel to
                // fill in the default (as kill(2)); flags must be 0.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal,
                        std::ptr::null::<libc::siginfo_t>(),
                        0 as libc::c_uint,
                    )
                }
            }
            // SAFETY: kill has no memory effects.
            PidHandle::Pid(pid) => (unsafe { libc::kill(*pid, signal) }) as libc::c_long,
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// True once the process has exited (waits at most `timeout`).
    pub fn exited(&self, timeout: Duration) -> bool {
        match self {
            PidHandle::Fd { fd, .. } => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: pfd is a valid pollfd for the duration of the call and nfds is 1.
                let n = unsafe { libc::poll(&mut pfd, 1, ms) };
                n > 0 && pfd.revents != 0
            }
            PidHandle::Pid(pid) => {
                let gone = |pid: i32| match crate::process::ProcessInfo::read(pid) {
                    None => true,
                    Some(info) => info.state == 'Z' || info.state == 'X',
                };
                if gone(*pid) {
                    return true;
                }
                if !timeout.is_zero() {
                    std::thread::sleep(timeout.min(Duration::from_millis(5)));
                }
                gone(*pid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_outlives_its_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let handle = PidHandle::open(child.id() as i32).unwrap();
        assert!(!handle.exited(Duration::ZERO));
        handle.send(0).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(handle.exited(Duration::from_millis(100)));
        assert!(handle.send(0).is_err());
    }
}
