//! The master FIFO: one command per byte, read without ever blocking the master.
//!
//! Only the active slot's FIFO is open. The master keeps a write end of it open itself, so the
//! read end never sees end-of-file when writers come and go (no re-creation dance, no busy
//! loop), and a writer's `open` never blocks while the master runs. Switching slots (`0`-`9`)
//! opens the new slot's FIFO (creating it mode 0600 if needed) and closes the old one. Both fds
//! are inherited across re-exec, so a command written during a reload waits in the pipe.
//!
//! Whoever can write to the FIFO controls the instance, so an existing FIFO is adopted only if
//! it is owned by the effective uid and neither group nor others can write to it
//! ([`common::trust`]); a symlink is refused, both ends are opened `O_NOFOLLOW`, and `fstat`
//! checks that the inode opened is the one checked (not one swapped in between).
//!
//! Garbage is refused whole: a read that contains a byte which is neither a command nor
//! whitespace executes nothing and is logged once, so random bytes (which hold `q`, `Q`, `r`...)
//! never stop or reload the instance. Commands in a well-formed write run in order, each decided
//! by the master before the next. A read is whatever the pipe holds at that moment, at most
//! 64 KiB: bytes of two writers racing each other may share one read and be refused together.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::fifo::{decode, Decoded, FifoCommand};
use common::trust::{check_owner_mode, Problem, Untrusted};

pub struct Fifo {
    pub paths: Vec<PathBuf>,
    pub active: usize,
    read: OwnedFd,
    keep: OwnedFd,
    /// FIFO files this instance created (removed by `--vacuum`).
    pub created: Vec<PathBuf>,
}

/// What one read from the FIFO produced.
pub enum Batch {
    Commands(Vec<FifoCommand>),
    /// Bytes uWSGI defines but uwsgid refuses (executed commands around them still run).
    Refused {
        commands: Vec<FifoCommand>,
        uwsgi_only: Vec<u8>,
    },
    Garbage {
        len: usize,
        first_bad: u8,
        offset: usize,
    },
}

fn open_fd(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: open with a NUL-terminated path; we own the returned fd.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            flags | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why a `--master-fifo` path is refused or cannot be opened; each names the path and the fix.
#[derive(Debug)]
pub enum Error {
    /// Another user's FIFO, a group- or world-writable one, or a symlink.
    Untrusted(Untrusted),
    /// Something else than a FIFO is at the path.
    NotAFifo(PathBuf),
    /// Creating, opening or checking it failed.
    Io(PathBuf, io::Error),
    /// What was opened is not the FIFO checked a moment before.
    Replaced(PathBuf),
    /// A slot command (`0`-`9`) naming a slot without a path.
    NoSlot { slot: usize, configured: usize },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Untrusted(e) => write!(
                f,
                "{e} (a FIFO another user can write, or replace, could stop or reload this \
                 instance)"
            ),
            Error::NotAFifo(p) => write!(
                f,
                "--master-fifo {}: exists and is not a FIFO; remove it or choose another path",
                p.display()
            ),
            Error::Io(p, e) => write!(f, "--master-fifo {}: {e}", p.display()),
            Error::Replaced(p) => write!(
                f,
                "--master-fifo {}: was replaced while being opened; remove it and start again",
                p.display()
            ),
            Error::NoSlot { slot, configured } => write!(
                f,
                "FIFO slot {slot} is not configured ({configured} configured)"
            ),
        }
    }
}

impl std::error::Error for Error {}

fn untrusted(path: &Path, problem: Problem) -> Error {
    Error::Untrusted(Untrusted {
        what: "--master-fifo".into(),
        path: path.to_path_buf(),
        problem,
    })
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::Io(path.to_path_buf(), e)
}

/// Create the FIFO at `path` (mode 0600) unless a FIFO is already there; true if created. An
/// existing FIFO is adopted only if it is ours and neither group nor others can write to it;
/// a symlink is refused.
fn ensure_fifo(path: &Path) -> Result<(bool, u64, u64), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {
            check_owner_mode(&m).map_err(|p| untrusted(path, p))?;
            return Ok((false, m.dev(), m.ino()));
        }
        Ok(m) if m.file_type().is_symlink() => return Err(untrusted(path, Problem::Symlink)),
        Ok(_) => return Err(Error::NotAFifo(path.to_path_buf())),
        Err(_) => {}
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| io_error(path)(e.into()))?;
    // SAFETY: mkfifo with a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(io_error(path)(io::Error::last_os_error()));
    }
    let m = std::fs::symlink_metadata(path).map_err(io_error(path))?;
    Ok((true, m.dev(), m.ino()))
}

/// Refuse, before anything is bound, a configured FIFO path that holds something we would not
/// adopt (another user's FIFO, a writable one, a symlink, not a FIFO). Missing paths are fine.
pub fn check_paths(paths: &[PathBuf]) -> Result<(), Error> {
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_fifo() => {
                check_owner_mode(&m).map_err(|p| untrusted(path, p))?
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(untrusted(path, Problem::Symlink));
            }
            Ok(_) => return Err(Error::NotAFifo(path.to_path_buf())),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Open both ends of the FIFO at `path` without following a symlink, and check that what was
/// opened is the FIFO checked (`dev`, `ino`), still ours and private. The mode is made exactly
/// 0600 through the fd (mkfifo applied the umask).
fn open_checked(path: &Path, dev: u64, ino: u64) -> Result<(OwnedFd, OwnedFd), Error> {
    let read = open_fd(path, libc::O_RDONLY).map_err(io_error(path))?;
    let keep = open_fd(path, libc::O_WRONLY).map_err(io_error(path))?;
    for fd in [&read, &keep] {
        let m = fd
            .try_clone()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .map_err(io_error(path))?;
        if !m.file_type().is_fifo() || m.dev() != dev || m.ino() != ino {
            return Err(Error::Replaced(path.to_path_buf()));
        }
        if m.uid() != common::trust::euid() {
            return Err(untrusted(
                path,
                Problem::Owner {
                    uid: m.uid(),
                    mode: m.mode() & 0o7777,
                },
            ));
        }
    }
    // SAFETY: fchmod on the fd we own.
    unsafe {
        libc::fchmod(read.as_raw_fd(), 0o600);
    }
    Ok((read, keep))
}

impl Fifo {
    pub fn open(paths: Vec<PathBuf>, active: usize) -> Result<Fifo, Error> {
        let path = paths[active].clone();
        let (created, dev, ino) = ensure_fifo(&path)?;
        let (read, keep) = open_checked(&path, dev, ino).inspect_err(|_| {
            if created {
                let _ = std::fs::remove_file(&path);
            }
        })?;
        Ok(Fifo {
            paths,
            active,
            read,
            keep,
            created: if created { vec![path] } else { vec![] },
        })
    }

    /// Adopt the FIFO ends inherited across re-exec (validated by `sys::take_fd`).
    pub fn inherit(
        paths: Vec<PathBuf>,
        active: usize,
        read: OwnedFd,
        keep: OwnedFd,
        created: Vec<PathBuf>,
    ) -> Fifo {
        Fifo {
            paths,
            active,
            read,
            keep,
            created,
        }
    }

    pub fn raw(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn active_path(&self) -> &Path {
        &self.paths[self.active]
    }

    /// Both fds, to keep across re-exec: `(read, keep)`.
    pub fn into_raw(self) -> (RawFd, RawFd) {
        (self.read.into_raw_fd(), self.keep.into_raw_fd())
    }

    pub fn fds(&self) -> (RawFd, RawFd) {
        (self.read.as_raw_fd(), self.keep.as_raw_fd())
    }

    /// Read what is waiting (at most 64 KiB per call, so a flood cannot starve the loop).
    pub fn read_batch(&mut self) -> Option<Batch> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: reading into our buffer.
        let n = unsafe {
            libc::read(
                self.read.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        crate::fault::master_fifo(&buf);
        Some(classify(&buf))
    }

    /// Make slot `n` the active FIFO.
    pub fn switch(&mut self, n: usize) -> Result<(), Error> {
        if n >= self.paths.len() {
            return Err(Error::NoSlot {
                slot: n,
                configured: self.paths.len(),
            });
        }
        if n == self.active {
            return Ok(());
        }
        let path = self.paths[n].clone();
        let (created, dev, ino) = ensure_fifo(&path)?;
        let (read, keep) = open_checked(&path, dev, ino)?;
        if created {
            self.created.push(path);
        }
        self.read = read;
        self.keep = keep;
        self.active = n;
        Ok(())
    }
}

/// Decide what a batch of bytes means.
pub fn classify(bytes: &[u8]) -> Batch {
    let mut commands = Vec::new();
    let mut uwsgi_only = Vec::new();
    for (offset, &b) in bytes.iter().enumerate() {
        match decode(b) {
            Decoded::Command(c) => commands.push(c),
            Decoded::Whitespace => {}
            Decoded::UwsgiOnly(b) => uwsgi_only.push(b),
            Decoded::Unknown(b) => {
                return Batch::Garbage {
                    len: bytes.len(),
                    first_bad: b,
                    offset,
                }
            }
        }
    }
    if uwsgi_only.is_empty() {
        Batch::Commands(commands)
    } else {
        Batch::Refused {
            commands,
            uwsgi_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches() {
        assert!(matches!(classify(b"+++s\n"), Batch::Commands(c) if c.len() == 4));
        assert!(
            matches!(classify(b"r f"), Batch::Refused { commands, uwsgi_only } if commands.len() == 1 && uwsgi_only == b"f")
        );
        assert!(matches!(
            classify(b"rq\x01Q"),
            Batch::Garbage {
                first_bad: 1,
                offset: 2,
                ..
            }
        ));
    }
}
