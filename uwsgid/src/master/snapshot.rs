//! `--auto-snapshot`: the previous generation parked for a rollback, and the rollback that
//! brings it back.
//!
//! Parking: when a graceful, workers or chain reload replaces a slot's ready worker
//! ([`Table::replaced`]), that worker is told to park ([`PARK_SIGNAL`]) instead of to stop,
//! if [`Table::parkable`] says it may. A built-in or native Python worker then stops accepting,
//! answers its requests in flight with `Connection: close`, closes idle connections, and, once
//! it holds none, stops itself (`SIGSTOP`): the master sees it stop in `waitpid` (`WUNTRACED`)
//! and only then counts it parked, so a rollback never sends `SIGCONT` to a worker that has
//! not stopped yet. A parking worker still busy at the mercy deadline is killed, like a
//! draining one. Exec programs are never parked: the master cannot know when an arbitrary
//! program holds no request, and freezing one that does would hang its clients.
//!
//! The snapshot is the newest generation with parked (or parking) workers; there is at most
//! one: parking a worker of a newer generation retires the older snapshot's workers, and
//! `--snapshot-max-age` retires them all once the snapshot is that old. A parked worker that is
//! retired gets its stop signal, then `SIGCONT`, and drains like any worker.
//!
//! Rollback (`SIGURG`, FIFO `b`): with a reload under way, that reload is aborted (see
//! [`super::reload::Reloads::abort_for_rollback`]); else, with a snapshot, every slot that has
//! a parked worker of it targets its generation again, the worker gets `SIGCONT` and is ready
//! at once (its listeners stayed open, its application loaded), and the slot's current worker
//! retires gracefully. It is a reload of kind `rollback` (log, stats `last_reload`, `--wait`,
//! systemd, metrics), complete once only the restored generation's workers are left.

use super::reload::Reload;
use super::table::{SlotId, WorkerState};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::log;
use crate::sys;
use common::reload::ReloadKind;
use common::stats as wire;

/// What the master sends a worker to park it (a built-in worker acts on it only from the
/// master; the native Python worker reads it from its signalfd).
pub const PARK_SIGNAL: i32 = crate::worker::PARK_SIGNAL;

/// A rollback retires a slot's current worker this long after the slot's restored worker
/// said it accepts again. Meanwhile the current one takes only the connections the restored
/// workers leave (they are first in the listeners' wait queues): under load both serve,
/// and the retiring workers' wake-ups and exits (about 1 ms of CPU each for native Python)
/// come after the restored workers' first answers rather than among them.
pub const ROLLBACK_OVERLAP: std::time::Duration = std::time::Duration::from_millis(50);

impl Master {
    /// `--auto-snapshot` applies to this instance's workers: built-in and native Python ones.
    pub(super) fn snapshots_on(&self) -> bool {
        self.config.auto_snapshot && parks(&self.config.worker)
    }

    /// At startup: what `--auto-snapshot` will do with these workers.
    pub(super) fn log_snapshot_mode(&self) {
        if !self.config.auto_snapshot {
            return;
        }
        if parks(&self.config.worker) {
            let age = self
                .config
                .snapshot_max_age
                .map(|d| format!(", dropped after {}s", d.as_secs_f64()))
                .unwrap_or_default();
            log!("--auto-snapshot: a reload parks the previous generation's workers for a rollback (SIGURG, FIFO b){age}");
        } else {
            log!("warning: --auto-snapshot: exec workers are never parked (the master cannot tell when an arbitrary program holds no request, and freezing one that does would hang its clients): reloads stop them, a rollback only aborts a reload under way");
        }
    }

    /// Park `pid` (replaced in its slot) instead of retiring it, if it may be parked; the
    /// older snapshot, if any, is retired. False if the caller must retire it.
    pub(super) fn try_park(&mut self, pid: i32, now: Now) -> bool {
        // A rollback's replaced workers retire: they are the generation rolled back from.
        if self.rollback_to().is_some() || !self.snapshots_on() || !self.table.parkable(pid) {
            return false;
        }
        let Some(g) = self.table.worker(pid).map(|w| w.generation) else {
            return false;
        };
        for old in self.table.snapshot_except(g) {
            let og = self.table.worker(old).map(|w| w.generation).unwrap_or(0);
            log!("snapshot of generation {og} replaced by generation {g}: worker pid {old} stops");
            self.retire(old, now);
        }
        if !self.table.park(pid, now.at, self.config.mercy) {
            return false;
        }
        let id = self.table.worker(pid).map(|w| w.slot.get()).unwrap_or(0);
        log!("worker {id} (pid {pid}, generation {g}) parks for the snapshot once its requests are done");
        sys::kill(pid, PARK_SIGNAL);
        true
    }

    /// Snapshot workers whose slot was removed (`-`) stop.
    pub(super) fn settle_snapshot(&mut self, now: Now) {
        for pid in self.table.snapshot_without_slot() {
            log!("snapshot worker pid {pid}: its slot was removed; it stops");
            self.retire(pid, now);
        }
    }

    /// `waitpid` saw `pid` stop (`WUNTRACED`).
    pub(super) fn on_worker_stopped(&mut self, pid: i32, now: Now) {
        let state = self.table.worker(pid).map(|w| w.state.clone());
        match state {
            Some(WorkerState::Parking { since, .. }) => {
                if let Some(w) = self.table.set_parked(pid) {
                    log!(
                        "worker {} (pid {pid}, generation {}) parked after {:.1} ms: snapshot of generation {}",
                        w.slot,
                        w.generation,
                        now.at.saturating_duration_since(since).as_secs_f64() * 1e3,
                        w.generation
                    );
                }
            }
            // Told to stop while it was stopping itself to park: it must drain, not sleep.
            Some(WorkerState::Draining { .. }) if self.config.auto_snapshot => {
                sys::kill(pid, libc::SIGCONT);
            }
            // Restored (or given back by an abort) while it was stopping itself: it serves.
            Some(WorkerState::Ready) if self.snapshots_on() && !self.paused => {
                log!("worker pid {pid} stopped while it should serve (a park that raced its restore): SIGCONT");
                sys::kill(pid, libc::SIGCONT);
            }
            _ => {}
        }
    }

    /// `--snapshot-max-age` passed: the snapshot's workers parked that long ago stop.
    pub(super) fn expire_snapshot(&mut self, now: Now) {
        let Some(max) = self.config.snapshot_max_age else {
            return;
        };
        let pids: Vec<(i32, u64)> = self
            .table
            .workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Parking { since, .. } | WorkerState::Parked { since }
                    if now.at >= since + max =>
                {
                    Some((w.pid, w.generation))
                }
                _ => None,
            })
            .collect();
        if let Some(&(_, g)) = pids.first() {
            log!(
                "snapshot of generation {g} dropped after --snapshot-max-age {}s: {} worker(s) stop",
                max.as_secs_f64(),
                pids.len()
            );
        }
        for (pid, _) in pids {
            self.retire(pid, now);
        }
    }

    /// Not before when `pid`, replaced in its slot, may retire: during a rollback,
    /// [`ROLLBACK_OVERLAP`] after the slot's restored worker was ready; `None` otherwise.
    pub(super) fn retire_not_before(&self, pid: i32) -> Option<std::time::Instant> {
        let g = self.rollback_to()?;
        let slot = self.table.worker(pid)?.slot;
        let ready = self
            .table
            .workers
            .iter()
            .filter(|w| w.slot == slot && w.generation == g && w.is_ready())
            .filter_map(|w| w.ready_at)
            .max()?;
        Some(ready + ROLLBACK_OVERLAP)
    }

    /// The generation a rollback under way restores.
    fn rollback_to(&self) -> Option<u64> {
        let r = self.reloads.current.as_ref()?;
        (r.kind == ReloadKind::Rollback).then_some(r.generation)
    }

    /// The next [`Master::retire_not_before`] to come.
    pub(super) fn rollback_deadline(&self) -> Option<std::time::Instant> {
        self.rollback_to()?;
        self.table
            .replaced()
            .into_iter()
            .filter_map(|pid| self.retire_not_before(pid))
            .min()
    }

    /// When the snapshot expires, if it does.
    pub(super) fn snapshot_deadline(&self) -> Option<std::time::Instant> {
        let max = self.config.snapshot_max_age?;
        Some(self.table.snapshot_since()? + max)
    }

    /// A rollback with no reload under way: restore the snapshot, if there is one.
    pub(super) fn restore_snapshot(&mut self, now: Now) {
        let Some(g) = self
            .table
            .workers
            .iter()
            .filter(|w| w.is_parked())
            .map(|w| w.generation)
            .max()
        else {
            let why = if !self.config.auto_snapshot {
                "none is kept without --auto-snapshot"
            } else if !parks(&self.config.worker) {
                "exec workers are never parked (the master cannot tell when an arbitrary program holds no request), so --auto-snapshot keeps none"
            } else {
                "none was taken since the start, or the last one was restored, dropped or its workers exited"
            };
            log!("warning: rollback requested: no snapshot is available ({why}) and no reload is under way; nothing changed");
            return;
        };
        let from: Vec<u64> = self
            .table
            .slots
            .iter()
            .map(|s| s.target)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let restored = self.table.restore(g, now.at);
        // Every SIGCONT first, and nothing else: a restored worker is `Resuming` until it says
        // it accepts again (`READY=1`), and `settle` then retires its slot's current worker,
        // as a reload retires a slot's old worker once the new one is ready. So no slot is
        // ever without a serving worker, and the workers that retire (waking, draining,
        // exiting: about 1 ms of CPU each for native Python ones) do not compete for the CPU
        // with the snapshot's while it wakes. A restored worker's registrations in the
        // listeners' wait queues predate the current generation's (`uwsgid-python`'s
        // standby set, the built-in worker's kept listeners), so new connections go to it
        // first as soon as it waits. Measured on 2 cores, 16 native Python workers, a client
        // probing one connection at a time: with the current workers' stop signals sent at
        // once (after or before the SIGCONTs) the last old answer came 3.3 to 7 ms after
        // the rollback was asked; with them sent once the restored workers answered, 1.2 ms.
        // A parked worker woken runs under SCHED_BATCH until it is back (`sys::set_batch`),
        // so the SIGCONTs do not preempt this loop one by one.
        let slots: Vec<SlotId> = restored.iter().map(|&(id, _)| id).collect();
        for &(_, pid) in &restored {
            sys::kill(pid, libc::SIGCONT);
        }
        // Parking workers of the snapshot (none once a reload completed) stop, as do
        // parked workers of other generations.
        for pid in self.table.snapshot_pids() {
            self.retire(pid, now);
        }
        self.systemd_reloading();
        let missing = self.table.slots.len() - slots.len();
        log!(
            "rollback: generation {g} restored in {} of {} slot(s) (SIGCONT), generation(s) {from:?} retire{}",
            slots.len(),
            self.table.slots.len(),
            if missing > 0 {
                format!("; {missing} slot(s) had no parked worker and keep their generation")
            } else {
                String::new()
            }
        );
        self.reloads.current = Some(Reload {
            kind: ReloadKind::Rollback,
            generation: g,
            started: now.at,
            started_unix_ms: now.unix_ms,
            chain_cursor: None,
        });
    }

    /// A reload to `g` is aborted (a rollback request, or its new workers failed): slots
    /// whose old worker was already parked get it back (SIGCONT), so the abort returns them
    /// to the generation that served too.
    pub(super) fn unpark_for_abort(&mut self, g: u64, only: Option<SlotId>, now: Now) {
        for pid in self.table.unpark_older(g, only, now.at) {
            let (id, wg) = self
                .table
                .worker(pid)
                .map(|w| (w.slot.get(), w.generation))
                .unwrap_or_default();
            log!("reload to generation {g} aborted: worker {id} (pid {pid}, generation {wg}) leaves the snapshot and serves again");
            sys::kill(pid, libc::SIGCONT);
        }
    }

    /// The snapshot as the stats document shows it.
    pub(super) fn snapshot_view(&self, now: Now) -> Option<wire::Snapshot> {
        let g = self.table.snapshot_generation()?;
        let since = self.table.snapshot_since()?;
        let workers = self
            .table
            .workers
            .iter()
            .filter(|w| w.in_snapshot() && w.generation == g)
            .map(|w| wire::Parked {
                id: w.slot.get(),
                pid: w.pid as i64,
                state: if w.is_parked() { "parked" } else { "parking" }.into(),
                since_unix_ms: match w.state {
                    WorkerState::Parking { since, .. } | WorkerState::Parked { since } => {
                        now.unix_ms_of(since)
                    }
                    _ => 0,
                },
            })
            .collect();
        Some(wire::Snapshot {
            generation: g,
            since_unix_ms: now.unix_ms_of(since),
            expires_unix_ms: self.snapshot_deadline().map(|t| now.unix_ms_at(t)),
            workers,
        })
    }
}

/// Whether workers of this kind can be parked: built-in ones and the native Python worker.
pub fn parks(kind: &WorkerKind) -> bool {
    match kind {
        WorkerKind::Builtin => true,
        WorkerKind::Exec { argv, .. } => argv
            .first()
            .is_some_and(|p| p.ends_with(crate::cli::NATIVE_PYTHON)),
    }
}
