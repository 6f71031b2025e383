//! Touch files: a reload fires when a watched file's mtime changes or the file appears.
//!
//! inotify watches each file's directory (so a file that does not exist yet, or is replaced by
//! rename, is still seen). Only events that end a touch count: attributes changed (`touch`,
//! `utimensat`), a file open for writing closed (`echo > file`, an editor's save, `cp`), or a
//! file moved in (`mv`, atomic saves); creation and each single write do not, so a file written
//! in several steps fires once, when it is closed. Then the file's modification time is
//! compared with the last one seen, so the two or three events one `touch` produces fire exactly
//! once and a `chmod` fires nothing. Events for other names in the directory are ignored, and
//! nothing is polled on a timer. Two touches within the filesystem's timestamp granularity (a
//! few ms) give the same mtime and fire once.

use std::ffi::{CString, OsString};
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

/// Events that end a touch (see the module docs).
const FIRING: u32 = libc::IN_ATTRIB | libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO;

struct Watched {
    path: PathBuf,
    action: TouchAction,
    /// The directory's watch and the file's name in it.
    wd: i32,
    name: OsString,
    /// The modification time last seen (ns since the epoch), None while the file is missing.
    seen: Option<i128>,
}

pub struct Touch {
    fd: OwnedFd,
    files: Vec<Watched>,
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
        let mut watched = Vec::new();
        for (path, action) in files {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("touch file {}: not a file name", path.display()),
                ));
            };
            let c = CString::new(dir.as_os_str().as_bytes())?;
            // SAFETY: adding a watch on a NUL-terminated directory path.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), FIRING) };
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
            let seen = mtime(&path);
            watched.push(Watched {
                path,
                action,
                wd,
                name,
                seen,
            });
        }
        Ok(Some(Touch { fd, files: watched }))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Drain inotify events and return the actions of watched files whose mtime changed.
    pub fn check(&mut self) -> Vec<(PathBuf, TouchAction)> {
        let mut candidates = vec![false; self.files.len()];
        let mut buf = vec![0u8; 16 * 1024];
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
            for (wd, mask, name) in parse_events(&buf[..n as usize]) {
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    candidates.iter_mut().for_each(|c| *c = true);
                    continue;
                }
                if mask & FIRING == 0 {
                    continue;
                }
                for (i, f) in self.files.iter().enumerate() {
                    if f.wd == wd && f.name.as_bytes() == name {
                        candidates[i] = true;
                    }
                }
            }
        }
        let mut fired = Vec::new();
        for (f, candidate) in self.files.iter_mut().zip(candidates) {
            if !candidate {
                continue;
            }
            let now = mtime(&f.path);
            if now.is_some() && now != f.seen {
                fired.push((f.path.clone(), f.action));
            }
            f.seen = now;
        }
        fired
    }
}

/// `(wd, mask, name)` of each `struct inotify_event` in `bytes` (name without its NUL padding).
fn parse_events(bytes: &[u8]) -> Vec<(i32, u32, Vec<u8>)> {
    const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEAD <= bytes.len() {
        // SAFETY: HEAD bytes are in bounds; read_unaligned copes with any alignment.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr() as *const libc::inotify_event) };
        let start = at + HEAD;
        let end = (start + ev.len as usize).min(bytes.len());
        let raw = &bytes[start..end];
        let name = raw.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        out.push((ev.wd, ev.mask, name));
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &str) -> Vec<u8> {
        let mut padded = name.as_bytes().to_vec();
        padded.resize(name.len().div_ceil(16) * 16, 0);
        let ev = libc::inotify_event {
            wd,
            mask,
            cookie: 0,
            len: padded.len() as u32,
        };
        // SAFETY: viewing a plain C struct as its bytes.
        let head = unsafe {
            std::slice::from_raw_parts(
                &ev as *const libc::inotify_event as *const u8,
                std::mem::size_of::<libc::inotify_event>(),
            )
        };
        let mut out = head.to_vec();
        out.extend(padded);
        out
    }

    #[test]
    fn parses_events_with_padded_names() {
        let mut bytes = event(1, libc::IN_ATTRIB, "reload.touch");
        bytes.extend(event(2, libc::IN_CLOSE_WRITE, ""));
        bytes.extend(event(1, libc::IN_MOVED_TO, "a-name-longer-than-sixteen"));
        let evs = parse_events(&bytes);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0], (1, libc::IN_ATTRIB, b"reload.touch".to_vec()));
        assert_eq!(evs[1], (2, libc::IN_CLOSE_WRITE, Vec::new()));
        assert_eq!(evs[2].2, b"a-name-longer-than-sixteen".to_vec());
    }

    #[test]
    fn fires_once_per_change_and_only_for_its_name() {
        let dir = std::env::temp_dir().join(format!("uwsgid-touch-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t");
        let mut t = Touch::new(vec![(file.clone(), TouchAction::Reload)])
            .unwrap()
            .unwrap();
        std::fs::write(dir.join("other"), "x").unwrap();
        assert!(t.check().is_empty());
        std::fs::write(&file, "x").unwrap();
        assert_eq!(t.check(), vec![(file.clone(), TouchAction::Reload)]);
        assert!(t.check().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
