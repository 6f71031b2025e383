//! The one place that decides: [`Phase`], the transition table, and [`Master::step`].
//!
//! Sources only record: each [`Event`](super::sources::Event) becomes a field of [`Requests`](super::record::Requests) (or, for a worker's
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
//! | Running            | reload `r`/`R`, binary unchanged       | ReExec (the options are checked first, and what was read goes to the new image; refused: Running, error logged and in stats) |
//! | Running            | reload `r`/`R`, binary replaced        | Checking: the new binary runs `--check-config` |
//! | Running            | reload `w`/`W`/`c`                     | Running, generation + 1, slots retargeted |
//! | Running            | `c` while a chain runs                 | Running, ignored                       |
//! | Running            | rollback (`SIGURG`, `b`), a reload under way | Running: the reload is aborted, slots with a ready older worker go back to it (`Reloads::abort_for_rollback`); none: it goes on |
//! | Running            | rollback, no reload under way, a parked snapshot | Running, a `rollback` reload: the snapshot's workers get SIGCONT and serve their slots again, the current ones retire (`super::snapshot`) |
//! | Running            | rollback, no reload under way, no snapshot | Running, a warning logged, nothing changed |
//! | Checking           | any reload                             | Checking, ignored                      |
//! | Checking, ReExec   | rollback                               | ignored, logged (nothing replaced yet) |
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
//! | Stopping           | no worker, zygote or adopted child left (strays are SIGKILLed with their group once the workers are gone, at once if brutal) | exit 0 |
//! | Stopping           | deadline passed                        | SIGKILL everything; 5 s later exit 1   |

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::reload::ReloadKind;

use super::reload::{Check, Progress};
use super::{Master, Now};
use crate::log;
use crate::sys;

/// A brutal stop exits this long after its deadline even if a zombie is never reaped.
const STOP_GRACE: Duration = Duration::from_secs(5);

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
        /// The configuration this image checked for it (the binary is unchanged): handed to
        /// the next image, which then does not read it again. `None` after a new binary's
        /// `--check-config`: the new image reads its configuration itself.
        checked: Option<Box<super::handoff::Checked>>,
    },
    Stopping {
        brutal: bool,
        deadline: Instant,
    },
}

impl Phase {
    pub fn checker_fd(&self) -> Option<RawFd> {
        match self {
            Phase::Checking(c) if !c.eof => Some(c.output.as_raw_fd()),
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

/// A worker that becomes ready while the instance is paused (spawned by a reload, `+` or a
/// respawn while paused, or still starting when the pause came): exec programs are frozen at
/// once, so none accepts before the resume; built-in workers read the pause flag themselves.
pub fn freeze_when_ready(paused: bool, exec: bool) -> bool {
    paused && exec
}

impl Master {
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
        if r.rollback && !self.phase.is_stopping() {
            self.rollback(now);
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

        self.after_dumps(now);
        self.enforce_deadlines(now);
        if let Phase::Stopping { deadline, brutal } = self.phase {
            // Then every other child (adopted orphans of exec workers): nothing the instance
            // started outlives it, nor keeps its listeners open.
            let empty = self.table.workers.is_empty() && self.preload.zygotes.is_empty();
            let strays = if brutal || empty {
                self.kill_strays()
            } else {
                0
            };
            let nothing_left = empty && strays == 0;
            match stop_progress(deadline, now.at, nothing_left) {
                StopAction::Wait => {}
                StopAction::KillAll => self.kill_everything(now),
                StopAction::Exit(code) => {
                    self.kill_everything(now);
                    self.exit_code = Some(code);
                }
            }
        } else {
            self.check_recycling(now);
            self.settle(now);
        }
    }

    /// Reap every exited child and act on what its exit means.
    fn reap(&mut self, now: Now) {
        let mut heard = false;
        while let Some((pid, status)) = sys::reap_or_stopped() {
            if libc::WIFSTOPPED(status) {
                self.on_worker_stopped(pid, now);
                continue;
            }
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

    /// Spawn what is missing, retire what is replaced, advance or complete the reload.
    fn settle(&mut self, now: Now) {
        self.spawn_missing(now);
        self.stop_unused_zygotes(now);
        for pid in self.table.replaced() {
            if self.retire_not_before(pid).is_some_and(|t| now.at < t) {
                continue;
            }
            if !self.try_park(pid, now) {
                self.retire(pid, now);
            }
        }
        self.settle_snapshot(now);
        match self.reloads.progress(&mut self.table) {
            Progress::Waiting => {}
            Progress::ChainNext { from, next } => {
                log!("chain reload: worker {from} replaced; next is worker {next}");
                self.spawn_missing(now);
            }
            Progress::Complete => {
                if let Some(r) = &self.reloads.current {
                    let ms = now.at.saturating_duration_since(r.started).as_secs_f64() * 1e3;
                    let msg = if r.kind == ReloadKind::Rollback {
                        format!(
                            "rollback to generation {} complete in {ms:.1} ms",
                            r.generation
                        )
                    } else {
                        format!(
                            "{} reload to generation {} complete in {ms:.1} ms",
                            r.kind, r.generation
                        )
                    };
                    self.finish_reload(true, msg, now);
                }
            }
        }
        self.ensure_standby(now);
    }

    fn begin_stop(&mut self, brutal: bool, cause: &str, now: Now) {
        match decide(&self.phase, Input::Stop { brutal }) {
            Decision::Stop { brutal: true } => {
                crate::log_event!("stop", brutal = 1u32, cause = cause;
                    "{cause}: brutal stop, killing {} worker(s)",
                    self.table.workers.len()
                );
                self.kill_everything(now);
            }
            Decision::Stop { brutal: false } => {
                crate::log_event!("stop", brutal = 0u32, cause = cause;
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
        let deadline = stop_deadline(brutal, self.config.mercy, now.at);
        if let Some(sd) = &self.systemd {
            // A graceful drain may outlast TimeoutStopSec=: ask for it, and the kill's grace.
            let drain = (deadline + STOP_GRACE).saturating_duration_since(now.at);
            sd.stopping((!brutal).then_some(drain));
        }
        self.phase = Phase::Stopping { brutal, deadline };
        self.reloads.current = None;
    }

    /// SIGKILL every worker and zygote.
    fn kill_everything(&mut self, now: Now) {
        for pid in self.table.kill_where(|_| true) {
            sys::kill_group(pid);
        }
        self.preload.kill_all(now.at);
    }

    fn begin_reload(&mut self, kind: ReloadKind, cause: &str, now: Now) {
        let input = Input::Reload {
            kind,
            exe_unchanged: kind.re_executes() && self.exe_unchanged(),
            chain_running: self.reloads.chain_running(),
        };
        let decision = decide(&self.phase, input);
        if matches!(
            decision,
            Decision::ReExec | Decision::Check | Decision::NewGeneration
        ) {
            self.systemd_reloading();
        }
        match decision {
            Decision::Ignore(why) => log!("{cause}: {why}; ignored"),
            // The binary on disk is the one running now: it starts fine, so only the options
            // need checking, and that is cheap enough to do here.
            Decision::ReExec => match super::handoff::Checked::read(&self.argv) {
                Ok(checked) => {
                    self.phase = Phase::ReExec {
                        kind,
                        cause: cause.to_string(),
                        asked: now,
                        leftover: Vec::new(),
                        checked: Some(Box::new(checked)),
                    }
                }
                Err(e) => self.refuse_reload(kind, cause, e.to_string().replace('\n', " "), now),
            },
            Decision::Check => {
                crate::log_event!("reload_begun", kind = kind.to_string(), cause = cause; "{cause}: {kind} reload: checking the new binary and configuration");
                match self.start_checker(kind, cause, now) {
                    Ok(check) => self.phase = Phase::Checking(check),
                    Err(e) => {
                        self.reload_failed(format!("reload refused: {e}"));
                    }
                }
            }
            Decision::NewGeneration => {
                self.generation += 1;
                let g = self.generation;
                self.retitle();
                crate::log::set_generation(g);
                crate::log_event!("reload_begun", kind = kind.to_string(), cause = cause; "{cause}: {kind} reload to generation {g}");
                self.reloads.begin(kind, g, &mut self.table, now);
                if kind == ReloadKind::BrutalWorkers {
                    // The snapshot survives: it is what a rollback goes back to.
                    for pid in self
                        .table
                        .kill_where(|w| w.generation < g && !w.in_snapshot())
                    {
                        sys::kill_group(pid);
                    }
                }
            }
            Decision::Stop { .. } | Decision::Refuse => {}
        }
    }

    /// SIGURG or the FIFO `b`: abort the reload under way, if any (back to the generation
    /// that serves); else restore the snapshot, if any (`super::snapshot`).
    fn rollback(&mut self, now: Now) {
        if matches!(self.phase, Phase::Checking(_) | Phase::ReExec { .. }) {
            log!("rollback requested while a re-exec reload is being prepared: ignored (nothing was replaced yet; ask again once the reload is under way or over)");
            return;
        }
        if let Some(r) = &self.reloads.current {
            if r.kind != ReloadKind::Rollback {
                let g = r.generation;
                self.unpark_for_abort(g, None, now);
            }
        }
        match self.reloads.abort_for_rollback(&mut self.table) {
            Some((true, message)) => self.finish_reload(false, message, now),
            Some((false, message)) => log!("{message}"),
            None => self.restore_snapshot(now),
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
                checked: None,
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
        self.reload_failed(reason.clone());
        self.reloads
            .record(kind, self.generation, false, reason, now.at, now);
    }

    fn change_processes(&mut self, delta: i32, now: Now) {
        let n = (self.config.processes as i64 + delta as i64)
            .clamp(1, crate::cli::MAX_PROCESSES as i64) as u32;
        let n = super::cheaper::bound_max(&self.config, n);
        if n == self.config.processes {
            log!("worker count stays at {n}");
            return;
        }
        log!("worker count {} -> {n}", self.config.processes);
        self.config.processes = n;
        let keep = super::cheaper::slots_for_max(&self.config, self.table.slots.len(), n);
        self.table.resize(keep, self.generation);
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
        // Snapshot workers are left alone: parked ones stay stopped, parking ones finish.
        for w in self.table.workers.iter().filter(|w| !w.in_snapshot()) {
            sys::kill(w.pid, sig);
        }
    }
}

#[cfg(test)]
#[path = "tests/step.rs"]
mod tests;
