//! Which instance a command talks to, and through what: pidfile, FIFO, stats address.
//!
//! Resolution, most explicit first: `--pidfile`, `--fifo` and `--stats` always win; `--ini FILE`
//! fills in what its `[uwsgi]` section names; `--name NAME` (or `name` in the ini) means the
//! instance directory `RUNTIME/NAME/`; no target at all means the embedded default instance
//! (`--name default`). Given a pidfile, the uwsgid instance record `PIDFILE.json` beside it
//! supplies the FIFOs and the stats address, unless it belongs to another pid (a stale record
//! is ignored with a warning).
//!
//! Nothing is read from a place another user controls: a named instance's runtime and
//! instance directories must pass [`common::trust`] (else the command stops, naming the path,
//! owner, mode and fix), and a record beside an explicit pidfile is used only if it is a
//! regular file owned by us or root that group and others cannot write (else it is ignored
//! with a warning). Even a trusted record is not believed blindly: the FIFO and stats it names
//! are checked against the validated master before use (`master` module).

use std::path::{Path, PathBuf};

use common::discovery::{self, InstancePaths, InstanceRecord};

use crate::cli::TargetArgs;
use crate::exit::{CtlError, Exit};
use crate::ini;

/// Where a stats server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
    /// Linux abstract socket, written `@name`.
    Abstract(String),
}

/// A stats address: an endpoint, and whether it speaks HTTP (`--stats-http`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsAddr {
    pub endpoint: Endpoint,
    pub http: bool,
}

impl StatsAddr {
    /// Parse `HOST:PORT`, `:PORT`, `[V6]:PORT`, a path, `unix:PATH`, `@NAME`, or any of them
    /// after `http://`.
    pub fn parse(text: &str, http: bool) -> Result<StatsAddr, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("stats address is empty; give HOST:PORT or a socket path".into());
        }
        if let Some(rest) = text.strip_prefix("http://") {
            let rest = rest.split('/').next().unwrap_or(rest);
            let mut addr = StatsAddr::parse(rest, true)?;
            addr.http = true;
            return Ok(addr);
        }
        let endpoint = if let Some(path) = text.strip_prefix("unix:") {
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(name) = text.strip_prefix('@') {
            Endpoint::Abstract(name.to_string())
        } else if text.contains('/') || !text.contains(':') {
            Endpoint::Unix(PathBuf::from(text))
        } else if let Some(port) = text.strip_prefix(':') {
            Endpoint::Tcp(format!("127.0.0.1:{port}"))
        } else {
            Endpoint::Tcp(text.to_string())
        };
        if let Endpoint::Tcp(addr) = &endpoint {
            let port = addr.rsplit(':').next().unwrap_or("");
            if port.parse::<u16>().is_err() {
                return Err(format!(
                    "stats address {text:?}: {port:?} is not a port; give HOST:PORT"
                ));
            }
        }
        Ok(StatsAddr { endpoint, http })
    }
}

impl std::fmt::Display for StatsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.http {
            f.write_str("http://")?;
        }
        match &self.endpoint {
            Endpoint::Tcp(a) => f.write_str(a),
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

/// The resolved target of a command.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub pidfile: Option<PathBuf>,
    /// FIFO paths in slot order; commands write to the active slot.
    pub fifos: Vec<PathBuf>,
    pub stats: Option<StatsAddr>,
    /// The instance name, when the target came from `--name` or the default.
    pub name: Option<String>,
    /// The uwsgid instance record, when one was found and matches the pidfile.
    pub record: Option<InstanceRecord>,
    /// Warnings to print on stderr (stale record, ...).
    pub warnings: Vec<String>,
}

impl Target {
    /// A short description for messages: the pidfile, else the FIFO, else the stats address.
    pub fn describe(&self) -> String {
        if let Some(name) = &self.name {
            return format!("instance {name:?}");
        }
        if let Some(p) = &self.pidfile {
            return format!("pidfile {}", p.display());
        }
        if let Some(f) = self.fifos.first() {
            return format!("fifo {}", f.display());
        }
        if let Some(s) = &self.stats {
            return format!("stats {s}");
        }
        "no target".into()
    }
}

/// Resolve the command-line target options.
pub fn resolve(args: &TargetArgs) -> Result<Target, CtlError> {
    let mut target = Target::default();
    let mut stats_http = false;
    let mut name = args.name.clone();
    let mut ini_stats = None;
    if let Some(path) = &args.ini {
        let from_ini = ini::read(path).map_err(CtlError::usage)?;
        target.pidfile = from_ini.pidfile;
        target.fifos = from_ini.fifos;
        ini_stats = from_ini.stats;
        stats_http = from_ini.stats_http;
        if name.is_none() {
            name = from_ini.name;
        }
    }
    let nothing_given = args.pidfile.is_none()
        && args.fifo.is_none()
        && args.stats.is_none()
        && args.ini.is_none()
        && name.is_none();
    if nothing_given {
        name = Some(discovery::DEFAULT_NAME.to_string());
    }
    if let Some(p) = &args.pidfile {
        target.pidfile = Some(p.clone());
    }
    if let Some(f) = &args.fifo {
        target.fifos = vec![f.clone()];
    }
    if let Some(s) = &args.stats {
        target.stats = Some(StatsAddr::parse(s, false).map_err(CtlError::usage)?);
    } else if let Some(s) = ini_stats {
        target.stats = Some(StatsAddr::parse(&s, stats_http).map_err(CtlError::usage)?);
    }
    let mut defaults = None;
    if let Some(n) = &name {
        if !discovery::valid_name(n) {
            return Err(CtlError::usage(format!(
                "instance name {n:?} is not valid; use letters, digits, '-', '_' and '.'"
            )));
        }
        let paths = InstancePaths::for_name(n);
        if target.pidfile.is_none() {
            paths
                .check()
                .map_err(|e| CtlError::new(Exit::Permission, format!("{e}; nothing was sent")))?;
            target.pidfile = Some(paths.pidfile.clone());
            target.name = Some(n.clone());
        }
        defaults = Some(paths);
    }
    if let Some(pidfile) = target.pidfile.clone() {
        attach_record(&mut target, &pidfile);
    }
    if let Some(paths) = defaults {
        if target.name.is_some() {
            if target.fifos.is_empty() {
                target.fifos = vec![paths.fifo];
            }
            if target.stats.is_none() {
                target.stats = Some(StatsAddr {
                    endpoint: Endpoint::Unix(paths.stats),
                    http: false,
                });
            }
        }
    }
    Ok(target)
}

/// Fill FIFOs and stats from the instance record beside `pidfile`, if it matches the pidfile.
fn attach_record(target: &mut Target, pidfile: &Path) {
    if let Err(why) = record_trusted(&discovery::record_path(pidfile)) {
        target.warnings.push(why);
        return;
    }
    let Ok(record) = discovery::read_record(pidfile) else {
        return;
    };
    if let Ok(content) = common::pidfile::read(pidfile) {
        if record.pid != 0 && record.pid != content.pid {
            target.warnings.push(format!(
                "instance record {} names pid {}, the pidfile {}; ignoring the stale record",
                discovery::record_path(pidfile).display(),
                record.pid,
                content.pid
            ));
            return;
        }
    }
    if target.fifos.is_empty() {
        target.fifos = record.fifo.clone();
    }
    if target.stats.is_none() {
        if let Some(s) = &record.stats {
            if let Ok(addr) = StatsAddr::parse(s, record.stats_http) {
                target.stats = Some(addr);
            }
        }
    }
    target.record = Some(record);
}

/// A record another user could have written is not read: `Err` says why (for a warning).
fn record_trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // absent: nothing to read
    };
    let me = common::trust::euid();
    let problem = if !meta.file_type().is_file() {
        Some("is not a regular file".to_string())
    } else if meta.uid() != me && meta.uid() != 0 {
        Some(format!(
            "belongs to {}, neither root nor {}",
            common::trust::describe_uid(meta.uid()),
            common::trust::describe_uid(me)
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "has mode {:04o} (group or others can write it)",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!(
            "instance record {} {p}; ignoring it (give --fifo and --stats, or remove the file and \
             restart the instance)",
            path.display()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_addresses() {
        let tcp = StatsAddr::parse("127.0.0.1:9191", false).unwrap();
        assert_eq!(tcp.endpoint, Endpoint::Tcp("127.0.0.1:9191".into()));
        assert_eq!(
            StatsAddr::parse(":9191", false).unwrap().endpoint,
            Endpoint::Tcp("127.0.0.1:9191".into())
        );
        assert_eq!(
            StatsAddr::parse("/run/s.sock", false).unwrap().endpoint,
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            StatsAddr::parse("stats.sock", false).unwrap().endpoint,
            Endpoint::Unix("stats.sock".into())
        );
        assert_eq!(
            StatsAddr::parse("@abs", false).unwrap().endpoint,
            Endpoint::Abstract("abs".into())
        );
        let http = StatsAddr::parse("http://[::1]:80/", false).unwrap();
        assert!(http.http);
        assert_eq!(http.endpoint, Endpoint::Tcp("[::1]:80".into()));
        assert!(StatsAddr::parse("host:port", false).is_err());
        assert_eq!(http.to_string(), "http://[::1]:80");
    }
}
