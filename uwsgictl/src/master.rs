//! Validating a pidfile before anything is sent: the master a command may signal.
//!
//! The order closes the race between check and signal: read the pidfile strictly, open a
//! pidfd on its pid, check through `/proc` that the pid is a live uwsgid or uWSGI master that
//! started before the pidfile was written, then confirm through the pidfd that the same
//! process is still alive. If it is, the `/proc` facts were about it (a pid cannot be reused
//! while its process exists), and every later signal goes through that pidfd. A master is known
//! by its executable as well as its name ([`common::process`]), so a process that merely
//! renamed itself `uwsgid` receives nothing.
//!
//! The channels are tied to that master too: a FIFO is written only if its inode is open in
//! the master's `/proc/PID/fd` ([`Master::owns_fifo`]), so an instance record naming another
//! instance's FIFO cannot make a command act on that instance; a stats document must carry the
//! master's pid and come from a listening socket the master holds ([`listens_on`]). A master that is stopped (state `T`, after SIGSTOP) acts on nothing until it
//! is continued, so commands say so instead of timing out.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pidfile::{self, PidfileError};
use common::process::{self, MasterError, MasterKind};

use crate::exit::{CtlError, Exit};
use crate::pidfd::PidHandle;

/// A validated master.
#[derive(Debug)]
pub struct Master {
    pub pid: i32,
    pub kind: MasterKind,
    pub pidfile: Option<PathBuf>,
    pub handle: PidHandle,
}

/// The error for a master that is stopped (SIGSTOP, a debugger): it acts on nothing, and its
/// stats server accepts but never answers, until it is continued.
pub fn stopped_error(pid: i32, kind: &str) -> CtlError {
    CtlError::new(
        Exit::Failure,
        format!(
            "the {kind} master pid {pid} is stopped (state T: SIGSTOP, SIGTSTP from a terminal, \
             or a debugger) and will act on nothing until it is continued; continue it with \
             'kill -CONT {pid}' (or end the debugger session); nothing was sent"
        ),
    )
}

/// uWSGI rewrites its safe pidfile in place (truncate, then write) once per initial worker, so
/// a reader can catch it empty; an empty file is read again for this long before refusing it.
const EMPTY_RETRY: Duration = Duration::from_millis(50);

/// The exit code and fix for a pidfile that cannot be read.
pub fn pidfile_error(err: &PidfileError) -> CtlError {
    let (exit, fix) = match err {
        PidfileError::Missing(_) => (
            Exit::NotRunning,
            "the instance is not running, or give its pidfile with --pidfile, --ini or --name",
        ),
        PidfileError::Empty(_) => (
            Exit::PidfileEmpty,
            "nothing was sent; if no instance is starting, remove the file",
        ),
        PidfileError::NotANumber { .. } => (
            Exit::PidfileNotANumber,
            "nothing was sent; check --pidfile names a pidfile, or remove the file",
        ),
        PidfileError::Reserved { .. } => (
            Exit::PidfileReserved,
            "nothing was sent; remove the file and restart the instance",
        ),
        PidfileError::OutOfRange { .. } => (
            Exit::PidfileOutOfRange,
            "nothing was sent; remove the file and restart the instance",
        ),
        PidfileError::NotRegular { .. } | PidfileError::TooLarge { .. } => (
            Exit::PidfileUnreadable,
            "nothing was sent; check --pidfile names the instance's pidfile",
        ),
        PidfileError::Io { .. } => (
            Exit::PidfileUnreadable,
            "nothing was sent; check the file's permissions",
        ),
    };
    CtlError::new(exit, format!("{err}; {fix}"))
}

/// The exit code and fix for a pid that is not the master.
pub fn master_error(pidfile: Option<&Path>, err: &MasterError) -> CtlError {
    let (exit, fix) = match err {
        MasterError::Dead { .. } => (
            Exit::Stale,
            "nothing was sent; the instance is not running: remove the stale pidfile or start it",
        ),
        MasterError::NotAMaster { .. } => (
            Exit::NotAMaster,
            "nothing was sent; the pidfile is stale and its pid now belongs to another program: \
             remove the file",
        ),
        MasterError::NotOurExe { .. } => (
            Exit::NotAMaster,
            "nothing was sent; the pidfile names a process that only takes a master's name (its \
             pid was reused, or it is a decoy): remove the file",
        ),
        MasterError::Younger { .. } => (
            Exit::PidReused,
            "nothing was sent; the master that wrote the pidfile is gone: remove the file",
        ),
    };
    let prefix = match pidfile {
        Some(p) => format!("pidfile {}: ", p.display()),
        None => String::new(),
    };
    CtlError::new(exit, format!("{prefix}{err}; {fix}"))
}

/// Read a pidfile, retrying briefly while it is empty.
pub fn read_pidfile(path: &Path) -> Result<pidfile::PidfileContent, CtlError> {
    let started = Instant::now();
    loop {
        match pidfile::read(path) {
            Ok(c) => return Ok(c),
            Err(PidfileError::Empty(_)) if started.elapsed() < EMPTY_RETRY => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(pidfile_error(&e)),
        }
    }
}

/// Validate the master named by `pidfile`.
pub fn from_pidfile(path: &Path) -> Result<Master, CtlError> {
    let content = read_pidfile(path)?;
    validate(content.pid, Some(path), Some(content.modified))
}

/// Validate `pid` as a master (pidfile mtime `written`, if known).
pub fn validate(
    pid: i32,
    pidfile: Option<&Path>,
    written: Option<std::time::SystemTime>,
) -> Result<Master, CtlError> {
    let handle = match PidHandle::open(pid) {
        Ok(h) => h,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Err(master_error(pidfile, &MasterError::Dead { pid }))
        }
        Err(e) => {
            return Err(CtlError::new(
                Exit::Failure,
                format!("cannot open a handle on pid {pid}: {e}"),
            ))
        }
    };
    let kind = process::check_master(pid, written).map_err(|e| master_error(pidfile, &e))?;
    if let Err(e) = handle.send(0) {
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(master_error(pidfile, &MasterError::Dead { pid }));
        }
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(CtlError::new(Exit::Failure, format!("pid {pid}: {e}")));
        }
    }
    Ok(Master {
        pid,
        kind,
        pidfile: pidfile.map(Path::to_path_buf),
        handle,
    })
}

impl Master {
    /// Send `signal` through the pidfd.
    pub fn signal(&self, signal: i32, name: &str) -> Result<(), CtlError> {
        self.handle
            .send(signal)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => CtlError::new(
                    Exit::Permission,
                    format!(
                        "not allowed to send SIG{name} to pid {}: it belongs to another user; run \
                     uwsgictl as that user or as root",
                        self.pid
                    ),
                ),
                Some(libc::ESRCH) => CtlError::new(
                    Exit::Stale,
                    format!("pid {} exited before SIG{name} could be sent", self.pid),
                ),
                _ => CtlError::new(
                    Exit::Failure,
                    format!("sending SIG{name} to pid {}: {e}", self.pid),
                ),
            })
    }

    pub fn exited(&self, timeout: Duration) -> bool {
        self.handle.exited(timeout)
    }

    /// True if the master is stopped right now (state `T` or `t` in `/proc/PID/stat`).
    pub fn is_stopped(&self) -> bool {
        process::ProcessInfo::read(self.pid).is_some_and(|i| i.is_stopped())
    }

    /// Err if the master is stopped (see [`stopped_error`]).
    pub fn check_running(&self) -> Result<(), CtlError> {
        if self.is_stopped() {
            return Err(stopped_error(self.pid, self.kind_name()));
        }
        Ok(())
    }

    /// Check that the FIFO `file` (opened from `path`) is one this master has open: its
    /// device and inode appear among `/proc/PID/fd`.
    pub fn owns_fifo(&self, path: &Path, file: &std::fs::File) -> Result<(), CtlError> {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| CtlError::new(Exit::Fifo, format!("fifo {}: {e}", path.display())))?;
        let dir = format!("/proc/{}/fd", self.pid);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            CtlError::new(
                Exit::Permission,
                format!(
                    "cannot check that fifo {} belongs to {} pid {} ({dir}: {e}); nothing was \
                     sent; run uwsgictl as the instance's user or as root",
                    path.display(),
                    self.kind_name(),
                    self.pid
                ),
            )
        })?;
        let open_here = entries.flatten().any(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        });
        if open_here {
            return Ok(());
        }
        let whose = match &self.pidfile {
            Some(p) => format!(" (the master of pidfile {})", p.display()),
            None => String::new(),
        };
        Err(CtlError::new(
            Exit::Fifo,
            format!(
                "fifo {} is not open in {} pid {}{whose}: it belongs to another instance, or the \
                 instance record is stale or forged; nothing was sent; give the instance's own \
                 --fifo, or restart it to rewrite its record",
                path.display(),
                self.kind_name(),
                self.pid
            ),
        ))
    }

    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind)
    }
}

pub fn kind_name(kind: MasterKind) -> &'static str {
    match kind {
        MasterKind::Uwsgid => "uwsgid",
        MasterKind::Uwsgi => "uwsgi",
    }
}

/// Does `pid` hold the listening socket of `addr`? Looked up by the socket's inode: the
/// listening entry for that path (`/proc/net/unix`) or port (`/proc/net/tcp{,6}`), then
/// `socket:[INODE]` among `/proc/PID/fd`. `None` when that cannot be told (no access to the
/// fds, no such listening entry in this network namespace): the caller then relies on the
/// document's pid alone.
pub fn listens_on(pid: i32, addr: &crate::target::StatsAddr) -> Option<bool> {
    use crate::target::Endpoint;
    let inodes: Vec<u64> = match &addr.endpoint {
        Endpoint::Unix(path) => {
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            unix_listeners(|p| Path::new(p) == path.as_path() || Path::new(p) == abs)
        }
        Endpoint::Abstract(name) => unix_listeners(|p| p.strip_prefix('@') == Some(name)),
        Endpoint::Tcp(a) => {
            let port: u16 = a.rsplit(':').next()?.parse().ok()?;
            tcp_listeners(port)
        }
    };
    if inodes.is_empty() {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let held = fds.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|l| {
            let l = l.to_string_lossy();
            inodes
                .iter()
                .any(|i| l.as_ref() == format!("socket:[{i}]").as_str())
        })
    });
    Some(held)
}

/// Inodes of listening unix sockets whose path satisfies `want`.
fn unix_listeners(want: impl Fn(&str) -> bool) -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening.
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let path = f.get(7)?;
            (flags & 0x10000 != 0 && want(path)).then(|| f.get(6)?.parse().ok())?
        })
        .collect()
}

/// Inodes of TCP sockets listening on `port` (any address, v4 or v6).
fn tcp_listeners(port: u16) -> Vec<u64> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ... inode (index 9); st 0A = LISTEN.
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                if let Some(i) = f.get(9).and_then(|i| i.parse().ok()) {
                    found.push(i);
                }
            }
        }
    }
    found
}

/// Map an io error kind for messages.
pub fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}
