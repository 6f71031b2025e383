//! Listeners: bound once at first start, inherited by fd across every re-exec.
//!
//! A listener is identified across reloads by the text it was configured with, so a
//! `127.0.0.1:0` listener keeps its kernel-chosen port. Each inherited fd is checked to be a
//! listening socket before it is taken. Sockets handed over by systemd socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`) are taken at first start and kept for the instance's life.
//!
//! Socket activation, as `sd_listen_fds_with_names(3)` reads it: the fds start at 3, in the
//! order of the socket units' `Listen*=` lines; `LISTEN_FDNAMES` gives each one's name (the
//! unit's `FileDescriptorName=`, by default the socket unit's name; `unknown` when the variable
//! is absent). A listener option names them by number (`fd://3`) or by name (`fd://web`: every
//! passed socket of that name; it is an error at startup if there is none). Without any
//! listener option the passed sockets are the HTTP listeners; with options, a passed socket
//! that none names is kept as an HTTP listener too (nothing systemd passed is left unserved).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use crate::cli::{ListenAddr, ListenerSpec};

pub struct Listener {
    /// The text from the configuration (or `systemd:N`), the identity kept across reloads.
    pub configured: String,
    /// The address it is bound to, e.g. `127.0.0.1:41234`.
    pub name: String,
    pub fd: OwnedFd,
    /// A Unix socket path we created (removed by `--vacuum`).
    pub created_path: Option<PathBuf>,
}

fn sockopt_int(fd: RawFd, level: i32, opt: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: getsockopt writes an int into `value`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn set_sockopt_int(fd: RawFd, level: i32, opt: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from a live local.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The local address of a socket, as text.
pub fn local_name(fd: RawFd) -> io::Result<String> {
    // SAFETY: sockaddr_storage is large enough for any address; getsockname fills `len` bytes.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) < 0 {
            return Err(io::Error::last_os_error());
        }
        match storage.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(&storage as *const _ as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Ok(format!("{ip}:{}", u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = &*(&storage as *const _ as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Ok(format!("[{ip}]:{}", u16::from_be(a.sin6_port)))
            }
            libc::AF_UNIX => {
                let a = &*(&storage as *const _ as *const libc::sockaddr_un);
                let max = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
                let bytes: Vec<u8> = a.sun_path[..max.min(a.sun_path.len())]
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&c| c != 0)
                    .collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            f => Ok(format!("family {f}")),
        }
    }
}

/// Check that `fd` is a listening stream socket.
pub fn check_listening(fd: RawFd) -> io::Result<()> {
    if sockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is a socket that is not listening"),
        ));
    }
    Ok(())
}

fn set_backlog(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen on a socket we own; calling it again only changes the backlog.
    if unsafe { libc::listen(fd, backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn finish(fd: OwnedFd, configured: String, created_path: Option<PathBuf>) -> io::Result<Listener> {
    crate::sys::set_nonblocking(fd.as_raw_fd())?;
    crate::sys::set_cloexec(fd.as_raw_fd(), true)?;
    // TCP_NODELAY on a TCP listener (bound, inherited or passed by systemd): every connection
    // accepted from it inherits it, so no worker sets it per connection.
    if sockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
        .is_ok_and(|d| d == libc::AF_INET || d == libc::AF_INET6)
    {
        set_sockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    let name = local_name(fd.as_raw_fd())?;
    Ok(Listener {
        configured,
        name,
        fd,
        created_path,
    })
}

/// Why a configured listener cannot be had. Each names the option and its value as given
/// (`--http-socket ADDR`, `--socket ADDR`), the cause and the fix. Fatal at startup.
#[derive(Debug)]
pub struct Error {
    /// `--http-socket ADDR`, `--socket ADDR` or `--http-socket fd://N`.
    pub listener: String,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// `bind(2)` of a TCP address failed.
    Bind(SocketAddr, io::Error),
    /// A Unix socket path holds something that is not a socket.
    NotASocket(PathBuf),
    /// A Unix socket path is being served by another process.
    InUse(PathBuf),
    /// `--chmod-socket`/`--chown-socket` could not be applied.
    Ownership(PathBuf, io::Error),
    /// `fd://N` is not a listening socket.
    NotListening(io::Error),
    /// Any other step (backlog, flags, removing a stale socket, binding a path).
    Io(io::Error),
    /// `fd://NAME` names no socket systemd passed; `passed` holds the names it did pass
    /// (`LISTEN_FDNAMES`), filled in by the caller that read them.
    NotPassed { name: String, passed: Vec<String> },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.listener;
        match &self.kind {
            ErrorKind::Bind(addr, e) => {
                let hint = match e.kind() {
                    io::ErrorKind::AddrInUse => {
                        "; another process is listening there: stop it or choose another port"
                    }
                    io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges",
                    io::ErrorKind::AddrNotAvailable => "; that address is not on this machine",
                    _ => "",
                };
                write!(f, "{l}: cannot bind {addr}: {e}{hint}")
            }
            ErrorKind::NotASocket(p) => {
                write!(
                    f,
                    "{l}: {} exists and is not a socket; remove it",
                    p.display()
                )
            }
            ErrorKind::InUse(p) => {
                write!(f, "{l}: another process is serving on {}", p.display())
            }
            ErrorKind::Ownership(p, e) => {
                let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                    "; --chown-socket needs root (or the socket's group among yours)"
                } else {
                    ""
                };
                write!(
                    f,
                    "{l}: cannot set the mode or owner of {}: {e}{hint}",
                    p.display()
                )
            }
            ErrorKind::NotListening(e) => write!(f, "{l}: {e}; pass a listening socket"),
            ErrorKind::Io(e) => write!(f, "{l}: {e}"),
            ErrorKind::NotPassed { name, passed } => {
                write!(
                    f,
                    "{l}: systemd passed no socket named {name:?} (at the first start; sockets \
                     are never passed again on a reload): give the socket unit \
                     FileDescriptorName={name}, or use fd://N (LISTEN_FDNAMES named: {})",
                    if passed.is_empty() {
                        "nothing: no socket was passed".to_string()
                    } else {
                        passed.join(":")
                    }
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// `TCP_DEFER_ACCEPT` on TCP listeners (unless `--no-defer-accept`): the kernel queues a
/// connection for `accept` only once its first bytes have arrived, so a worker that accepts
/// finds the request there instead of reading nothing, waiting on epoll and being woken again
/// (half of the connections of a one-connection-per-request load, measured). HTTP and the
/// uwsgi protocol are client-first, so nothing waits for the server. A client that connects
/// and sends nothing is queued after about this long anyway (the kernel's SYN-ACK
/// retransmission that follows), and from then on the workers' head deadline applies.
/// Listeners passed by systemd keep what their unit says (`DeferAcceptSec=`).
pub const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Set (or clear) `TCP_DEFER_ACCEPT` on a TCP listener.
pub fn set_defer_accept(fd: RawFd, on: bool) -> io::Result<()> {
    let secs = if on { DEFER_ACCEPT_SECS } else { 0 };
    set_sockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
}

/// Bind a configured listener.
pub fn bind(spec: &ListenerSpec, backlog: i32) -> Result<Listener, Error> {
    let option = spec.proto.option();
    let shown = spec
        .configured
        .strip_prefix(crate::cli::UWSGI_PREFIX)
        .unwrap_or(&spec.configured);
    let error = |kind: ErrorKind| Error {
        listener: format!("{option} {shown}"),
        kind,
    };
    let fail = |e: io::Error| error(ErrorKind::Io(e));
    match &spec.addr {
        ListenAddr::Tcp(addr) => {
            let l =
                std::net::TcpListener::bind(addr).map_err(|e| error(ErrorKind::Bind(*addr, e)))?;
            let fd: OwnedFd = l.into();
            set_defer_accept(fd.as_raw_fd(), !spec.no_defer_accept).map_err(fail)?;
            set_backlog(fd.as_raw_fd(), backlog).map_err(fail)?;
            finish(fd, spec.configured.clone(), None).map_err(fail)
        }
        ListenAddr::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(error(ErrorKind::NotASocket(path.clone())));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(error(ErrorKind::InUse(path.clone())));
                }
                std::fs::remove_file(path).map_err(fail)?;
            }
            // Bound with umask 177, so the socket is never reachable with a wider mode than
            // asked for; then given its configured (or umask-derived) mode and owner.
            let umask = crate::privileges::set_umask(0o177);
            let bound = std::os::unix::net::UnixListener::bind(path);
            crate::privileges::set_umask(umask);
            let l = bound.map_err(fail)?;
            let own = crate::privileges::SocketOwnership {
                mode: Some(spec.ownership.mode.unwrap_or(0o777 & !umask)),
                ..spec.ownership.clone()
            };
            crate::privileges::apply(path, &own).map_err(|e| {
                let _ = std::fs::remove_file(path);
                error(ErrorKind::Ownership(path.clone(), e))
            })?;
            let fd: OwnedFd = l.into();
            set_backlog(fd.as_raw_fd(), backlog).map_err(fail)?;
            finish(fd, spec.configured.clone(), Some(path.clone())).map_err(fail)
        }
        ListenAddr::Named(name) => Err(error(ErrorKind::NotPassed {
            name: name.clone(),
            passed: Vec::new(),
        })),
        ListenAddr::Fd(n) => {
            check_listening(*n).map_err(|e| Error {
                listener: format!("{option} fd://{n}"),
                kind: ErrorKind::NotListening(e),
            })?;
            // SAFETY: the operator handed us fd N to use as a listener; we take it exactly once
            // (duplicates are refused by the configuration check).
            let fd = unsafe { OwnedFd::from_raw_fd(*n) };
            finish(fd, spec.configured.clone(), None).map_err(fail)
        }
    }
}

/// Adopt a listener fd inherited across re-exec.
pub fn inherit(
    fd: OwnedFd,
    configured: &str,
    created_path: Option<PathBuf>,
) -> io::Result<Listener> {
    check_listening(fd.as_raw_fd())?;
    finish(fd, configured.to_string(), created_path)
}

/// The names of `count` passed fds from `LISTEN_FDNAMES` (`unknown` where it says nothing).
pub fn fd_names(var: Option<&str>, count: usize) -> Vec<String> {
    let mut given = var.map(|v| v.split(':')).into_iter().flatten();
    (0..count)
        .map(|_| match given.next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => "unknown".to_string(),
        })
        .collect()
}

/// Take the sockets systemd passed us (`LISTEN_PID` = our pid), each with its name, and unset
/// the variables.
pub fn take_systemd() -> Vec<(Listener, String)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut taken = Vec::new();
    if pid_ok {
        let count = count.clamp(0, 64);
        let names = fd_names(
            std::env::var("LISTEN_FDNAMES").ok().as_deref(),
            count as usize,
        );
        for (i, name) in (0..count).zip(names) {
            let raw = 3 + i;
            if check_listening(raw).is_ok() {
                // SAFETY: systemd passed this fd to us (LISTEN_PID is ours), it is a
                // listening socket, and each number is taken once.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                if let Ok(l) = inherit(fd, &format!("systemd:{i}"), None) {
                    taken.push((l, name));
                }
            }
        }
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    taken
}

impl Listener {
    /// Keep this fd open across `execve`.
    pub fn keep_across_exec(&self, keep: bool) -> io::Result<()> {
        crate::sys::set_cloexec(self.fd.as_raw_fd(), !keep)
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The protocol it speaks, from its configured text ([`crate::cli::UWSGI_PREFIX`]).
    pub fn proto(&self) -> crate::cli::Proto {
        if self.configured.starts_with(crate::cli::UWSGI_PREFIX) {
            crate::cli::Proto::Uwsgi
        } else {
            crate::cli::Proto::Http
        }
    }

    /// Its name for exec workers' `LISTEN_FDNAMES`: the address for HTTP listeners, `uwsgi=`
    /// and the address for uwsgi ones (a program tells the protocols apart by that prefix).
    pub fn fd_label(&self) -> String {
        match self.proto() {
            crate::cli::Proto::Http => self.name.clone(),
            crate::cli::Proto::Uwsgi => format!("{}{}", crate::cli::UWSGI_PREFIX, self.name),
        }
    }

    pub fn is_unix(&self) -> bool {
        self.name.starts_with('/') || self.created_path.is_some()
    }

    /// Give the fd up (it stays open, owned by the caller).
    pub fn into_raw(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}
