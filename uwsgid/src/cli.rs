//! Options: the command line (uWSGI's names) and the validated [`Config`]. Configuration
//! files (`--ini`, `--json`, `--yaml`) are read by [`crate::config`] into command-line words.
//!
//! Parsing never binds, opens or creates anything: a bad option, value, file or address is
//! refused here, before the master touches the world. The same code runs for `--check-config`,
//! which a reloading master runs on the new binary before it re-executes itself.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use common::discovery::{self, InstancePaths};

/// uwsgid: a pre-forking master with zero-downtime reloads, managed like uWSGI.
///
/// With no arguments it runs the embedded default instance: the default page on
/// 127.0.0.1:8000 with 4 workers (fewer on fewer CPUs), its pidfile, master FIFO and stats socket in the runtime
/// directory (printed at startup).
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "uwsgid", version, about, long_about = None, max_term_width = 100, allow_negative_numbers = true)]
pub struct Args {
    /// Listen for HTTP on ADDR: HOST:PORT, :PORT, [V6]:PORT, a path or unix:PATH, fd://N, or
    /// fd://NAME (the sockets systemd passed with that FileDescriptorName=)
    #[arg(long = "http-socket", value_name = "ADDR")]
    pub http_socket: Vec<String>,
    /// Number of worker processes
    #[arg(short = 'p', long, visible_alias = "workers", value_name = "N")]
    pub processes: Option<u32>,
    /// Accepted for uWSGI compatibility: uwsgid always runs a master
    #[arg(long)]
    pub master: bool,
    /// Write the master pid here once the listeners and first workers are up
    #[arg(long = "safe-pidfile", value_name = "PATH")]
    pub safe_pidfile: Option<PathBuf>,
    /// Same as --safe-pidfile (uwsgid never writes a pidfile early)
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// SIGTERM stops gracefully (requests in flight finish) instead of a brutal reload
    #[arg(long = "die-on-term")]
    pub die_on_term: bool,
    /// Seconds a worker may take to finish its requests before SIGKILL (more than 0; default 60)
    #[arg(long = "worker-reload-mercy", value_name = "SECS")]
    pub worker_reload_mercy: Option<f64>,
    /// Keep the previous generation parked after a graceful, workers or chain reload (no CPU,
    /// its memory held) so that a rollback (SIGURG, FIFO b) restores it; built-in and native
    /// Python workers only
    #[arg(long = "auto-snapshot")]
    pub auto_snapshot: bool,
    /// With --auto-snapshot: drop the snapshot (stop its workers) this many seconds after it
    /// was taken (default: kept until the next reload replaces it)
    #[arg(long = "snapshot-max-age", value_name = "SECS")]
    pub snapshot_max_age: Option<f64>,
    /// Listen backlog
    #[arg(long, value_name = "N")]
    pub listen: Option<i32>,
    /// Accept TCP connections as soon as they are made, not when their first bytes arrive
    /// (TCP_DEFER_ACCEPT is set on TCP listeners by default, as uWSGI does)
    #[arg(long = "no-defer-accept")]
    pub no_defer_accept: bool,
    /// Log to FILE instead of stderr
    #[arg(long, value_name = "FILE")]
    pub logto: Option<PathBuf>,
    /// Reopen the --logto file at every reload (after logrotate moved it)
    #[arg(long = "log-reopen")]
    pub log_reopen: bool,
    /// Rotate the --logto file once it passes BYTES: renamed to FILE.EPOCH, a new FILE opened
    #[arg(long = "log-maxsize", value_name = "BYTES")]
    pub log_maxsize: Option<u64>,
    /// Serve static files from DIR
    #[arg(long = "check-static", value_name = "DIR")]
    pub check_static: Option<PathBuf>,
    /// Demo routes: GET / (Hello World), GET /sleep?ms=N, GET /pid
    #[arg(long = "demo-routes")]
    pub demo_routes: bool,
    /// Read options from FILE[:SECTION] ([uwsgi] by default), uWSGI's ini language
    /// (placeholders, config logic, includes); repeatable; a bare FILE.ini argument is the same
    #[arg(long, value_name = "FILE")]
    pub ini: Option<PathBuf>,
    /// Read options from the SECTION ("uwsgi") object of a JSON file FILE[:SECTION]
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Read options from the SECTION ("uwsgi") mapping of a YAML file FILE[:SECTION]
    #[arg(long, value_name = "FILE")]
    pub yaml: Option<PathBuf>,
    /// A configuration-file key that is no option is an error, not a placeholder
    #[arg(long)]
    pub strict: bool,
    /// Master FIFO (repeatable; the first is slot 0)
    #[arg(long = "master-fifo", value_name = "PATH")]
    pub master_fifo: Vec<PathBuf>,
    /// Stats server on HOST:PORT or a Unix socket path
    #[arg(long, visible_alias = "stats-server", value_name = "ADDR")]
    pub stats: Option<String>,
    /// Answer stats requests with an HTTP response
    #[arg(long = "stats-http")]
    pub stats_http: bool,
    /// Graceful reload when FILE is touched
    #[arg(long = "touch-reload", value_name = "FILE")]
    pub touch_reload: Vec<PathBuf>,
    /// Graceful workers reload when FILE is touched
    #[arg(long = "touch-workers-reload", value_name = "FILE")]
    pub touch_workers_reload: Vec<PathBuf>,
    /// Chain reload when FILE is touched
    #[arg(long = "touch-chain-reload", value_name = "FILE")]
    pub touch_chain_reload: Vec<PathBuf>,
    /// On exit remove the pidfile (if it still holds our pid), FIFOs and Unix sockets we made
    #[arg(long)]
    pub vacuum: bool,
    /// Instance name: its files live in the runtime directory under NAME
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run each worker as this program (a command line; listeners as fds 3.., LISTEN_FDS)
    #[arg(long = "worker-exec", value_name = "CMD")]
    pub worker_exec: Option<String>,
    /// Exec workers that never send READY=1 count as ready after SECS
    #[arg(long = "worker-ready-timeout", value_name = "SECS")]
    pub worker_ready_timeout: Option<f64>,
    /// A worker not ready SECS after its start is killed and counts as a failed start [default: 60]
    #[arg(long = "worker-start-timeout", value_name = "SECS")]
    pub worker_start_timeout: Option<f64>,
    /// Signal that asks an exec worker to stop gracefully
    #[arg(long = "worker-stop-signal", value_name = "SIG")]
    pub worker_stop_signal: Option<String>,
    /// A worker busy in one request for more than SECS is killed by the master (its slot is refilled first)
    #[arg(long, value_name = "SECS")]
    pub harakiri: Option<u64>,
    /// Log the worker's request and timings in detail when harakiri fires
    #[arg(long = "harakiri-verbose")]
    pub harakiri_verbose: bool,
    /// On harakiri send --harakiri-graceful-signal first and SIGKILL only SECS later
    #[arg(long = "harakiri-graceful-timeout", value_name = "SECS")]
    pub harakiri_graceful_timeout: Option<u64>,
    /// The signal of a graceful harakiri [default: TERM]
    #[arg(long = "harakiri-graceful-signal", value_name = "SIG")]
    pub harakiri_graceful_signal: Option<String>,
    /// Recycle a worker after N requests (replacement first: capacity never drops)
    #[arg(long = "max-requests", value_name = "N")]
    pub max_requests: Option<u64>,
    /// Worker K recycles after max-requests + K*N requests, so workers do not recycle together
    #[arg(long = "max-requests-delta", value_name = "N")]
    pub max_requests_delta: Option<u64>,
    /// Recycle a worker whose resident memory exceeds MB (checked every second)
    #[arg(long = "reload-on-rss", value_name = "MB")]
    pub reload_on_rss: Option<u64>,
    /// Recycle a worker whose proportional set size exceeds MB (/proc/PID/smaps_rollup; counts shared pages once)
    #[arg(long = "reload-on-pss", value_name = "MB")]
    pub reload_on_pss: Option<u64>,
    /// Cheaper mode: keep at least N workers, up to --processes under load (0: off)
    #[arg(long, value_name = "N")]
    pub cheaper: Option<u32>,
    /// Cheaper mode: the workers started at first [default: --cheaper]
    #[arg(long = "cheaper-initial", value_name = "N")]
    pub cheaper_initial: Option<u32>,
    /// Cheaper mode: how many workers to add at a time [default: 1]
    #[arg(long = "cheaper-step", value_name = "N")]
    pub cheaper_step: Option<u32>,
    /// Cheaper mode: add workers when all are busy (spare) or connections wait (backlog) [default: spare]
    #[arg(long = "cheaper-algo", value_name = "ALGO")]
    pub cheaper_algo: Option<String>,
    /// Cheaper mode: seconds all workers must be busy (spare) or the queue length (backlog), and seconds of idleness before one is removed [default: 3]
    #[arg(long = "cheaper-overload", value_name = "N")]
    pub cheaper_overload: Option<u64>,
    /// A worker is not recycled for requests or memory before it has run SECS [default: 10]
    #[arg(long = "min-worker-lifetime", value_name = "SECS")]
    pub min_worker_lifetime: Option<u64>,
    /// Recycle a worker after it has run SECS
    #[arg(long = "max-worker-lifetime", value_name = "SECS")]
    pub max_worker_lifetime: Option<u64>,
    /// Worker K recycles after max-worker-lifetime + K*SECS
    #[arg(long = "max-worker-lifetime-delta", value_name = "SECS")]
    pub max_worker_lifetime_delta: Option<u64>,
    /// Run a Python WSGI app from FILE with the bundled runner
    #[arg(long = "wsgi-file", value_name = "FILE")]
    pub wsgi_file: Option<PathBuf>,
    /// WSGI callable name in --wsgi-file
    #[arg(long, value_name = "NAME")]
    pub callable: Option<String>,
    /// Run a Python WSGI app from pkg.mod[:callable] (uWSGI's --wsgi names a module too)
    #[arg(long, visible_alias = "wsgi", value_name = "MODULE")]
    pub module: Option<String>,
    /// Python interpreter for --wsgi-file/--module (runs the stdlib runner instead of the
    /// native worker, which embeds the Python it was built with)
    #[arg(long, value_name = "PATH")]
    pub python: Option<String>,
    /// Run the Python app in the virtualenv DIR (its site-packages; its interpreter must be the
    /// Python the native worker embeds, else give --python DIR/bin/python)
    #[arg(long, short = 'H', visible_alias = "virtualenv", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Accepted for uWSGI compatibility: the Python runner always runs threads
    #[arg(long = "enable-threads")]
    pub enable_threads: bool,
    /// Import the Python app in every worker instead of once per generation before forking
    #[arg(long = "lazy-apps")]
    pub lazy_apps: bool,
    /// Do not keep the next generation's Python interpreter started in standby (it makes a
    /// preload reload skip the interpreter's start-up, for the memory of one idle interpreter)
    #[arg(long = "no-python-standby")]
    pub no_python_standby: bool,
    /// Prepend DIR to the Python path of --wsgi-file/--module apps (repeatable)
    #[arg(long, visible_alias = "python-path", value_name = "DIR")]
    pub pythonpath: Vec<PathBuf>,
    /// Requests each --wsgi-file/--module worker serves at once (default 8)
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Set NAME=VALUE in the environment of every worker (repeatable)
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory of every worker (the master's by default)
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Detach into the background and log to FILE; returns once the instance serves
    #[arg(long, value_name = "FILE")]
    pub daemonize: Option<PathBuf>,
    /// Parse and validate the options, print the result and exit (binds nothing)
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// Mode of the Unix sockets the instance creates, octal (given bare: 666)
    #[arg(long = "chmod-socket", value_name = "MODE", num_args = 0..=1, default_missing_value = "666")]
    pub chmod_socket: Option<String>,
    /// Owner of the Unix sockets the instance creates: USER[:GROUP] or :GROUP (names or numbers)
    #[arg(long = "chown-socket", value_name = "USER[:GROUP]")]
    pub chown_socket: Option<String>,
    /// The process's file-creation mask, octal (e.g. 022)
    #[arg(long, value_name = "MODE")]
    pub umask: Option<String>,
    /// Gracefully reload the instance of PIDFILE (SIGHUP through a pidfd) and exit
    #[arg(
        long,
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub reload: Option<PathBuf>,
    /// Stop the instance of PIDFILE at once (SIGINT, as uWSGI) and exit
    #[arg(
        long,
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub stop: Option<PathBuf>,
    /// Stop the instance of PIDFILE gracefully (FIFO 'q': requests finish) and exit
    #[arg(
        long = "graceful-stop",
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub graceful_stop: Option<PathBuf>,
    /// Brutally reload the instance of PIDFILE (FIFO 'R') and exit
    #[arg(
        long = "brutal-reload",
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub brutal_reload: Option<PathBuf>,
    /// Chain-reload the instance of PIDFILE, one worker at a time (FIFO 'c'), and exit
    #[arg(
        long = "chain-reload",
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub chain_reload: Option<PathBuf>,
    /// Pause the instance of PIDFILE (FIFO 'h'; already paused: no change) and exit
    #[arg(
        long,
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub pause: Option<PathBuf>,
    /// Same as --pause
    #[arg(
        long,
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub suspend: Option<PathBuf>,
    /// Resume the instance of PIDFILE (FIFO 'u'; already running: no change) and exit
    #[arg(
        long,
        value_name = "PIDFILE",
        help_heading = "Managing a running instance"
    )]
    pub resume: Option<PathBuf>,
    /// With a management option: block until it is done (at most 60 s; exit 20 on timeout)
    #[arg(long, help_heading = "Managing a running instance")]
    pub wait: bool,
    /// Listen for the uwsgi protocol (nginx's uwsgi_pass) on ADDR: HOST:PORT, :PORT, a path,
    /// fd://N or fd://NAME (systemd socket activation)
    #[arg(short = 's', long, visible_alias = "uwsgi-socket", value_name = "ADDR")]
    pub socket: Vec<String>,
    /// Listen for HTTP on ADDR, as --http-socket (uWSGI's router option; no router is needed)
    #[arg(long, value_name = "ADDR")]
    pub http: Vec<String>,
    /// Listen for HTTP on ADDR, as --http-socket (keep-alive is always on)
    #[arg(long = "http11-socket", value_name = "ADDR")]
    pub http11_socket: Vec<String>,
    /// Largest uwsgi vars block accepted, bytes [default: 4096, at most 65535]; Python workers also bound HTTP heads by it (default 64 KiB)
    #[arg(short = 'b', long = "buffer-size", value_name = "BYTES")]
    pub buffer_size: Option<usize>,
    /// Python workers: largest request body, bytes (413 beyond; 0: no limit) [default: no limit]
    #[arg(long = "limit-post", value_name = "BYTES")]
    pub limit_post: Option<u64>,
    /// Also accept uwsgi TCP peers from IP or IP/BITS (repeatable; * for any); loopback always
    #[arg(long = "uwsgi-allow", value_name = "IP[/BITS]")]
    pub uwsgi_allow: Vec<String>,
    /// After binding (as root), run the master and workers as USER (name or number)
    #[arg(long, value_name = "USER")]
    pub uid: Option<String>,
    /// After binding (as root), run as GROUP (name or number; default: USER's group)
    #[arg(long, value_name = "GROUP")]
    pub gid: Option<String>,
    /// With --uid/--gid: only the workers drop, the master keeps root
    #[arg(long = "master-as-root")]
    pub master_as_root: bool,

    // Serving options (validated in `crate::options`).
    /// Serve files under URL prefix /URL from DIR (what follows the prefix; repeatable)
    #[arg(long = "static-map", value_name = "/URL=DIR")]
    pub static_map: Vec<String>,
    /// Serve files under /URL from DIR with the whole URL path appended (repeatable)
    #[arg(long = "static-map2", value_name = "/URL=DIR")]
    pub static_map2: Vec<String>,
    /// File served for a requested directory, tried in order (repeatable; default index.html)
    #[arg(long = "static-index", value_name = "FILE")]
    pub static_index: Vec<String>,
    /// Expires and Cache-Control max-age of static files of type MIME (repeatable)
    #[arg(long = "static-expires-type", value_name = "MIME=SECS")]
    pub static_expires_type: Vec<String>,
    /// No request log lines (built-in workers)
    #[arg(short = 'L', long = "disable-logging")]
    pub disable_logging: bool,
    /// With --disable-logging, still log requests answered 4xx
    #[arg(long = "log-4xx")]
    pub log_4xx: bool,
    /// With --disable-logging, still log requests answered 5xx
    #[arg(long = "log-5xx")]
    pub log_5xx: bool,
    /// Request log line with uWSGI's %(method) %(uri) %(status) %(msecs) %(size)... variables;
    /// as --log-format, the values `json` and `text` choose the master log's encoding instead
    #[arg(long, visible_alias = "log-format", value_name = "FORMAT")]
    pub logformat: Option<String>,
    /// Working directory of built-in workers (uWSGI: after the app is loaded)
    #[arg(long, value_name = "DIR")]
    pub chdir2: Option<PathBuf>,
    /// Name processes "uwsgid master (generation G)", "uwsgid worker N (generation G)"
    #[arg(long = "auto-procname")]
    pub auto_procname: bool,
    /// Prefix process names with TEXT (implies --auto-procname)
    #[arg(long = "procname-prefix", value_name = "TEXT")]
    pub procname_prefix: Option<String>,
    /// Prefix process names with TEXT and a space (implies --auto-procname)
    #[arg(long = "procname-prefix-spaced", value_name = "TEXT")]
    pub procname_prefix_spaced: Option<String>,
    /// Append TEXT to process names
    #[arg(long = "procname-append", value_name = "TEXT")]
    pub procname_append: Option<String>,
    /// Name every process NAME
    #[arg(long, value_name = "NAME")]
    pub procname: Option<String>,
    /// Name the master NAME
    #[arg(long = "procname-master", value_name = "NAME")]
    pub procname_master: Option<String>,
    /// Pin each worker to N CPUs, round robin over the CPUs the master may use
    #[arg(long = "cpu-affinity", value_name = "N")]
    pub cpu_affinity: Option<u32>,
    /// Python app under URL prefix /PREFIX: APP is a file (.py/.wsgi) or pkg.mod[:callable]
    /// (repeatable; dispatched by prefix with --manage-script-name)
    #[arg(long, value_name = "/PREFIX=APP")]
    pub mount: Vec<String>,
    /// Pick the --mount app by the longest matching URL prefix, which becomes SCRIPT_NAME
    #[arg(long = "manage-script-name")]
    pub manage_script_name: bool,
}

/// Where a listener is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
    /// The sockets systemd passed under this name (`LISTEN_FDNAMES`, the socket unit's
    /// `FileDescriptorName=`, by default the unit's name).
    Named(String),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
            ListenAddr::Fd(n) => write!(f, "fd://{n}"),
            ListenAddr::Named(name) => write!(f, "fd://{name}"),
        }
    }
}

/// A listener as configured: the text the user wrote and what it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub configured: String,
    pub addr: ListenAddr,
    /// What the listener speaks.
    #[serde(default)]
    pub proto: Proto,
    /// Mode and owner given to the socket file a Unix listener creates.
    #[serde(default)]
    pub ownership: crate::privileges::SocketOwnership,
    /// `--no-defer-accept`: a TCP listener queues connections at once (see
    /// [`crate::listener::DEFER_ACCEPT_SECS`]).
    #[serde(default)]
    pub no_defer_accept: bool,
}

/// The protocol a listener speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    #[default]
    Http,
    /// The uwsgi protocol ([`crate::uwsgi_proto`]).
    Uwsgi,
}

impl Proto {
    /// The option that configures it, for messages.
    pub fn option(self) -> &'static str {
        match self {
            Proto::Http => "--http-socket",
            Proto::Uwsgi => "--socket",
        }
    }

    /// As in the stats document's `sockets[].proto`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Uwsgi => "uwsgi",
        }
    }
}

/// The prefix that tells a uwsgi listener's configured text from an HTTP one's: the identity
/// kept across reloads (`ListenerSpec::configured`) is `uwsgi=ADDR` for `--socket ADDR`.
pub const UWSGI_PREFIX: &str = "uwsgi=";

/// What each worker runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerKind {
    Builtin,
    Exec {
        argv: Vec<String>,
        ready_timeout: Option<f64>,
        stop_signal: i32,
        /// `--env NAME=VALUE`, in order.
        #[serde(default)]
        env: Vec<(String, String)>,
        /// `--chdir DIR`, absolute.
        #[serde(default)]
        chdir: Option<PathBuf>,
        /// The bundled Python runner imports the application once per generation, in a zygote
        /// that forks the workers (`--wsgi-file`/`--module` without `--lazy-apps`).
        #[serde(default)]
        preload: bool,
        /// Preload keeps the next generation's zygote started in standby
        /// (not `--no-python-standby`).
        #[serde(default)]
        standby: bool,
    },
}

/// Where the stats server listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatsAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for StatsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsAddr::Tcp(a) => write!(f, "{a}"),
            StatsAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The validated configuration of one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub listeners: Vec<ListenerSpec>,
    /// `listeners` is the default (no listener option given): not bound when systemd passed
    /// sockets (socket activation), which are then the only listeners.
    #[serde(default)]
    pub default_listener: bool,
    pub processes: u32,
    /// Without `--processes`: where the count came from, for the log ([`crate::sizing`]).
    #[serde(default)]
    pub processes_from: Option<String>,
    pub pidfiles: Vec<PathBuf>,
    pub die_on_term: bool,
    pub mercy: Duration,
    /// `--auto-snapshot`: the previous generation is parked instead of stopped.
    #[serde(default)]
    pub auto_snapshot: bool,
    /// `--snapshot-max-age`: the snapshot is dropped this long after it was taken.
    #[serde(default)]
    pub snapshot_max_age: Option<Duration>,
    /// A worker must be ready this long after its start, or it is killed (a failed start).
    #[serde(default = "default_start_timeout")]
    pub start_timeout: Duration,
    pub backlog: i32,
    pub logto: Option<PathBuf>,
    /// `--log-format json|text`: the encoding of uwsgid's own log lines.
    #[serde(default)]
    pub log_format: crate::log::Format,
    /// `--log-reopen`: reopen the `--logto` file at each reload.
    #[serde(default)]
    pub log_reopen: bool,
    /// `--log-maxsize`: rotate the `--logto` file once it is larger.
    #[serde(default)]
    pub log_maxsize: Option<u64>,
    pub check_static: Option<PathBuf>,
    pub demo_routes: bool,
    pub fifos: Vec<PathBuf>,
    pub stats: Option<StatsAddr>,
    pub stats_http: bool,
    pub touch_reload: Vec<PathBuf>,
    pub touch_workers_reload: Vec<PathBuf>,
    pub touch_chain_reload: Vec<PathBuf>,
    pub vacuum: bool,
    pub name: Option<String>,
    pub worker: WorkerKind,
    #[serde(default)]
    pub daemonize: Option<PathBuf>,
    /// The instance's directory in the runtime directory, for named and default instances.
    pub instance_dir: Option<PathBuf>,
    /// `--umask`, set before anything is created.
    #[serde(default)]
    pub umask: Option<u32>,
    /// `--uid`/`--gid`: who the instance runs as once everything is bound.
    #[serde(default)]
    pub identity: Option<crate::privileges::Identity>,
    /// `--buffer-size`: the largest uwsgi vars block accepted.
    #[serde(default = "default_buffer_size")]
    pub buffer_size: usize,
    /// `--uwsgi-allow`: TCP peers besides loopback that may speak uwsgi (address, prefix bits).
    #[serde(default)]
    pub uwsgi_allow: Vec<(std::net::IpAddr, u8)>,
    /// Static maps, request log, titles, affinity (`crate::options`).
    #[serde(default)]
    pub serve: crate::options::ServeOptions,
    /// Harakiri and worker recycling (`--harakiri`, `--max-requests`, `--reload-on-rss`, ...).
    #[serde(default)]
    pub recycle: Recycle,
}

/// Harakiri and recycling limits; `None`/0 is off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recycle {
    pub harakiri: Option<Duration>,
    pub harakiri_verbose: bool,
    /// With a graceful harakiri: the signal, then SIGKILL after the timeout.
    pub harakiri_graceful: Option<(i32, Duration)>,
    pub max_requests: Option<u64>,
    pub max_requests_delta: u64,
    pub reload_on_rss: Option<u64>,
    pub reload_on_pss: Option<u64>,
    pub min_lifetime: Duration,
    pub max_lifetime: Option<Duration>,
    pub max_lifetime_delta: Duration,
    /// `--cheaper` and its options, when on.
    #[serde(default)]
    pub cheaper: Option<crate::master::cheaper::Cheaper>,
}

impl Recycle {
    fn from_args(args: &Args, processes: u32) -> Result<Recycle, Invalid> {
        let positive = |name: &str, v: Option<u64>| match v {
            Some(0) => Err(Invalid::value(
                format!("--{name}"),
                0,
                "give a positive value, or leave the option out to turn it off",
            )),
            v => Ok(v),
        };
        let harakiri = positive("harakiri", args.harakiri)?.map(Duration::from_secs);
        let graceful =
            match (
                args.harakiri_graceful_timeout,
                &args.harakiri_graceful_signal,
            ) {
                (Some(0), _) => return Err(Invalid::value(
                    "--harakiri-graceful-timeout",
                    0,
                    "give the seconds between the graceful signal and SIGKILL, or leave it out \
                     for SIGKILL at once",
                )),
                (Some(t), sig) => Some((
                    parse_signal(
                        "--harakiri-graceful-signal",
                        sig.as_deref().unwrap_or("TERM"),
                    )?,
                    Duration::from_secs(t),
                )),
                (None, _) => None,
            };
        Ok(Recycle {
            harakiri,
            harakiri_verbose: args.harakiri_verbose,
            harakiri_graceful: graceful,
            max_requests: positive("max-requests", args.max_requests)?,
            max_requests_delta: args.max_requests_delta.unwrap_or(0),
            reload_on_rss: positive("reload-on-rss", args.reload_on_rss)?,
            reload_on_pss: positive("reload-on-pss", args.reload_on_pss)?,
            min_lifetime: Duration::from_secs(args.min_worker_lifetime.unwrap_or(10).min(86_400)),
            max_lifetime: positive("max-worker-lifetime", args.max_worker_lifetime)?
                .map(|s| Duration::from_secs(s.min(365 * 86_400))),
            max_lifetime_delta: Duration::from_secs(
                args.max_worker_lifetime_delta.unwrap_or(0).min(86_400),
            ),
            cheaper: crate::master::cheaper::validate(
                args.cheaper,
                args.cheaper_initial,
                args.cheaper_step,
                args.cheaper_algo.as_deref(),
                args.cheaper_overload,
                processes,
            )?,
        })
    }

    /// Anything the master must look at periodically.
    pub fn any(&self) -> bool {
        self.harakiri.is_some()
            || self.max_requests.is_some()
            || self.reload_on_rss.is_some()
            || self.reload_on_pss.is_some()
            || self.max_lifetime.is_some()
            || self.cheaper.is_some()
    }
}

fn default_buffer_size() -> usize {
    crate::uwsgi_proto::DEFAULT_BUFFER_SIZE
}

/// Parse one `--uwsgi-allow` value: `IP`, `IP/BITS`, or `*` (any peer).
pub fn parse_allow(text: &str) -> Result<Vec<(std::net::IpAddr, u8)>, Invalid> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let t = text.trim();
    if t == "*" {
        return Ok(vec![
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        ]);
    }
    let (ip, bits) = match t.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (t, None),
    };
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            Invalid::value(
                "--uwsgi-allow",
                format!("{text:?}"),
                "not an IP address (IP, IP/BITS or *)",
            )
        })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.parse::<u8>().ok().filter(|&b| b <= max).ok_or_else(|| {
            Invalid::value(
                "--uwsgi-allow",
                format!("{text:?}"),
                format!("prefix must be 0 to {max}"),
            )
        })?,
    };
    Ok(vec![(ip, bits)])
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(60)
}

pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
pub const DEFAULT_PROCESSES: u32 = 4;
pub const MAX_PROCESSES: u32 = 512;
pub const DEFAULT_BACKLOG: i32 = 4096;

/// Why an option's value, or a combination of options, is refused by [`Config::from_args`].
/// Every message names the option and the value given, and what to give instead.
#[derive(Debug)]
pub enum Invalid {
    /// `OPTION VALUE: WHY` (`OPTION: WHY` when `value` is empty): one option's value is
    /// refused; the value is shown as given, `why` says what is wrong and the fix.
    Value {
        option: String,
        value: String,
        why: String,
    },
    /// Options that exclude each other, or one that needs another; the message names them and
    /// the option to add or drop.
    Combination(String),
    /// A listener or stats address.
    Addr(AddrError),
    /// `--worker-exec`'s command line.
    Command(CommandError),
    /// `--env NAME=VALUE`.
    Env(EnvError),
    /// `--uid`, `--gid`, `--master-as-root`, `--chown-socket`, `--chmod-socket`, `--umask`.
    Privileges(crate::privileges::Error),
    /// A serving option (`--static-map`, `--mount`, `--chdir2`, ...).
    Serve(crate::options::Error),
    /// A file named by an option cannot be resolved: `OPTION PATH: error`.
    Io {
        option: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// `--cheaper` and its companions.
    Cheaper(crate::master::cheaper::Invalid),
    /// `UWSGID_PYTHON_WORKER=native` with uwsgi-protocol listeners.
    NativeWithUwsgiListeners,
    /// `UWSGID_PYTHON_WORKER=native` and no native worker beside the executable.
    NoNativeWorker,
}

impl Invalid {
    /// `OPTION VALUE: WHY`.
    fn value(
        option: impl Into<String>,
        value: impl std::fmt::Display,
        why: impl Into<String>,
    ) -> Invalid {
        Invalid::Value {
            option: option.into(),
            value: value.to_string(),
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Value { option, value, why } if value.is_empty() => {
                write!(f, "{option}: {why}")
            }
            Invalid::Value { option, value, why } => write!(f, "{option} {value}: {why}"),
            Invalid::Combination(m) => f.write_str(m),
            Invalid::Cheaper(e) => write!(f, "{e}"),
            Invalid::Addr(e) => write!(f, "{e}"),
            Invalid::Command(e) => write!(f, "--worker-exec: {e}"),
            Invalid::Env(e) => write!(f, "{e}"),
            Invalid::Privileges(e) => write!(f, "{e}"),
            Invalid::Serve(e) => write!(f, "{e}"),
            Invalid::Io {
                option,
                path,
                error,
            } => write!(f, "{option} {}: {error}", path.display()),
            Invalid::NativeWithUwsgiListeners => write!(
                f,
                "{PYTHON_WORKER_ENV}=native: {NATIVE_PYTHON} does not serve uwsgi-protocol \
                 listeners (--socket) yet; unset it, or serve nginx with proxy_pass to an \
                 --http-socket"
            ),
            Invalid::NoNativeWorker => write!(
                f,
                "{PYTHON_WORKER_ENV}=native, but {NATIVE_PYTHON} is not beside the uwsgid \
                 executable: build it (cargo build -p {NATIVE_PYTHON}) and install it there"
            ),
        }
    }
}

impl std::error::Error for Invalid {}

impl From<crate::master::cheaper::Invalid> for Invalid {
    fn from(e: crate::master::cheaper::Invalid) -> Invalid {
        Invalid::Cheaper(e)
    }
}

impl From<AddrError> for Invalid {
    fn from(e: AddrError) -> Invalid {
        Invalid::Addr(e)
    }
}

impl From<EnvError> for Invalid {
    fn from(e: EnvError) -> Invalid {
        Invalid::Env(e)
    }
}

impl From<crate::privileges::Error> for Invalid {
    fn from(e: crate::privileges::Error) -> Invalid {
        Invalid::Privileges(e)
    }
}

impl From<crate::options::Error> for Invalid {
    fn from(e: crate::options::Error) -> Invalid {
        Invalid::Serve(e)
    }
}

/// A refused listener (`--http-socket`, `--socket`) or `--stats` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError {
    pub option: &'static str,
    /// The address as given (trimmed).
    pub text: String,
    pub problem: AddrProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrProblem {
    Empty,
    /// `fd://N` with N not a descriptor number.
    NotAnFd(String),
    /// Neither a path nor `HOST:PORT`.
    NoPort,
    BadPort(String),
    /// The host name does not resolve (the resolver's message).
    Resolve {
        host: String,
        error: String,
    },
    NoAddress(String),
    EmptyPath,
    PathTooLong,
    /// `fd://NAME` with a name systemd could not have given.
    BadFdName,
}

impl std::fmt::Display for AddrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let option = self.option;
        match &self.problem {
            AddrProblem::Empty => write!(
                f,
                "{option}: empty address; use HOST:PORT, :PORT or a socket path"
            ),
            problem => write!(f, "{option} {}: {problem}", self.text),
        }
    }
}

impl std::fmt::Display for AddrProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddrProblem::Empty => f.write_str("empty address"),
            AddrProblem::NotAnFd(n) => write!(f, "{n:?} is not an fd number"),
            AddrProblem::NoPort => f.write_str("expected HOST:PORT"),
            AddrProblem::BadPort(p) => write!(f, "{p:?} is not a port (0-65535)"),
            AddrProblem::Resolve { host, error } => write!(f, "cannot resolve {host:?}: {error}"),
            AddrProblem::NoAddress(host) => write!(f, "{host:?} resolves to no address"),
            AddrProblem::EmptyPath => f.write_str("empty Unix socket path"),
            AddrProblem::PathTooLong => f.write_str("Unix socket paths are limited to 107 bytes"),
            AddrProblem::BadFdName => f.write_str(
                "give fd://N (an fd number) or fd://NAME (a socket unit's FileDescriptorName=: \
                 printable ASCII, no ':' or space, at most 255 bytes)",
            ),
        }
    }
}

impl std::error::Error for AddrError {}

/// A refused `--env NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// No `=` in the value given.
    NoEquals(String),
    /// `name` is not a variable name (in `kv`, the value given).
    BadName { kv: String, name: String },
    /// The value of `name` holds a NUL byte.
    Nul(String),
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::NoEquals(kv) => write!(f, "--env {kv:?}: expected NAME=VALUE"),
            EnvError::BadName { kv, name } => write!(
                f,
                "--env {kv:?}: {name:?} is not a variable name (letters, digits, '_')"
            ),
            EnvError::Nul(name) => write!(f, "--env {name}: the value contains a NUL byte"),
        }
    }
}

impl std::error::Error for EnvError {}

/// A command line [`split_command_line`] refuses: what a shell would interpret, since no shell
/// runs it. Each message says how to quote it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command line as given.
    pub cmd: String,
    pub problem: CommandProblem,
}

/// What is wrong in a [`CommandError`]'s command; `at` is a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandProblem {
    TrailingBackslash,
    UnterminatedSingle {
        at: usize,
    },
    UnterminatedDouble {
        at: usize,
    },
    /// `$` or `` ` `` inside double quotes.
    ExpandedInDouble {
        ch: char,
        at: usize,
    },
    /// `$` or `` ` `` outside quotes.
    Expanded {
        ch: char,
        at: usize,
    },
    Operator {
        ch: char,
        at: usize,
    },
    LineBreak {
        at: usize,
    },
    Comment {
        at: usize,
    },
    Empty,
    /// A leading `NAME=value` word.
    Assignment {
        word: String,
    },
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cmd = &self.cmd;
        match &self.problem {
            CommandProblem::Empty => {
                return f.write_str("empty command: give the program to run and its arguments")
            }
            _ => write!(f, "{cmd:?}: ")?,
        }
        match &self.problem {
            CommandProblem::TrailingBackslash => f.write_str("trailing backslash escapes nothing"),
            CommandProblem::UnterminatedSingle { at } => {
                write!(f, "unterminated single quote (opened at byte {at})")
            }
            CommandProblem::UnterminatedDouble { at } => {
                write!(f, "unterminated double quote (opened at byte {at})")
            }
            CommandProblem::ExpandedInDouble { ch, at } => write!(
                f,
                "'{ch}' at byte {at} would be expanded by a shell, and no shell runs this \
                 command; write \\{ch} or use single quotes"
            ),
            CommandProblem::Expanded { ch, at } => write!(
                f,
                "'{ch}' at byte {at} would be expanded by a shell, and no shell runs this \
                 command; quote it ('{ch}') to pass it literally"
            ),
            CommandProblem::Operator { ch, at } => write!(
                f,
                "shell operator '{ch}' at byte {at} is not supported (no shell runs this \
                 command); quote it to pass it literally, or run sh -c '…' explicitly"
            ),
            CommandProblem::LineBreak { at } => write!(
                f,
                "line break at byte {at}; one command only (end a line with \\ to continue it)"
            ),
            CommandProblem::Comment { at } => write!(
                f,
                "'#' at byte {at} starts a comment in a shell; quote it to pass it literally"
            ),
            CommandProblem::Assignment { word } => write!(
                f,
                "{word:?} is a variable assignment, which a shell would put in the environment; \
                 set the variable with --env {word} instead"
            ),
            CommandProblem::Empty => Ok(()),
        }
    }
}

impl std::error::Error for CommandError {}

/// Why the options were refused. Every message names the option or file, and the fix.
#[derive(Debug)]
pub enum ConfigError {
    /// The command line does not parse: clap's message, with the usage line.
    Usage(String),
    /// A configuration file's options do not parse.
    Ini { path: PathBuf, why: String },
    /// The configuration files cannot be read or expanded.
    Config(crate::config::Error),
    /// Keys in the configuration files are refused (each line names the file, line and key).
    Refused(Vec<String>),
    /// An option's value is refused (the message names the option and the value).
    Invalid(Invalid),
    /// An option read from `--ini` is refused.
    FromIni {
        path: PathBuf,
        error: Box<ConfigError>,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Usage(m) => f.write_str(m),
            ConfigError::Config(e) => write!(f, "{e}"),
            ConfigError::Refused(refused) => write!(
                f,
                "{} refused (uwsgid --check-config prints the verdict for every key):\n  {}",
                if refused.len() == 1 {
                    "an option is".to_string()
                } else {
                    format!("{} options are", refused.len())
                },
                refused.join("\n  ")
            ),
            ConfigError::Invalid(e) => write!(f, "{e}"),
            ConfigError::Ini { path, why } => write!(f, "in --ini {}: {why}", path.display()),
            ConfigError::FromIni { path, error } => {
                write!(f, "{error} (options read from --ini {})", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parse the process's arguments (and the configuration files they name) into Args plus
/// warnings. The configuration language is [`crate::config`]'s.
pub fn parse_args(argv: &[String]) -> Result<(Args, Vec<String>), ConfigError> {
    parse_expanded(crate::config::expand(argv).map_err(ConfigError::Config)?)
}

/// [`parse_args`] of a configuration already read (`--check-config` prints its verdicts
/// first, and reading it once keeps a reload's check child short).
pub fn parse_expanded(
    expanded: crate::config::Expanded,
) -> Result<(Args, Vec<String>), ConfigError> {
    if !expanded.refused.is_empty() {
        return Err(ConfigError::Refused(expanded.refused));
    }
    // The kept definition (`config::with_command`), not one built again.
    let parsed = crate::config::with_command(|cmd| {
        cmd.try_get_matches_from_mut(&expanded.words)
            .and_then(|mut m| {
                <Args as clap::FromArgMatches>::from_arg_matches_mut(&mut m)
                    .map_err(|e| e.format(cmd))
            })
    });
    let mut args = match parsed {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            // --help and --version print and exit 0; nothing else has happened yet.
            e.exit()
        }
        Err(e) => {
            let text = e.to_string();
            let text = text.trim_end();
            return Err(match expanded.sources.first() {
                Some(ini) => ConfigError::Ini {
                    path: PathBuf::from(ini),
                    why: text.strip_prefix("error: ").unwrap_or(text).to_string(),
                },
                None => ConfigError::Usage(text.to_string()),
            });
        }
    };
    args.ini = expanded.sources.first().map(PathBuf::from);
    Ok((args, expanded.warnings))
}

/// Parse one `--http-socket` value.
pub fn parse_listen_addr(text: &str) -> Result<ListenAddr, AddrError> {
    let t = text.trim();
    let error = |problem| AddrError {
        option: "--http-socket",
        text: t.to_string(),
        problem,
    };
    if t.is_empty() {
        return Err(error(AddrProblem::Empty));
    }
    if let Some(n) = t.strip_prefix("fd://") {
        if n.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
            return n
                .parse::<i32>()
                .ok()
                .filter(|&n| n >= 0)
                .map(ListenAddr::Fd)
                .ok_or_else(|| error(AddrProblem::NotAnFd(n.to_string())));
        }
        // systemd's rule for FileDescriptorName=: 1 to 255 printable ASCII characters, no ':'.
        let valid =
            !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid {
            return Err(error(AddrProblem::BadFdName));
        }
        return Ok(ListenAddr::Named(n.to_string()));
    }
    if let Some(p) = t.strip_prefix("unix:") {
        return unix_path(p).map(ListenAddr::Unix).map_err(error);
    }
    if t.contains('/') || !t.contains(':') {
        return unix_path(t).map(ListenAddr::Unix).map_err(error);
    }
    parse_tcp(t).map(ListenAddr::Tcp).map_err(error)
}

fn unix_path(p: &str) -> Result<PathBuf, AddrProblem> {
    if p.is_empty() {
        return Err(AddrProblem::EmptyPath);
    }
    if p.len() > 107 {
        return Err(AddrProblem::PathTooLong);
    }
    Ok(PathBuf::from(p))
}

fn parse_tcp(t: &str) -> Result<SocketAddr, AddrProblem> {
    let (host, port) = match t.rsplit_once(':') {
        Some(hp) => hp,
        None => return Err(AddrProblem::NoPort),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| AddrProblem::BadPort(port.to_string()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| AddrProblem::Resolve {
            host: host.to_string(),
            error: e.to_string(),
        })?
        .next()
        .ok_or_else(|| AddrProblem::NoAddress(host.to_string()))
}

/// `--log-format json|text` chooses the master log's encoding; any other value is uWSGI's
/// request-log format (`--logformat`, of which `--log-format` is uWSGI's alias).
fn log_format(args: &Args) -> crate::log::Format {
    args.logformat
        .as_deref()
        .and_then(crate::log::Format::from_option)
        .unwrap_or_default()
}

/// `--log-reopen` and `--log-maxsize` act on the `--logto` file: refused without one.
fn check_log_options(args: &Args) -> Result<(), Invalid> {
    if args.logto.is_none() {
        if args.log_reopen {
            return Err(Invalid::value(
                "--log-reopen",
                "",
                "there is no log file to reopen; add --logto FILE",
            ));
        }
        if args.log_maxsize.is_some() {
            return Err(Invalid::value(
                "--log-maxsize",
                "",
                "there is no log file to rotate; add --logto FILE",
            ));
        }
    }
    if args.log_maxsize == Some(0) {
        return Err(Invalid::value(
            "--log-maxsize",
            0,
            "give the size in bytes past which the log rotates (more than 0)",
        ));
    }
    Ok(())
}

fn parse_stats(t: &str) -> Result<StatsAddr, AddrError> {
    let error = |problem| AddrError {
        option: "--stats",
        text: t.to_string(),
        problem,
    };
    if t.contains(':') && !t.contains('/') {
        parse_tcp(t).map(StatsAddr::Tcp).map_err(error)
    } else if t.is_empty() {
        Err(error(AddrProblem::Empty))
    } else {
        Ok(StatsAddr::Unix(PathBuf::from(t)))
    }
}

fn parse_signal(option: &str, name: &str) -> Result<i32, Invalid> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Ok(match bare {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "KILL" => libc::SIGKILL,
        n => match n.parse::<i32>() {
            // Linux signals are 1..=64 (SIGRTMAX); kill(2) refuses anything else at stop time.
            Ok(sig) if (1..=64).contains(&sig) => sig,
            Ok(_) => return Err(Invalid::value(option, name, "not a signal number (1-64)")),
            Err(_) => return Err(Invalid::value(option, name, "not a signal name")),
        },
    })
}

/// One `--env NAME=VALUE`.
pub fn parse_env(kv: &str) -> Result<(String, String), EnvError> {
    let (name, value) = kv
        .split_once('=')
        .ok_or_else(|| EnvError::NoEquals(kv.to_string()))?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(EnvError::BadName {
            kv: kv.to_string(),
            name: name.to_string(),
        });
    }
    if value.contains('\0') {
        return Err(EnvError::Nul(name.to_string()));
    }
    Ok((name.to_string(), value.to_string()))
}

fn seconds(option: &str, v: f64) -> Result<Duration, Invalid> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Invalid::value(
            option,
            v,
            "must be between 0 and 86400 seconds",
        ))
    }
}

impl Config {
    /// Validate parsed arguments. Pure: reads only the ini file and checks paths.
    pub fn from_args(args: &Args, no_arguments: bool) -> Result<Config, Invalid> {
        let name = match (&args.name, no_arguments) {
            (Some(n), _) if !discovery::valid_name(n) => {
                return Err(Invalid::value(
                    "--name",
                    format!("{n:?}"),
                    "use letters, digits, '-', '_' and '.' (at most 64)",
                ));
            }
            (Some(n), _) => Some(n.clone()),
            (None, true) => Some(discovery::DEFAULT_NAME.to_string()),
            (None, false) => None,
        };
        let instance = name.as_deref().map(InstancePaths::for_name);

        let ownership = crate::privileges::SocketOwnership {
            mode: match &args.chmod_socket {
                Some(m) => Some(crate::privileges::parse_mode(
                    "--chmod-socket",
                    m,
                    Some(0o666),
                )?),
                None => None,
            },
            ..Default::default()
        };
        let ownership = match &args.chown_socket {
            Some(c) => {
                let (uid, gid) = crate::privileges::parse_chown(c)?;
                crate::privileges::SocketOwnership {
                    uid,
                    gid,
                    ..ownership
                }
            }
            None => ownership,
        };
        let mut listeners = Vec::new();
        let http: Vec<&String> = args
            .http_socket
            .iter()
            .chain(&args.http)
            .chain(&args.http11_socket)
            .collect();
        let default = [DEFAULT_ADDR.to_string()];
        let default_listener =
            http.is_empty() && args.socket.is_empty() && args.worker_exec.is_none();
        let http: Vec<&String> = if default_listener {
            default.iter().collect()
        } else {
            http
        };
        let all = http
            .into_iter()
            .map(|t| (t, Proto::Http))
            .chain(args.socket.iter().map(|t| (t, Proto::Uwsgi)));
        for (text, proto) in all {
            let addr = parse_listen_addr(text).map_err(|e| AddrError {
                option: proto.option(),
                ..e
            })?;
            let configured = match proto {
                Proto::Http => text.clone(),
                Proto::Uwsgi => format!("{UWSGI_PREFIX}{text}"),
            };
            // Port 0 binds a fresh port each time: the same text twice is still refused (it
            // names the listener across reloads), another protocol on :0 is another socket.
            let any_port = matches!(addr, ListenAddr::Tcp(a) if a.port() == 0);
            if listeners
                .iter()
                .any(|l: &ListenerSpec| l.configured == configured || (l.addr == addr && !any_port))
            {
                return Err(Invalid::value(proto.option(), text, "given twice"));
            }
            listeners.push(ListenerSpec {
                configured,
                addr,
                proto,
                ownership: ownership.clone(),
                no_defer_accept: args.no_defer_accept,
            });
        }
        if listeners.is_empty() {
            return Err(Invalid::Combination(
                "no --http-socket or --socket given: exec workers need at least one listener"
                    .into(),
            ));
        }

        // Without --processes: 4 for the default and named instances (documented), 1 as uWSGI
        // otherwise; either capped by the CPUs the cgroup quota and affinity allow.
        let (processes, processes_from) = match args.processes {
            Some(n) => (n, None),
            None => {
                let base = if no_arguments || name.is_some() {
                    DEFAULT_PROCESSES
                } else {
                    1
                };
                let (n, why) = crate::sizing::default_processes(base, &crate::sizing::budget());
                (n, Some(why))
            }
        };
        if processes == 0 || processes > MAX_PROCESSES {
            return Err(Invalid::value(
                "--processes",
                processes,
                format!("must be between 1 and {MAX_PROCESSES}"),
            ));
        }
        let mercy = seconds(
            "--worker-reload-mercy",
            args.worker_reload_mercy.unwrap_or(60.0),
        )?;
        if mercy.is_zero() {
            return Err(Invalid::value(
                "--worker-reload-mercy",
                0,
                "every graceful reload and stop would SIGKILL busy workers at once; give the \
                 seconds a worker may take to finish its requests (the default is 60), or use a \
                 brutal reload (FIFO R, uwsgictl reload --brutal) where killing at once is meant",
            ));
        }
        let backlog = args.listen.unwrap_or(DEFAULT_BACKLOG);
        if !(1..=65_535).contains(&backlog) {
            return Err(Invalid::value(
                "--listen",
                backlog,
                "must be between 1 and 65535",
            ));
        }

        let mut pidfiles: Vec<PathBuf> = args
            .safe_pidfile
            .iter()
            .chain(args.pidfile.iter())
            .cloned()
            .collect();
        pidfiles.dedup();
        if pidfiles.is_empty() {
            if let Some(i) = &instance {
                pidfiles.push(i.pidfile.clone());
            }
        }
        for p in &pidfiles {
            check_parent_dir("pidfile", p)?;
            if let Ok(m) = std::fs::symlink_metadata(p) {
                if !m.file_type().is_file() {
                    return Err(Invalid::value(
                        "pidfile",
                        p.display(),
                        "exists and is not a regular file; remove it or choose another path",
                    ));
                }
            }
        }

        let mut fifos = args.master_fifo.clone();
        if fifos.is_empty() {
            if let Some(i) = &instance {
                fifos.push(i.fifo.clone());
            }
        }
        if fifos.len() > 10 {
            return Err(Invalid::value(
                "--master-fifo",
                "",
                "at most 10 slots (0-9)",
            ));
        }
        for f in &fifos {
            check_parent_dir("--master-fifo", f)?;
            if let Ok(m) = std::fs::symlink_metadata(f) {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_fifo() {
                    return Err(Invalid::value(
                        "--master-fifo",
                        f.display(),
                        "exists and is not a FIFO; remove it or choose another path",
                    ));
                }
            }
        }

        let stats = match (&args.stats, &instance) {
            (Some(s), _) => Some(parse_stats(s)?),
            (None, Some(i)) => Some(StatsAddr::Unix(i.stats.clone())),
            (None, None) => None,
        };
        if let Some(StatsAddr::Unix(p)) = &stats {
            check_parent_dir("--stats", p)?;
        }

        if let Some(dir) = &args.check_static {
            if !dir.is_dir() {
                return Err(Invalid::value(
                    "--check-static",
                    dir.display(),
                    "not a directory",
                ));
            }
        }
        check_log_options(args)?;
        for (option, log) in [("--logto", &args.logto), ("--daemonize", &args.daemonize)] {
            if let Some(log) = log {
                check_parent_dir(option, log)?;
                if log.is_dir() {
                    return Err(Invalid::value(
                        option,
                        log.display(),
                        "is a directory; give the log file's path",
                    ));
                }
            }
        }

        let ready_timeout = args
            .worker_ready_timeout
            .map(|v| seconds("--worker-ready-timeout", v))
            .transpose()?;
        let stop_signal = parse_signal(
            "--worker-stop-signal",
            args.worker_stop_signal.as_deref().unwrap_or("TERM"),
        )?;
        let apps = [
            args.worker_exec.is_some(),
            args.wsgi_file.is_some(),
            args.module.is_some(),
        ];
        if apps.iter().filter(|&&a| a).count() > 1 {
            return Err(Invalid::Combination(
                "--worker-exec, --wsgi-file and --module exclude each other: give one".into(),
            ));
        }
        let python_app =
            args.wsgi_file.is_some() || args.module.is_some() || !args.mount.is_empty();
        if !python_app {
            let python_only = [
                ("--callable", args.callable.is_some()),
                ("--python", args.python.is_some()),
                ("--home", args.home.is_some()),
                ("--pythonpath", !args.pythonpath.is_empty()),
                ("--threads", args.threads.is_some()),
                ("--manage-script-name", args.manage_script_name),
            ];
            if let Some((flag, _)) = python_only.iter().find(|(_, given)| *given) {
                return Err(Invalid::Combination(format!(
                    "{flag} applies to Python apps only: add --wsgi-file FILE or --module MOD"
                )));
            }
        }
        let exec_only = [
            (
                "--worker-ready-timeout",
                args.worker_ready_timeout.is_some(),
            ),
            ("--worker-stop-signal", args.worker_stop_signal.is_some()),
        ];
        if !python_app && args.worker_exec.is_none() {
            if let Some((flag, _)) = exec_only.iter().find(|(_, given)| *given) {
                return Err(Invalid::Combination(format!(
                    "{flag} applies to exec workers only: add --worker-exec CMD, --wsgi-file FILE \
                     or --module MOD"
                )));
            }
        }
        let env = args
            .env
            .iter()
            .map(|kv| parse_env(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let chdir = match &args.chdir {
            Some(d) => Some(
                std::fs::canonicalize(d)
                    .ok()
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| Invalid::value("--chdir", d.display(), "not a directory"))?,
            ),
            None => None,
        };
        if let Some(t) = args.threads {
            if !(1..=1024).contains(&t) {
                return Err(Invalid::value("--threads", t, "must be between 1 and 1024"));
            }
        }
        let worker = if let Some(cmd) = &args.worker_exec {
            let argv = split_command_line(cmd).map_err(Invalid::Command)?;
            WorkerKind::Exec {
                argv,
                ready_timeout: ready_timeout.map(|d| d.as_secs_f64()),
                stop_signal,
                env,
                chdir,
                preload: false,
                standby: false,
            }
        } else if python_app {
            let home = match &args.home {
                Some(h) => {
                    let h = match &chdir {
                        Some(dir) if h.is_relative() => dir.join(h),
                        _ => h.clone(),
                    };
                    let h = std::fs::canonicalize(&h)
                        .ok()
                        .filter(|p| p.join("bin").is_dir())
                        .ok_or_else(|| {
                            Invalid::value(
                                "--home",
                                h.display(),
                                "not a virtualenv (no bin/ directory there)",
                            )
                        })?;
                    Some(h)
                }
                None => None,
            };
            let program = python_program(args.python.as_deref(), home.as_deref())?;
            let mut argv = vec![program.clone(), "{runner}".to_string()];
            if let (Some(h), true) = (&home, program.ends_with(NATIVE_PYTHON)) {
                argv.push("--home".into());
                argv.push(h.to_string_lossy().into_owned());
            }
            if let Some(f) = &args.wsgi_file {
                // As in uWSGI, a relative file is found from --chdir when one is given.
                let f = match &chdir {
                    Some(dir) if f.is_relative() => dir.join(f),
                    _ => f.clone(),
                };
                if !f.is_file() {
                    return Err(Invalid::value("--wsgi-file", f.display(), "no such file"));
                }
                let abs = std::fs::canonicalize(&f).map_err(|error| Invalid::Io {
                    option: "--wsgi-file",
                    path: f.clone(),
                    error,
                })?;
                argv.push("--wsgi-file".into());
                argv.push(abs.to_string_lossy().into_owned());
            }
            if let Some(m) = &args.module {
                argv.push("--module".into());
                argv.push(m.clone());
            }
            if let Some(c) = &args.callable {
                argv.push("--callable".into());
                argv.push(c.clone());
            }
            for dir in &args.pythonpath {
                let base = chdir.clone().unwrap_or_default();
                argv.push("--pythonpath".into());
                argv.push(base.join(dir).to_string_lossy().into_owned());
            }
            if let Some(t) = args.threads {
                argv.push("--threads".into());
                argv.push(t.to_string());
            }
            // Given only when set: without it HTTP heads keep the workers' 64 KiB (uWSGI's
            // 4096 default is for the uwsgi vars block, which the workers read from the env).
            if let Some(b) = args.buffer_size {
                argv.push("--buffer-size".into());
                argv.push(b.to_string());
            }
            if let Some(l) = args.limit_post.filter(|&l| l > 0) {
                argv.push("--limit-post".into());
                argv.push(l.to_string());
            }
            argv.extend(crate::options::mount_args(args, chdir.as_deref())?);
            WorkerKind::Exec {
                argv,
                ready_timeout: ready_timeout.map(|d| d.as_secs_f64()),
                stop_signal,
                env,
                chdir,
                preload: !args.lazy_apps,
                standby: !args.lazy_apps && !args.no_python_standby,
            }
        } else {
            WorkerKind::Builtin
        };

        let serve = crate::options::from_args(args, matches!(worker, WorkerKind::Builtin))?;
        Ok(Config {
            listeners,
            processes,
            processes_from,
            default_listener,
            pidfiles,
            die_on_term: args.die_on_term,
            mercy,
            auto_snapshot: args.auto_snapshot,
            snapshot_max_age: match args.snapshot_max_age {
                None => None,
                Some(_) if !args.auto_snapshot => {
                    return Err(Invalid::Combination(
                        "--snapshot-max-age without --auto-snapshot: there is no snapshot to \
                         drop; add --auto-snapshot or leave the option out"
                            .into(),
                    ))
                }
                Some(v) => {
                    let d = seconds("--snapshot-max-age", v)?;
                    if d.is_zero() {
                        return Err(Invalid::value(
                            "--snapshot-max-age",
                            0,
                            "the snapshot would be dropped as soon as it is taken; give the \
                             seconds to keep it, or leave out --auto-snapshot",
                        ));
                    }
                    Some(d)
                }
            },
            start_timeout: seconds(
                "--worker-start-timeout",
                args.worker_start_timeout.unwrap_or(60.0),
            )?,
            backlog,
            logto: args.logto.clone(),
            log_format: log_format(args),
            log_reopen: args.log_reopen,
            log_maxsize: args.log_maxsize,
            check_static: args.check_static.clone(),
            demo_routes: args.demo_routes,
            fifos,
            stats,
            stats_http: args.stats_http,
            touch_reload: args.touch_reload.clone(),
            touch_workers_reload: args.touch_workers_reload.clone(),
            touch_chain_reload: args.touch_chain_reload.clone(),
            vacuum: args.vacuum,
            name,
            worker,
            daemonize: args.daemonize.clone(),
            instance_dir: instance.map(|i| i.dir),
            identity: crate::privileges::resolve_identity(
                args.uid.as_deref(),
                args.gid.as_deref(),
                args.master_as_root,
            )?,
            buffer_size: match args.buffer_size {
                None => crate::uwsgi_proto::DEFAULT_BUFFER_SIZE,
                Some(n) if (64..=crate::uwsgi_proto::MAX_VARS).contains(&n) => n,
                Some(n) => {
                    return Err(Invalid::value(
                        "--buffer-size",
                        n,
                        format!(
                            "must be between 64 and {} (the uwsgi format's limit)",
                            crate::uwsgi_proto::MAX_VARS
                        ),
                    ))
                }
            },
            uwsgi_allow: {
                let mut all = Vec::new();
                for a in &args.uwsgi_allow {
                    all.extend(parse_allow(a)?);
                }
                all
            },
            umask: match &args.umask {
                Some(m) => Some(crate::privileges::parse_mode("--umask", m, None)?),
                None => None,
            },
            serve,
            recycle: Recycle::from_args(args, processes)?,
        })
    }

    /// Load the configuration from a full argv (program name first).
    pub fn load(argv: &[String]) -> Result<(Args, Config, Vec<String>), ConfigError> {
        Config::load_expanded(
            argv,
            crate::config::expand(argv).map_err(ConfigError::Config),
        )
    }

    /// [`Config::load`] of `argv`'s configuration, already read.
    pub fn load_expanded(
        argv: &[String],
        expanded: Result<crate::config::Expanded, ConfigError>,
    ) -> Result<(Args, Config, Vec<String>), ConfigError> {
        let (args, mut warnings) = parse_expanded(expanded?)?;
        for (option, addrs) in [
            ("--http", &args.http),
            ("--http11-socket", &args.http11_socket),
        ] {
            for a in addrs {
                warnings.push(format!(
                    "{option} {a}: serving HTTP on it in the workers, like --http-socket; uwsgid \
                     needs no router process"
                ));
            }
        }

        let config = Config::from_args(&args, argv.len() <= 1).map_err(|e| match &args.ini {
            Some(ini) => ConfigError::FromIni {
                path: ini.clone(),
                error: Box::new(ConfigError::Invalid(e)),
            },
            None => ConfigError::Invalid(e),
        })?;
        Ok((args, config, warnings))
    }
}

/// The native Python worker's file name, looked for beside the `uwsgid` executable.
pub const NATIVE_PYTHON: &str = "uwsgid-python";

/// `UWSGID_PYTHON_WORKER=stdlib` runs the stdlib runner even where the native worker exists;
/// `=native` makes its absence an error.
pub const PYTHON_WORKER_ENV: &str = "UWSGID_PYTHON_WORKER";

/// The program that runs a Python app: the native worker beside `uwsgid` (CPython embedded,
/// Rust HTTP), else the interpreter that runs the stdlib runner: `--python`, the virtualenv's
/// `bin/python` of `--home` when the native worker is absent, or `python3` from `PATH`.
///
/// Both programs serve HTTP and uwsgi-protocol (`--socket`) listeners.
fn python_program(python: Option<&str>, home: Option<&Path>) -> Result<String, Invalid> {
    let choice = std::env::var(PYTHON_WORKER_ENV).unwrap_or_default();
    if !matches!(choice.as_str(), "" | "native" | "stdlib") {
        return Err(Invalid::value(
            format!("{PYTHON_WORKER_ENV}={choice}"),
            "",
            "give native or stdlib (or leave it unset)",
        ));
    }
    let stdlib = || match (python, home) {
        (Some(p), _) => p.to_string(),
        (None, Some(h)) => h.join("bin/python").to_string_lossy().into_owned(),
        (None, None) => "python3".to_string(),
    };
    // `--python` naming the interpreter the native worker embeds (the build's PYO3_PYTHON,
    // symlinks followed) still runs the native worker; another interpreter needs the runner.
    let embedded = option_env!("PYO3_PYTHON").and_then(|p| std::fs::canonicalize(p).ok());
    let other_python = python.is_some_and(|p| {
        let path = if p.contains('/') {
            Some(PathBuf::from(p))
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(p))
                    .find(|c| c.is_file())
            })
        };
        path.and_then(|p| std::fs::canonicalize(p).ok()) != embedded || embedded.is_none()
    });
    if other_python || choice == "stdlib" {
        return Ok(stdlib());
    }
    let native = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(NATIVE_PYTHON)))
        .filter(|p| p.is_file());
    match native {
        Some(p) => Ok(p.to_string_lossy().into_owned()),
        None if choice == "native" => Err(Invalid::NoNativeWorker),
        None => {
            crate::log!(
                "warning: {NATIVE_PYTHON} is not beside the uwsgid executable: Python apps run \
                 on the stdlib runner ({}), slower; build and install {NATIVE_PYTHON} for the \
                 native worker",
                stdlib()
            );
            Ok(stdlib())
        }
    }
}

fn check_parent_dir(option: &str, path: &Path) -> Result<(), Invalid> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if parent.is_dir() {
        return Ok(());
    }
    // A named instance's directory is created at startup.
    if parent.starts_with(discovery::runtime_dir()) {
        return Ok(());
    }
    Err(Invalid::value(
        option,
        path.display(),
        format!(
            "directory {} does not exist; create it first",
            parent.display()
        ),
    ))
}

/// Split a command line into words as a POSIX shell would, without running a shell.
///
/// Blanks (space, tab) separate words; `'…'` is literal; in `"…"` a backslash escapes only
/// `"`, `\`, `$`, `` ` `` and newline; outside quotes a backslash escapes any character and
/// backslash-newline joins lines; `''` is an empty word. Since nothing is expanded, whatever a
/// shell would expand or interpret is refused with a message saying how to quote it instead:
/// `$` and `` ` ``, the operators `| & ; < > ( )`, an unquoted newline, a `#` comment, and a
/// leading `NAME=value` assignment. Globs (`*`, `?`, `[`) and `~` are passed literally.
pub fn split_command_line(cmd: &str) -> Result<Vec<String>, CommandError> {
    let refuse = |problem| CommandError {
        cmd: cmd.to_string(),
        problem,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = cmd.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, escaped)) => {
                    word.push(escaped);
                    in_word = true;
                }
                None => return Err(refuse(CommandProblem::TrailingBackslash)),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => word.push(ch),
                        None => return Err(refuse(CommandProblem::UnterminatedSingle { at })),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\' | '$' | '`'))) => word.push(e),
                            Some((_, '\n')) => {}
                            Some((_, other)) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(refuse(CommandProblem::UnterminatedDouble { at })),
                        },
                        Some((inner, ch @ ('$' | '`'))) => {
                            return Err(refuse(CommandProblem::ExpandedInDouble { ch, at: inner }))
                        }
                        Some((_, ch)) => word.push(ch),
                        None => return Err(refuse(CommandProblem::UnterminatedDouble { at })),
                    }
                }
            }
            '$' | '`' => return Err(refuse(CommandProblem::Expanded { ch: c, at })),
            '|' | '&' | ';' | '<' | '>' | '(' | ')' => {
                return Err(refuse(CommandProblem::Operator { ch: c, at }))
            }
            '\n' | '\r' => return Err(refuse(CommandProblem::LineBreak { at })),
            '#' if !in_word => return Err(refuse(CommandProblem::Comment { at })),
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let Some(first) = words.first() else {
        return Err(refuse(CommandProblem::Empty));
    };
    if let Some((name, _)) = first.split_once('=') {
        let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_name {
            return Err(refuse(CommandProblem::Assignment {
                word: first.clone(),
            }));
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the bad-input catalogue: `--worker-stop-signal 999` passed validation and only
    /// failed when a worker was to be stopped.
    #[test]
    fn stop_signal_numbers_are_real_signals() {
        let parse = |name| parse_signal("--worker-stop-signal", name);
        assert_eq!(parse("15").ok(), Some(15));
        assert!(parse("SIGRTMIN+0").is_err());
        for bad in ["0", "65", "999", "-9"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a signal number"), "{bad}: {e}");
        }
    }

    /// Found by the bad-input catalogue: `master = maybe` in an ini file became the
    /// command-line words `--master maybe`, refused by clap as "unexpected argument 'maybe'"
    /// without naming the key or the line.
    #[test]
    fn ini_flags_need_a_boolean() {
        let path = std::env::temp_dir().join(format!("uwsgid-bool-{}.ini", std::process::id()));
        std::fs::write(&path, "[uwsgi]\nhttp-socket = :0\nmaster = maybe\n").unwrap();
        let e = load(&["--ini", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.contains("line 3") && e.contains("master = \"maybe\""),
            "{e}"
        );
    }

    /// Found by the bad-input catalogue: `--logto DIR` passed validation and the instance
    /// failed only when opening the log.
    #[test]
    fn a_log_path_that_is_a_directory_is_refused() {
        let dir = std::env::temp_dir();
        let e = load(&["--logto", dir.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let argv: Vec<String> = std::iter::once("uwsgid")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        Config::load(&argv).map(|(_, c, _)| c)
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_listen_addr(":8000").unwrap(),
            ListenAddr::Tcp("0.0.0.0:8000".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("[::1]:80").unwrap(),
            ListenAddr::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("unix:/tmp/x.sock").unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            parse_listen_addr("/tmp/y.sock").unwrap(),
            ListenAddr::Unix("/tmp/y.sock".into())
        );
        assert_eq!(parse_listen_addr("fd://3").unwrap(), ListenAddr::Fd(3));
        assert!(parse_listen_addr("127.0.0.1:99999")
            .unwrap_err()
            .to_string()
            .contains("not a port"));
        assert_eq!(
            parse_listen_addr("fd://web").unwrap(),
            ListenAddr::Named("web".into())
        );
        assert_eq!(
            parse_listen_addr("fd://uwsgid@a.socket").unwrap(),
            ListenAddr::Named("uwsgid@a.socket".into())
        );
        for bad in ["fd://", "fd://a:b", "fd://-1", "fd://3x", "fd://caf\u{e9}"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
        assert!(parse_listen_addr("").is_err());
    }

    #[test]
    fn defaults_and_errors() {
        let c = load(&["--http-socket", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.processes, 1);
        assert_eq!(c.mercy, Duration::from_secs(60));
        assert!(load(&["--processes", "0", "--http-socket", ":1"])
            .unwrap_err()
            .to_string()
            .contains("--processes 0"));
        assert!(load(&["--bogus"])
            .unwrap_err()
            .to_string()
            .contains("--bogus"));
        assert!(load(&["--http-socket", ":1", "--worker-reload-mercy", "-1"]).is_err());
        for zero in ["0", "0.0", "-0", "1e-12"] {
            let e = load(&["--http-socket", ":1", "--worker-reload-mercy", zero])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--worker-reload-mercy 0") && e.contains("brutal"),
                "{e}"
            );
        }
        assert!(load(&["--http-socket", ":1", "--worker-reload-mercy", "0.3"]).is_ok());
        assert!(load(&[
            "--http-socket",
            ":1",
            "--safe-pidfile",
            "/nonexistent/dir/x.pid"
        ])
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    }

    #[test]
    fn snapshot_options() {
        let c = load(&["--http-socket", ":1"]).unwrap();
        assert!(!c.auto_snapshot);
        assert_eq!(c.snapshot_max_age, None);
        let c = load(&[
            "--http-socket",
            ":1",
            "--auto-snapshot",
            "--snapshot-max-age",
            "90",
        ])
        .unwrap();
        assert!(c.auto_snapshot);
        assert_eq!(c.snapshot_max_age, Some(Duration::from_secs(90)));
        let e = load(&["--http-socket", ":1", "--snapshot-max-age", "90"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("without --auto-snapshot"), "{e}");
        for bad in ["0", "1e-12"] {
            let e = load(&[
                "--http-socket",
                ":1",
                "--auto-snapshot",
                "--snapshot-max-age",
                bad,
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains("--snapshot-max-age 0"), "{e}");
        }
        assert!(load(&[
            "--http-socket",
            ":1",
            "--auto-snapshot",
            "--snapshot-max-age",
            "-1"
        ])
        .is_err());
    }

    #[test]
    fn exec_and_python_options() {
        let c = load(&[
            "--http-socket",
            ":1",
            "--worker-exec",
            "prog --flag",
            "--env",
            "A_1=x=y",
            "--chdir",
            "/",
        ])
        .unwrap();
        let WorkerKind::Exec {
            argv, env, chdir, ..
        } = c.worker
        else {
            panic!("not exec");
        };
        assert_eq!(argv, ["prog", "--flag"]);
        assert_eq!(env, [("A_1".to_string(), "x=y".to_string())]);
        assert_eq!(chdir, Some(PathBuf::from("/")));
        let e = load(&["--http-socket", ":1", "--worker-exec", "p", "--env", "1A=x"]);
        assert!(e.unwrap_err().to_string().contains("not a variable name"));
        let e = load(&["--http-socket", ":1", "--worker-exec", "p", "--env", "A"]);
        assert!(e.unwrap_err().to_string().contains("NAME=VALUE"));
        let e = load(&[
            "--http-socket",
            ":1",
            "--worker-exec",
            "p",
            "--threads",
            "4",
        ]);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("--threads applies to Python apps only"));
        let c = load(&["--http-socket", ":1", "--env", "A=b", "--chdir", "/"]).unwrap();
        assert_eq!(c.serve.env, [("A".to_string(), "b".to_string())]);
        assert_eq!(c.serve.chdir, Some(PathBuf::from("/")));
        let e = load(&[
            "--http-socket",
            ":1",
            "--worker-exec",
            "p",
            "--chdir",
            "/nonexistent/x",
        ]);
        assert!(e.unwrap_err().to_string().contains("not a directory"));
    }

    #[test]
    fn ini_sections() {
        let dir = std::env::temp_dir().join(format!("uwsgid-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("a.ini");
        std::fs::write(&ini, "[other]\nprocesses = 9\n[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 3\nmaster = true\nplugin = python3\ndie-on-term = false\n").unwrap();
        let c = load(&["--ini", ini.to_str().unwrap()]).unwrap();
        assert_eq!(c.processes, 3);
        assert!(!c.die_on_term);
        // As in uWSGI, a key that is no option is a placeholder, an error only when strict.
        std::fs::write(&ini, "[uwsgi]\nhttp-socket = :0\nbogus-option = 1\n").unwrap();
        load(&["--ini", ini.to_str().unwrap()]).unwrap();
        std::fs::write(&ini, "[uwsgi]\nstrict = true\nbogus-option = 1\n").unwrap();
        let e = load(&["--ini", ini.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus-option") && e.contains("a.ini"), "{e}");
        std::fs::write(&ini, "processes = 3\n").unwrap();
        assert!(load(&["--ini", ini.to_str().unwrap()])
            .unwrap_err()
            .to_string()
            .contains("no [uwsgi] section"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn words(cmd: &str) -> Vec<String> {
        split_command_line(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn split_error(cmd: &str) -> String {
        match split_command_line(cmd) {
            Ok(w) => panic!("{cmd:?} split into {w:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn split_words_like_a_shell() {
        assert_eq!(
            words("node  app.js\t--port 3"),
            ["node", "app.js", "--port", "3"]
        );
        assert_eq!(words("  a  "), ["a"]);
        assert_eq!(words("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(words("x 'it''s' a'b'\"c\"d"), ["x", "its", "abcd"]);
        assert_eq!(
            words(r#"x '\n$HOME' "a\"b\\c\$d\e""#),
            ["x", r"\n$HOME", r#"a"b\c$d\e"#]
        );
        assert_eq!(words(r"x a\ b \'q \$ \|"), ["x", "a b", "'q", "$", "|"]);
        assert_eq!(words("x '' \"\" z"), ["x", "", "", "z"]);
        assert_eq!(words("x a\\\nb"), ["x", "ab"]);
        assert_eq!(words("x 'multi\nline'"), ["x", "multi\nline"]);
        assert_eq!(
            words("x a#b *.py ~/p 'A=b'"),
            ["x", "a#b", "*.py", "~/p", "A=b"]
        );
        assert_eq!(
            words("/usr/bin/env A=b prog"),
            ["/usr/bin/env", "A=b", "prog"]
        );
        assert_eq!(
            words("python3 -c 'print(\"hi\")'"),
            ["python3", "-c", "print(\"hi\")"]
        );
    }

    #[test]
    fn split_refuses_what_a_shell_would_interpret() {
        assert!(split_error("").contains("empty command"));
        assert!(split_error(" \t ").contains("empty command"));
        assert!(split_error("x 'abc").contains("unterminated single quote (opened at byte 2)"));
        assert!(split_error("x \"abc").contains("unterminated double quote"));
        assert!(split_error("x \"abc\\").contains("unterminated double quote"));
        assert!(split_error("x abc\\").contains("trailing backslash"));
        assert!(split_error("x $HOME").contains("'$' at byte 2 would be expanded"));
        assert!(split_error("x \"$HOME\"").contains("would be expanded"));
        assert!(split_error("x `id`").contains("would be expanded"));
        for op in ["a | b", "a && b", "a; b", "a > log", "a < in", "(a)"] {
            assert!(split_error(op).contains("shell operator"), "{op}");
        }
        assert!(split_error("a\nb").contains("one command only"));
        assert!(split_error("a # note").contains("comment"));
        let e = split_error("PORT=3 node app.js");
        assert!(
            e.contains("variable assignment") && e.contains("--env PORT=3"),
            "{e}"
        );
    }
}
