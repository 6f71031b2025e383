//! Trusted places: a directory or FIFO that no other user can have planted or can change.
//!
//! The rule, as ssh-agent, tmux and systemd apply it to their runtime directories: a path is
//! trusted if it is owned by the effective uid and has neither the group nor the other write
//! bit. A directory uwsgid creates is made mode 0700 whatever the umask. Where a trusted
//! directory may be reached through a symlink (the runtime directory), the link itself must be
//! ours too; where it may not (an instance directory, a FIFO), a symlink is refused.
//!
//! Both binaries use these checks: uwsgid before it creates or binds anything in the runtime
//! or instance directory and before it adopts an existing FIFO, uwsgictl before it reads an
//! instance record. Messages name the path, its owner and mode, and the fix.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid never fails and has no memory effects.
    unsafe { libc::geteuid() }
}

/// A user name for messages: `65534 (nobody)`, or the bare number.
pub fn describe_uid(uid: u32) -> String {
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _ = f.next()?;
            (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// What is wrong with a path we were about to trust.
#[derive(Debug)]
pub enum Problem {
    /// Not a directory (or not a FIFO): what it is.
    WrongType(&'static str),
    /// A symlink where none is allowed.
    Symlink,
    /// A symlink owned by another user.
    ForeignLink {
        uid: u32,
    },
    /// Owned by another user.
    Owner {
        uid: u32,
        mode: u32,
    },
    /// Ours, but writable by group or others.
    Writable {
        mode: u32,
    },
    Io(io::Error),
}

/// A refused path: `what` is e.g. "runtime directory" or "--master-fifo".
#[derive(Debug)]
pub struct Untrusted {
    pub what: String,
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        let what = &self.what;
        let me = describe_uid(euid());
        match &self.problem {
            Problem::WrongType(kind) => write!(
                f,
                "{what} {p} is a {kind}; remove it (or choose another path) and start again"
            ),
            Problem::Symlink => write!(
                f,
                "{what} {p} is a symlink, which is not followed here; remove it (rm {p}) and \
                 start again"
            ),
            Problem::ForeignLink { uid } => write!(
                f,
                "{what} {p} is a symlink owned by {}, not by {me}; another user could point it \
                 anywhere: remove it (rm {p}), or set UWSGID_RUNTIME_DIR to a directory of your \
                 own (mode 0700)",
                describe_uid(*uid)
            ),
            Problem::Owner { uid, mode } => write!(
                f,
                "{what} {p} belongs to {} with mode {mode:04o}, not to {me}; another user could \
                 plant or change what is in it: remove it (rm -r {p}) and start again, or set \
                 UWSGID_RUNTIME_DIR to a directory of your own (mode 0700)",
                describe_uid(*uid)
            ),
            Problem::Writable { mode } => write!(
                f,
                "{what} {p} has mode {mode:04o}: group or others can write to it; make it \
                 private (chmod go-w {p}, or chmod 700 for a directory) and start again"
            ),
            Problem::Io(e) => write!(f, "{what} {p}: {e}"),
        }
    }
}

impl std::error::Error for Untrusted {}

impl From<Untrusted> for io::Error {
    fn from(e: Untrusted) -> io::Error {
        let kind = match &e.problem {
            Problem::Io(io) => io.kind(),
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e.to_string())
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else {
        "device"
    }
}

/// Owned by us, no group/other write bit: the check on an already-resolved inode's metadata.
pub fn check_owner_mode(meta: &fs::Metadata) -> Result<(), Problem> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != euid() {
        return Err(Problem::Owner {
            uid: meta.uid(),
            mode,
        });
    }
    if mode & 0o022 != 0 {
        return Err(Problem::Writable { mode });
    }
    Ok(())
}

/// Check an existing directory. With `follow_link`, a symlink owned by us is followed and its
/// target checked; without it, a symlink is refused.
pub fn check_dir(what: &str, path: &Path, follow_link: bool) -> Result<(), Untrusted> {
    let err = |problem| Untrusted {
        what: what.to_string(),
        path: path.to_path_buf(),
        problem,
    };
    let meta = fs::symlink_metadata(path).map_err(|e| err(Problem::Io(e)))?;
    let meta = if meta.file_type().is_symlink() {
        if !follow_link {
            return Err(err(Problem::Symlink));
        }
        if meta.uid() != euid() {
            return Err(err(Problem::ForeignLink { uid: meta.uid() }));
        }
        fs::metadata(path).map_err(|e| err(Problem::Io(e)))?
    } else {
        meta
    };
    if !meta.is_dir() {
        return Err(err(Problem::WrongType(kind_of(&meta))));
    }
    check_owner_mode(&meta).map_err(err)
}

/// Create `path` mode 0700 (whatever the umask) if it is missing, then [`check_dir`] it. A
/// missing parent is created too, mode 0700.
pub fn ensure_dir(what: &str, path: &Path, follow_link: bool) -> Result<(), Untrusted> {
    let err = |problem| Untrusted {
        what: what.to_string(),
        path: path.to_path_buf(),
        problem,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if fs::symlink_metadata(parent).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| err(Problem::Io(e)))?;
        }
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(Problem::Io(io::Error::new(io::ErrorKind::InvalidInput, e))))?;
    // SAFETY: mkdir with a NUL-terminated path; no memory is kept.
    let created = unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0;
    if !created {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(Problem::Io(e)));
        }
    }
    if created {
        // mkdir applied the umask (at most removing bits): make the mode exactly 0700. The
        // directory is ours; nobody else can have replaced it in a sticky or private parent,
        // and the check below sees whatever is there now.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    }
    check_dir(what, path, follow_link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("trust-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn creates_private_whatever_the_umask() {
        let dir = tmp("umask");
        // SAFETY: umask has no memory effects; the old mask is restored below.
        let old = unsafe { libc::umask(0o277) };
        let r = ensure_dir("runtime directory", &dir.join("rt"), true);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        r.unwrap();
        let mode = fs::metadata(dir.join("rt")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_writable_and_symlinks_where_not_allowed() {
        let dir = tmp("modes");
        ensure_dir("d", &dir, false).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_dir("runtime directory", &dir, true).unwrap_err();
        assert!(
            matches!(e.problem, Problem::Writable { mode: 0o777 }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod"), "{e}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.with_extension("link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        check_dir("runtime directory", &link, true).unwrap();
        let e = check_dir("instance directory", &link, false).unwrap_err();
        assert!(matches!(e.problem, Problem::Symlink), "{e}");
        fs::remove_file(&link).unwrap();
        fs::write(dir.join("f"), "").unwrap();
        let e = check_dir("d", &dir.join("f"), true).unwrap_err();
        assert!(matches!(e.problem, Problem::WrongType("regular file")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
