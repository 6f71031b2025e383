//! Touch files: a reload fires when a watched file's mtime changes or the file appears.
//!
//! inotify watches each file's directory (so a file that does not exist yet, or is replaced by
//! rename, is still seen). Events only wake the master; the decision is made by comparing the
//! file's modification time with the last one seen, so the several events one `touch` produces
//! fire exactly once. Nothing is polled on a timer.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a touch file asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchAction {
    Reload,
    WorkersReload,
    ChainReload,
}

pub struct Touch {
    fd: OwnedFd,
    files: Vec<(PathBuf, TouchAction, Option<i128>)>,
    dirs: HashMap<i32, PathBuf>,
}

fn mtime(path: &Path) -> Option<i128> {
    std::fs::metadata(path)
        .ok()
        .map(|m| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()))
}

impl Touch {
    pub fn new(files: Vec<(PathBuf, TouchAction)>) -> io::Result<Option<Touch>> {
        if files.is_empty() {
            return Ok(None);
        }
        // SAFETY: a new inotify instance that we own.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw was just created.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut dirs = HashMap::new();
        let mut watched = Vec::new();
        for (path, action) in files {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            let c = CString::new(dir.as_os_str().as_bytes())?;
            let mask = libc::IN_ATTRIB
                | libc::IN_CLOSE_WRITE
                | libc::IN_CREATE
                | libc::IN_MOVED_TO
                | libc::IN_MODIFY;
            // SAFETY: adding a watch on a NUL-terminated directory path.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
            if wd < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "touch file {}: cannot watch {}: {e}",
                        path.display(),
                        dir.display()
                    ),
                ));
            }
            dirs.insert(wd, dir);
            let seen = mtime(&path);
            watched.push((path, action, seen));
        }
        Ok(Some(Touch {
            fd,
            files: watched,
            dirs,
        }))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Drain inotify events and return the actions of files whose mtime changed.
    pub fn check(&mut self) -> Vec<(PathBuf, TouchAction)> {
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reading events into our buffer.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
        }
        let _ = &self.dirs;
        let mut fired = Vec::new();
        for (path, action, seen) in &mut self.files {
            let now = mtime(path);
            if now.is_some() && now != *seen {
                fired.push((path.clone(), *action));
            }
            *seen = now;
        }
        fired
    }
}
