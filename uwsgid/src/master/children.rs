//! What a child's exit, a notify message or a passed deadline means: the worker table says
//! (see [`super::table::Exit`] and [`super::table::Expired`]); this logs it, signals the pids
//! concerned and tells the reload under way about failed starts.

use super::step::{freeze_when_ready, Phase};
use super::table::{Exit, Expired, SlotId, WorkerState};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::notify::NotifyMessage;
use crate::sys;
use crate::{log, log_event};

impl Master {
    pub(super) fn on_worker_exit(&mut self, pid: i32, status: i32, now: Now) {
        self.stats_cache.forget(pid);
        let how = sys::describe_status(status);
        let stopping = self.phase.is_stopping();
        let Some((w, exit)) = self.table.on_exit(pid, &how, now.at, stopping) else {
            return;
        };
        let (id, g) = (w.slot, w.generation);
        match exit {
            Exit::Retired(after) => {
                log_event!("worker_retired", worker = id.get(), pid = pid, generation = g;
                    "worker {id} (pid {pid}, generation {g}) retired after {:.1} ms: {how}",
                    after.as_secs_f64() * 1e3
                )
            }
            Exit::Killed => {
                log_event!("worker_killed", worker = id.get(), pid = pid, generation = g; "worker {id} (pid {pid}) killed: {how}")
            }
            Exit::FromSnapshot => {
                log_event!("worker_retired", worker = id.get(), pid = pid, generation = g;
                    "worker {id} (pid {pid}) of the snapshot (generation {g}) exited: {how}; its slot has no parked worker left"
                )
            }
            Exit::WhileStopping => {}
            Exit::Died { lived } => {
                *self.respawns.entry("died".into()).or_default() += 1;
                log_event!("worker_died", worker = id.get(), pid = pid, generation = g;
                    "worker {id} (pid {pid}) died after {:.1}s: {how}; respawning",
                    lived.as_secs_f64()
                )
            }
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
                log_event!("worker_failed_start", worker = id.get(), pid = pid, generation = g;
                    "worker {id} (pid {pid}) died {phase}: {how}; failed start {failed} in a row, next try in {:.1}s",
                    delay.as_secs_f64()
                );
                self.on_failed_start(id, g, failed, &how, now);
            }
        }
    }

    /// A worker of `g` in slot `id` did not come up (`failed` times in a row).
    pub(super) fn on_failed_start(&mut self, id: SlotId, g: u64, failed: u32, how: &str, now: Now) {
        *self.respawns.entry("failed_start".into()).or_default() += 1;
        let chain = self
            .reloads
            .current
            .as_ref()
            .is_some_and(|r| r.kind == common::reload::ReloadKind::Chain);
        if let Some(reason) = self
            .reloads
            .on_failed_start(&mut self.table, id, g, failed, how)
        {
            // Slots whose old worker was parked already get it back too.
            self.unpark_for_abort(g, chain.then_some(id), now);
            if chain {
                if let Some(old) = self.table.newest_older(id, g) {
                    self.table.retarget(id, old);
                }
            } else {
                self.table.abort_to_older(g);
            }
            self.finish_reload(false, reason, now);
        }
    }

    /// A worker start that failed without an exit (fork refused, zygote gone, no show).
    pub(super) fn fail_start(&mut self, id: SlotId, g: u64, how: &str, now: Now) {
        let Some((failed, delay)) = self.table.fail_start(id, how, now.at) else {
            return;
        };
        log_event!("worker_failed_start", worker = id.get(), generation = g;
            "worker {id} of generation {g} {how}; failed start {failed} in a row, next try in {:.1}s",
            delay.as_secs_f64()
        );
        self.on_failed_start(id, g, failed, how, now);
    }

    pub(super) fn finish_reload(&mut self, ok: bool, message: String, now: Now) {
        if let Some((ok, message)) = self.reloads.finish(ok, message, now) {
            if ok {
                self.systemd_reload_ended(None);
                log_event!("reload_complete"; "{message}");
            } else {
                self.reload_failed(message);
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
            let resumed = match w.state {
                WorkerState::Resuming { since } => Some(since),
                _ => None,
            };
            let w = self.table.set_ready(pid, now.at);
            if let (Some(since), Some(w)) = (resumed, w) {
                log!(
                    "worker {} (pid {pid}, generation {}) accepts again {:.1} ms after its SIGCONT: its slot's current worker retires",
                    w.slot,
                    w.generation,
                    now.at.saturating_duration_since(since).as_secs_f64() * 1e3
                );
            } else if let Some(w) = w {
                log_event!("worker_ready", worker = w.slot.get(), pid = pid, generation = w.generation;
                    "worker {} (pid {pid}, generation {}) ready in {:.1} ms",
                    w.slot,
                    w.generation,
                    now.at.saturating_duration_since(w.spawned).as_secs_f64() * 1e3
                );
                // A paused instance freezes exec workers that become ready (spawned by a
                // reload, `+` or a respawn while paused), so none accepts before the resume.
                if freeze_when_ready(self.paused, self.is_exec()) {
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

    /// Ask a worker to stop after its requests; SIGKILL at the mercy deadline.
    pub(super) fn retire(&mut self, pid: i32, now: Now) {
        let in_snapshot = self.table.worker(pid).is_some_and(|w| w.in_snapshot());
        if !self.table.retire(pid, now.at, self.config.mercy) {
            return;
        }
        let sig = match &self.config.worker {
            WorkerKind::Builtin => libc::SIGHUP,
            WorkerKind::Exec { stop_signal, .. } => *stop_signal,
        };
        sys::kill(pid, sig);
        // A parked worker is stopped: it must run to read its stop signal (sent first, so
        // it reads it before it accepts again).
        if (self.is_exec() && self.paused) || in_snapshot {
            sys::kill(pid, libc::SIGCONT);
        }
    }

    pub(super) fn enforce_deadlines(&mut self, now: Now) {
        self.enforce_preload_deadlines(now);
        self.expire_snapshot(now);
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
                    sys::kill_group(pid);
                }
                Expired::Grace(pid) => {
                    log!(
                        "worker {} (pid {pid}) counted ready after the {:.1}s grace (it sent no READY=1)",
                        w(pid).unwrap_or_default(),
                        self.ready_grace().unwrap_or_default().as_secs_f64()
                    );
                    if freeze_when_ready(self.paused, self.is_exec()) {
                        sys::kill(pid, libc::SIGSTOP);
                    }
                }
                Expired::Resumed(pid) => log!(
                    "worker {} (pid {pid}) restored by the rollback counted serving after {:.1}s (it sent no READY=1): its slot's current worker retires",
                    w(pid).unwrap_or_default(),
                    super::table::RESUME_GRACE.as_secs_f64()
                ),
                Expired::StartTimeout(pid) => {
                    log!(
                        "worker {} (pid {pid}) not ready after {}s: SIGKILL",
                        w(pid).unwrap_or_default(),
                        start_timeout.as_secs_f64()
                    );
                    sys::kill_group(pid);
                }
            }
        }
        if let Phase::Checking(c) = &mut self.phase {
            if now.at >= c.deadline && !c.killed {
                c.killed = true;
                sys::kill_group(c.pid);
            }
        }
    }

    /// SIGKILL every live child of ours the table does not hold (a worker's children adopted
    /// once it died, since we are a child subreaper; a checker) and its process group, unless
    /// that is ours. Returns how many there were: once killed, each is reaped like any child,
    /// and whatever it leaves is adopted in turn and found by the next call.
    pub(super) fn kill_strays(&self) -> usize {
        let strays: Vec<(i32, i32)> = sys::children_of(std::process::id() as i32)
            .into_iter()
            .filter(|&(pid, _)| self.table.worker(pid).is_none() && !self.preload.is_zygote(pid))
            .collect();
        for &(pid, group) in &strays {
            log!("stopping: killing pid {pid} (a child the instance adopted) and its group");
            sys::kill_process_group(group);
            sys::kill(pid, libc::SIGKILL);
        }
        strays.len()
    }
}
