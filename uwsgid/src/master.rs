//! The master: one single-threaded loop that owns the listeners, the workers and the control
//! channels.
//!
//! Sources only record: the signalfd, the FIFO, touch files and the notify socket turn into
//! [`Requests`]; child exits and readiness update the worker table. Then one [`Master::step`]
//! decides, in a fixed priority order (brutal stop, graceful stop, reload, the rest), and every
//! wait has a deadline that bounds the one blocking call, `poll`. The FIFO records one command
//! byte at a time and steps after each, so the commands of one write run in the order written.
//!
//! Phases and their transitions:
//!
//! | phase      | event                               | next                                   |
//! |------------|-------------------------------------|----------------------------------------|
//! | Running    | reload (graceful, brutal)           | Checking: the new binary validates the configuration |
//! | Checking   | checker exits 0                     | (execve in place) → Running in the new image, generation + 1 |
//! | Checking   | checker fails, or execve fails      | Running, error logged and in stats     |
//! | Running    | workers / chain reload              | Running, generation + 1, slots retargeted |
//! | any        | graceful stop                       | Stopping: workers drain within the mercy |
//! | any        | brutal stop                         | Stopping: workers killed               |
//! | Stopping   | no worker left, or deadline passed  | exit                                   |
//!
//! A generation change is the same mechanism for every reload: each slot has a target
//! generation; a slot without a starting or ready worker of its target gets one spawned (after
//! its crash backoff); once that worker is ready, the slot's older workers are retired (graceful
//! stop signal, SIGKILL after the mercy). New workers therefore accept while old ones drain, and
//! a new generation that never becomes ready leaves the old workers serving. A reload is complete
//! when every slot holds a ready worker of the newest generation and no older worker is alive.
//!
//! Invariants: a pid leaves the worker table only after `waitpid` returned it, and nothing is
//! signalled after that; every fd is close-on-exec except, during re-exec, those the handoff
//! names; the master never blocks anywhere but in `poll`.
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

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fifo::FifoCommand;
use common::stats as wire;

use crate::cli::{Config, StatsAddr, WorkerKind};
use crate::fifo::{Batch, Fifo};
use crate::handoff::{
    Handoff, HandoffFifo, HandoffListener, HandoffSlot, HandoffWorker, HandoffZygote,
};
use crate::listener::{self, Listener};
use crate::log;
use crate::scoreboard::{self, Allocator, Scoreboard};
use crate::stats_server::StatsServer;
use crate::sys::{self, FileStamp};
use crate::touch::{Touch, TouchAction};

/// A worker that lived this long after becoming ready resets its slot's failure count.
const STABLE_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A reload is reported failed once a new worker failed to start this many times in a row.
const RELOAD_FAIL_AFTER: u32 = 3;
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// After a standby zygote exited unasked (or could not start), wait this long for the next.
const STANDBY_RETRY: Duration = Duration::from_secs(30);

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadKind {
    Graceful,
    Brutal,
    Workers,
    BrutalWorkers,
    Chain,
}

impl ReloadKind {
    pub fn name(self) -> &'static str {
        match self {
            ReloadKind::Graceful => "graceful",
            ReloadKind::Brutal => "brutal",
            ReloadKind::Workers => "workers",
            ReloadKind::BrutalWorkers => "brutal-workers",
            ReloadKind::Chain => "chain",
        }
    }

    fn from_name(name: &str) -> ReloadKind {
        match name {
            "brutal" => ReloadKind::Brutal,
            "workers" => ReloadKind::Workers,
            "brutal-workers" => ReloadKind::BrutalWorkers,
            "chain" => ReloadKind::Chain,
            _ => ReloadKind::Graceful,
        }
    }

    fn re_executes(self) -> bool {
        matches!(self, ReloadKind::Graceful | ReloadKind::Brutal)
    }
}

/// What the sources asked for since the last step.
#[derive(Default, Debug)]
pub struct Requests {
    pub brutal_stop: Option<String>,
    pub graceful_stop: Option<String>,
    pub reload: Option<(ReloadKind, String)>,
    pub toggle_pause: bool,
    pub pause: Option<bool>,
    pub stats_log: bool,
    pub status_log: bool,
    pub rollback: bool,
    pub wake_workers: bool,
    pub reopen_log: bool,
    pub rotate_log: bool,
    pub write_pidfiles: bool,
    pub worker_delta: i32,
    pub fifo_slot: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
enum WorkerState {
    Starting,
    Ready,
    /// Told to stop; SIGKILL at the deadline.
    Draining {
        since: Instant,
        deadline: Instant,
    },
    Killed,
}

struct Worker {
    pid: i32,
    id: u32,
    generation: u64,
    cell: usize,
    state: WorkerState,
    spawned: Instant,
    spawned_unix_ms: u64,
    ready_at: Option<Instant>,
    status_text: Option<String>,
}

impl Worker {
    fn alive_for_slot(&self) -> bool {
        matches!(self.state, WorkerState::Starting | WorkerState::Ready)
    }
}

/// Preload: a worker asked of a zygote, not yet adopted.
#[derive(Clone, Copy, Debug)]
struct Pending {
    generation: u64,
    since: Instant,
    /// When the fork request was written (at once, even to a zygote still loading).
    asked: Option<Instant>,
}

/// Preload: the process of one generation that imported the app and forks its workers.
struct Zygote {
    pid: i32,
    generation: u64,
    /// The master's end of the control socket (non-blocking).
    control: OwnedFd,
    ready: bool,
    /// A standby, not yet told to `load`: it has no start deadline.
    standby: bool,
    /// The interpreter it was started from, to tell whether it is still the one on disk.
    interpreter: Option<FileStamp>,
    /// When it was started, or told to `load`.
    spawned: Instant,
    /// Told to stop: SIGKILL at this deadline (once).
    stopping: Option<Instant>,
    killed: bool,
}

#[derive(Default)]
struct Slot {
    target: u64,
    pending: Option<Pending>,
    respawn_count: u64,
    failed_starts: u32,
    next_spawn: Option<Instant>,
    last_exit: Option<String>,
    requests: u64,
    tx: u64,
    running_time_us: u64,
    last_spawn: u64,
}

struct Reload {
    kind: ReloadKind,
    generation: u64,
    started: Instant,
    started_unix_ms: u64,
    /// Chain reload: the slot being replaced now (1-based).
    chain_cursor: Option<u32>,
}

enum Phase {
    Running,
    Checking {
        kind: ReloadKind,
        cause: String,
        checker: i32,
        output: OwnedFd,
        deadline: Instant,
    },
    Stopping {
        brutal: bool,
        deadline: Instant,
    },
}

pub struct Master {
    config: Config,
    argv: Vec<String>,
    exe: PathBuf,
    signals: OwnedFd,
    listeners: Vec<Listener>,
    board: Scoreboard,
    cells: Allocator,
    notify: OwnedFd,
    notify_addr: String,
    locks: Vec<(PathBuf, OwnedFd)>,
    pidfiles_written: Vec<PathBuf>,
    workers: Vec<Worker>,
    zygotes: Vec<Zygote>,
    slots: Vec<Slot>,
    generation: u64,
    phase: Phase,
    paused: bool,
    reload: Option<Reload>,
    last_reload: Option<wire::ReloadOutcome>,
    last_error: Option<String>,
    fifo: Option<Fifo>,
    stats: Option<StatsServer>,
    touch: Option<Touch>,
    started_unix: u64,
    requests: Requests,
    exit_code: Option<i32>,
    /// The exec program runs the bundled runner (`{runner}`).
    runner: bool,
    /// The reload under way runs the previous configuration because the new one was refused.
    config_refused: Option<String>,
    /// Workers' `(rss, vsz)` read from /proc, reused for [`MEMORY_TTL`] so that frequent stats
    /// requests (a `--wait` polls every millisecond) do not cost a file read per worker each.
    memory: std::cell::RefCell<std::collections::HashMap<i32, MemorySample>>,
    /// With `--logto`, exec workers write their stdout and stderr here; the master copies it
    /// into the log as it is now (so a rotation reaches them too).
    relay: Option<crate::log::Relay>,
    /// No standby zygote is started before this (one exited unasked, or could not start).
    standby_retry: Option<Instant>,
    /// The bundled runner's interpreter: as configured, and the real executable behind it.
    python: Option<(String, String)>,
    /// A re-exec decided by this step, performed once the step is over.
    pending_exec: Option<(ReloadKind, String)>,
    /// When the pending re-exec was asked for (its check included in the reload's duration).
    reload_asked: Option<(Instant, u64)>,
    /// FIFO commands read but not run when a re-exec was decided; the next image runs them.
    fifo_leftover: Vec<u8>,
}

/// When a worker's `(rss, vsz)` was read, and the values.
type MemorySample = (Instant, (u64, u64));

const MEMORY_TTL: Duration = Duration::from_millis(500);

/// Start (or, after a re-exec, continue) the master and run it until it exits.
pub fn run(
    argv: Vec<String>,
    config: Config,
    handoff: Option<Handoff>,
    warnings: Vec<String>,
) -> i32 {
    if handoff.is_none() {
        if let Some(log) = config.daemonize.clone() {
            crate::daemonize::daemonize(&log);
        }
    }
    let more = crate::options::startup_warnings(&config);
    let master = match handoff {
        Some(h) => Master::resume(argv, config, h),
        None => Master::start(argv, config),
    };
    for w in warnings.into_iter().chain(more) {
        log!("warning: {w}");
    }
    if let Ok(m) = &master {
        m.retitle();
    }
    match master {
        Ok(mut m) => m.run_loop(),
        Err(e) => {
            eprintln!("uwsgid: error: {e}");
            crate::daemonize::report_to_launcher(&format!("error: {e}"));
            1
        }
    }
}

fn lock_pidfile(path: &std::path::Path) -> Result<OwnedFd, String> {
    let lock = common::pidfile::lock_path(path);
    let file = common::pidfile::open_lock(path)?;
    let fd: OwnedFd = file.into();
    match sys::try_lock(fd.as_raw_fd()) {
        Ok(true) => Ok(fd),
        Ok(false) => {
            let holder = common::pidfile::read(path)
                .map(|c| format!(" (pid {})", c.pid))
                .unwrap_or_default();
            Err(format!(
                "another uwsgid{holder} is running with pidfile {}; stop it first (uwsgictl stop --pidfile {}) or choose another pidfile",
                path.display(),
                path.display()
            ))
        }
        Err(e) => Err(format!("pidfile lock {}: {e}", lock.display())),
    }
}

fn create_notify() -> Result<(OwnedFd, String), String> {
    let addr = format!("@uwsgid-notify-{}-{}", std::process::id(), now_unix_ms());
    let fd = crate::exec::bind_notify_socket(&addr).map_err(|e| format!("notify socket: {e}"))?;
    Ok((fd, addr))
}

impl Master {
    fn base(
        argv: Vec<String>,
        config: Config,
        board: Scoreboard,
        notify: (OwnedFd, String),
    ) -> Result<Master, String> {
        let signals =
            sys::signalfd(&sys::managed_signals()).map_err(|e| format!("signalfd: {e}"))?;
        // Workers forked by a preload zygote's child are re-parented to us, so we can reap
        // them. Set again after each re-exec (it survives execve, but costs nothing).
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        }
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find our own binary: {e}"))?;
        // After a rebuild /proc/self/exe reads "PATH (deleted)": re-exec the path, which now
        // holds the new binary.
        let exe = PathBuf::from(
            exe.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        );
        Ok(Master {
            config,
            argv,
            exe,
            signals,
            listeners: Vec::new(),
            board,
            cells: Allocator::new(),
            notify: notify.0,
            notify_addr: notify.1,
            locks: Vec::new(),
            pidfiles_written: Vec::new(),
            workers: Vec::new(),
            zygotes: Vec::new(),
            slots: Vec::new(),
            generation: 1,
            phase: Phase::Running,
            paused: false,
            reload: None,
            last_reload: None,
            last_error: None,
            fifo: None,
            stats: None,
            touch: None,
            started_unix: now_unix_ms() / 1000,
            requests: Requests::default(),
            exit_code: None,
            runner: false,
            config_refused: None,
            memory: Default::default(),
            python: None,
            standby_retry: None,
            relay: None,
            pending_exec: None,
            reload_asked: None,
            fifo_leftover: Vec::new(),
        })
    }

    /// First start: lock, bind, create the channels, spawn the first generation, write the
    /// pidfile. Any error here stops startup; nothing is left behind.
    fn start(argv: Vec<String>, config: Config) -> Result<Master, String> {
        if let Some(dir) = &config.instance_dir {
            common::discovery::InstancePaths::in_dir(dir.clone())
                .create()
                .map_err(|e| e.to_string())?;
        }
        if let Some(log) = &config.logto {
            crate::log::redirect_to(log).map_err(|e| format!("--logto: {e}"))?;
        }
        crate::fifo::check_paths(&config.fifos)?;
        let mut locks = Vec::new();
        for p in &config.pidfiles {
            locks.push((p.clone(), lock_pidfile(p)?));
        }
        let mut listeners = listener::take_systemd();
        for spec in &config.listeners {
            listeners.push(listener::bind(spec, config.backlog)?);
        }
        let board = Scoreboard::create().map_err(|e| format!("scoreboard: {e}"))?;
        let notify = create_notify()?;
        let mut m = Master::base(argv, config, board, notify)?;
        m.locks = locks;
        m.listeners = listeners;
        m.open_channels(None)?;
        m.prepare_runner(None)?;
        m.resize_slots();
        for slot in &mut m.slots {
            slot.target = 1;
        }
        let names: Vec<String> = m.listeners.iter().map(|l| l.name.clone()).collect();
        log!(
            "uwsgid {} master pid {} listening on {} with {} {} worker(s), mercy {}s",
            common::VERSION,
            std::process::id(),
            names.join(", "),
            m.config.processes,
            m.kind_name(),
            m.config.mercy.as_secs_f64()
        );
        if let Some(why) = &m.config.processes_from {
            log!("worker count: {why}");
        }
        m.spawn_missing(Instant::now());
        m.write_pidfiles(false);
        m.announce_files();
        crate::daemonize::report_to_launcher(&format!("ok {}", std::process::id()));
        Ok(m)
    }

    fn announce_files(&self) {
        if let Some(dir) = &self.config.instance_dir {
            log!(
                "instance {:?}: pidfile, master FIFO and stats socket in {}",
                self.config.name.as_deref().unwrap_or("default"),
                dir.display()
            );
        }
    }

    /// Continue after a re-exec from the state the previous image handed over.
    fn resume(argv: Vec<String>, config: Config, h: Handoff) -> Result<Master, String> {
        let board = Scoreboard::inherit(h.scoreboard_fd).map_err(|e| format!("scoreboard: {e}"))?;
        sys::set_cloexec(h.notify_fd, true).map_err(|e| format!("notify socket: {e}"))?;
        // SAFETY: the handoff names this fd as our notify socket; taken once.
        let notify = unsafe { OwnedFd::from_raw_fd(h.notify_fd) };
        let mut m = Master::base(argv, config, board, (notify, h.notify_addr.clone()))?;
        if h.exe.exists() {
            m.exe = h.exe.clone();
        }
        m.started_unix = h.started_unix;
        m.paused = h.paused;
        m.last_error = h.last_error.clone();
        m.last_reload = h.last_reload.clone();
        m.config_refused = h.config_refused.clone();
        m.pidfiles_written = h.pidfiles_written.clone();

        for (path, fd) in &h.lock_fds {
            let _ = sys::set_cloexec(*fd, true);
            // SAFETY: the handoff names this fd as a pidfile lock we hold; taken once.
            let fd = unsafe { OwnedFd::from_raw_fd(*fd) };
            if m.config.pidfiles.contains(path) {
                m.locks.push((path.clone(), fd));
            }
        }
        for p in m.config.pidfiles.clone() {
            if !m.locks.iter().any(|(q, _)| *q == p) {
                match lock_pidfile(&p) {
                    Ok(fd) => m.locks.push((p, fd)),
                    Err(e) => m.note_error(format!("reload: {e}")),
                }
            }
        }

        // Listeners: adopt the inherited ones still configured, bind the new ones, close the rest.
        let mut inherited: Vec<HandoffListener> = h.listeners.clone();
        for spec in m.config.listeners.clone() {
            if let Some(pos) = inherited
                .iter()
                .position(|l| l.configured == spec.configured)
            {
                let l = inherited.remove(pos);
                match listener::inherit(l.fd, &l.configured, l.created_path.clone()) {
                    Ok(l) => m.listeners.push(l),
                    Err(e) => {
                        m.note_error(format!("reload: inherited listener {}: {e}", l.configured))
                    }
                }
            } else {
                match listener::bind(&spec, m.config.backlog) {
                    Ok(l) => {
                        log!("reload: new listener {}", l.name);
                        m.listeners.push(l);
                    }
                    Err(e) => m.note_error(format!("reload: {e}")),
                }
            }
        }
        for l in inherited {
            if l.configured.starts_with("systemd:") {
                if let Ok(l) = listener::inherit(l.fd, &l.configured, None) {
                    m.listeners.push(l);
                }
                continue;
            }
            log!(
                "reload: closing listener {} (no longer configured)",
                l.configured
            );
            // SAFETY: an inherited fd nobody else in this image owns.
            drop(unsafe { OwnedFd::from_raw_fd(l.fd) });
            if let Some(p) = l.created_path {
                let _ = std::fs::remove_file(p);
            }
        }
        if m.listeners.is_empty() {
            return Err("reload left no listener".into());
        }

        // Workers are still our children: adopt them.
        for w in &h.workers {
            m.cells.take(w.cell);
            let now = Instant::now();
            // A re-exec renews neither a draining worker's mercy nor a starting one's timeout:
            // re-execs faster than the mercy would otherwise keep a stuck worker forever.
            let since_ms = |t: u64| Duration::from_millis(now_unix_ms().saturating_sub(t));
            let spawned = now.checked_sub(since_ms(w.spawned_unix_ms)).unwrap_or(now);
            let left = w.deadline_unix_ms.map_or(m.config.mercy, |t| {
                Duration::from_millis(t.saturating_sub(now_unix_ms())).min(m.config.mercy)
            });
            let state = if w.killed {
                WorkerState::Killed
            } else if w.retiring {
                WorkerState::Draining {
                    since: now,
                    deadline: now + left,
                }
            } else if w.ready {
                WorkerState::Ready
            } else {
                WorkerState::Starting
            };
            m.workers.push(Worker {
                pid: w.pid,
                id: w.id,
                generation: w.generation,
                cell: w.cell,
                state,
                spawned,
                spawned_unix_ms: w.spawned_unix_ms,
                ready_at: w.ready.then_some(now),
                status_text: w.status_text.clone(),
            });
        }
        for z in &h.zygotes {
            let _ = sys::set_cloexec(z.control_fd, true);
            let now = Instant::now();
            m.zygotes.push(Zygote {
                pid: z.pid,
                generation: z.generation,
                // SAFETY: the handoff names this fd as the control socket of this zygote.
                control: unsafe { OwnedFd::from_raw_fd(z.control_fd) },
                ready: z.ready,
                standby: z.standby,
                interpreter: z.interpreter,
                spawned: now
                    .checked_sub(Duration::from_millis(
                        now_unix_ms().saturating_sub(z.spawned_unix_ms),
                    ))
                    .unwrap_or(now),
                stopping: z.stopping.then_some(now + m.config.mercy),
                killed: false,
            });
        }
        m.slots = h
            .slots
            .iter()
            .map(|s| Slot {
                respawn_count: s.respawn_count,
                requests: s.requests,
                tx: s.tx,
                running_time_us: s.running_time_us,
                last_spawn: s.last_spawn,
                ..Slot::default()
            })
            .collect();
        m.resize_slots();

        if let Some((read, write)) = h.relay {
            let _ = sys::set_cloexec(read, true);
            let _ = sys::set_cloexec(write, true);
            // SAFETY: the handoff names these fds as the relay's ends, owned by nobody else.
            m.relay = Some(unsafe { crate::log::Relay::inherit(read, write) });
        }
        m.open_channels(Some(&h))?;
        m.prepare_runner(Some(&h))?;

        m.generation = h.generation + 1;
        let kind = ReloadKind::from_name(&h.kind);
        for slot in &mut m.slots {
            slot.target = m.generation;
        }
        let started = Instant::now()
            .checked_sub(Duration::from_millis(
                now_unix_ms().saturating_sub(h.reload_started_unix_ms),
            ))
            .unwrap_or_else(Instant::now);
        m.reload = Some(Reload {
            kind,
            generation: m.generation,
            started,
            started_unix_ms: h.reload_started_unix_ms,
            chain_cursor: None,
        });
        m.board.header().paused.store(u32::from(m.paused), Relaxed);
        log!(
            "re-executed in place (pid {}): generation {} starting, {} worker(s) of older generations adopted",
            std::process::id(),
            m.generation,
            m.workers.len()
        );
        // A zygote the old image started for this generation runs the old worker options and
        // holds the old listeners.
        if h.config.worker != m.config.worker || h.config.listeners != m.config.listeners {
            for i in 0..m.zygotes.len() {
                if m.zygotes[i].generation == m.generation {
                    m.stop_zygote(i, Instant::now());
                }
            }
        }
        // Pidfiles stay valid (same pid); write only ones that are new in this configuration.
        m.write_pidfiles(true);
        m.spawn_missing(Instant::now());
        if !h.fifo_pending.is_empty() {
            log!(
                "running {} FIFO command(s) written before the re-exec",
                h.fifo_pending.len()
            );
            m.run_fifo_bytes(&h.fifo_pending);
        }
        Ok(m)
    }

    /// Run command bytes kept over from before a re-exec (or a failed one).
    fn run_fifo_bytes(&mut self, bytes: &[u8]) {
        let commands: Vec<FifoCommand> = bytes
            .iter()
            .filter_map(|&b| FifoCommand::from_byte(b))
            .collect();
        self.run_fifo_commands(&commands);
    }

    fn kind_name(&self) -> &'static str {
        match self.config.worker {
            WorkerKind::Builtin => "built-in",
            WorkerKind::Exec { .. } => "exec",
        }
    }

    /// The bundled Python WSGI runner: handed to the interpreter without a file
    /// ([`crate::runner`]), so only the interpreter is resolved here.
    fn prepare_runner(&mut self, handoff: Option<&Handoff>) -> Result<(), String> {
        let WorkerKind::Exec { argv, .. } = &self.config.worker else {
            return Ok(());
        };
        if !crate::runner::wanted(argv) {
            return Ok(());
        }
        self.runner = true;
        // Resolve the interpreter once: a wrapper script (a pyenv or asdf shim) would otherwise
        // cost every worker of every generation its own run (100 ms here).
        let python = argv[0].clone();
        let resolved = handoff
            .and_then(|h| h.python.clone())
            .filter(|(name, _)| *name == python)
            .map(|(_, path)| path)
            .unwrap_or_else(|| resolve_interpreter(&python));
        if resolved != python {
            log!("Python interpreter {python} is {resolved}");
        }
        self.python = Some((python, resolved));
        Ok(())
    }

    /// Open the FIFO, stats server and touch watches, adopting the ones a previous image
    /// handed over when their configuration did not change.
    fn open_channels(&mut self, handoff: Option<&Handoff>) -> Result<(), String> {
        let fifo_in = handoff.and_then(|h| h.fifo.clone());
        let stats_in = handoff.and_then(|h| {
            h.stats_fd
                .map(|fd| (fd, h.config.stats.clone(), h.stats_created.clone()))
        });
        // FIFO: keep the inherited one if the paths did not change.
        if let Some(f) = fifo_in {
            if f.paths == self.config.fifos {
                match Fifo::inherit(f.paths, f.active, f.read_fd, f.keep_fd, f.created) {
                    Ok(fifo) => self.fifo = Some(fifo),
                    Err(e) => self.note_error(format!("reload: inherited FIFO: {e}")),
                }
            } else {
                // SAFETY: inherited fds nobody else owns.
                unsafe {
                    drop(OwnedFd::from_raw_fd(f.read_fd));
                    drop(OwnedFd::from_raw_fd(f.keep_fd));
                }
            }
        }
        if self.fifo.is_none() && !self.config.fifos.is_empty() {
            self.fifo = Some(Fifo::open(self.config.fifos.clone(), 0)?);
        }
        if let Some((fd, addr, created)) = stats_in {
            if addr.as_ref() == self.config.stats.as_ref() {
                if let Some(addr) = addr {
                    match StatsServer::inherit(addr, self.config.stats_http, fd, created) {
                        Ok(s) => self.stats = Some(s),
                        Err(e) => self.note_error(format!("reload: inherited stats socket: {e}")),
                    }
                }
            } else {
                // SAFETY: an inherited fd nobody else owns.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
                if let Some(p) = created {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        if self.stats.is_none() {
            if let Some(addr) = &self.config.stats {
                self.stats = Some(StatsServer::bind(addr, self.config.stats_http, 128)?);
            }
        }
        let mut touch = Vec::new();
        touch.extend(
            self.config
                .touch_reload
                .iter()
                .map(|p| (p.clone(), TouchAction::Reload)),
        );
        touch.extend(
            self.config
                .touch_workers_reload
                .iter()
                .map(|p| (p.clone(), TouchAction::WorkersReload)),
        );
        touch.extend(
            self.config
                .touch_chain_reload
                .iter()
                .map(|p| (p.clone(), TouchAction::ChainReload)),
        );
        self.touch = Touch::new(touch).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn note_error(&mut self, e: String) {
        log!("error: {e}");
        self.last_error = Some(e);
    }

    fn resize_slots(&mut self) {
        let n = self.config.processes as usize;
        while self.slots.len() < n {
            self.slots.push(Slot {
                target: self.generation,
                ..Slot::default()
            });
        }
        self.slots.truncate(n);
    }

    // ---------------------------------------------------------------------------------------
    // The loop
    // ---------------------------------------------------------------------------------------

    fn run_loop(&mut self) -> i32 {
        loop {
            let now = Instant::now();
            self.step(now);
            if let Some(code) = self.exit_code {
                if let Some(r) = &self.relay {
                    r.pump(); // the workers' last words
                }
                self.cleanup();
                log!("goodbye (exit {code})");
                return code;
            }
            // Re-execute only once everything already read has been acted on; signals not
            // yet read stay pending across execve, FIFO bytes not yet run go in the handoff.
            if let Some((kind, cause)) = self.pending_exec.take() {
                self.exec_self(kind, &cause);
                continue;
            }
            self.wait_for_events();
        }
    }

    fn wait_for_events(&mut self) {
        const SIGNALS: usize = 0;
        const NOTIFY: usize = 1;
        let mut fds = Vec::new();
        watch(&mut fds, self.signals.as_raw_fd(), libc::POLLIN);
        watch(&mut fds, self.notify.as_raw_fd(), libc::POLLIN);
        let fifo_at = self
            .fifo
            .as_ref()
            .map(|f| watch(&mut fds, f.raw(), libc::POLLIN));
        // A full stats server leaves its listener unpolled: clients wait in the backlog.
        let stats_at = self.stats.as_ref().map(|s| {
            let events = if s.wants_accept(Instant::now()) {
                libc::POLLIN
            } else {
                0
            };
            watch(&mut fds, s.raw(), events)
        });
        let touch_at = self
            .touch
            .as_ref()
            .map(|t| watch(&mut fds, t.raw(), libc::POLLIN));
        let relay_at = self
            .relay
            .as_ref()
            .map(|r| watch(&mut fds, r.read_fd(), libc::POLLIN));
        let checker_at = match &self.phase {
            Phase::Checking { output, .. } => {
                Some(watch(&mut fds, output.as_raw_fd(), libc::POLLIN))
            }
            _ => None,
        };
        let clients_from = fds.len();
        if let Some(s) = &self.stats {
            fds.extend(s.poll_fds());
        }
        let timeout = self.next_deadline().map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .min(3_600_000) as i32
                + 1
        });
        if let Err(e) = sys::poll(&mut fds, timeout) {
            log!("poll failed: {e}");
            return;
        }
        if fds[SIGNALS].revents != 0 {
            self.read_signals();
        }
        if fds[NOTIFY].revents != 0 {
            self.read_notify();
        }
        if fifo_at.is_some_and(|i| fds[i].revents != 0) {
            self.read_fifo();
        }
        if let Some(i) = stats_at {
            if fds[i].revents != 0 {
                self.serve_stats();
            }
        }
        if touch_at.is_some_and(|i| fds[i].revents != 0) {
            self.check_touch();
        }
        if relay_at.is_some_and(|i| fds[i].revents != 0) {
            if let Some(r) = &self.relay {
                r.pump();
            }
        }
        let _ = checker_at;
        if let Some(s) = &mut self.stats {
            s.service(&fds[clients_from..]);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for w in &self.workers {
            match w.state {
                WorkerState::Draining { deadline, .. } => consider(deadline),
                WorkerState::Starting => consider(
                    w.spawned
                        + self
                            .ready_grace()
                            .unwrap_or(self.config.start_timeout)
                            .min(self.config.start_timeout),
                ),
                _ => {}
            }
        }
        for s in &self.slots {
            if let Some(t) = s.next_spawn {
                consider(t);
            }
            if let Some(t) = s.pending.and_then(|p| p.asked) {
                consider(t + self.config.start_timeout);
            }
        }
        for z in &self.zygotes {
            match z.stopping {
                Some(t) if !z.killed => consider(t),
                None if !z.ready && !z.standby => consider(z.spawned + self.config.start_timeout),
                _ => {}
            }
        }
        if let Some(t) = self.standby_retry {
            consider(t);
        }
        match &self.phase {
            Phase::Checking { deadline, .. } | Phase::Stopping { deadline, .. } => {
                consider(*deadline)
            }
            Phase::Running => {}
        }
        if let Some(t) = self.stats.as_ref().and_then(|s| s.next_deadline()) {
            consider(t);
        }
        next
    }

    fn ready_grace(&self) -> Option<Duration> {
        match &self.config.worker {
            WorkerKind::Exec {
                ready_timeout: Some(s),
                ..
            } => Some(Duration::from_secs_f64(*s)),
            _ => None,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sources: record only
    // ---------------------------------------------------------------------------------------

    fn read_signals(&mut self) {
        loop {
            let (sig, sender) = match sys::read_signal(self.signals.as_raw_fd()) {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) => {
                    log!("signalfd read failed: {e}");
                    break;
                }
            };
            let name = sys::signal_name(sig);
            let cause = if sender > 0 {
                format!("{name} from pid {sender}")
            } else {
                name.to_string()
            };
            if sig != libc::SIGCHLD && sig != libc::SIGWINCH {
                log!("{cause} received");
            }
            let r = &mut self.requests;
            match sig {
                libc::SIGCHLD => {}
                libc::SIGHUP => r.reload = Some((ReloadKind::Graceful, cause)),
                libc::SIGTERM if self.config.die_on_term => r.graceful_stop = Some(cause),
                libc::SIGTERM => r.reload = Some((ReloadKind::Brutal, cause)),
                libc::SIGINT | libc::SIGQUIT => r.brutal_stop = Some(cause),
                libc::SIGUSR1 => r.stats_log = true,
                libc::SIGUSR2 => r.status_log = true,
                libc::SIGURG => r.rollback = true,
                libc::SIGTSTP => r.toggle_pause = true,
                libc::SIGWINCH => r.wake_workers = true,
                _ => log!("{cause}: ignored"),
            }
        }
        self.reap();
    }

    fn read_notify(&mut self) {
        loop {
            match crate::exec::recv_notify(&self.notify) {
                Ok(Some(msg)) => self.on_notify(msg),
                Ok(None) => break,
                Err(e) => {
                    log!("notify socket: {e}");
                    break;
                }
            }
        }
    }

    fn on_notify(&mut self, msg: crate::exec::NotifyMessage) {
        // A paused instance freezes exec workers that become ready (spawned by a reload, `+`
        // or a respawn while paused), so none of them accepts before the resume.
        let freeze = self.paused && matches!(self.config.worker, WorkerKind::Exec { .. });
        let mercy = self.config.mercy;
        if let Some(z) = self.zygotes.iter_mut().find(|z| z.pid == msg.pid) {
            if msg.ready && !z.ready && z.stopping.is_none() {
                z.ready = true;
                let (pid, g) = (z.pid, z.generation);
                log!(
                    "zygote of generation {g} (pid {pid}) loaded the application in {:.1} ms",
                    z.spawned.elapsed().as_secs_f64() * 1e3
                );
                self.ask_pending_forks(g, Instant::now());
            }
            return;
        }
        if let (Some(id), Some(g)) = (msg.slot, msg.generation) {
            if !self.workers.iter().any(|w| w.pid == msg.pid) {
                self.adopt(msg, id, g);
                return;
            }
        }
        let Some(w) = self.workers.iter_mut().find(|w| w.pid == msg.pid) else {
            log!(
                "notify from pid {} which is not one of our workers: ignored",
                msg.pid
            );
            return;
        };
        if let Some(s) = msg.status {
            w.status_text = Some(s);
        }
        if msg.ready && w.state == WorkerState::Starting {
            w.state = WorkerState::Ready;
            w.ready_at = Some(Instant::now());
            let (id, pid, g, elapsed) = (w.id, w.pid, w.generation, w.spawned.elapsed());
            log!(
                "worker {id} (pid {pid}, generation {g}) ready in {:.1} ms",
                elapsed.as_secs_f64() * 1e3
            );
            if freeze {
                sys::kill(pid, libc::SIGSTOP);
            }
        }
        // STOPPING=1 unasked (the program recycles itself) from a worker that has been ready
        // long enough not to be a crash loop: it drains within the mercy and its slot gets a
        // replacement now. Sooner, or while starting, its exit still counts as a failed start.
        let stable = w.ready_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
        if msg.stopping && w.state == WorkerState::Ready && stable {
            let now = Instant::now();
            w.state = WorkerState::Draining {
                since: now,
                deadline: now + mercy,
            };
            log!(
                "worker {} (pid {}) says it is stopping: draining, a replacement starts now",
                w.id,
                w.pid
            );
        } else if msg.stopping {
            log!("worker {} (pid {}) says it is stopping", w.id, w.pid);
        }
    }

    fn read_fifo(&mut self) {
        let Some(fifo) = &mut self.fifo else { return };
        let Some(batch) = fifo.read_batch() else {
            return;
        };
        let commands = match batch {
            Batch::Commands(c) => c,
            Batch::Refused {
                commands,
                uwsgi_only,
            } => {
                for b in uwsgi_only {
                    let what = common::fifo::UWSGI_ONLY
                        .iter()
                        .find(|(x, _)| *x == b)
                        .map_or("", |(_, w)| w);
                    log!(
                        "FIFO: {:?} ({what}) is a uWSGI command uwsgid does not have: refused",
                        b as char
                    );
                }
                commands
            }
            Batch::Garbage {
                len,
                first_bad,
                offset,
            } => {
                log!("FIFO: refused a write of {len} byte(s): byte 0x{first_bad:02x} at offset {offset} is not a command; nothing executed");
                return;
            }
        };
        self.run_fifo_commands(&commands);
    }

    /// Run FIFO commands in order; once one of them calls for a re-exec, keep the rest for the
    /// next image (it runs them first), so a write like `rw` loses nothing.
    fn run_fifo_commands(&mut self, commands: &[FifoCommand]) {
        for (i, &c) in commands.iter().enumerate() {
            self.on_fifo_command(c);
            if self.pending_exec.is_some() {
                self.fifo_leftover
                    .extend(commands[i + 1..].iter().map(|c| c.as_byte()));
                break;
            }
        }
    }

    fn on_fifo_command(&mut self, c: FifoCommand) {
        let cause = format!("FIFO '{}'", c.as_byte() as char);
        log!("{cause}: {}", c.name());
        let r = &mut self.requests;
        match c {
            FifoCommand::Reload => r.reload = Some((ReloadKind::Graceful, cause)),
            FifoCommand::BrutalReload => r.reload = Some((ReloadKind::Brutal, cause)),
            FifoCommand::WorkersReload => r.reload = Some((ReloadKind::Workers, cause)),
            FifoCommand::BrutalWorkersReload => r.reload = Some((ReloadKind::BrutalWorkers, cause)),
            FifoCommand::ChainReload => r.reload = Some((ReloadKind::Chain, cause)),
            FifoCommand::Stop => r.graceful_stop = Some(cause),
            FifoCommand::BrutalStop => r.brutal_stop = Some(cause),
            FifoCommand::TogglePause => r.toggle_pause = !r.toggle_pause,
            FifoCommand::Pause => {
                r.toggle_pause = false;
                r.pause = Some(true)
            }
            FifoCommand::Resume => {
                r.toggle_pause = false;
                r.pause = Some(false)
            }
            FifoCommand::Rollback => r.rollback = true,
            FifoCommand::Stats => r.stats_log = true,
            FifoCommand::ReopenLog => r.reopen_log = true,
            FifoCommand::RotateLog => r.rotate_log = true,
            FifoCommand::WritePidfile => r.write_pidfiles = true,
            FifoCommand::AddWorker => r.worker_delta += 1,
            FifoCommand::RemoveWorker => r.worker_delta -= 1,
            FifoCommand::Slot(n) => r.fifo_slot = Some(n),
        }
        // Each command is decided before the next byte is looked at, so a batch runs in order
        // ("hp" pauses then resumes, "ww" is two reloads), as if written one at a time.
        self.step(Instant::now());
    }

    fn check_touch(&mut self) {
        let Some(t) = &mut self.touch else { return };
        for (path, action) in t.check() {
            let cause = format!("touch file {}", path.display());
            log!("{cause} was touched");
            let kind = match action {
                TouchAction::Reload => ReloadKind::Graceful,
                TouchAction::WorkersReload => ReloadKind::Workers,
                TouchAction::ChainReload => ReloadKind::Chain,
            };
            self.requests.reload = Some((kind, cause));
        }
    }

    fn serve_stats(&mut self) {
        let mut stats = self.stats.take();
        if let Some(s) = &mut stats {
            s.accept(|| self.stats_document());
        }
        self.stats = stats;
    }

    /// Reap every exited child and update the table.
    fn reap(&mut self) {
        let mut heard = false;
        while let Some((pid, status)) = sys::reap_one() {
            // What a child said before it exited (STOPPING=1, say) is in the notify socket
            // already: hear it first, while the child is still in the table.
            if !std::mem::replace(&mut heard, true) {
                self.read_notify();
            }
            if let Phase::Checking { checker, .. } = self.phase {
                if pid == checker {
                    self.on_checker_exit(status);
                    continue;
                }
            }
            if let Some(pos) = self.zygotes.iter().position(|z| z.pid == pid) {
                let z = self.zygotes.remove(pos);
                self.on_zygote_exit(z, status);
                continue;
            }
            let Some(pos) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let w = self.workers.remove(pos);
            self.on_worker_exit(w, status);
        }
    }

    fn on_worker_exit(&mut self, w: Worker, status: i32) {
        self.memory.get_mut().remove(&w.pid);
        let now = Instant::now();
        let how = sys::describe_status(status);
        let cell = self.board.cell(w.cell);
        if let Some(slot) = self.slots.get_mut(w.id as usize - 1) {
            slot.requests += cell.requests.load(Relaxed);
            slot.tx += cell.tx.load(Relaxed);
            slot.running_time_us += cell.running_time_us.load(Relaxed);
        }
        cell.pid.store(0, Relaxed);
        cell.state.store(scoreboard::FREE, Relaxed);
        self.cells.free(w.cell);
        let lived = now.duration_since(w.spawned);
        match w.state {
            WorkerState::Draining { since, .. } => {
                log!(
                    "worker {} (pid {}, generation {}) retired after {:.1} ms: {how}",
                    w.id,
                    w.pid,
                    w.generation,
                    now.duration_since(since).as_secs_f64() * 1e3
                );
            }
            WorkerState::Killed => log!("worker {} (pid {}) killed: {how}", w.id, w.pid),
            WorkerState::Starting | WorkerState::Ready => {
                if matches!(self.phase, Phase::Stopping { .. }) {
                    return;
                }
                let Some(slot) = self.slots.get_mut(w.id as usize - 1) else {
                    return;
                };
                slot.last_exit = Some(how.clone());
                let stable = w
                    .ready_at
                    .is_some_and(|t| now.duration_since(t) >= STABLE_AFTER);
                if stable {
                    slot.failed_starts = 0;
                    slot.next_spawn = None;
                    log!(
                        "worker {} (pid {}) died after {:.1}s: {how}; respawning",
                        w.id,
                        w.pid,
                        lived.as_secs_f64()
                    );
                } else {
                    slot.failed_starts += 1;
                    let exp = (slot.failed_starts - 1).min(16);
                    let delay = (BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_MAX);
                    slot.next_spawn = Some(now + delay);
                    let phase = if w.ready_at.is_some() {
                        "soon after start"
                    } else {
                        "before it was ready"
                    };
                    log!(
                        "worker {} (pid {}) died {phase}: {how}; failed start {} in a row, next try in {:.1}s",
                        w.id,
                        w.pid,
                        slot.failed_starts,
                        delay.as_secs_f64()
                    );
                    let failed = slot.failed_starts;
                    self.on_failed_start(w.id, w.generation, failed, &how);
                }
            }
        }
    }

    /// A worker of `generation` in slot `id` failed to start: stop a chain, fail a reload.
    fn on_failed_start(&mut self, id: u32, generation: u64, failed: u32, how: &str) {
        let Some(reload) = &self.reload else { return };
        if reload.generation != generation {
            return;
        }
        if reload.kind == ReloadKind::Chain {
            // The chain stops here; this slot and the ones after it keep their old workers.
            let old = self
                .workers
                .iter()
                .filter(|w| w.id == id && w.generation < generation)
                .map(|w| w.generation)
                .max();
            if let Some(slot) = self.slots.get_mut(id as usize - 1) {
                if let Some(g) = old {
                    slot.target = g;
                    slot.next_spawn = None;
                    slot.failed_starts = 0;
                }
            }
            let reason = format!("chain stopped at worker {id}: its replacement {how} before it was ready; the remaining old workers keep serving");
            self.finish_reload(false, reason);
        } else if failed >= RELOAD_FAIL_AFTER {
            let reason = format!(
                "new worker {id} of generation {generation} failed to start {failed} times (last: {how}); old workers keep serving while it is retried"
            );
            self.finish_reload(false, reason);
        }
    }

    fn on_checker_exit(&mut self, status: i32) {
        let Phase::Checking {
            kind,
            cause,
            output,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Running)
        else {
            return;
        };
        let mut text = vec![0u8; 8192];
        // SAFETY: reading the checker's output (non-blocking pipe) into our buffer.
        let n = unsafe {
            libc::read(
                output.as_raw_fd(),
                text.as_mut_ptr() as *mut libc::c_void,
                text.len(),
            )
        };
        text.truncate(n.max(0) as usize);
        let text = String::from_utf8_lossy(&text).trim().replace('\n', " ");
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            self.pending_exec = Some((kind, cause));
        } else {
            let why = if text.is_empty() {
                sys::describe_status(status)
            } else {
                text
            };
            self.refuse_reload(kind, &cause, why);
        }
    }

    /// A reload that cannot go ahead: log it, keep serving, show it in stats.
    fn refuse_reload(&mut self, kind: ReloadKind, cause: &str, why: String) {
        let reason = format!(
            "{} reload ({cause}) refused, the instance keeps serving: {why}",
            kind.name()
        );
        self.note_error(reason.clone());
        self.record_outcome(
            kind,
            self.generation,
            false,
            reason,
            Instant::now(),
            now_unix_ms(),
        );
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

    // ---------------------------------------------------------------------------------------
    // The step: decide and act
    // ---------------------------------------------------------------------------------------

    pub fn step(&mut self, now: Instant) {
        self.reap();
        let r = std::mem::take(&mut self.requests);
        if let Some(cause) = r.brutal_stop {
            self.begin_stop(true, &cause, now);
        } else if let Some(cause) = r.graceful_stop {
            self.begin_stop(false, &cause, now);
        }
        let stopping = matches!(self.phase, Phase::Stopping { .. });
        if let Some(n) = r.fifo_slot {
            if let Some(f) = &mut self.fifo {
                match f.switch(n as usize) {
                    Ok(()) => log!(
                        "active master FIFO is now slot {n}: {}",
                        f.active_path().display()
                    ),
                    Err(e) => log!("FIFO slot switch refused: {e}"),
                }
            }
        }
        if !stopping {
            if let Some((kind, cause)) = r.reload {
                self.begin_reload(kind, &cause, now);
            }
            if r.worker_delta != 0 {
                self.change_processes(r.worker_delta);
            }
            if r.toggle_pause {
                self.set_paused(!self.paused, "toggle");
            }
            if let Some(p) = r.pause {
                self.set_paused(p, if p { "pause" } else { "resume" });
            }
        }
        if r.rollback {
            log!("rollback requested: no snapshot is available (snapshots are not implemented yet); nothing changed");
        }
        if r.stats_log {
            self.log_stats();
        }
        if r.status_log {
            self.log_status();
        }
        if r.wake_workers {
            for w in &self.workers {
                sys::kill(w.pid, libc::SIGWINCH);
            }
        }
        if r.reopen_log || r.rotate_log {
            self.reopen_log(r.rotate_log);
        }
        if r.write_pidfiles {
            self.write_pidfiles(false);
        }

        self.enforce_deadlines(now);
        match self.phase {
            Phase::Stopping { brutal, .. } => {
                // Then every other child (adopted orphans of exec workers): nothing the
                // instance started outlives it, nor keeps its listeners open.
                let empty = self.workers.is_empty() && self.zygotes.is_empty();
                let strays = if brutal || empty {
                    self.kill_strays()
                } else {
                    0
                };
                if empty && strays == 0 {
                    self.exit_code = Some(0);
                }
            }
            _ => {
                self.spawn_missing(now);
                self.stop_unused_zygotes(now);
                self.retire_replaced(now);
                self.advance_chain(now);
                self.check_reload_complete(now);
                self.ensure_standby(now);
            }
        }
    }

    /// SIGKILL every live child of ours the table does not hold (a worker's children adopted
    /// once it died, since we are a child subreaper; a checker) and its process group, unless
    /// that is ours. Returns how many there were: once killed, each is reaped like any child,
    /// and whatever it leaves is adopted in turn and found by the next call.
    fn kill_strays(&self) -> usize {
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let ours = unsafe { libc::getpgrp() };
        let strays: Vec<(i32, i32)> = children_of(std::process::id() as i32)
            .into_iter()
            .filter(|&(pid, _)| {
                !self.workers.iter().any(|w| w.pid == pid)
                    && !self.zygotes.iter().any(|z| z.pid == pid)
            })
            .collect();
        for &(pid, group) in &strays {
            log!("stopping: killing pid {pid} (a child the instance adopted) and its group");
            if group > 1 && group != ours {
                // SAFETY: kill has no memory effects; the group is that of an unreaped child
                // of ours, so its id cannot have been reused.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            sys::kill(pid, libc::SIGKILL);
        }
        strays.len()
    }

    fn begin_stop(&mut self, brutal: bool, cause: &str, now: Instant) {
        if let Phase::Stopping { brutal: true, .. } = self.phase {
            return;
        }
        if let Phase::Stopping { brutal: false, .. } = self.phase {
            if !brutal {
                log!("{cause}: already stopping gracefully");
                return;
            }
        }
        if brutal {
            log!(
                "{cause}: brutal stop, killing {} worker(s)",
                self.workers.len()
            );
            for w in &mut self.workers {
                kill_group(w.pid);
                w.state = WorkerState::Killed;
            }
            for z in &mut self.zygotes {
                kill_group(z.pid);
                z.stopping.get_or_insert(now);
                z.killed = true;
            }
            self.phase = Phase::Stopping {
                brutal: true,
                deadline: now + Duration::from_secs(5),
            };
        } else {
            log!(
                "{cause}: graceful stop, {} worker(s) finish their requests within {}s",
                self.workers.len(),
                self.config.mercy.as_secs_f64()
            );
            self.board.header().paused.store(0, Relaxed);
            let ids: Vec<i32> = self.workers.iter().map(|w| w.pid).collect();
            for pid in ids {
                self.retire(pid, now);
            }
            for i in 0..self.zygotes.len() {
                self.stop_zygote(i, now);
            }
            self.phase = Phase::Stopping {
                brutal: false,
                deadline: now + self.config.mercy + Duration::from_secs(1),
            };
        }
        self.reload = None;
    }

    fn begin_reload(&mut self, kind: ReloadKind, cause: &str, now: Instant) {
        if let Phase::Checking { .. } = self.phase {
            log!("{cause}: a reload is already being prepared; ignored");
            return;
        }
        if kind.re_executes() {
            self.reload_asked = Some((now, now_unix_ms()));
            if self.exe_unchanged() {
                // The binary on disk is the one running now: it starts fine, so only the
                // options need checking, and that is cheap enough to do here.
                match crate::cli::Config::load(&self.argv) {
                    Ok(_) => self.pending_exec = Some((kind, cause.to_string())),
                    Err(e) => self.refuse_reload(kind, cause, e.replace('\n', " ")),
                }
            } else {
                self.start_checker(kind, cause, now);
            }
            return;
        }
        if let Some(r) = &self.reload {
            if r.kind == ReloadKind::Chain && kind == ReloadKind::Chain {
                log!("{cause}: a chain reload is already running; ignored");
                return;
            }
        }
        self.generation += 1;
        let g = self.generation;
        self.retitle();
        log!("{cause}: {} reload to generation {g}", kind.name());
        let chain = kind == ReloadKind::Chain;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !chain || i == 0 {
                slot.target = g;
                slot.failed_starts = 0;
                slot.next_spawn = None;
            }
        }
        if kind == ReloadKind::BrutalWorkers {
            for w in &mut self.workers {
                if w.generation < g && w.state != WorkerState::Killed {
                    kill_group(w.pid);
                    w.state = WorkerState::Killed;
                }
            }
        }
        self.reload = Some(Reload {
            kind,
            generation: g,
            started: now,
            started_unix_ms: now_unix_ms(),
            chain_cursor: chain.then_some(1),
        });
    }

    /// Run the binary on disk with `--check-config` before re-executing into it.
    fn start_checker(&mut self, kind: ReloadKind, cause: &str, now: Instant) {
        log!(
            "{cause}: {} reload: checking the new binary and configuration",
            kind.name()
        );
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            let e = format!("reload refused: pipe: {}", std::io::Error::last_os_error());
            self.note_error(e);
            return;
        }
        // SAFETY: both fds were just created by pipe2.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let path = CString::new(self.exe.as_os_str().as_bytes()).unwrap_or_default();
        let mut argv: Vec<CString> = self
            .argv
            .iter()
            .map(|a| CString::new(a.as_str()).unwrap_or_default())
            .collect();
        argv.push(CString::new("--check-config").expect("static"));
        let env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        match sys::fork() {
            Ok(sys::Fork::Child) => {
                // SAFETY: in the child: route stdout/stderr to the pipe, then exec.
                unsafe {
                    libc::dup2(write.as_raw_fd(), 1);
                    libc::dup2(write.as_raw_fd(), 2);
                }
                sys::reset_signals_for_exec();
                let e = sys::execve(&path, &argv, &env);
                let msg = format!("cannot execute {}: {e}\n", self.exe.display());
                // SAFETY: writing to our stderr (the pipe), then exiting without unwinding.
                unsafe {
                    libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
                    libc::_exit(127);
                }
            }
            Ok(sys::Fork::Parent(pid)) => {
                drop(write);
                self.phase = Phase::Checking {
                    kind,
                    cause: cause.to_string(),
                    checker: pid,
                    output: read,
                    deadline: now + CHECK_TIMEOUT,
                };
            }
            Err(e) => self.note_error(format!("reload refused: fork: {e}")),
        }
    }

    /// Re-execute the master in place. Returns only if `execve` failed.
    fn exec_self(&mut self, kind: ReloadKind, cause: &str) {
        let (started, started_ms) = self
            .reload_asked
            .take()
            .unwrap_or_else(|| (Instant::now(), now_unix_ms()));
        if kind == ReloadKind::Brutal {
            for w in &mut self.workers {
                if w.state != WorkerState::Killed {
                    kill_group(w.pid);
                    w.state = WorkerState::Killed;
                }
            }
        }
        // Preload: the next generation's zygote starts loading now, while we re-execute (the
        // new image adopts it, or stops it if the worker configuration changed): the standby
        // if it is still valid, else a fresh one. Only for the same binary: another one may
        // bring another runner.
        let next = self.generation + 1;
        let same_exe = self.exe_unchanged();
        if self.preload() && !self.activate_standby(next, same_exe) && same_exe {
            if let Err(e) = self.spawn_zygote(next, false, Instant::now()) {
                log!("cannot start the zygote of generation {next} before re-executing: {e}");
            }
        }
        let handoff = self.handoff(kind, started_ms);
        let mut keep: Vec<RawFd> = vec![handoff.scoreboard_fd, handoff.notify_fd];
        keep.extend(handoff.listeners.iter().map(|l| l.fd));
        keep.extend(handoff.lock_fds.iter().map(|(_, fd)| *fd));
        if let Some(f) = &handoff.fifo {
            keep.extend([f.read_fd, f.keep_fd]);
        }
        keep.extend(handoff.stats_fd);
        keep.extend(handoff.relay.iter().flat_map(|&(r, w)| [r, w]));
        keep.extend(handoff.zygotes.iter().map(|z| z.control_fd));
        // Large handoffs travel in a memfd (closed here if execve fails).
        let (json, memfd) = match handoff.encode() {
            Ok(v) => v,
            Err(e) => {
                let reason = format!(
                    "{} reload failed: {e}; the instance keeps serving",
                    kind.name()
                );
                self.note_error(reason.clone());
                self.record_outcome(kind, self.generation, false, reason, started, started_ms);
                let leftover = std::mem::take(&mut self.fifo_leftover);
                self.run_fifo_bytes(&leftover);
                return;
            }
        };
        keep.extend(memfd.as_ref().map(|fd| fd.as_raw_fd()));
        for &fd in &keep {
            let _ = sys::set_cloexec(fd, false);
        }
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != crate::handoff::ENV)
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        env.push(CString::new(format!("{}={json}", crate::handoff::ENV)).expect("json has no NUL"));
        let path = CString::new(self.exe.as_os_str().as_bytes()).unwrap_or_default();
        let argv: Vec<CString> = self
            .argv
            .iter()
            .map(|a| CString::new(a.as_str()).unwrap_or_default())
            .collect();
        log!(
            "{cause}: re-executing {} in place (generation {} -> {})",
            self.exe.display(),
            self.generation,
            self.generation + 1
        );
        if let Some(s) = &mut self.stats {
            s.finish_in_background();
        }
        let e = sys::execve(&path, &argv, &env);
        for &fd in &keep {
            let _ = sys::set_cloexec(fd, true);
        }
        let reason = format!(
            "{} reload failed: execve {}: {e}; the instance keeps serving",
            kind.name(),
            self.exe.display()
        );
        self.note_error(reason.clone());
        self.record_outcome(kind, self.generation, false, reason, started, started_ms);
        let leftover = std::mem::take(&mut self.fifo_leftover);
        self.run_fifo_bytes(&leftover);
    }

    fn handoff(&self, kind: ReloadKind, started_ms: u64) -> Handoff {
        Handoff {
            exe: self.exe.clone(),
            config: self.config.clone(),
            generation: self.generation,
            kind: kind.name().to_string(),
            reload_started_unix_ms: started_ms,
            started_unix: self.started_unix,
            paused: self.paused,
            last_error: self.last_error.clone(),
            listeners: self
                .listeners
                .iter()
                .map(|l| HandoffListener {
                    fd: l.raw(),
                    configured: l.configured.clone(),
                    created_path: l.created_path.clone(),
                })
                .collect(),
            scoreboard_fd: self.board.raw_fd(),
            notify_fd: self.notify.as_raw_fd(),
            notify_addr: self.notify_addr.clone(),
            lock_fds: self
                .locks
                .iter()
                .map(|(p, fd)| (p.clone(), fd.as_raw_fd()))
                .collect(),
            pidfiles_written: self.pidfiles_written.clone(),
            fifo: self.fifo.as_ref().map(|f| {
                let (read_fd, keep_fd) = f.fds();
                HandoffFifo {
                    read_fd,
                    keep_fd,
                    paths: f.paths.clone(),
                    active: f.active,
                    created: f.created.clone(),
                }
            }),
            stats_fd: self.stats.as_ref().map(|s| s.raw()),
            stats_created: self.stats.as_ref().and_then(|s| s.created_path.clone()),
            workers: self
                .workers
                .iter()
                .map(|w| HandoffWorker {
                    pid: w.pid,
                    id: w.id,
                    generation: w.generation,
                    cell: w.cell,
                    ready: w.state == WorkerState::Ready,
                    retiring: matches!(w.state, WorkerState::Draining { .. } | WorkerState::Killed),
                    spawned_unix_ms: w.spawned_unix_ms,
                    status_text: w.status_text.clone(),
                    deadline_unix_ms: match w.state {
                        WorkerState::Draining { deadline, .. } => Some(
                            now_unix_ms()
                                + deadline
                                    .saturating_duration_since(Instant::now())
                                    .as_millis() as u64,
                        ),
                        _ => None,
                    },
                    killed: w.state == WorkerState::Killed,
                })
                .collect(),
            slots: self
                .slots
                .iter()
                .map(|s| HandoffSlot {
                    respawn_count: s.respawn_count,
                    requests: s.requests,
                    tx: s.tx,
                    running_time_us: s.running_time_us,
                    last_spawn: s.last_spawn,
                })
                .collect(),
            last_reload: self.last_reload.clone(),
            zygotes: self
                .zygotes
                .iter()
                .map(|z| HandoffZygote {
                    pid: z.pid,
                    generation: z.generation,
                    control_fd: z.control.as_raw_fd(),
                    ready: z.ready,
                    standby: z.standby,
                    interpreter: z.interpreter,
                    stopping: z.stopping.is_some(),
                    spawned_unix_ms: now_unix_ms()
                        .saturating_sub(z.spawned.elapsed().as_millis() as u64),
                })
                .collect(),
            config_refused: None,
            fifo_pending: self.fifo_leftover.clone(),
            python: self.python.clone(),
            relay: self.relay.as_ref().map(|r| (r.read_fd(), r.write_fd())),
        }
    }

    fn change_processes(&mut self, delta: i32) {
        let n = (self.config.processes as i64 + delta as i64)
            .clamp(1, crate::cli::MAX_PROCESSES as i64) as u32;
        if n == self.config.processes {
            log!("worker count stays at {n}");
            return;
        }
        log!("worker count {} -> {n}", self.config.processes);
        self.config.processes = n;
        self.resize_slots();
        let now = Instant::now();
        let extra: Vec<i32> = self
            .workers
            .iter()
            .filter(|w| w.id > n && w.alive_for_slot())
            .map(|w| w.pid)
            .collect();
        for pid in extra {
            self.retire(pid, now);
        }
    }

    fn set_paused(&mut self, paused: bool, how: &str) {
        if paused == self.paused {
            log!(
                "{how}: already {}; nothing to do",
                if paused { "paused" } else { "running" }
            );
            return;
        }
        self.paused = paused;
        self.board.header().paused.store(u32::from(paused), Relaxed);
        if paused {
            log!("{how}: paused; workers accept nothing, new connections wait in the backlog");
        } else {
            log!("{how}: resumed");
        }
        let exec = matches!(self.config.worker, WorkerKind::Exec { .. });
        for w in &self.workers {
            let sig = match (exec, paused) {
                (false, _) => libc::SIGTSTP,
                (true, true) => libc::SIGSTOP,
                (true, false) => libc::SIGCONT,
            };
            sys::kill(w.pid, sig);
        }
    }

    /// Ask a worker to stop after its requests; SIGKILL at the mercy deadline.
    fn retire(&mut self, pid: i32, now: Instant) {
        let mercy = self.config.mercy;
        let (sig, exec) = match &self.config.worker {
            WorkerKind::Builtin => (libc::SIGHUP, false),
            WorkerKind::Exec { stop_signal, .. } => (*stop_signal, true),
        };
        if let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) {
            if !w.alive_for_slot() {
                return;
            }
            w.state = WorkerState::Draining {
                since: now,
                deadline: now + mercy,
            };
            sys::kill(pid, sig);
            if exec && self.paused {
                sys::kill(pid, libc::SIGCONT);
            }
        }
    }

    fn enforce_deadlines(&mut self, now: Instant) {
        self.enforce_preload_deadlines(now);
        let grace = self.ready_grace();
        let start_timeout = self.config.start_timeout;
        for w in &mut self.workers {
            match w.state {
                WorkerState::Draining { deadline, .. } if now >= deadline => {
                    log!(
                        "worker {} (pid {}) still busy after the {}s mercy: SIGKILL",
                        w.id,
                        w.pid,
                        self.config.mercy.as_secs_f64()
                    );
                    kill_group(w.pid);
                    w.state = WorkerState::Killed;
                }
                WorkerState::Starting => {
                    if let Some(g) = grace {
                        if now >= w.spawned + g {
                            w.state = WorkerState::Ready;
                            w.ready_at = Some(now);
                            log!("worker {} (pid {}) counted ready after the {:.1}s grace (it sent no READY=1)", w.id, w.pid, g.as_secs_f64());
                            if self.paused {
                                sys::kill(w.pid, libc::SIGSTOP);
                            }
                            continue;
                        }
                    }
                    if now >= w.spawned + start_timeout {
                        log!(
                            "worker {} (pid {}) not ready after {}s: SIGKILL",
                            w.id,
                            w.pid,
                            start_timeout.as_secs_f64()
                        );
                        kill_group(w.pid);
                        // Stays Starting so its exit counts as a failed start.
                    }
                }
                _ => {}
            }
        }
        match self.phase {
            Phase::Stopping { deadline, .. } if now >= deadline => {
                for w in &mut self.workers {
                    kill_group(w.pid);
                    w.state = WorkerState::Killed;
                }
                for z in &mut self.zygotes {
                    kill_group(z.pid);
                    z.killed = true;
                }
                // Every worker was SIGKILLed; a zombie that is never reaped cannot hold us.
                if now >= deadline + Duration::from_secs(5) {
                    self.exit_code = Some(1);
                }
            }
            Phase::Checking {
                checker, deadline, ..
            } if now >= deadline => {
                kill_group(checker);
            }
            _ => {}
        }
    }

    /// Give every slot without a starting or ready worker of its target generation a new one.
    fn spawn_missing(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let id = i as u32 + 1;
            let target = self.slots[i].target;
            if self
                .workers
                .iter()
                .any(|w| w.id == id && w.generation == target && w.alive_for_slot())
            {
                continue;
            }
            match self.slots[i].pending {
                Some(p) if p.generation == target => continue,
                // Asked for a generation the slot no longer targets: a late one is retired.
                Some(_) => self.slots[i].pending = None,
                None => {}
            }
            if self.slots[i].next_spawn.is_some_and(|t| now < t) {
                continue;
            }
            self.slots[i].next_spawn = None;
            if let Err(e) = self.spawn(id, target, now) {
                log!("cannot spawn worker {id}: {e}");
                let slot = &mut self.slots[i];
                slot.failed_starts += 1;
                slot.next_spawn = Some(
                    now + BACKOFF_MAX.min(BACKOFF_FIRST * 2u32.pow(slot.failed_starts.min(8))),
                );
            }
        }
    }

    /// Retire the workers [`superseded`] names: each slot keeps at most its newest ready worker
    /// and one worker of its target generation.
    fn retire_replaced(&mut self, now: Instant) {
        let alive: Vec<(i32, u32, u64, bool)> = self
            .workers
            .iter()
            .filter(|w| w.alive_for_slot())
            .map(|w| (w.pid, w.id, w.generation, w.state == WorkerState::Ready))
            .collect();
        let targets: Vec<u64> = self.slots.iter().map(|s| s.target).collect();
        let view: Vec<(u32, u64, bool)> = alive.iter().map(|&(_, i, g, r)| (i, g, r)).collect();
        for i in superseded(&view, &targets) {
            self.retire(alive[i].0, now);
        }
    }

    fn advance_chain(&mut self, _now: Instant) {
        let Some(reload) = &mut self.reload else {
            return;
        };
        let Some(cursor) = reload.chain_cursor else {
            return;
        };
        let g = reload.generation;
        let id = cursor;
        let idx = id as usize - 1;
        if idx >= self.slots.len() {
            reload.chain_cursor = None;
            return;
        }
        let ready = self
            .workers
            .iter()
            .any(|w| w.id == id && w.generation == g && w.state == WorkerState::Ready);
        let old_gone = !self
            .workers
            .iter()
            .any(|w| w.id == id && w.generation < g && w.alive_for_slot());
        if ready && old_gone {
            let next = id + 1;
            if next as usize <= self.slots.len() {
                log!("chain reload: worker {id} replaced; next is worker {next}");
                reload.chain_cursor = Some(next);
                let slot = &mut self.slots[next as usize - 1];
                slot.target = g;
                slot.failed_starts = 0;
                slot.next_spawn = None;
                self.spawn_missing(Instant::now());
            } else {
                reload.chain_cursor = None;
            }
        }
    }

    fn check_reload_complete(&mut self, _now: Instant) {
        let Some(reload) = &self.reload else { return };
        if reload.chain_cursor.is_some() {
            return;
        }
        let g = reload.generation;
        let all_ready = (1..=self.slots.len() as u32).all(|id| {
            self.workers
                .iter()
                .any(|w| w.id == id && w.generation == g && w.state == WorkerState::Ready)
        });
        let old_alive = self.workers.iter().any(|w| w.generation < g);
        if all_ready && !old_alive {
            let ms = reload.started.elapsed().as_secs_f64() * 1e3;
            self.finish_reload(
                true,
                format!(
                    "{} reload to generation {g} complete in {ms:.1} ms",
                    reload.kind.name()
                ),
            );
        }
    }

    fn finish_reload(&mut self, ok: bool, message: String) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        let (ok, message) = match self.config_refused.take() {
            Some(reason) if ok => (false, reason),
            _ => (ok, message),
        };
        if ok {
            log!("{message}");
        } else {
            self.note_error(message.clone());
        }
        self.record_outcome(
            reload.kind,
            reload.generation,
            ok,
            message,
            reload.started,
            reload.started_unix_ms,
        );
    }

    fn record_outcome(
        &mut self,
        kind: ReloadKind,
        generation: u64,
        ok: bool,
        message: String,
        started: Instant,
        started_unix_ms: u64,
    ) {
        let _ = started_unix_ms;
        self.last_reload = Some(wire::ReloadOutcome {
            kind: kind.name().to_string(),
            generation,
            result: if ok { "complete" } else { "failed" }.to_string(),
            reason: (!ok).then_some(message),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            finished_unix_ms: now_unix_ms(),
        });
    }

    // ---------------------------------------------------------------------------------------
    // Workers
    // ---------------------------------------------------------------------------------------

    fn spawn(&mut self, id: u32, generation: u64, now: Instant) -> Result<(), String> {
        if self.preload() {
            return self.spawn_forked(id, generation, now);
        }
        if matches!(self.config.worker, WorkerKind::Exec { .. }) {
            self.ensure_relay();
        }
        let cell = self.cells.alloc().ok_or("scoreboard full")?;
        let master_pid = std::process::id() as i32;
        match sys::fork() {
            Err(e) => {
                self.cells.free(cell);
                Err(format!("fork: {e}"))
            }
            Ok(sys::Fork::Child) => {
                // SAFETY: getpid in the child.
                let me = unsafe { libc::getpid() };
                self.board.cell(cell).reset(me);
                if !sys::die_with_parent(master_pid) {
                    // SAFETY: the master is already gone; leave at once.
                    unsafe { libc::_exit(1) }
                }
                self.become_worker(id, generation, cell)
            }
            Ok(sys::Fork::Parent(pid)) => {
                self.board.cell(cell).pid.store(pid, Relaxed);
                let slot = &mut self.slots[id as usize - 1];
                slot.respawn_count += 1;
                slot.last_spawn = now_unix_ms() / 1000;
                self.workers.push(Worker {
                    pid,
                    id,
                    generation,
                    cell,
                    state: WorkerState::Starting,
                    spawned: now,
                    spawned_unix_ms: now_unix_ms(),
                    ready_at: None,
                    status_text: None,
                });
                Ok(())
            }
        }
    }

    /// The exec program with `{runner}` and the interpreter resolved.
    fn exec_spec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        chdir: Option<PathBuf>,
    ) -> crate::exec::ExecSpec {
        let (mut argv, runner) = crate::runner::expand(argv);
        if let Some((_, resolved)) = &self.python {
            argv[0] = resolved.clone();
        }
        crate::exec::ExecSpec {
            argv,
            env,
            cwd: chdir,
            runner,
        }
    }

    fn named_listeners(&self) -> Vec<(RawFd, String)> {
        self.listeners
            .iter()
            .map(|l| (l.raw(), l.name.clone()))
            .collect()
    }

    /// Python workers are forked by a zygote per generation (not `--lazy-apps`).
    fn preload(&self) -> bool {
        matches!(self.config.worker, WorkerKind::Exec { preload: true, .. }) && self.runner
    }

    /// Preload: ask the zygote of `generation` for a worker in slot `id`, starting the zygote
    /// first if there is none. The slot is pending until the worker says it is ready.
    fn spawn_forked(&mut self, id: u32, generation: u64, now: Instant) -> Result<(), String> {
        let zygote = self
            .zygotes
            .iter()
            .find(|z| z.generation == generation && z.stopping.is_none())
            .map(|z| z.standby);
        match zygote {
            None => self.spawn_zygote(generation, false, now)?,
            Some(true) => {
                let same_exe = self.exe_unchanged();
                if !self.activate_standby(generation, same_exe) {
                    self.spawn_zygote(generation, false, now)?;
                }
            }
            Some(false) => {}
        }
        self.slots[id as usize - 1].pending = Some(Pending {
            generation,
            since: now,
            asked: None,
        });
        // Asked at once, even of a zygote still loading: it reads the request as soon as it
        // is ready, without waiting for us to hear its READY=1.
        if let Err(e) = self.ask_fork(id, generation, now) {
            self.slots[id as usize - 1].pending = None;
            return Err(e);
        }
        Ok(())
    }

    /// Write `fork SLOT GEN` to the zygote of `generation` (read once it is ready).
    fn ask_fork(&mut self, id: u32, generation: u64, now: Instant) -> Result<(), String> {
        let Some(z) = self
            .zygotes
            .iter()
            .find(|z| z.generation == generation && z.stopping.is_none())
        else {
            return Err(format!("no zygote for generation {generation}"));
        };
        let line = format!("fork {id} {generation}\n");
        // SAFETY: writing our buffer to the control socket we own (non-blocking).
        let n = unsafe {
            libc::send(
                z.control.as_raw_fd(),
                line.as_ptr() as *const libc::c_void,
                line.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != line.len() as isize {
            return Err(format!(
                "fork request to zygote pid {}: {}",
                z.pid,
                std::io::Error::last_os_error()
            ));
        }
        if let Some(p) = &mut self.slots[id as usize - 1].pending {
            p.asked = Some(now);
        }
        Ok(())
    }

    /// The zygote of `generation` is ready: send the forks its slots wait for.
    fn ask_pending_forks(&mut self, generation: u64, now: Instant) {
        for i in 0..self.slots.len() {
            let id = i as u32 + 1;
            let waiting = self.slots[i]
                .pending
                .is_some_and(|p| p.generation == generation && p.asked.is_none());
            if waiting {
                if let Err(e) = self.ask_fork(id, generation, now) {
                    self.slots[i].pending = None;
                    self.fail_start(id, generation, &e, now);
                }
            }
        }
    }

    /// Fork and exec the runner as the zygote of `generation`; as a standby that waits for
    /// `load` before importing the application, if `standby`.
    fn spawn_zygote(&mut self, generation: u64, standby: bool, now: Instant) -> Result<(), String> {
        let WorkerKind::Exec {
            argv, env, chdir, ..
        } = &self.config.worker
        else {
            return Err("not an exec worker".into());
        };
        let mut argv = argv.clone();
        argv.push("--zygote".into());
        if standby {
            argv.push("--standby".into());
        }
        let interpreter = self.interpreter_stamp();
        let spec = self.exec_spec(argv, env.clone(), chdir.clone());
        let named = self.named_listeners();
        let (ours, theirs) = sys_socketpair().map_err(|e| format!("zygote socketpair: {e}"))?;
        self.ensure_relay();
        let master_pid = std::process::id() as i32;
        match sys::fork() {
            Err(e) => Err(format!("fork: {e}")),
            Ok(sys::Fork::Child) => {
                if !sys::die_with_parent(master_pid) {
                    // SAFETY: the master is already gone; leave at once.
                    unsafe { libc::_exit(1) }
                }
                self.stdio_to_relay();
                let mut keep: Vec<RawFd> = named.iter().map(|(fd, _)| *fd).collect();
                keep.push(theirs.as_raw_fd());
                sys::close_fds_except(&keep);
                sys::stdin_from_devnull();
                // SAFETY: own process group, so a terminal's Ctrl-C reaches the master only.
                unsafe {
                    libc::setpgid(0, 0);
                }
                sys::reset_signals_for_exec();
                let e = crate::exec::exec_zygote(
                    &spec,
                    &named,
                    &self.notify_addr,
                    generation,
                    theirs.as_raw_fd(),
                );
                log!("cannot execute the zygote {:?}: {e}", spec.argv.first());
                // SAFETY: leave the failed child without running the master's destructors.
                unsafe { libc::_exit(127) }
            }
            Ok(sys::Fork::Parent(pid)) => {
                drop(theirs);
                if standby {
                    log!("standby zygote of generation {generation} (pid {pid}) started: the next reload imports the application into it");
                } else {
                    log!("zygote of generation {generation} (pid {pid}) loading the application");
                }
                self.zygotes.push(Zygote {
                    pid,
                    generation,
                    control: ours,
                    ready: false,
                    standby,
                    interpreter,
                    spawned: now,
                    stopping: None,
                    killed: false,
                });
                Ok(())
            }
        }
    }

    /// Preload: once the current generation is complete and nothing else is under way, start
    /// the next generation's zygote as a standby, so the next reload skips the interpreter's
    /// start-up.
    fn ensure_standby(&mut self, now: Instant) {
        let WorkerKind::Exec { standby: true, .. } = self.config.worker else {
            return;
        };
        let next = self.generation + 1;
        let settled = self.reload.is_none()
            && matches!(self.phase, Phase::Running)
            && self.pending_exec.is_none()
            && self.slots.iter().all(|s| {
                s.target == self.generation && s.pending.is_none() && s.next_spawn.is_none()
            })
            && !self.zygotes.iter().any(|z| z.generation >= next);
        if !settled || !self.preload() || self.standby_retry.is_some_and(|t| now < t) {
            return;
        }
        self.standby_retry = None;
        // A binary replaced on disk would bring its own runner at the next reload.
        if !self.exe_unchanged() {
            self.standby_retry = Some(now + STANDBY_RETRY);
            return;
        }
        if let Err(e) = self.spawn_zygote(next, true, now) {
            log!("cannot start a standby zygote for generation {next}: {e}");
            self.standby_retry = Some(now + STANDBY_RETRY);
        }
    }

    /// Tell the standby zygote of `generation`, if there is one, to import the application.
    /// A standby whose master binary (`same_exe`) or interpreter changed on disk since it
    /// started is stopped instead. True if a standby now loads.
    fn activate_standby(&mut self, generation: u64, same_exe: bool) -> bool {
        let Some(i) = self
            .zygotes
            .iter()
            .position(|z| z.generation == generation && z.standby && z.stopping.is_none())
        else {
            return false;
        };
        let now = Instant::now();
        let interpreter = self.interpreter_stamp();
        let z = &self.zygotes[i];
        let stale = if !same_exe {
            Some("the uwsgid binary changed")
        } else if interpreter.is_none() || interpreter != z.interpreter {
            Some("the Python interpreter changed on disk")
        } else {
            None
        };
        if let Some(why) = stale {
            log!(
                "standby zygote of generation {generation} (pid {}) not used: {why}",
                z.pid
            );
            self.stop_zygote(i, now);
            return false;
        }
        // SAFETY: writing our buffer to the control socket we own (non-blocking).
        let n = unsafe {
            libc::send(
                z.control.as_raw_fd(),
                b"load\n".as_ptr() as *const libc::c_void,
                5,
                libc::MSG_NOSIGNAL,
            )
        };
        if n != 5 {
            log!(
                "standby zygote of generation {generation} (pid {}): {}",
                z.pid,
                std::io::Error::last_os_error()
            );
            self.stop_zygote(i, now);
            return false;
        }
        let z = &mut self.zygotes[i];
        z.standby = false;
        z.spawned = now;
        log!(
            "zygote of generation {generation} (pid {}) loading the application (from standby)",
            z.pid
        );
        true
    }

    /// The interpreter the bundled runner runs on, as it is on disk now.
    fn interpreter_stamp(&self) -> Option<FileStamp> {
        let (_, path) = self.python.as_ref()?;
        FileStamp::of_program(path)
    }

    /// Stop zygote `i` (SIGTERM now, SIGKILL after the mercy).
    fn stop_zygote(&mut self, i: usize, now: Instant) {
        let mercy = self.config.mercy;
        let z = &mut self.zygotes[i];
        if z.stopping.is_some() {
            return;
        }
        z.stopping = Some(now + mercy);
        sys::kill(z.pid, libc::SIGTERM);
        log!(
            "zygote of generation {} (pid {}) no longer needed: stopping it",
            z.generation,
            z.pid
        );
    }

    fn stop_unused_zygotes(&mut self, now: Instant) {
        for i in 0..self.zygotes.len() {
            let (g, standby) = (self.zygotes[i].generation, self.zygotes[i].standby);
            let next_standby = standby && g == self.generation + 1;
            if !next_standby && !self.slots.iter().any(|s| s.target == g) {
                self.stop_zygote(i, now);
            }
        }
    }

    fn enforce_preload_deadlines(&mut self, now: Instant) {
        let timeout = self.config.start_timeout;
        for z in &mut self.zygotes {
            match z.stopping {
                Some(t) if now >= t && !z.killed => {
                    log!("zygote pid {} still alive after the mercy: SIGKILL", z.pid);
                    kill_group(z.pid);
                    z.killed = true;
                }
                None if !z.ready && !z.standby && !z.killed && now >= z.spawned + timeout => {
                    log!(
                        "zygote of generation {} (pid {}) not ready after {}s: SIGKILL",
                        z.generation,
                        z.pid,
                        timeout.as_secs_f64()
                    );
                    kill_group(z.pid);
                    // Its exit fails the slots waiting for it.
                    z.killed = true;
                }
                _ => {}
            }
        }
        for i in 0..self.slots.len() {
            let Some(p) = self.slots[i].pending else {
                continue;
            };
            if p.asked.is_some_and(|t| now >= t + timeout) {
                self.slots[i].pending = None;
                let how = format!("was not ready {}s after its fork", timeout.as_secs_f64());
                self.fail_start(i as u32 + 1, p.generation, &how, now);
            }
        }
    }

    /// A zygote exited: unless asked to stop, every slot waiting on it failed to start.
    fn on_zygote_exit(&mut self, z: Zygote, status: i32) {
        let how = sys::describe_status(status);
        if z.stopping.is_some() || matches!(self.phase, Phase::Stopping { .. }) {
            log!(
                "zygote of generation {} (pid {}) stopped: {how}",
                z.generation,
                z.pid
            );
            return;
        }
        let now = Instant::now();
        if z.standby {
            self.standby_retry = Some(now + STANDBY_RETRY);
            log!(
                "standby zygote of generation {} (pid {}) exited: {how}; the next reload starts a fresh one (next standby in {}s)",
                z.generation,
                z.pid,
                STANDBY_RETRY.as_secs()
            );
            return;
        }
        let when = if z.ready { "" } else { " before it was ready" };
        log!(
            "zygote of generation {} (pid {}) exited{when}: {how}",
            z.generation,
            z.pid
        );
        for i in 0..self.slots.len() {
            if self.slots[i]
                .pending
                .is_some_and(|p| p.generation == z.generation)
            {
                self.slots[i].pending = None;
                let what = format!("(its zygote, pid {}) {how}", z.pid);
                self.fail_start(i as u32 + 1, z.generation, &what, now);
            }
        }
    }

    /// A worker of `generation` for slot `id` did not come up: back off, report.
    fn fail_start(&mut self, id: u32, generation: u64, how: &str, now: Instant) {
        let Some(slot) = self.slots.get_mut(id as usize - 1) else {
            return;
        };
        slot.last_exit = Some(how.to_string());
        slot.failed_starts += 1;
        let exp = (slot.failed_starts - 1).min(16);
        let delay = (BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_MAX);
        slot.next_spawn = Some(now + delay);
        let failed = slot.failed_starts;
        log!(
            "worker {id} of generation {generation} {how}; failed start {failed} in a row, next try in {:.1}s",
            delay.as_secs_f64()
        );
        self.on_failed_start(id, generation, failed, how);
    }

    /// A notify sender we do not know says it is the worker of slot `id`, generation `g`:
    /// adopt it if it is our child (a zygote's grandchild re-parented to us).
    fn adopt(&mut self, msg: crate::exec::NotifyMessage, id: u32, g: u64) {
        let pid = msg.pid;
        let me = std::process::id() as i32;
        if id == 0 || parent_of(pid) != Some(me) {
            log!("notify from pid {pid} (worker {id}, generation {g}) which is not our child: ignored");
            return;
        }
        let now = Instant::now();
        let Some(cell) = self.cells.alloc() else {
            log!("forked worker pid {pid}: scoreboard full, SIGKILL");
            kill_group(pid);
            return;
        };
        self.board.cell(cell).reset(pid);
        if let Some(n) = self.config.serve.cpu_affinity {
            crate::options::pin(pid, id, n);
        }
        let pending = self
            .slots
            .get(id as usize - 1)
            .and_then(|s| s.pending)
            .filter(|p| p.generation == g && p.asked.is_some());
        let since = pending.map_or(now, |p| p.since);
        // A worker announces itself while it starts, so that an exit before READY=1 is a
        // failed start at once; older runners announce themselves with READY=1.
        let ready = msg.ready;
        self.workers.push(Worker {
            pid,
            id,
            generation: g,
            cell,
            state: if ready {
                WorkerState::Ready
            } else {
                WorkerState::Starting
            },
            spawned: since,
            spawned_unix_ms: now_unix_ms(),
            ready_at: ready.then_some(now),
            status_text: msg.status,
        });
        if let Some(slot) = self.slots.get_mut(id as usize - 1) {
            slot.respawn_count += 1;
            slot.last_spawn = now_unix_ms() / 1000;
            if pending.is_some() {
                slot.pending = None;
            }
        }
        let stopping = matches!(self.phase, Phase::Stopping { .. });
        if pending.is_none() || stopping {
            log!(
                "worker {id} (pid {pid}, generation {g}) forked but no longer wanted: retiring it"
            );
            if let Phase::Stopping { brutal: true, .. } = self.phase {
                kill_group(pid);
                if let Some(w) = self.workers.last_mut() {
                    w.state = WorkerState::Killed;
                }
            } else {
                self.retire(pid, now);
            }
            return;
        }
        if !ready {
            return; // its READY=1 is handled like any exec worker's
        }
        log!(
            "worker {id} (pid {pid}, generation {g}) forked and ready in {:.1} ms",
            now.duration_since(since).as_secs_f64() * 1e3
        );
        if self.paused {
            sys::kill(pid, libc::SIGSTOP);
        }
    }

    /// `--auto-procname` and friends: the master's title names its generation.
    fn retitle(&self) {
        if let Some(t) = self.config.serve.procname.master_title(self.generation) {
            crate::procname::set_title(&t);
        }
    }

    /// In the forked child: become worker `id`. Never returns.
    fn become_worker(&mut self, id: u32, generation: u64, cell: usize) -> ! {
        crate::log::set_worker(id);
        sys::set_process_name(&format!("uwsgid:w{id}"));
        if let Some(n) = self.config.serve.cpu_affinity {
            crate::options::pin(0, id, n);
        }
        // Paths a built-in worker opens later, made absolute before its --chdir.
        let logto = (self.config.logto.clone()).map(|p| std::path::absolute(&p).unwrap_or(p));
        let check_static =
            (self.config.check_static.clone()).map(|p| std::path::absolute(&p).unwrap_or(p));
        if matches!(self.config.worker, WorkerKind::Builtin) {
            crate::options::apply_in_builtin_worker(&self.config.serve, id, generation);
        }
        if matches!(self.config.worker, WorkerKind::Exec { .. }) {
            self.stdio_to_relay();
        }
        let listeners: Vec<RawFd> = self.listeners.iter().map(|l| l.raw()).collect();
        sys::close_fds_except(&listeners);
        sys::stdin_from_devnull();
        match &self.config.worker {
            WorkerKind::Builtin => crate::worker::run(crate::worker::WorkerSetup {
                id,
                generation,
                listeners,
                board: &self.board,
                cell,
                demo_routes: self.config.demo_routes,
                check_static,
                notify_addr: Some(self.notify_addr.clone()),
                logto,
                serve: self.config.serve.clone(),
            }),
            WorkerKind::Exec {
                argv, env, chdir, ..
            } => {
                let (argv, env, chdir) = (argv.clone(), env.clone(), chdir.clone());
                // SAFETY: own process group, so a terminal's Ctrl-C reaches the master only.
                unsafe {
                    libc::setpgid(0, 0);
                }
                sys::reset_signals_for_exec();
                let spec = self.exec_spec(argv, env, chdir);
                let named = self.named_listeners();
                let e = crate::exec::exec_worker(&spec, &named, &self.notify_addr, id, generation);
                log!("cannot execute worker program {:?}: {e}", spec.argv.first());
                // SAFETY: leave the failed child without running the master's destructors.
                unsafe { libc::_exit(127) }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Logs, pidfiles, cleanup
    // ---------------------------------------------------------------------------------------

    fn log_stats(&self) {
        let doc = self.stats_document();
        log!(
            "statistics: generation {} state {} workers {} requests {}",
            self.generation,
            self.state_name(),
            doc.workers.len(),
            doc.workers.iter().map(|w| w.requests).sum::<u64>()
        );
        for w in &doc.workers {
            log!(
                "  worker {} pid {} status {} requests {} tx {} avg {} us respawns {}",
                w.id,
                w.pid,
                w.status,
                w.requests,
                w.tx,
                w.avg_rt,
                w.respawn_count
            );
        }
    }

    fn log_status(&self) {
        let now_us = now_unix_ms() * 1000;
        log!("worker status ({} process(es))", self.workers.len());
        for w in &self.workers {
            let cell = self.board.cell(w.cell);
            let start = cell.request_start_us.load(Relaxed);
            let what = if cell.in_flight.load(Relaxed) > 0 && start > 0 {
                format!(
                    "serving {:?} since {:.3}s ago",
                    cell.request(),
                    (now_us.saturating_sub(start)) as f64 / 1e6
                )
            } else {
                "idle".to_string()
            };
            log!(
                "  worker {} pid {} generation {} {:?}: {what}",
                w.id,
                w.pid,
                w.generation,
                w.state
            );
        }
    }

    /// With `--logto`, make sure the relay pipe for exec workers exists (before a fork).
    fn ensure_relay(&mut self) {
        if self.relay.is_some() || self.config.logto.is_none() {
            return;
        }
        match crate::log::Relay::new() {
            Ok(r) => self.relay = Some(r),
            Err(e) => log!("cannot create the log pipe for exec workers (they write to the log file directly): {e}"),
        }
    }

    /// In a forked child about to exec a program: stdout and stderr to the relay, if any.
    fn stdio_to_relay(&self) {
        if let Some(r) = &self.relay {
            // SAFETY: dup2 onto the standard fds of this fresh child.
            unsafe {
                libc::dup2(r.write_fd(), 1);
                libc::dup2(r.write_fd(), 2);
            }
        }
    }

    fn reopen_log(&mut self, rotate: bool) {
        let Some(path) = self.config.logto.clone() else {
            log!("log reopen/rotate asked, but there is no --logto file");
            return;
        };
        let result = if rotate {
            crate::log::rotate(&path).map(|b| format!("log rotated to {}", b.display()))
        } else {
            crate::log::redirect_to(&path).map(|_| "log reopened".to_string())
        };
        match result {
            Ok(m) => {
                log!("{m}");
                // Built-in workers reopen the file too; exec workers write through the relay.
                self.board.header().log_epoch.fetch_add(1, Relaxed);
                if matches!(self.config.worker, WorkerKind::Builtin) {
                    for w in &self.workers {
                        sys::kill(w.pid, libc::SIGCONT);
                    }
                }
            }
            Err(e) => self.note_error(format!("log {}: {e}", path.display())),
        }
    }

    fn write_pidfiles(&mut self, only_new: bool) {
        let pid = std::process::id() as i32;
        for p in self.config.pidfiles.clone() {
            if only_new && self.pidfiles_written.contains(&p) {
                continue;
            }
            match common::pidfile::write_atomic(&p, pid) {
                Ok(()) => {
                    if !self.pidfiles_written.contains(&p) {
                        self.pidfiles_written.push(p.clone());
                    }
                }
                Err(e) => self.note_error(format!("pidfile {}: {e}", p.display())),
            }
            let record = common::discovery::InstanceRecord {
                pid,
                name: self.config.name.clone(),
                pidfile: absolute(&p),
                fifo: self.config.fifos.iter().map(|f| absolute(f)).collect(),
                stats: self.config.stats.as_ref().map(|s| match s {
                    StatsAddr::Tcp(a) => a.to_string(),
                    StatsAddr::Unix(p) => absolute(p).to_string_lossy().into_owned(),
                }),
                stats_http: self.config.stats_http,
                version: common::VERSION.to_string(),
                listeners: self.listeners.iter().map(|l| l.name.clone()).collect(),
            };
            let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
            if let Err(e) = common::pidfile::write_file_atomic(
                &common::discovery::record_path(&p),
                &json,
                0o644,
            ) {
                log!("instance record for {}: {e}", p.display());
            }
        }
    }

    fn cleanup(&mut self) {
        let pid = std::process::id() as i32;
        let vacuum = self.config.vacuum || self.config.instance_dir.is_some();
        if !vacuum {
            return;
        }
        for p in &self.pidfiles_written {
            if common::pidfile::holds(p, pid) {
                let _ = std::fs::remove_file(p);
                let _ = std::fs::remove_file(common::discovery::record_path(p));
                log!("vacuum: removed {}", p.display());
            }
        }
        if let Some(f) = &self.fifo {
            for p in &f.created {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(p) = self.stats.as_ref().and_then(|s| s.created_path.clone()) {
            let _ = std::fs::remove_file(p);
        }
        for l in &self.listeners {
            if let Some(p) = &l.created_path {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Stopping { .. } => "stopping",
            Phase::Checking { .. } => "reloading",
            Phase::Running if self.reload.is_some() => "reloading",
            Phase::Running if self.paused => "paused",
            Phase::Running if self.workers.iter().all(|w| w.state != WorkerState::Ready) => {
                "starting"
            }
            Phase::Running => "running",
        }
    }

    // ---------------------------------------------------------------------------------------
    // Stats
    // ---------------------------------------------------------------------------------------

    pub fn stats_document(&self) -> wire::StatsDocument {
        let (uid, gid) = sys::ids();
        let now_ms = now_unix_ms();
        let mut queue = 0;
        let sockets: Vec<wire::Socket> = self
            .listeners
            .iter()
            .map(|l| {
                let (q, max) =
                    sys::listen_queue(l.raw()).unwrap_or((0, self.config.backlog as u64));
                queue = queue.max(q);
                wire::Socket {
                    name: l.name.clone(),
                    proto: "http".into(),
                    queue: q,
                    max_queue: max,
                    shared: 0,
                    can_offload: 0,
                }
            })
            .collect();
        let exec = matches!(self.config.worker, WorkerKind::Exec { .. });
        // Exec programs write no counters, except the native Python worker (its scoreboard cell).
        let counters_unknown = matches!(&self.config.worker, WorkerKind::Exec { argv, .. }
            if !argv.first().is_some_and(|p| p.ends_with(crate::cli::NATIVE_PYTHON)));
        let workers = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let id = i as u32 + 1;
                // The slot's current worker: the newest of its target generation, else any.
                let current = self
                    .workers
                    .iter()
                    .filter(|w| w.id == id && w.alive_for_slot())
                    .max_by_key(|w| {
                        (
                            w.generation == slot.target,
                            w.state == WorkerState::Ready,
                            w.generation,
                        )
                    });
                self.worker_entry(id, slot, current, counters_unknown, now_ms)
            })
            .collect();
        let draining = self
            .workers
            .iter()
            .filter(|w| {
                matches!(w.state, WorkerState::Draining { .. } | WorkerState::Killed)
                    || self.slots.get(w.id as usize - 1).is_some_and(|s| {
                        w.generation != s.target
                            && w.alive_for_slot()
                            && self.workers.iter().any(|n| {
                                n.id == w.id && n.generation == s.target && n.alive_for_slot()
                            })
                    })
            })
            .map(|w| wire::Draining {
                pid: w.pid as i64,
                generation: w.generation,
                id: w.id,
                since_unix_ms: match w.state {
                    WorkerState::Draining { since, .. } => {
                        now_ms.saturating_sub(since.elapsed().as_millis() as u64)
                    }
                    _ => now_ms,
                },
            })
            .collect();
        let reload = self.reload.as_ref().map(|r| wire::ReloadProgress {
            kind: r.kind.name().into(),
            generation: r.generation,
            started_unix_ms: r.started_unix_ms,
            ready: (1..=self.slots.len() as u32)
                .filter(|&id| {
                    self.workers.iter().any(|w| {
                        w.id == id && w.generation == r.generation && w.state == WorkerState::Ready
                    })
                })
                .count() as u32,
            total: self.slots.len() as u32,
            old_alive: self
                .workers
                .iter()
                .filter(|w| w.generation < r.generation)
                .count() as u32,
        });
        let reload = reload.or_else(|| match &self.phase {
            Phase::Checking { kind, .. } => Some(wire::ReloadProgress {
                kind: kind.name().into(),
                generation: self.generation + 1,
                started_unix_ms: now_ms,
                ready: 0,
                total: self.slots.len() as u32,
                old_alive: self.workers.len() as u32,
            }),
            _ => None,
        });
        wire::StatsDocument {
            version: "2.0.31-uwsgid".into(),
            listen_queue: queue,
            listen_queue_errors: 0,
            signal_queue: 0,
            load: queue,
            pid: std::process::id() as i64,
            uid,
            gid,
            cwd: std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            locks: vec![[("user 0".to_string(), 0)].into_iter().collect()],
            sockets,
            workers,
            uwsgid: Some(wire::Instance {
                version: common::VERSION.into(),
                state: self.state_name().into(),
                paused: self.paused,
                generation: self.generation,
                processes: self.config.processes,
                worker_kind: if exec { "exec" } else { "builtin" }.into(),
                started_unix: self.started_unix,
                reload,
                last_reload: self.last_reload.clone(),
                last_error: self.last_error.clone(),
                snapshot: None,
                draining,
                fifo: self
                    .fifo
                    .as_ref()
                    .map(|f| {
                        f.paths
                            .iter()
                            .map(|p| p.to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                fifo_slot: self.fifo.as_ref().map_or(0, |f| f.active as u32),
                zygotes: self
                    .zygotes
                    .iter()
                    .map(|z| wire::Zygote {
                        pid: z.pid as i64,
                        generation: z.generation,
                        state: match (z.stopping, z.ready, z.standby) {
                            (Some(_), _, _) => "stopping",
                            (None, true, _) => "ready",
                            (None, false, true) => "standby",
                            (None, false, false) => "starting",
                        }
                        .into(),
                    })
                    .collect(),
            }),
        }
    }

    fn memory_of(&self, pid: i32) -> (u64, u64) {
        let now = Instant::now();
        let mut cache = self.memory.borrow_mut();
        match cache.get(&pid) {
            Some(&(at, mem)) if now.duration_since(at) < MEMORY_TTL => mem,
            _ => {
                let mem = sys::memory_of(pid);
                cache.insert(pid, (now, mem));
                mem
            }
        }
    }

    fn worker_entry(
        &self,
        id: u32,
        slot: &Slot,
        current: Option<&Worker>,
        counters_unknown: bool,
        now_ms: u64,
    ) -> wire::Worker {
        let mut entry = wire::Worker {
            id,
            requests: slot.requests,
            tx: slot.tx,
            running_time: slot.running_time_us,
            last_spawn: slot.last_spawn,
            respawn_count: slot.respawn_count,
            apps: vec![wire::App {
                id: 0,
                modifier1: 0,
                mountpoint: String::new(),
                startup_time: 0,
                requests: 0,
                exceptions: 0,
                chdir: String::new(),
            }],
            ..wire::Worker::default()
        };
        let mut ext = wire::WorkerExt {
            generation: slot.target,
            counters: if counters_unknown { "unknown" } else { "known" }.into(),
            failed_starts: slot.failed_starts,
            next_spawn_unix_ms: slot
                .next_spawn
                .map(|t| now_ms + t.saturating_duration_since(Instant::now()).as_millis() as u64),
            last_exit: slot.last_exit.clone(),
            ..wire::WorkerExt::default()
        };
        let mut core = wire::Core::default();
        match current {
            None => {
                entry.status = if slot.pending.is_some() {
                    "starting"
                } else if slot.next_spawn.is_some() {
                    "backoff"
                } else {
                    "dead"
                }
                .into();
                ext.state = entry.status.clone();
            }
            Some(w) => {
                let cell = self.board.cell(w.cell);
                // A worker settling in (an exec'd program loading) changes fast: read it live.
                let settled = w
                    .ready_at
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(1));
                let (rss, vsz) = if settled {
                    self.memory_of(w.pid)
                } else {
                    sys::memory_of(w.pid)
                };
                let busy = cell.in_flight.load(Relaxed) > 0;
                entry.pid = w.pid as i64;
                entry.accepting = u8::from(w.state == WorkerState::Ready && !self.paused);
                let live = cell.requests.load(Relaxed);
                entry.requests += live;
                entry.delta_requests = live;
                entry.tx += cell.tx.load(Relaxed);
                entry.running_time += cell.running_time_us.load(Relaxed);
                entry.avg_rt = cell.avg_rt_us.load(Relaxed);
                entry.rss = rss;
                entry.vsz = vsz;
                entry.status = match (&w.state, busy, self.paused) {
                    (WorkerState::Starting, _, _) => "starting",
                    (_, true, _) => "busy",
                    (_, false, true) => "pause",
                    _ => "idle",
                }
                .into();
                ext.generation = w.generation;
                ext.ready = w.state == WorkerState::Ready;
                ext.state = match w.state {
                    WorkerState::Starting => "starting",
                    WorkerState::Ready => "ready",
                    _ => "stopping",
                }
                .into();
                ext.status_text = w.status_text.clone();
                core.requests = live;
                core.static_requests = cell.static_requests.load(Relaxed);
                core.read_errors = cell.read_errors.load(Relaxed);
                core.write_errors = cell.write_errors.load(Relaxed);
                core.in_request = u8::from(busy);
                if busy {
                    let start = cell.request_start_us.load(Relaxed) / 1_000_000;
                    core.req_info.insert("request_start".into(), start);
                    let req = cell.request();
                    let (method, path) = req.split_once(' ').unwrap_or(("", &req));
                    let (path, query) = path.split_once('?').unwrap_or((path, ""));
                    core.vars = vec![
                        format!("REQUEST_METHOD={method}"),
                        format!("PATH_INFO={path}"),
                        format!("QUERY_STRING={query}"),
                        String::new(),
                    ];
                }
            }
        }
        entry.apps[0].requests = entry.requests;
        entry.cores = vec![core];
        entry.uwsgid = Some(ext);
        entry
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The executable behind an interpreter name: itself, unless it is a script (a version
/// manager's shim), in which case the interpreter is asked for `sys.executable` once.
/// Add `fd` to a poll set; its index there.
fn watch(fds: &mut Vec<libc::pollfd>, fd: RawFd, events: libc::c_short) -> usize {
    fds.push(libc::pollfd {
        fd,
        events,
        revents: 0,
    });
    fds.len() - 1
}

fn resolve_interpreter(name: &str) -> String {
    let path = if name.contains('/') {
        Some(PathBuf::from(name))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = path else {
        return name.to_string();
    };
    let mut head = [0u8; 2];
    let is_script = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == *b"#!";
    if !is_script {
        return name.to_string();
    }
    std::process::Command::new(&path)
        .args(["-c", "import sys; sys.stdout.write(sys.executable or '')"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty() && std::path::Path::new(p).is_file())
        .unwrap_or_else(|| name.to_string())
}

/// Which of a slot's live workers (`(slot id, generation, ready)`, starting or ready, oldest
/// first) to retire, given each slot's target generation (`targets[id - 1]`):
/// - a worker of a slot beyond the configured count;
/// - a worker not of its slot's target once a ready worker of the target holds the slot;
/// - a *starting* worker not of its slot's target: it serves nothing and its slot now wants
///   another generation. Keeping it until the target is ready let reloads that come faster
///   than workers get ready (a re-exec runs the FIFO bytes left over before it hears any
///   READY=1) pile up one starting worker per slot and reload, without bound;
/// - a ready worker not of the target when a newer ready worker serves the slot in its place.
///
/// So a slot holds at most one ready worker of an older generation (serving until its
/// replacement is ready) and one worker of its target; everything else drains.
fn superseded(workers: &[(u32, u64, bool)], targets: &[u64]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, &(id, generation, ready)) in workers.iter().enumerate() {
        let Some(&target) = (id as usize).checked_sub(1).and_then(|s| targets.get(s)) else {
            out.push(i);
            continue;
        };
        if generation == target {
            continue;
        }
        let same_slot = || workers.iter().enumerate().filter(|(_, w)| w.0 == id);
        let replaced = same_slot().any(|(_, w)| w.1 == target && w.2);
        let newer_ready = same_slot().any(|(j, w)| j != i && w.2 && (w.1, j) > (generation, i));
        if replaced || !ready || newer_ready {
            out.push(i);
        }
    }
    out
}

/// SIGKILL `pid`, an unreaped child of ours (so neither its pid nor its group id can have been
/// reused), and its whole process group if it leads one: exec workers and zygotes do (see
/// `become_worker`, `spawn_zygote`), so the program's own children die with it.
fn kill_group(pid: i32) {
    // SAFETY: getpgid and kill have no memory effects.
    if pid > 0 && unsafe { libc::getpgid(pid) } == pid {
        // SAFETY: as above; -pid is the group that child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    sys::kill(pid, libc::SIGKILL);
}

/// The live (not zombie) children of `parent` with their process groups, from /proc.
fn children_of(parent: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID PGRP ...": COMM ends at the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().take(3).collect();
        if let [state, ppid, pgrp] = f[..] {
            if state != "Z" && ppid.parse() == Ok(parent) {
                out.push((pid, pgrp.parse().unwrap_or(0)));
            }
        }
    }
    out
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A connected pair of Unix stream sockets, close-on-exec; ours is non-blocking.
fn sys_socketpair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds that we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by socketpair.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own fd.
    unsafe {
        let flags = libc::fcntl(ours.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(ours.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((ours, theirs))
}

#[cfg(test)]
mod tests {
    use super::superseded;

    #[test]
    fn a_starting_worker_of_an_old_target_is_retired_at_once() {
        // Slot 1: ready gen 1 serving, starting gen 2 (a reload), now targeting gen 3.
        let w = [(1, 1, true), (1, 2, false), (1, 3, false)];
        assert_eq!(superseded(&w, &[3]), vec![1]);
    }

    #[test]
    fn reloads_faster_than_readiness_leave_one_old_and_one_new_per_slot() {
        // Every reload of a storm spawns a worker per slot; none is ready yet.
        let mut w = vec![(1, 1, true), (2, 1, true)];
        for g in 2..200u64 {
            let targets = [g, g];
            w.push((1, g, false));
            w.push((2, g, false));
            let gone = superseded(&w, &targets);
            w = w
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, x)| x)
                .collect();
            assert_eq!(w.len(), 4, "generation {g}: {w:?}");
        }
        assert_eq!(
            w,
            vec![(1, 1, true), (2, 1, true), (1, 199, false), (2, 199, false)]
        );
    }

    #[test]
    fn the_old_worker_keeps_serving_until_the_new_one_is_ready() {
        assert!(superseded(&[(1, 1, true), (1, 2, false)], &[2]).is_empty());
        assert_eq!(superseded(&[(1, 1, true), (1, 2, true)], &[2]), vec![0]);
    }

    #[test]
    fn only_the_newest_ready_worker_of_a_slot_serves_until_its_target_is_ready() {
        // Gen 2 got ready after the slot already targeted gen 3: it replaces gen 1.
        let w = [(1, 1, true), (1, 2, true), (1, 3, false), (2, 3, true)];
        assert_eq!(superseded(&w, &[3, 3]), vec![0]);
    }

    #[test]
    fn workers_of_removed_slots_and_a_chain_in_progress() {
        // Slot 3 is gone; slot 2 still targets gen 1 (the chain has not reached it).
        let w = [(1, 1, true), (1, 2, false), (2, 1, true), (3, 1, true)];
        assert_eq!(superseded(&w, &[2, 1]), vec![3]);
    }
}
