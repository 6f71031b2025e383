//! The master: one single-threaded loop that owns the listeners, the workers and the control
//! channels.
//!
//! # Reading order
//!
//! 1. [`step`]: the phases, the transition table and the one `step` that decides.
//! 2. [`table`]: workers and slots; which slot needs a worker, which worker is replaced, what
//!    an exit means, the one backoff formula. Pure, with unit tests.
//! 3. [`reload`]: the reload under way, chain cursor, completion, outcome, the checker.
//! 4. [`sources`]: the poll set; `wait` turns what became readable into events and decides
//!    nothing.
//! 5. [`preload`] (Python zygotes), [`spawn`] (the one fork-and-exec path), [`reexec`] (the
//!    two halves of a re-exec side by side, over [`handoff`]), [`files`] (locks, pidfiles,
//!    vacuum, daemonize), [`runner`] (the bundled Python runner), [`stats`] (read-only view).
//!
//! The loop (`run_loop`, below) takes the time once per turn, steps, performs a re-exec the
//! step decided, and waits for the next events until the earliest deadline of any part.
//! Everything below the step receives that `now`; none of it reads the clock to decide.
//!
//! Invariants: the master is single-threaded (fork safety); a pid leaves the worker table
//! only after `waitpid` returned it, and nothing is signalled after that; every fd is
//! close-on-exec except, during re-exec, those the handoff names; the master never blocks
//! anywhere but in `poll` (the `--check-config` child and the interpreter lookup are bounded).
//!
//! # Preload (Python apps without `--lazy-apps`)
//!
//! The master is a child subreaper. For each generation it runs one **zygote**: the bundled
//! runner with `--zygote` and a control socket, which imports the application once and says
//! `READY=1`. Spawning a worker is then a request on the control socket (`fork SLOT GEN`): the
//! zygote double-forks, so the worker is re-parented to the master, which `waitpid`s it like any
//! worker. The worker announces itself (`UWSGID_SLOT` and `UWSGID_GENERATION`, first while it
//! starts, then with `READY=1`), so an exit before it is ready is a failed start at once;
//! the master adopts a sender it does not know only if it is its own child (`/proc/PID/stat`)
//! and, to serve, only if a fork for that slot and generation is pending (any other one is
//! adopted and retired at once). A pending fork not ready within the start timeout, or whose
//! zygote exits, is a failed start. A zygote is stopped once no slot targets its generation.
//!
//! Once a generation is complete, the master starts the next generation's zygote in
//! **standby** (`--standby`): the interpreter and the runner are up, the application is not
//! imported. A reload sends it `load`, so it pays only the import. A standby is used only if
//! the master binary and the interpreter on disk are still the ones it was started from (and,
//! after a re-exec, only if the worker options did not change); otherwise it is stopped and a
//! fresh zygote is started. `--no-python-standby` turns this off.

pub mod cheaper;
mod children;
pub mod files;
pub mod handoff;
pub mod preload;
mod record;
pub mod recycle;
pub mod reexec;
pub mod reload;
pub mod runner;
pub mod snapshot;
pub mod sources;
pub mod spawn;
pub mod stats;
pub mod step;
pub mod systemd;
pub mod table;

#[cfg(test)]
#[path = "tests/storm.rs"]
mod storm_tests;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Config, WorkerKind};
use crate::listener::Listener;
use crate::log;

use files::Files;
use handoff::Handoff;
use preload::Preload;
use record::Requests;
use reload::Reloads;
use runner::Runner;
use sources::Sources;
use step::Phase;
use table::Table;

pub use common::reload::ReloadKind;

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The one clock reading of a loop turn: monotonic for deadlines, wall clock for the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub unix_ms: u64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            at: Instant::now(),
            unix_ms: unix_ms(SystemTime::now()),
        }
    }

    /// The wall-clock time of an earlier `Instant`.
    pub fn unix_ms_of(&self, t: Instant) -> u64 {
        self.unix_ms
            .saturating_sub(self.at.saturating_duration_since(t).as_millis() as u64)
    }

    /// The wall-clock time of an `Instant`, earlier or later.
    pub fn unix_ms_at(&self, t: Instant) -> u64 {
        if t >= self.at {
            self.unix_ms + (t - self.at).as_millis() as u64
        } else {
            self.unix_ms_of(t)
        }
    }

    /// The `Instant` of a wall-clock time, earlier or later.
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.at + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            self.instant_of(unix_ms)
        }
    }

    /// The `Instant` of an earlier wall-clock time (never later than now).
    pub fn instant_of(&self, unix_ms: u64) -> Instant {
        self.at
            .checked_sub(Duration::from_millis(self.unix_ms.saturating_sub(unix_ms)))
            .unwrap_or(self.at)
    }
}

/// Why the master could not start (or continue after a re-exec). Each names the input.
#[derive(Debug)]
pub enum Error {
    InstanceDir(std::io::Error),
    Logto(PathBuf, std::io::Error),
    PidfileLock(PathBuf, std::io::Error),
    /// The pidfile lock cannot be opened, or is not ours (the message names it).
    Lock(String),
    /// Another live master holds the lock of this pidfile.
    PidfileBusy {
        path: PathBuf,
        holder: Option<i32>,
    },
    Listener(crate::listener::Error),
    Scoreboard(std::io::Error),
    Notify(std::io::Error),
    Signalfd(std::io::Error),
    OwnBinary(std::io::Error),
    Fifo(crate::fifo::Error),
    Stats(crate::stats_server::Error),
    Touch(std::io::Error),
    /// A `--master-fifo` path that is not a FIFO we may use.
    FifoPath(crate::fifo::Error),
    NoListenerLeft,
    /// `--uid`/`--gid` could not be applied (the message says which call failed).
    Privileges(crate::privileges::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InstanceDir(e) => write!(f, "{e}"),
            Error::Logto(p, e) => write!(f, "--logto: {}: {e}", p.display()),
            Error::PidfileLock(p, e) => write!(f, "pidfile lock {}: {e}", p.display()),
            Error::Lock(e) => f.write_str(e),
            Error::PidfileBusy { path, holder } => {
                let holder = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                write!(
                    f,
                    "another uwsgid{holder} is running with pidfile {}; stop it first (uwsgictl stop --pidfile {}) or choose another pidfile",
                    path.display(),
                    path.display()
                )
            }
            Error::Listener(e) => write!(f, "{e}"),
            Error::Scoreboard(e) => write!(f, "scoreboard: {e}"),
            Error::Notify(e) => write!(f, "notify socket: {e}"),
            Error::Signalfd(e) => write!(f, "signalfd: {e}"),
            Error::OwnBinary(e) => write!(f, "cannot find our own binary: {e}"),
            Error::Fifo(e) => write!(f, "{e}"),
            Error::Stats(e) => write!(f, "{e}"),
            Error::Touch(e) => write!(f, "touch files: {e}"),
            Error::FifoPath(e) => write!(f, "{e}"),
            Error::NoListenerLeft => f.write_str("reload left no listener"),
            Error::Privileges(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

pub struct Master {
    config: Config,
    argv: Vec<String>,
    exe: PathBuf,
    generation: u64,
    paused: bool,
    last_error: Option<String>,
    started_unix: u64,
    listeners: Vec<Listener>,
    sources: Sources,
    table: Table,
    reloads: Reloads,
    preload: Preload,
    runner: Option<Runner>,
    files: Files,
    stats_cache: stats::MemoryCache,
    ticker: recycle::Ticker,
    phase: Phase,
    requests: Requests,
    exit_code: Option<i32>,
    /// The service manager's notify socket (`NOTIFY_SOCKET`), if any.
    systemd: Option<systemd::Systemd>,
    /// Respawns by cause (for `/metrics`), carried across re-execs.
    respawns: std::collections::BTreeMap<String, u64>,
}

/// Start (or, after a re-exec, continue) the master and run it until it exits.
pub fn run(
    argv: Vec<String>,
    config: Config,
    handoff: Option<Handoff>,
    warnings: Vec<String>,
) -> i32 {
    crate::log::set_format(config.log_format);
    if handoff.is_none() {
        if let Some(log) = config.daemonize.clone() {
            crate::daemonize::daemonize(&log);
        }
    }
    let more = crate::options::startup_warnings(&config);
    let resumed = handoff.is_some();
    let mut master = match handoff {
        Some(h) => reexec::resume(argv, config, h, Now::read()),
        None => files::start(argv, config, Now::read()).map(|m| (m, Vec::new())),
    };
    for w in warnings.into_iter().chain(more) {
        log!("warning: {w}");
    }
    if let Ok((m, _)) = &mut master {
        m.retitle();
        m.systemd = systemd::Systemd::from_env(resumed, Instant::now());
    }
    match master {
        Ok((mut m, kept)) => m.run_loop(record::fifo_events(&kept)),
        Err(e) => {
            // With --log-format json the log stays one object a line, this one included.
            match crate::log::format() {
                crate::log::Format::Json => {
                    crate::log_event!("startup_failed"; "error: {e}");
                }
                crate::log::Format::Text => eprintln!("uwsgid: error: {e}"),
            }
            crate::daemonize::report_to_launcher(&format!("error: {e}"));
            1
        }
    }
}

impl Master {
    /// The loop; `events` are the FIFO commands a previous image kept for this one.
    fn run_loop(&mut self, mut events: Vec<sources::Event>) -> i32 {
        loop {
            let now = Now::read();
            self.handle(events, now);
            self.tend_log(now);
            self.tell_systemd(now);
            if let Some(code) = self.exit_code {
                self.sources.pump_relay(); // the workers' last words
                self.cleanup();
                self.release_locks();
                crate::log_event!("exit", code = code; "goodbye (exit {code})");
                return code;
            }
            // Re-execute only once everything already read has been acted on; signals not
            // yet read stay pending across execve, FIFO bytes not yet run go in the handoff.
            if matches!(self.phase, Phase::ReExec { .. }) {
                // Returns only if execve failed: the commands kept for the next image run here.
                events = record::fifo_events(&self.exec_self(now));
                continue;
            }
            let quiet = matches!(self.phase, Phase::Running)
                && self.reloads.current.is_none()
                && self.table.settled();
            if self.reloads.prepare_due(quiet, now.at) {
                crate::config::prepare();
            }
            let deadline = self.next_deadline(now);
            let checker = self.phase.checker_fd();
            events = self.sources.wait(deadline, checker);
        }
    }

    /// The earliest deadline still to come of any part.
    fn next_deadline(&self, now: Now) -> Option<Instant> {
        let timeout = self.config.start_timeout;
        [
            self.table
                .next_deadline(now.at, self.ready_grace(), timeout),
            self.preload.next_deadline(now.at, timeout),
            self.phase.next_deadline(now.at),
            self.ticker.next_deadline(&self.config.recycle, now.at),
            self.snapshot_deadline(),
            self.rollback_deadline(),
            self.reloads.prepare_at,
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > now.at)
        .chain(self.sources.stats_deadline())
        .chain(self.files.log_deadline())
        .chain(self.systemd.as_ref().and_then(|s| s.next_deadline()))
        .min()
    }

    /// Once per loop turn: the initial `READY=1` when due, `STATUS=` when it changed, and
    /// `WATCHDOG=1` when due (see [`systemd`]).
    fn tell_systemd(&mut self, now: Now) {
        let Some(sd) = &mut self.systemd else {
            return;
        };
        let g = self.generation;
        let reloading = self.reloads.current.is_some()
            || matches!(self.phase, Phase::Checking(_) | Phase::ReExec { .. });
        if systemd::first_ready(sd.ready_sent, reloading, self.table.complete(g)) {
            sd.ready();
        }
        let state = systemd::state_word(self.phase.is_stopping(), reloading, self.paused);
        let text = crate::sd_notify::status_text(
            state,
            g,
            self.table.ready_count(g) as u32,
            self.table.slots.len() as u32,
        );
        sd.status(&text);
        sd.tick(now.at);
    }

    /// A reload was accepted: `RELOADING=1`.
    fn systemd_reloading(&self) {
        if let Some(sd) = &self.systemd {
            sd.reloading();
        }
    }

    /// A reload failed or was refused: the `reload_failed` event (an error, shown in stats)
    /// and `READY=1` (the previous generation serves).
    fn reload_failed(&mut self, reason: String) {
        self.systemd_reload_ended(Some(&reason));
        crate::log_event!("reload_failed"; "error: {reason}");
        self.last_error = Some(reason);
    }

    /// A reload ended (`failure`: why it failed): `READY=1`.
    fn systemd_reload_ended(&mut self, failure: Option<&str>) {
        if let Some(sd) = &mut self.systemd {
            sd.reload_ended(failure);
        }
    }

    /// Exec workers without READY=1 count as ready after `--ready-timeout`.
    fn ready_grace(&self) -> Option<Duration> {
        match &self.config.worker {
            WorkerKind::Exec {
                ready_timeout: Some(s),
                ..
            } => Some(Duration::from_secs_f64(*s)),
            _ => None,
        }
    }

    fn is_exec(&self) -> bool {
        matches!(self.config.worker, WorkerKind::Exec { .. })
    }

    fn kind_name(&self) -> &'static str {
        if self.is_exec() {
            "exec"
        } else {
            "built-in"
        }
    }

    /// `--auto-procname` and friends: the master's title names its generation.
    fn retitle(&self) {
        if let Some(t) = self.config.serve.procname.master_title(self.generation) {
            crate::procname::set_title(&t);
        }
    }

    /// A runtime error: logged, shown in stats, survived.
    fn note_error(&mut self, e: String) {
        log!("error: {e}");
        self.last_error = Some(e);
    }

    /// True if the binary at our path is the very file this process runs (same device and
    /// inode), so it needs no trial run before we re-execute it.
    fn exe_unchanged(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::metadata(&self.exe),
            std::fs::metadata("/proc/self/exe"),
        ) {
            (Ok(on_disk), Ok(running)) => {
                on_disk.dev() == running.dev() && on_disk.ino() == running.ino()
            }
            _ => false,
        }
    }
}
