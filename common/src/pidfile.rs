//! The pidfile: the master's pid in decimal and a newline, nothing else.
//!
//! Writing: atomically (a temporary file with an unpredictable name, created `O_EXCL` in the
//! same directory, then `rename`), mode 0644, never through a symlink; a file planted beside the
//! pidfile is neither used nor removed. uwsgid holds an exclusive `flock` on `PIDFILE.lock` for
//! the master's life (kept across re-exec), so a second instance refuses to start without
//! touching the pidfile; a lock file owned by another user is refused ([`open_lock`]).
//!
//! Reading: [`read`] parses strictly and returns a typed error naming what was found; whether the
//! pid is alive and really a master is the job of [`crate::process`].

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest pidfile we read; a real one is at most 11 bytes.
const MAX_LEN: u64 = 64;

/// A pid read from a pidfile, with the file's modification time (used to detect pid reuse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidfileContent {
    pub pid: i32,
    pub modified: SystemTime,
}

/// Why a pidfile could not be read.
#[derive(Debug)]
pub enum PidfileError {
    Missing(PathBuf),
    NotRegular { path: PathBuf, kind: &'static str },
    TooLarge { path: PathBuf, len: u64 },
    Empty(PathBuf),
    NotANumber { path: PathBuf, found: String },
    Reserved { path: PathBuf, pid: i64 },
    OutOfRange { path: PathBuf, found: String },
    Io { path: PathBuf, error: io::Error },
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::Missing(p) => write!(f, "pidfile {}: no such file", p.display()),
            PidfileError::NotRegular { path, kind } => {
                write!(
                    f,
                    "pidfile {}: is a {kind}, not a regular file",
                    path.display()
                )
            }
            PidfileError::TooLarge { path, len } => {
                write!(
                    f,
                    "pidfile {}: {len} bytes is too large to hold a pid",
                    path.display()
                )
            }
            PidfileError::Empty(p) => write!(f, "pidfile {}: is empty", p.display()),
            PidfileError::NotANumber { path, found } => {
                write!(f, "pidfile {}: {found:?} is not a pid", path.display())
            }
            PidfileError::Reserved { path, pid } => {
                write!(
                    f,
                    "pidfile {}: pid {pid} is reserved and never a master",
                    path.display()
                )
            }
            PidfileError::OutOfRange { path, found } => {
                write!(
                    f,
                    "pidfile {}: {found:?} is out of the range of pids",
                    path.display()
                )
            }
            PidfileError::Io { path, error } => write!(f, "pidfile {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for PidfileError {}

/// Parse pidfile text: optional surrounding whitespace around one decimal number in 2..=i32::MAX.
pub fn parse(path: &Path, text: &str) -> Result<i32, PidfileError> {
    let trimmed = text.trim();
    let path = path.to_path_buf();
    if trimmed.is_empty() {
        return Err(PidfileError::Empty(path));
    }
    let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PidfileError::NotANumber {
            path,
            found: trimmed.to_string(),
        });
    }
    let value: i64 = match trimmed.parse() {
        Ok(v) => v,
        Err(_) => {
            return Err(PidfileError::OutOfRange {
                path,
                found: trimmed.to_string(),
            })
        }
    };
    if value == 0 || value == 1 {
        return Err(PidfileError::Reserved { path, pid: value });
    }
    if value < 0 || value > i64::from(i32::MAX) {
        return Err(PidfileError::OutOfRange {
            path,
            found: trimmed.to_string(),
        });
    }
    Ok(value as i32)
}

/// Read and parse a pidfile without following a symlink at its last component.
pub fn read(path: &Path) -> Result<PidfileContent, PidfileError> {
    let io_err = |error: io::Error| PidfileError::Io {
        path: path.to_path_buf(),
        error,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PidfileError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(e)),
    };
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else {
            "device"
        };
        return Err(PidfileError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.len() > MAX_LEN {
        return Err(PidfileError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    let mut buf = Vec::new();
    Read::by_ref(&mut file)
        .take(MAX_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    let text = String::from_utf8_lossy(&buf);
    let pid = parse(path, &text)?;
    let modified = file.metadata().and_then(|m| m.modified()).map_err(io_err)?;
    Ok(PidfileContent { pid, modified })
}

/// The lock file that guards a pidfile: `PIDFILE.lock`.
pub fn lock_path(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Write `pid` atomically: temporary file beside it, fsync, rename. Refuses a symlink or a
/// non-regular file at `path`.
pub fn write_atomic(path: &Path, pid: i32) -> io::Result<()> {
    write_file_atomic(path, format!("{pid}\n").as_bytes(), 0o644)
}

/// Atomically replace `path` with `contents` (used for the pidfile and the instance record).
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} exists and is not a regular file; remove it",
                    path.display()
                ),
            ));
        }
        _ => {}
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name", path.display()),
        )
    })?;
    // An unpredictable name, created O_EXCL: a file planted beside `path` can neither be
    // guessed in advance nor be opened by us, and only a file we created is ever removed.
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", random_u64()?));
        let tmp = dir.join(tmp_name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: creating a temporary file: {e}", tmp.display()),
                ))
            }
        }
    };
    let result = (|| {
        file.write_all(contents)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// 64 random bits from the kernel (`getrandom`, else `/dev/urandom`).
pub fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into our buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    }
    Ok(u64::from_ne_bytes(buf))
}

/// Open (creating it mode 0644 if missing) the lock file `PIDFILE.lock`, never through a
/// symlink, and refuse one another user owns: they could hold its lock to keep every instance
/// from starting, or remove it from under us.
pub fn open_lock(pidfile: &Path) -> Result<fs::File, String> {
    let lock = lock_path(pidfile);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&lock)
        .map_err(|e| format!("pidfile lock {}: {e}", lock.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("pidfile lock {}: {e}", lock.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "pidfile lock {}: is not a regular file; remove it and start again",
            lock.display()
        ));
    }
    let me = crate::trust::euid();
    if meta.uid() != me {
        return Err(format!(
            "pidfile lock {} belongs to {} (mode {:04o}), not to {}; another user created it and              could hold it to keep this instance from starting: remove it (rm {}) and start again",
            lock.display(),
            crate::trust::describe_uid(meta.uid()),
            meta.mode() & 0o7777,
            crate::trust::describe_uid(me),
            lock.display()
        ));
    }
    Ok(file)
}

/// True if `path` still holds `pid` (used before removing a pidfile on exit).
pub fn holds(path: &Path, pid: i32) -> bool {
    read(path).map(|c| c.pid == pid).unwrap_or(false)
}

/// The inode of a file, for tests and diagnostics.
pub fn inode(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.pid")
    }

    #[test]
    fn parses_plain_pids() {
        assert_eq!(parse(p(), "1234\n").unwrap(), 1234);
        assert_eq!(parse(p(), "  77 ").unwrap(), 77);
    }

    #[test]
    fn refuses_every_bad_shape() {
        assert!(matches!(parse(p(), ""), Err(PidfileError::Empty(_))));
        assert!(matches!(parse(p(), " \n"), Err(PidfileError::Empty(_))));
        assert!(matches!(
            parse(p(), "12a"),
            Err(PidfileError::NotANumber { .. })
        ));
        assert!(matches!(
            parse(p(), "1 2"),
            Err(PidfileError::NotANumber { .. })
        ));
        assert!(matches!(
            parse(p(), "0"),
            Err(PidfileError::Reserved { pid: 0, .. })
        ));
        assert!(matches!(
            parse(p(), "1"),
            Err(PidfileError::Reserved { pid: 1, .. })
        ));
        assert!(matches!(
            parse(p(), "-5"),
            Err(PidfileError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(p(), "4294967296"),
            Err(PidfileError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse(p(), "99999999999999999999999"),
            Err(PidfileError::OutOfRange { .. })
        ));
    }

    #[test]
    fn message_names_the_input() {
        let e = parse(Path::new("/run/x.pid"), "12a").unwrap_err();
        assert_eq!(e.to_string(), "pidfile /run/x.pid: \"12a\" is not a pid");
    }

    #[test]
    fn a_planted_temp_file_is_neither_used_nor_removed() {
        let dir = std::env::temp_dir().join(format!("pidfile-plant-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.pid");
        // The name the old scheme would have used, and a few random-looking ones.
        let planted = dir.join(format!(".a.pid.{}.tmp", std::process::id()));
        fs::write(&planted, "planted").unwrap();
        for _ in 0..3 {
            write_atomic(&path, 42).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "42\n");
        assert_eq!(fs::read_to_string(&planted).unwrap(), "planted");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "temporary files left behind: {left:?}");
        assert_ne!(random_u64().unwrap(), random_u64().unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_atomically_and_refuses_symlinks() {
        let dir = std::env::temp_dir().join(format!("pidfile-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.pid");
        write_atomic(&path, 4321).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4321\n");
        assert_eq!(read(&path).unwrap().pid, 4321);
        let link = dir.join("link.pid");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(write_atomic(&link, 1).is_err());
        assert!(matches!(
            read(&link),
            Err(PidfileError::NotRegular {
                kind: "symlink",
                ..
            })
        ));
        assert!(matches!(
            read(&dir),
            Err(PidfileError::NotRegular {
                kind: "directory",
                ..
            })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
