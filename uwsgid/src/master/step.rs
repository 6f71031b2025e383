//! The one place that decides: [`Phase`], the transition table, and [`Master::step`].
//!
//! Sources only record: each [`Event`] becomes a field of [`Requests`] (or, for a worker's
//! notify message, an update of the table). Then `step` decides, in a fixed priority order
//! (brutal stop, graceful stop, FIFO slot, reload, worker count, pause, the rest), enforces the
//! deadlines that passed and settles the table: spawn what is missing, retire what is
//! replaced, advance or complete the reload. A FIFO write is recorded and stepped one command
//! at a time, so the commands of one write run in the order written (`hp` pauses then
//! resumes, `ww` is two reloads).
//!
//! The transitions, as [`decide`] and [`stop_progress`] implement them (each row has a unit
//! test below):
//!
//! | phase              | input                                  | next                                   |
//! |--------------------|----------------------------------------|----------------------------------------|
//! | Running            | reload `r`/`R`, binary unchanged       | ReExec (the options are checked first; refused: Running, error logged and in stats) |
//! | Running            | reload `r`/`R`, binary replaced        | Checking: the new binary runs `--check-config` |
//! | Running            | reload `w`/`W`/`c`                     | Running, generation + 1, slots retargeted |
//! | Running            | `c` while a chain runs                 | Running, ignored                       |
//! | Checking           | any reload                             | Checking, ignored                      |
//! | Checking           | checker exits 0                        | ReExec                                 |
//! | Checking           | checker fails or times out             | Running, refused                       |
//! | ReExec             | (end of the step)                      | execve: Running in the new image, generation + 1 |
//! | ReExec             | execve fails                           | Running, failed; the kept FIFO commands run |
//! | ReExec             | a FIFO command                         | kept for the next image (it runs them first) |
//! | Running, Checking  | graceful stop                          | Stopping (graceful): workers drain within the mercy |
//! | not Stopping brutal| brutal stop                            | Stopping (brutal): workers killed      |
//! | Stopping (graceful)| graceful stop                          | ignored                                |
//! | Stopping (brutal)  | any stop                               | ignored                                |
//! | Stopping           | reload, `+`, `-`, pause                | ignored                                |
//! | Stopping           | no worker or zygote left               | exit 0                                 |
//! | Stopping           | deadline passed                        | SIGKILL everything; 5 s later exit 1   |

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::fifo::FifoCommand;
use common::reload::ReloadKind;

use super::reload::{Check, Progress};
use super::sources::Event;
use super::table::{Exit, Expired};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::log;
use crate::notify::NotifyMessage;
use crate::sys;
use crate::touch::TouchAction;

/// A brutal stop exits this long after its deadline even if a zombie is never reaped.
const STOP_GRACE: Duration = Duration::from_secs(5);

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

#[derive(Debug)]
pub enum Phase {
    Running,
    /// A re-exec reload waits for the new binary's `--check-config`.
    Checking(Check),
    /// A re-exec decided by this step, performed once the step is over.
    ReExec {
        kind: ReloadKind,
        cause: String,
        /// When it was asked for (its check included in the reload's duration).
        asked: Now,
        /// FIFO commands read after the one that asked for it: the next image runs them.
        leftover: Vec<u8>,
    },
    Stopping {
        brutal: bool,
        deadline: Instant,
    },
}

impl Phase {
    pub fn checker_fd(&self) -> Option<RawFd> {
        match self {
            Phase::Checking(c) => Some(c.output.as_raw_fd()),
            _ => None,
        }
    }

    /// The phase's own deadline still to come.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match self {
            Phase::Checking(c) if !c.killed => Some(c.deadline),
            Phase::Stopping { deadline, .. } if now < *deadline => Some(*deadline),
            Phase::Stopping { deadline, .. } => Some(*deadline + STOP_GRACE),
            _ => None,
        }
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self, Phase::Stopping { .. })
    }
}

/// What is asked of the phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input {
    Stop {
        brutal: bool,
    },
    Reload {
        kind: ReloadKind,
        /// The binary on disk is the one running (it needs no trial run).
        exe_unchanged: bool,
        chain_running: bool,
    },
    CheckerExited {
        ok: bool,
    },
}

/// What the step does about it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Ignore(&'static str),
    Stop {
        brutal: bool,
    },
    /// Check the options in-process, then re-execute.
    ReExec,
    /// Run the new binary's `--check-config` first.
    Check,
    /// A new generation of workers in this image.
    NewGeneration,
    /// Back to Running: the reload is refused.
    Refuse,
}

/// The transition table (see the module docs).
pub fn decide(phase: &Phase, input: Input) -> Decision {
    match (phase, input) {
        (Phase::Stopping { brutal: true, .. }, Input::Stop { .. }) => {
            Decision::Ignore("already stopping brutally")
        }
        (Phase::Stopping { brutal: false, .. }, Input::Stop { brutal: false }) => {
            Decision::Ignore("already stopping gracefully")
        }
        (_, Input::Stop { brutal }) => Decision::Stop { brutal },
        (Phase::Stopping { .. }, _) => Decision::Ignore("stopping"),
        (Phase::ReExec { .. }, _) => Decision::Ignore("re-executing"),
        (Phase::Checking(_), Input::Reload { .. }) => {
            Decision::Ignore("a reload is already being prepared")
        }
        (Phase::Checking(_), Input::CheckerExited { ok: true }) => Decision::ReExec,
        (Phase::Checking(_), Input::CheckerExited { ok: false }) => Decision::Refuse,
        (Phase::Running, Input::CheckerExited { .. }) => Decision::Ignore("no check under way"),
        (
            Phase::Running,
            Input::Reload {
                kind,
                exe_unchanged,
                ..
            },
        ) if kind.re_executes() => {
            if exe_unchanged {
                Decision::ReExec
            } else {
                Decision::Check
            }
        }
        (
            Phase::Running,
            Input::Reload {
                kind: ReloadKind::Chain,
                chain_running: true,
                ..
            },
        ) => Decision::Ignore("a chain reload is already running"),
        (Phase::Running, Input::Reload { .. }) => Decision::NewGeneration,
    }
}

/// What a stopping master does at `now`.
#[derive(Debug, PartialEq)]
pub enum StopAction {
    Wait,
    KillAll,
    Exit(i32),
}

pub fn stop_progress(deadline: Instant, now: Instant, nothing_left: bool) -> StopAction {
    if nothing_left {
        StopAction::Exit(0)
    } else if now >= deadline + STOP_GRACE {
        // Every worker was SIGKILLed; a zombie that is never reaped cannot hold us.
        StopAction::Exit(1)
    } else if now >= deadline {
        StopAction::KillAll
    } else {
        StopAction::Wait
    }
}

/// The deadline of a stop begun at `now`.
pub fn stop_deadline(brutal: bool, mercy: Duration, now: Instant) -> Instant {
    if brutal {
        now + STOP_GRACE
    } else {
        now + mercy + Duration::from_secs(1)
    }
}

/// The signal that pauses (or resumes) a worker: built-in workers stop accepting on
/// SIGTSTP (and read the scoreboard's pause flag); exec programs are frozen.
pub fn pause_signal(exec: bool, paused: bool) -> i32 {
    match (exec, paused) {
        (false, _) => libc::SIGTSTP,
        (true, true) => libc::SIGSTOP,
        (true, false) => libc::SIGCONT,
    }
}

/// The FIFO command's request.
pub fn record_fifo(r: &mut Requests, c: FifoCommand) {
    let cause = format!("FIFO '{}'", c.as_byte() as char);
    log!("{cause}: {}", c.name());
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
}

/// A signal's request (`die_on_term`: SIGTERM stops instead of reloading brutally).
pub fn record_signal(r: &mut Requests, sig: i32, cause: String, die_on_term: bool) {
    match sig {
        libc::SIGCHLD => {}
        libc::SIGHUP => r.reload = Some((ReloadKind::Graceful, cause)),
        libc::SIGTERM if die_on_term => r.graceful_stop = Some(cause),
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

impl Master {
    /// Record what the sources saw, stepping after each FIFO command.
    pub(super) fn handle(&mut self, events: Vec<Event>, now: Now) {
        for e in events {
            match e {
                Event::Fifo(c) => {
                    if let Phase::ReExec { leftover, .. } = &mut self.phase {
                        leftover.push(c.as_byte());
                        continue;
                    }
                    record_fifo(&mut self.requests, c);
                    self.step(now);
                }
                Event::Signal { sig, cause } => {
                    record_signal(&mut self.requests, sig, cause, self.config.die_on_term)
                }
                Event::Notify(msg) => self.on_notify(msg, now),
                Event::Touch { path, action } => {
                    let cause = format!("touch file {}", path.display());
                    log!("{cause} was touched");
                    let kind = match action {
                        TouchAction::Reload => ReloadKind::Graceful,
                        TouchAction::WorkersReload => ReloadKind::Workers,
                        TouchAction::ChainReload => ReloadKind::Chain,
                    };
                    self.requests.reload = Some((kind, cause));
                }
                Event::StatsReady => self.serve_stats(now),
                Event::CheckerOutput => {
                    if let Phase::Checking(c) = &mut self.phase {
                        c.drain();
                    }
                }
            }
        }
        if !matches!(self.phase, Phase::ReExec { .. }) {
            self.step(now);
        }
    }

    /// Run FIFO command bytes kept over from before a re-exec (or a failed one).
    pub(super) fn run_fifo_bytes(&mut self, bytes: &[u8], now: Now) {
        let events = bytes
            .iter()
            .filter_map(|&b| FifoCommand::from_byte(b))
            .map(Event::Fifo)
            .collect();
        self.handle(events, now);
    }

    pub fn step(&mut self, now: Now) {
        self.reap(now);
        let r = std::mem::take(&mut self.requests);
        if let Some(cause) = r.brutal_stop {
            self.begin_stop(true, &cause, now);
        } else if let Some(cause) = r.graceful_stop {
            self.begin_stop(false, &cause, now);
        }
        if let Some(n) = r.fifo_slot {
            self.sources.switch_fifo(n);
        }
        if !self.phase.is_stopping() {
            if let Some((kind, cause)) = r.reload {
                self.begin_reload(kind, &cause, now);
            }
            if r.worker_delta != 0 {
                self.change_processes(r.worker_delta, now);
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
            self.log_stats(now);
        }
        if r.status_log {
            self.log_status(now);
        }
        if r.wake_workers {
            for w in &self.table.workers {
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
        if let Phase::Stopping { deadline, .. } = self.phase {
            let nothing_left = self.table.workers.is_empty() && self.preload.zygotes.is_empty();
            match stop_progress(deadline, now.at, nothing_left) {
                StopAction::Wait => {}
                StopAction::KillAll => self.kill_everything(now),
                StopAction::Exit(code) => {
                    self.kill_everything(now);
                    self.exit_code = Some(code);
                }
            }
        } else {
            self.settle(now);
        }
    }

    /// Spawn what is missing, retire what is replaced, advance or complete the reload.
    fn settle(&mut self, now: Now) {
        self.spawn_missing(now);
        self.stop_unused_zygotes(now);
        for pid in self.table.replaced() {
            self.retire(pid, now);
        }
        match self.reloads.progress(&mut self.table) {
            Progress::Waiting => {}
            Progress::ChainNext { from, next } => {
                log!("chain reload: worker {from} replaced; next is worker {next}");
                self.spawn_missing(now);
            }
            Progress::Complete => {
                if let Some(r) = &self.reloads.current {
                    let ms = now.at.saturating_duration_since(r.started).as_secs_f64() * 1e3;
                    let msg = format!(
                        "{} reload to generation {} complete in {ms:.1} ms",
                        r.kind, r.generation
                    );
                    self.finish_reload(true, msg, now);
                }
            }
        }
        self.ensure_standby(now);
    }

    /// Reap every exited child and act on what its exit means.
    fn reap(&mut self, now: Now) {
        let mut heard = false;
        while let Some((pid, status)) = sys::reap_one() {
            // What a child said before it exited (STOPPING=1, say) is in the notify socket
            // already: hear it first, while the child is still in the table.
            if !std::mem::replace(&mut heard, true) {
                for msg in self.sources.read_notify() {
                    self.on_notify(msg, now);
                }
            }
            if matches!(&self.phase, Phase::Checking(c) if c.pid == pid) {
                self.on_checker_exit(status, now);
                continue;
            }
            if let Some(z) = self.preload.remove(pid) {
                self.on_zygote_exit(z, status, now);
                continue;
            }
            self.on_worker_exit(pid, status, now);
        }
    }

    fn on_worker_exit(&mut self, pid: i32, status: i32, now: Now) {
        self.stats_cache.forget(pid);
        let how = sys::describe_status(status);
        let stopping = self.phase.is_stopping();
        let Some((w, exit)) = self.table.on_exit(pid, &how, now.at, stopping) else {
            return;
        };
        let (id, g) = (w.slot, w.generation);
        match exit {
            Exit::Retired(after) => log!(
                "worker {id} (pid {pid}, generation {g}) retired after {:.1} ms: {how}",
                after.as_secs_f64() * 1e3
            ),
            Exit::Killed => log!("worker {id} (pid {pid}) killed: {how}"),
            Exit::WhileStopping => {}
            Exit::Died { lived } => log!(
                "worker {id} (pid {pid}) died after {:.1}s: {how}; respawning",
                lived.as_secs_f64()
            ),
            Exit::FailedStart {
                failed,
                delay,
                was_ready,
            } => {
                let phase = if was_ready {
                    "soon after start"
                } else {
                    "before it was ready"
                };
                log!(
                    "worker {id} (pid {pid}) died {phase}: {how}; failed start {failed} in a row, next try in {:.1}s",
                    delay.as_secs_f64()
                );
                self.on_failed_start(id, g, failed, &how, now);
            }
        }
    }

    /// A worker of `g` in slot `id` did not come up (`failed` times in a row).
    pub(super) fn on_failed_start(
        &mut self,
        id: super::table::SlotId,
        g: u64,
        failed: u32,
        how: &str,
        now: Now,
    ) {
        if let Some(reason) = self
            .reloads
            .on_failed_start(&mut self.table, id, g, failed, how)
        {
            self.finish_reload(false, reason, now);
        }
    }

    /// A worker start that failed without an exit (fork refused, zygote gone, no show).
    pub(super) fn fail_start(&mut self, id: super::table::SlotId, g: u64, how: &str, now: Now) {
        let Some((failed, delay)) = self.table.fail_start(id, how, now.at) else {
            return;
        };
        log!(
            "worker {id} of generation {g} {how}; failed start {failed} in a row, next try in {:.1}s",
            delay.as_secs_f64()
        );
        self.on_failed_start(id, g, failed, how, now);
    }

    pub(super) fn finish_reload(&mut self, ok: bool, message: String, now: Now) {
        if let Some((ok, message)) = self.reloads.finish(ok, message, now) {
            if ok {
                log!("{message}");
            } else {
                self.note_error(message);
            }
        }
    }

    pub(super) fn on_notify(&mut self, msg: NotifyMessage, now: Now) {
        if self.preload.is_zygote(msg.pid) {
            if msg.ready {
                if let Some((g, took)) = self.preload.set_ready(msg.pid, now.at) {
                    log!(
                        "zygote of generation {g} (pid {}) loaded the application in {:.1} ms",
                        msg.pid,
                        took.as_secs_f64() * 1e3
                    );
                    self.ask_pending_forks(g, now);
                }
            }
            return;
        }
        if let (Some(id), Some(g)) = (msg.slot, msg.generation) {
            if self.table.worker(msg.pid).is_none() {
                self.adopt(msg, id, g, now);
                return;
            }
        }
        let pid = msg.pid;
        let Some(w) = self.table.worker_mut(pid) else {
            log!("notify from pid {pid} which is not one of our workers: ignored");
            return;
        };
        if let Some(s) = msg.status {
            w.status_text = Some(s);
        }
        if msg.ready {
            if let Some(w) = self.table.set_ready(pid, now.at) {
                log!(
                    "worker {} (pid {pid}, generation {}) ready in {:.1} ms",
                    w.slot,
                    w.generation,
                    now.at.saturating_duration_since(w.spawned).as_secs_f64() * 1e3
                );
                // A paused instance freezes exec workers that become ready (spawned by a
                // reload, `+` or a respawn while paused), so none accepts before the resume.
                if self.paused && self.is_exec() {
                    sys::kill(pid, libc::SIGSTOP);
                }
            }
        }
        if msg.stopping {
            let id = self.table.worker(pid).map(|w| w.slot);
            let id = id.map(|i| i.to_string()).unwrap_or_default();
            if self.table.says_stopping(pid, now.at, self.config.mercy) {
                log!("worker {id} (pid {pid}) says it is stopping: draining, a replacement starts now");
            } else {
                log!("worker {id} (pid {pid}) says it is stopping");
            }
        }
    }

    fn begin_stop(&mut self, brutal: bool, cause: &str, now: Now) {
        match decide(&self.phase, Input::Stop { brutal }) {
            Decision::Stop { brutal: true } => {
                log!(
                    "{cause}: brutal stop, killing {} worker(s)",
                    self.table.workers.len()
                );
                self.kill_everything(now);
            }
            Decision::Stop { brutal: false } => {
                log!(
                    "{cause}: graceful stop, {} worker(s) finish their requests within {}s",
                    self.table.workers.len(),
                    self.config.mercy.as_secs_f64()
                );
                self.table.board.header().paused.store(0, Relaxed);
                let pids: Vec<i32> = self.table.workers.iter().map(|w| w.pid).collect();
                for pid in pids {
                    self.retire(pid, now);
                }
                self.preload.stop_all(now.at, self.config.mercy);
            }
            Decision::Ignore(why) => {
                if !brutal {
                    log!("{cause}: {why}");
                }
                return;
            }
            _ => return,
        }
        self.phase = Phase::Stopping {
            brutal,
            deadline: stop_deadline(brutal, self.config.mercy, now.at),
        };
        self.reloads.current = None;
    }

    /// SIGKILL every worker and zygote.
    fn kill_everything(&mut self, now: Now) {
        for pid in self.table.kill_where(|_| true) {
            sys::kill(pid, libc::SIGKILL);
        }
        self.preload.kill_all(now.at);
    }

    fn begin_reload(&mut self, kind: ReloadKind, cause: &str, now: Now) {
        let input = Input::Reload {
            kind,
            exe_unchanged: kind.re_executes() && self.exe_unchanged(),
            chain_running: self.reloads.chain_running(),
        };
        match decide(&self.phase, input) {
            Decision::Ignore(why) => log!("{cause}: {why}; ignored"),
            // The binary on disk is the one running now: it starts fine, so only the options
            // need checking, and that is cheap enough to do here.
            Decision::ReExec => match crate::cli::Config::load(&self.argv) {
                Ok(_) => {
                    self.phase = Phase::ReExec {
                        kind,
                        cause: cause.to_string(),
                        asked: now,
                        leftover: Vec::new(),
                    }
                }
                Err(e) => self.refuse_reload(kind, cause, e.replace('\n', " "), now),
            },
            Decision::Check => {
                log!("{cause}: {kind} reload: checking the new binary and configuration");
                match self.start_checker(kind, cause, now) {
                    Ok(check) => self.phase = Phase::Checking(check),
                    Err(e) => self.note_error(format!("reload refused: {e}")),
                }
            }
            Decision::NewGeneration => {
                self.generation += 1;
                let g = self.generation;
                log!("{cause}: {kind} reload to generation {g}");
                self.reloads.begin(kind, g, &mut self.table, now);
                if kind == ReloadKind::BrutalWorkers {
                    for pid in self.table.kill_where(|w| w.generation < g) {
                        sys::kill(pid, libc::SIGKILL);
                    }
                }
            }
            Decision::Stop { .. } | Decision::Refuse => {}
        }
    }

    fn on_checker_exit(&mut self, status: i32, now: Now) {
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        let decision = decide(&self.phase, Input::CheckerExited { ok });
        let Phase::Checking(mut check) = std::mem::replace(&mut self.phase, Phase::Running) else {
            return;
        };
        if decision == Decision::ReExec {
            self.phase = Phase::ReExec {
                kind: check.kind,
                cause: check.cause,
                asked: check.asked,
                leftover: Vec::new(),
            };
            return;
        }
        let text = check.message();
        let why = if text.is_empty() {
            sys::describe_status(status)
        } else {
            text
        };
        self.refuse_reload(check.kind, &check.cause, why, now);
    }

    /// A reload that cannot go ahead: log it, keep serving, show it in stats.
    pub(super) fn refuse_reload(&mut self, kind: ReloadKind, cause: &str, why: String, now: Now) {
        let reason = format!("{kind} reload ({cause}) refused, the instance keeps serving: {why}");
        self.note_error(reason.clone());
        self.reloads
            .record(kind, self.generation, false, reason, now.at, now);
    }

    fn change_processes(&mut self, delta: i32, now: Now) {
        let n = (self.config.processes as i64 + delta as i64)
            .clamp(1, crate::cli::MAX_PROCESSES as i64) as u32;
        if n == self.config.processes {
            log!("worker count stays at {n}");
            return;
        }
        log!("worker count {} -> {n}", self.config.processes);
        self.config.processes = n;
        self.table.resize(n as usize, self.generation);
        // Workers of the slots removed are retired in settle() (Table::replaced).
        let _ = now;
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
        self.table
            .board
            .header()
            .paused
            .store(u32::from(paused), Relaxed);
        if paused {
            log!("{how}: paused; workers accept nothing, new connections wait in the backlog");
        } else {
            log!("{how}: resumed");
        }
        let sig = pause_signal(self.is_exec(), paused);
        for w in &self.table.workers {
            sys::kill(w.pid, sig);
        }
    }

    /// Ask a worker to stop after its requests; SIGKILL at the mercy deadline.
    pub(super) fn retire(&mut self, pid: i32, now: Now) {
        if !self.table.retire(pid, now.at, self.config.mercy) {
            return;
        }
        let sig = match &self.config.worker {
            WorkerKind::Builtin => libc::SIGHUP,
            WorkerKind::Exec { stop_signal, .. } => *stop_signal,
        };
        sys::kill(pid, sig);
        if self.is_exec() && self.paused {
            sys::kill(pid, libc::SIGCONT);
        }
    }

    fn enforce_deadlines(&mut self, now: Now) {
        self.enforce_preload_deadlines(now);
        let start_timeout = self.config.start_timeout;
        for e in self.table.expire(now.at, self.ready_grace(), start_timeout) {
            let w = |pid| self.table.worker(pid).map(|w| w.slot.to_string());
            match e {
                Expired::Mercy(pid) => {
                    log!(
                        "worker {} (pid {pid}) still busy after the {}s mercy: SIGKILL",
                        w(pid).unwrap_or_default(),
                        self.config.mercy.as_secs_f64()
                    );
                    sys::kill(pid, libc::SIGKILL);
                }
                Expired::Grace(pid) => {
                    log!(
                        "worker {} (pid {pid}) counted ready after the {:.1}s grace (it sent no READY=1)",
                        w(pid).unwrap_or_default(),
                        self.ready_grace().unwrap_or_default().as_secs_f64()
                    );
                    if self.paused {
                        sys::kill(pid, libc::SIGSTOP);
                    }
                }
                Expired::StartTimeout(pid) => {
                    log!(
                        "worker {} (pid {pid}) not ready after {}s: SIGKILL",
                        w(pid).unwrap_or_default(),
                        start_timeout.as_secs_f64()
                    );
                    sys::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Phase::Checking(c) = &mut self.phase {
            if now.at >= c.deadline && !c.killed {
                c.killed = true;
                sys::kill(c.pid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn checking() -> Phase {
        let (r, _w) = std::io::pipe().expect("pipe");
        let output: OwnedFd = r.into();
        let t0 = Instant::now();
        Phase::Checking(Check {
            kind: ReloadKind::Graceful,
            cause: "test".into(),
            asked: Now { at: t0, unix_ms: 0 },
            pid: 0,
            output,
            text: Vec::new(),
            deadline: t0,
            killed: false,
        })
    }

    fn reexec() -> Phase {
        Phase::ReExec {
            kind: ReloadKind::Graceful,
            cause: "test".into(),
            asked: Now {
                at: Instant::now(),
                unix_ms: 0,
            },
            leftover: Vec::new(),
        }
    }

    fn stopping(brutal: bool) -> Phase {
        Phase::Stopping {
            brutal,
            deadline: Instant::now(),
        }
    }

    fn reload(kind: ReloadKind, exe_unchanged: bool) -> Input {
        Input::Reload {
            kind,
            exe_unchanged,
            chain_running: false,
        }
    }

    #[test]
    fn running_reexec_reload_with_the_same_binary_re_executes() {
        for k in [ReloadKind::Graceful, ReloadKind::Brutal] {
            assert_eq!(decide(&Phase::Running, reload(k, true)), Decision::ReExec);
        }
    }

    #[test]
    fn running_reexec_reload_with_a_new_binary_checks_it_first() {
        for k in [ReloadKind::Graceful, ReloadKind::Brutal] {
            assert_eq!(decide(&Phase::Running, reload(k, false)), Decision::Check);
        }
    }

    #[test]
    fn running_workers_and_chain_reloads_start_a_generation() {
        for k in [
            ReloadKind::Workers,
            ReloadKind::BrutalWorkers,
            ReloadKind::Chain,
        ] {
            for same in [true, false] {
                assert_eq!(
                    decide(&Phase::Running, reload(k, same)),
                    Decision::NewGeneration
                );
            }
        }
    }

    #[test]
    fn a_second_chain_is_ignored_but_other_reloads_go_ahead() {
        let busy = |kind| Input::Reload {
            kind,
            exe_unchanged: true,
            chain_running: true,
        };
        assert!(matches!(
            decide(&Phase::Running, busy(ReloadKind::Chain)),
            Decision::Ignore(_)
        ));
        assert_eq!(
            decide(&Phase::Running, busy(ReloadKind::Workers)),
            Decision::NewGeneration
        );
        assert_eq!(
            decide(&Phase::Running, busy(ReloadKind::Graceful)),
            Decision::ReExec
        );
    }

    #[test]
    fn checking_ignores_reloads_and_follows_the_checker() {
        let c = checking();
        for k in ReloadKind::ALL {
            assert!(matches!(decide(&c, reload(k, true)), Decision::Ignore(_)));
        }
        assert_eq!(
            decide(&c, Input::CheckerExited { ok: true }),
            Decision::ReExec
        );
        assert_eq!(
            decide(&c, Input::CheckerExited { ok: false }),
            Decision::Refuse
        );
        assert!(matches!(
            decide(&Phase::Running, Input::CheckerExited { ok: true }),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn reexec_takes_nothing_new_but_a_stop() {
        let p = reexec();
        for k in ReloadKind::ALL {
            assert!(matches!(decide(&p, reload(k, true)), Decision::Ignore(_)));
        }
        assert_eq!(
            decide(&p, Input::Stop { brutal: false }),
            Decision::Stop { brutal: false }
        );
    }

    #[test]
    fn stops_from_running_and_checking() {
        for p in [Phase::Running, checking()] {
            for brutal in [false, true] {
                assert_eq!(
                    decide(&p, Input::Stop { brutal }),
                    Decision::Stop { brutal }
                );
            }
        }
    }

    #[test]
    fn a_brutal_stop_overrides_a_graceful_one_never_the_reverse() {
        assert_eq!(
            decide(&stopping(false), Input::Stop { brutal: true }),
            Decision::Stop { brutal: true }
        );
        assert!(matches!(
            decide(&stopping(false), Input::Stop { brutal: false }),
            Decision::Ignore(_)
        ));
        for brutal in [false, true] {
            assert!(matches!(
                decide(&stopping(true), Input::Stop { brutal }),
                Decision::Ignore(_)
            ));
        }
    }

    #[test]
    fn stopping_ignores_reloads() {
        for p in [stopping(false), stopping(true)] {
            for k in ReloadKind::ALL {
                assert!(matches!(decide(&p, reload(k, true)), Decision::Ignore(_)));
            }
        }
    }

    #[test]
    fn stop_deadline_kills_then_exits() {
        let t0 = Instant::now();
        let mercy = Duration::from_secs(3);
        let graceful = stop_deadline(false, mercy, t0);
        assert_eq!(graceful, t0 + Duration::from_secs(4));
        assert_eq!(stop_deadline(true, mercy, t0), t0 + STOP_GRACE);
        assert_eq!(stop_progress(graceful, t0, false), StopAction::Wait);
        assert_eq!(stop_progress(graceful, t0, true), StopAction::Exit(0));
        assert_eq!(
            stop_progress(graceful, graceful, false),
            StopAction::KillAll
        );
        assert_eq!(
            stop_progress(graceful, graceful + STOP_GRACE, false),
            StopAction::Exit(1)
        );
        assert_eq!(
            stop_progress(graceful, graceful + STOP_GRACE, true),
            StopAction::Exit(0)
        );
    }

    #[test]
    fn a_fired_stop_deadline_is_not_offered_again() {
        let t0 = Instant::now();
        let p = Phase::Stopping {
            brutal: false,
            deadline: t0,
        };
        assert_eq!(p.next_deadline(t0 - Duration::from_millis(1)), Some(t0));
        assert_eq!(p.next_deadline(t0), Some(t0 + STOP_GRACE));
        let Phase::Checking(mut c) = checking() else {
            unreachable!()
        };
        c.killed = true;
        assert_eq!(Phase::Checking(c).next_deadline(t0), None);
    }

    #[test]
    fn pause_freezes_exec_workers_and_tells_builtin_ones() {
        assert_eq!(pause_signal(true, true), libc::SIGSTOP);
        assert_eq!(pause_signal(true, false), libc::SIGCONT);
        assert_eq!(pause_signal(false, true), libc::SIGTSTP);
        assert_eq!(pause_signal(false, false), libc::SIGTSTP);
    }

    #[test]
    fn fifo_pause_and_resume_cancel_a_toggle_in_the_same_step() {
        let mut r = Requests::default();
        record_fifo(&mut r, FifoCommand::TogglePause);
        record_fifo(&mut r, FifoCommand::Resume);
        assert!(!r.toggle_pause);
        assert_eq!(r.pause, Some(false));
        record_fifo(&mut r, FifoCommand::AddWorker);
        record_fifo(&mut r, FifoCommand::AddWorker);
        record_fifo(&mut r, FifoCommand::RemoveWorker);
        assert_eq!(r.worker_delta, 1);
    }

    #[test]
    fn signals_map_to_requests() {
        let mut r = Requests::default();
        record_signal(&mut r, libc::SIGTERM, "TERM".into(), false);
        assert_eq!(r.reload.as_ref().map(|x| x.0), Some(ReloadKind::Brutal));
        record_signal(&mut r, libc::SIGTERM, "TERM".into(), true);
        assert!(r.graceful_stop.is_some());
        record_signal(&mut r, libc::SIGHUP, "HUP".into(), false);
        assert_eq!(r.reload.as_ref().map(|x| x.0), Some(ReloadKind::Graceful));
        record_signal(&mut r, libc::SIGINT, "INT".into(), false);
        assert!(r.brutal_stop.is_some());
    }
}
