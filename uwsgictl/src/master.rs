//! Validating a pidfile before anything is sent: the master a command may signal.
//!
//! The order closes the race between check and signal: read the pidfile strictly, open a
//! pidfd on its pid, check through `/proc` that the pid is a live uwsgid or uWSGI master that
//! started before the pidfile was written, then confirm through the pidfd that the same
//! process is still alive. If it is, the `/proc` facts were about it (a pid cannot be reused
//! while its process exists), and every later signal goes through that pidfd.

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

/// Map an io error kind for messages.
pub fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}
