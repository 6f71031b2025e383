//! Finding an instance: the runtime directory and the instance record.
//!
//! uwsgid writes an *instance record*, `PIDFILE.json`, beside every pidfile it writes (atomically,
//! mode 0644, after the pidfile), naming the instance's FIFOs and stats address. Given only a
//! pidfile, uwsgictl reads that record. Named instances (and the embedded default, named
//! `default`) live in `RUNTIME/NAME/` with fixed file names, so `uwsgictl --name N` and
//! `uwsgictl list` need nothing else.
//!
//! RUNTIME is `$UWSGID_RUNTIME_DIR` if set, else `$XDG_RUNTIME_DIR/uwsgid`, else
//! `/tmp/uwsgid-UID`; created mode 0700 whatever the umask. It is used only if it is trusted
//! ([`crate::trust`]): a directory owned by the effective uid with no group or other write bit
//! (reached through a symlink only if the link is ours too). An instance directory
//! `RUNTIME/NAME` is held to the same rule and must not be a symlink. A directory another user
//! pre-created (a 0777 `/tmp/uwsgid-0`) is refused by uwsgid before it binds anything, and by
//! uwsgictl before it reads a record from it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::trust::{self, Untrusted};

use serde::{Deserialize, Serialize};

pub const PIDFILE_NAME: &str = "uwsgid.pid";
pub const FIFO_NAME: &str = "master.fifo";
pub const STATS_NAME: &str = "stats.sock";
pub const LOG_NAME: &str = "uwsgid.log";
pub const DEFAULT_NAME: &str = "default";

/// What uwsgid tells the world about one running instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceRecord {
    pub pid: i32,
    pub name: Option<String>,
    pub pidfile: PathBuf,
    pub fifo: Vec<PathBuf>,
    pub stats: Option<String>,
    pub stats_http: bool,
    pub version: String,
    /// The addresses the instance listens on, as bound (a `:0` port resolved).
    pub listeners: Vec<String>,
}

/// The record that belongs to a pidfile.
pub fn record_path(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_os_string();
    name.push(".json");
    PathBuf::from(name)
}

/// Read the record beside a pidfile.
pub fn read_record(pidfile: &Path) -> io::Result<InstanceRecord> {
    let path = record_path(pidfile);
    let text = fs::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// The runtime directory, without creating it.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UWSGID_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = dirs::runtime_dir() {
        return dir.join("uwsgid");
    }
    // SAFETY: getuid never fails and has no memory effects.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/uwsgid-{uid}"))
}

/// The files of a named instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePaths {
    pub dir: PathBuf,
    pub pidfile: PathBuf,
    pub fifo: PathBuf,
    pub stats: PathBuf,
    pub log: PathBuf,
}

impl InstancePaths {
    pub fn for_name(name: &str) -> InstancePaths {
        InstancePaths::in_dir(runtime_dir().join(name))
    }

    pub fn in_dir(dir: PathBuf) -> InstancePaths {
        InstancePaths {
            pidfile: dir.join(PIDFILE_NAME),
            fifo: dir.join(FIFO_NAME),
            stats: dir.join(STATS_NAME),
            log: dir.join(LOG_NAME),
            dir,
        }
    }

    /// Create the instance directory (and the runtime directory above it) mode 0700, and check
    /// both are trusted ([`crate::trust`]): an existing directory owned by another user, or
    /// writable by group or others, or an instance directory that is a symlink, is refused.
    pub fn create(&self) -> io::Result<()> {
        if let Some(runtime) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            trust::ensure_dir("runtime directory", runtime, true)?;
        }
        trust::ensure_dir("instance directory", &self.dir, false)?;
        Ok(())
    }

    /// Check, without creating anything, that the runtime and instance directories are
    /// trusted; `Ok(false)` if the instance directory does not exist.
    pub fn check(&self) -> Result<bool, Untrusted> {
        if let Some(runtime) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            match fs::symlink_metadata(runtime) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                _ => trust::check_dir("runtime directory", runtime, true)?,
            }
        }
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            _ => trust::check_dir("instance directory", &self.dir, false).map(|_| true),
        }
    }
}

/// The runtime directory, created mode 0700 if missing and checked to be trusted.
pub fn trusted_runtime_dir() -> Result<PathBuf, Untrusted> {
    let dir = runtime_dir();
    trust::ensure_dir("runtime directory", &dir, true)?;
    Ok(dir)
}

/// Valid instance names: what fits in a file name and a shell word.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Instances found in the runtime directory: `(name, paths)`, sorted by name. Only directories
/// holding a pidfile are listed; whether they run is for the caller to check.
pub fn list_instances() -> Vec<(String, InstancePaths)> {
    let mut found = Vec::new();
    let runtime = runtime_dir();
    if trust::check_dir("runtime directory", &runtime, true).is_err() {
        return found;
    }
    if let Ok(entries) = fs::read_dir(runtime) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let paths = InstancePaths::in_dir(entry.path());
            if valid_name(&name) && paths.pidfile.exists() {
                found.push((name, paths));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sits_beside_the_pidfile() {
        assert_eq!(
            record_path(Path::new("/run/app.pid")),
            PathBuf::from("/run/app.pid.json")
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("default"));
        assert!(valid_name("app-2_b.x"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name(""));
        assert!(!valid_name(".hidden"));
    }
}
