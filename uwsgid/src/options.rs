//! The uWSGI options that shape how workers serve, validated into [`ServeOptions`]:
//! static maps, request logging, process titles, CPU affinity, and the environment and working
//! directory of built-in workers.
//!
//! Like the rest of [`crate::cli`], this binds and opens nothing: directories are checked and
//! made absolute (workers may `chdir`), formats are parsed once here so a worker only fills them.
//!
//! Where each applies:
//! - `--static-map`, `--static-map2`, `--static-index`, `--static-expires-type`: built-in workers
//!   ([`crate::static_map`]). With exec or Python workers they are accepted with one warning at
//!   startup (those workers do not serve static files yet).
//! - request logging (`--disable-logging`, `--logformat`, `--log-4xx`, `--log-5xx`): built-in
//!   workers ([`crate::reqlog`]); the Python runner logs its own lines through the master's relay.
//! - `--env`, `--chdir`: every worker (exec workers get them in their `execve`, built-in workers
//!   apply them after the fork). `--chdir2` (uWSGI: after the app is loaded) is the same as
//!   `--chdir` for built-in workers, which load no app; exec workers refuse it.
//! - process titles: the master and built-in workers ([`crate::procname`]); an exec worker is
//!   another program and keeps its own.
//! - `--cpu-affinity N`: every worker, set by the master on the worker's pid.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::Args;

/// One `--static-map PREFIX=DIR` (or `--static-map2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticMap {
    /// The URL prefix, without a trailing slash (empty for `/`).
    pub prefix: String,
    /// The canonical directory (or file) it maps to.
    pub target: PathBuf,
    /// `--static-map2`: the whole URL path is appended to `target`, not only what follows
    /// the prefix.
    pub append_whole: bool,
}

/// Request logging of built-in workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReqLog {
    /// One line per request (not `--disable-logging`).
    pub enabled: bool,
    /// With logging disabled, still log responses with a 4xx / 5xx status.
    pub log_4xx: bool,
    pub log_5xx: bool,
    /// `--logformat`; `None` is uWSGI's default line.
    pub format: Option<String>,
}

impl Default for ReqLog {
    fn default() -> ReqLog {
        ReqLog {
            enabled: true,
            log_4xx: false,
            log_5xx: false,
            format: None,
        }
    }
}

impl ReqLog {
    /// Is a request with this status logged?
    pub fn wants(&self, status: u16) -> bool {
        self.enabled
            || (self.log_4xx && (400..500).contains(&status))
            || (self.log_5xx && (500..600).contains(&status))
    }

    /// Could any request be logged?
    pub fn any(&self) -> bool {
        self.enabled || self.log_4xx || self.log_5xx
    }
}

/// Process titles (`--procname*`, `--auto-procname`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procname {
    /// Titles are set at all.
    pub enabled: bool,
    pub prefix: String,
    pub append: String,
    /// `--procname`: every process's name.
    pub name: Option<String>,
    /// `--procname-master`.
    pub master: Option<String>,
}

impl Procname {
    /// The master's title in `generation`.
    pub fn master_title(&self, generation: u64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let base = self
            .master
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| format!("uwsgid master (generation {generation})"));
        Some(format!("{}{base}{}", self.prefix, self.append))
    }

    /// Worker `id`'s title in `generation`.
    pub fn worker_title(&self, id: u32, generation: u64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let base = self
            .name
            .clone()
            .unwrap_or_else(|| format!("uwsgid worker {id} (generation {generation})"));
        Some(format!("{}{base}{}", self.prefix, self.append))
    }
}

/// The validated serving options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServeOptions {
    #[serde(default)]
    pub static_maps: Vec<StaticMap>,
    /// Files tried, in order, when a directory is requested (default `index.html`).
    #[serde(default)]
    pub static_index: Vec<String>,
    /// `--static-expires-type MIME=SECS`: Expires and Cache-Control max-age by content type.
    #[serde(default)]
    pub static_expires: Vec<(String, u64)>,
    #[serde(default)]
    pub reqlog: ReqLog,
    /// `--env` for built-in workers (exec workers carry theirs in [`crate::cli::WorkerKind`]).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// `--chdir`/`--chdir2` for built-in workers, canonical.
    #[serde(default)]
    pub chdir: Option<PathBuf>,
    #[serde(default)]
    pub procname: Procname,
    /// `--cpu-affinity N`: CPUs per worker.
    #[serde(default)]
    pub cpu_affinity: Option<u32>,
}

/// Why a serving option is refused; each names the option, the value given and the fix.
#[derive(Debug)]
pub enum Error {
    /// `OPTION "VALUE": why` (`why` says what to give instead).
    Value {
        option: &'static str,
        value: String,
        why: &'static str,
    },
    /// A directory option naming no directory.
    NotADirectory { option: &'static str, dir: PathBuf },
    /// A file or directory in the value cannot be resolved.
    Path {
        option: &'static str,
        value: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// `--mount /PREFIX=APP`: the app's file cannot be resolved.
    Mount {
        value: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// `--cpu-affinity N` out of range.
    CpuAffinity(u32),
    /// `--chdir2` given to exec or Python workers.
    Chdir2(PathBuf),
    /// `--env NAME=VALUE`.
    Env(crate::cli::EnvError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Value { option, value, why } => write!(f, "{option} {value:?}: {why}"),
            Error::NotADirectory { option, dir } => {
                write!(f, "{option} {}: not a directory", dir.display())
            }
            Error::Mount { value, path, error } => {
                write!(f, "--mount {value:?}: {}: {error}", path.display())
            }
            Error::Path {
                option,
                value,
                path,
                error,
            } => write!(
                f,
                "{option} {value:?}: {}: {error}; give an existing directory or file",
                path.display()
            ),
            Error::CpuAffinity(n) => write!(
                f,
                "--cpu-affinity {n}: give the CPUs per worker, between 1 and 1024"
            ),
            Error::Chdir2(d) => write!(
                f,
                "--chdir2 {}: exec and Python workers take --chdir (their working directory \
                 from the start)",
                d.display()
            ),
            Error::Env(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::cli::EnvError> for Error {
    fn from(e: crate::cli::EnvError) -> Error {
        Error::Env(e)
    }
}

fn canonical_dir(option: &'static str, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(dir)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| Error::NotADirectory {
            option,
            dir: dir.to_path_buf(),
        })
}

fn parse_map(option: &'static str, text: &str, append_whole: bool) -> Result<StaticMap, Error> {
    let refuse = |why| Error::Value {
        option,
        value: text.to_string(),
        why,
    };
    let (prefix, target) = text
        .split_once('=')
        .ok_or_else(|| refuse("expected /URL=DIR (for example /static=/srv/app/static)"))?;
    if !prefix.starts_with('/') {
        return Err(refuse("the URL prefix must start with '/'"));
    }
    if prefix.contains('%') || prefix.split('/').any(|s| s == "..") {
        return Err(refuse("the URL prefix may not contain '%' or '..'"));
    }
    let target = std::fs::canonicalize(target).map_err(|error| Error::Path {
        option,
        value: text.to_string(),
        path: PathBuf::from(target),
        error,
    })?;
    Ok(StaticMap {
        prefix: prefix.trim_end_matches('/').to_string(),
        target,
        append_whole,
    })
}

/// Validate the serving options of `args` (`builtin`: the workers are built-in).
pub fn from_args(args: &Args, builtin: bool) -> Result<ServeOptions, Error> {
    let mut static_maps = Vec::new();
    for m in &args.static_map {
        static_maps.push(parse_map("--static-map", m, false)?);
    }
    for m in &args.static_map2 {
        static_maps.push(parse_map("--static-map2", m, true)?);
    }
    for i in &args.static_index {
        if i.is_empty() || i.contains('/') || i == ".." || i == "." {
            return Err(Error::Value {
                option: "--static-index",
                value: i.clone(),
                why: "give a file name such as index.html (no '/')",
            });
        }
    }
    let mut static_expires = Vec::new();
    for e in &args.static_expires_type {
        let parsed = e
            .rsplit_once('=')
            .and_then(|(mime, secs)| Some((mime.trim(), secs.trim().parse::<u64>().ok()?)))
            .filter(|(mime, secs)| mime.contains('/') && *secs <= 10 * 365 * 86_400);
        let Some((mime, secs)) = parsed else {
            return Err(Error::Value {
                option: "--static-expires-type",
                value: e.clone(),
                why: "expected MIME=SECS (for example text/css=3600)",
            });
        };
        static_expires.push((mime.to_string(), secs));
    }
    let reqlog = ReqLog {
        enabled: !args.disable_logging,
        log_4xx: args.log_4xx,
        log_5xx: args.log_5xx,
        // `json`/`text` choose the master log's encoding (`crate::cli`), not a request line.
        format: args
            .logformat
            .clone()
            .filter(|f| crate::log::Format::from_option(f).is_none()),
    };
    let procname = Procname {
        enabled: args.auto_procname
            || args.procname_prefix.is_some()
            || args.procname_prefix_spaced.is_some()
            || args.procname.is_some()
            || args.procname_master.is_some()
            || args.procname_append.is_some(),
        prefix: match (&args.procname_prefix, &args.procname_prefix_spaced) {
            (_, Some(p)) => format!("{p} "),
            (Some(p), None) => p.clone(),
            (None, None) => String::new(),
        },
        append: args.procname_append.clone().unwrap_or_default(),
        name: args.procname.clone(),
        master: args.procname_master.clone(),
    };
    if let Some(n) = args.cpu_affinity {
        if !(1..=1024).contains(&n) {
            return Err(Error::CpuAffinity(n));
        }
    }
    let mut chdir = None;
    if let Some(d) = &args.chdir2 {
        if !builtin {
            return Err(Error::Chdir2(d.clone()));
        }
        chdir = Some(canonical_dir("--chdir2", d)?);
    }
    let mut env = Vec::new();
    if builtin {
        if let Some(d) = &args.chdir {
            chdir = Some(canonical_dir("--chdir", d)?);
        }
        for kv in &args.env {
            env.push(crate::cli::parse_env(kv)?);
        }
    }
    Ok(ServeOptions {
        static_maps,
        static_index: args.static_index.clone(),
        static_expires,
        reqlog,
        env,
        chdir,
        procname,
        cpu_affinity: args.cpu_affinity,
    })
}

/// The runner's `--mount /PREFIX=APP` words (files made absolute, from `chdir` when relative)
/// and `--manage-script-name`.
pub fn mount_args(args: &Args, chdir: Option<&Path>) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for m in &args.mount {
        let Some((prefix, app)) = m.split_once('=') else {
            return Err(Error::Value {
                option: "--mount",
                value: m.clone(),
                why: "expected /PREFIX=APP (a .py file or pkg.mod[:callable])",
            });
        };
        if !prefix.starts_with('/') || app.is_empty() {
            return Err(Error::Value {
                option: "--mount",
                value: m.clone(),
                why: "expected /PREFIX=APP with a prefix starting with '/'",
            });
        }
        let path = match chdir {
            Some(dir) if Path::new(app).is_relative() => dir.join(app),
            _ => PathBuf::from(app),
        };
        let app = if app.ends_with(".py") || app.ends_with(".wsgi") || path.is_file() {
            let abs = std::fs::canonicalize(&path).map_err(|error| Error::Mount {
                value: m.clone(),
                path: path.clone(),
                error,
            })?;
            abs.to_string_lossy().into_owned()
        } else {
            app.to_string()
        };
        out.push("--mount".to_string());
        out.push(format!("{prefix}={app}"));
    }
    if args.manage_script_name {
        out.push("--manage-script-name".to_string());
    }
    Ok(out)
}

/// Startup warnings: options that do not apply to these workers, a backlog the kernel caps.
pub fn startup_warnings(config: &crate::cli::Config) -> Vec<String> {
    let serve = &config.serve;
    let builtin = matches!(config.worker, crate::cli::WorkerKind::Builtin);
    let mut out: Vec<String> = somaxconn_warning(config.backlog).into_iter().collect();
    if !builtin && !serve.static_maps.is_empty() {
        out.push(
            "--static-map/--static-map2: served by built-in workers only; these exec/Python \
             workers do not serve them (serve the files from the front proxy)"
                .to_string(),
        );
    }
    out
}

/// Warn when `backlog` exceeds what the kernel grants (it silently caps `listen`).
pub fn somaxconn_warning(backlog: i32) -> Option<String> {
    let max: i64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (i64::from(backlog) > max).then(|| {
        format!(
            "--listen {backlog} is above net.core.somaxconn ({max}): the kernel caps the queue \
             at {max}; raise it with `sysctl -w net.core.somaxconn={backlog}` (and in \
             /etc/sysctl.d to keep it)"
        )
    })
}

/// The CPUs worker `id` (1-based) is pinned to: `per` CPUs of `allowed`, round robin.
pub fn cpus_for(id: u32, per: u32, allowed: &[usize]) -> Vec<usize> {
    if allowed.is_empty() {
        return Vec::new();
    }
    let per = (per as usize).min(allowed.len());
    let start = (id.saturating_sub(1) as usize * per) % allowed.len();
    (0..per)
        .map(|i| allowed[(start + i) % allowed.len()])
        .collect()
}

/// Pin `pid` (0: this process) as worker `id` with `per` CPUs each; a failure is logged.
pub fn pin(pid: i32, id: u32, per: u32) {
    let allowed = crate::procname::allowed_cpus();
    let cpus = cpus_for(id, per, &allowed);
    if let Err(e) = crate::procname::set_affinity(pid, &cpus) {
        crate::log!("--cpu-affinity: cannot pin worker {id} to CPUs {cpus:?}: {e}");
    }
}

/// In a freshly forked built-in worker: environment, working directory, title.
pub fn apply_in_builtin_worker(serve: &ServeOptions, id: u32, generation: u64) {
    for (k, v) in &serve.env {
        // The worker is single-threaded here, right after the fork.
        std::env::set_var(k, v);
    }
    if let Some(dir) = &serve.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            crate::log!("--chdir {}: {e}", dir.display());
        }
    }
    if let Some(title) = serve.procname.worker_title(id, generation) {
        crate::procname::set_title(&title);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cpus() {
        let all = [0, 1, 2, 3];
        assert_eq!(cpus_for(1, 1, &all), [0]);
        assert_eq!(cpus_for(2, 1, &all), [1]);
        assert_eq!(cpus_for(5, 1, &all), [0]);
        assert_eq!(cpus_for(2, 2, &all), [2, 3]);
        assert_eq!(cpus_for(3, 2, &all), [0, 1]);
        assert_eq!(cpus_for(1, 9, &[4, 6]), [4, 6]);
    }

    #[test]
    fn titles() {
        let p = Procname {
            enabled: true,
            prefix: "app ".into(),
            ..Procname::default()
        };
        assert_eq!(
            p.worker_title(2, 3).unwrap(),
            "app uwsgid worker 2 (generation 3)"
        );
        assert_eq!(
            p.master_title(1).unwrap(),
            "app uwsgid master (generation 1)"
        );
        assert!(Procname::default().master_title(1).is_none());
    }
}
