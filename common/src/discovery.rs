//! Finding an instance: the runtime directory and the instance record.
//!
//! uwsgid writes an *instance record*, `PIDFILE.json`, beside every pidfile it writes (atomically,
//! mode 0644, after the pidfile), naming the instance's FIFOs and stats address. Given only a
//! pidfile, uwsgictl reads that record. Named instances (and the embedded default, named
//! `default`) live in `RUNTIME/NAME/` with fixed file names, so `uwsgictl --name N` and
//! `uwsgictl list` need nothing else.
//!
//! RUNTIME is `$UWSGID_RUNTIME_DIR` if set, else `$XDG_RUNTIME_DIR/uwsgid`, else
//! `/tmp/uwsgid-UID`; created mode 0700.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

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

    /// Create the instance directory (and the runtime directory) mode 0700, refusing one owned
    /// by another user.
    pub fn create(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let meta = fs::metadata(&self.dir)?;
        // SAFETY: geteuid never fails and has no memory effects.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {}, not to us (uid {me})",
                    self.dir.display(),
                    meta.uid()
                ),
            ));
        }
        Ok(())
    }
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
    if let Ok(entries) = fs::read_dir(runtime_dir()) {
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
