//! The worker table: every worker the master knows (until `waitpid` returns it), the slots
//! they serve and the scoreboard cells they write.
//!
//! Nothing here forks, signals or reads a clock: methods take `now` and return what the caller
//! must do (the pids to signal, the slots to spawn for), so every decision about workers is a
//! plain function with unit tests below.

use std::time::{Duration, Instant};

use std::sync::atomic::Ordering::Relaxed;

use crate::scoreboard::{self, Allocator, Scoreboard};

/// A worker that lived this long after becoming ready resets its slot's failure count.
pub const STABLE_AFTER: Duration = Duration::from_secs(5);
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The wait before the next start after `failed` failed starts in a row (1 = the first
/// failure): 100 ms, doubling, at most 10 s. The one backoff formula, for crashes, start
/// timeouts and fork failures alike.
pub fn backoff(failed: u32) -> Duration {
    let exp = failed.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_MAX)
}

/// A slot's number as operators see it: 1-based, `UWSGID_WORKER_ID`, the stats `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(u32);

impl SlotId {
    /// `None` for 0, which names no slot.
    pub fn new(id: u32) -> Option<SlotId> {
        (id > 0).then_some(SlotId(id))
    }

    pub fn of_index(index: usize) -> SlotId {
        SlotId(index as u32 + 1)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl std::fmt::Display for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    /// Spawned, not ready yet. `killed`: SIGKILLed at its start timeout (its exit still
    /// counts as a failed start; its deadline is not offered again).
    Starting {
        killed: bool,
    },
    Ready,
    /// Told to stop; SIGKILL at the deadline.
    Draining {
        since: Instant,
        deadline: Instant,
    },
    Killed,
    /// `--auto-snapshot`: told to park (stop accepting, finish its requests, stop itself);
    /// SIGKILL at the deadline like a draining worker. `since`: when it was told.
    Parking {
        since: Instant,
        deadline: Instant,
    },
    /// Stopped by itself once idle (the master saw it stop in `waitpid`): part of the
    /// snapshot a rollback restores. `since`: when it was told to park.
    Parked {
        since: Instant,
    },
    /// Restored by a rollback (`SIGCONT` sent at `since`), not yet heard from: it holds its
    /// slot, but the slot's current worker serves on until this one says it accepts again
    /// (`READY=1`), or [`RESUME_GRACE`] has passed.
    Resuming {
        since: Instant,
    },
}

/// How long a rollback's restored worker may take to say it accepts again before it is
/// counted as serving anyway (a worker of an image from before `READY=1` on resume).
pub const RESUME_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Worker {
    pub pid: i32,
    pub slot: SlotId,
    pub generation: u64,
    pub cell: usize,
    pub state: WorkerState,
    pub spawned: Instant,
    pub spawned_unix_ms: u64,
    pub ready_at: Option<Instant>,
    pub status_text: Option<String>,
    /// Marked for recycling: it serves until a replacement in its slot is ready, then it is
    /// retired (`super::recycle`). It no longer counts as its slot's worker.
    pub recycle: Option<super::recycle::Cause>,
}

impl Worker {
    /// Starting, resuming or ready: it holds (or will hold) its slot.
    pub fn alive_for_slot(&self) -> bool {
        matches!(
            self.state,
            WorkerState::Starting { .. } | WorkerState::Resuming { .. } | WorkerState::Ready
        )
    }

    pub fn is_ready(&self) -> bool {
        self.state == WorkerState::Ready
    }

    /// Not serving yet: spawned and not ready, or restored by a rollback and not heard from.
    pub fn is_starting(&self) -> bool {
        matches!(
            self.state,
            WorkerState::Starting { .. } | WorkerState::Resuming { .. }
        )
    }

    /// Parking or parked: part of the snapshot.
    pub fn in_snapshot(&self) -> bool {
        matches!(
            self.state,
            WorkerState::Parking { .. } | WorkerState::Parked { .. }
        )
    }

    pub fn is_parked(&self) -> bool {
        matches!(self.state, WorkerState::Parked { .. })
    }
}

/// Preload: a worker asked of a zygote, not yet adopted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pending {
    pub generation: u64,
    pub since: Instant,
    /// When the fork request was written (at once, even to a zygote still loading).
    pub asked: Option<Instant>,
}

#[derive(Debug, Default, Clone)]
pub struct Slot {
    /// The generation this slot should run.
    pub target: u64,
    pub pending: Option<Pending>,
    pub respawn_count: u64,
    pub failed_starts: u32,
    pub next_spawn: Option<Instant>,
    pub last_exit: Option<String>,
    /// Counters of the slot's workers that exited (the live ones are in their cells).
    pub requests: u64,
    pub tx: u64,
    pub running_time_us: u64,
    pub last_spawn: u64,
    /// Workers of this slot recycled or killed by harakiri, by cause.
    pub recycles: super::recycle::Counts,
}

/// How a worker left the table.
#[derive(Debug, PartialEq)]
pub enum Exit {
    /// It was draining: retired after this long.
    Retired(Duration),
    /// It was SIGKILLed.
    Killed,
    /// It was part of the snapshot (parking or parked) and exited unasked.
    FromSnapshot,
    /// The instance is stopping: nothing to decide.
    WhileStopping,
    /// It died while holding its slot, after being ready long enough: respawn now.
    Died { lived: Duration },
    /// It died before it was ready, or soon after: a failed start, with the backoff applied.
    FailedStart {
        failed: u32,
        delay: Duration,
        was_ready: bool,
    },
}

/// A deadline a worker passed, and what was done about it.
#[derive(Debug, PartialEq)]
pub enum Expired {
    /// Still draining after the mercy: SIGKILL.
    Mercy(i32),
    /// An exec worker that sent no READY=1 counted ready after its grace.
    Grace(i32),
    /// A restored worker that sent no READY=1 counted serving after [`RESUME_GRACE`].
    Resumed(i32),
    /// Not ready after the start timeout: SIGKILL (its exit counts as a failed start).
    StartTimeout(i32),
}

pub struct Table {
    pub workers: Vec<Worker>,
    pub slots: Vec<Slot>,
    pub board: Scoreboard,
    cells: Allocator,
}

impl Table {
    pub fn new(board: Scoreboard) -> Table {
        Table {
            workers: Vec::new(),
            slots: Vec::new(),
            board,
            cells: Allocator::new(),
        }
    }

    /// Grow to `n` slots (new ones target `generation`) or drop the slots beyond `n`.
    pub fn resize(&mut self, n: usize, generation: u64) {
        while self.slots.len() < n {
            self.slots.push(Slot {
                target: generation,
                ..Slot::default()
            });
        }
        self.slots.truncate(n);
    }

    pub fn slot(&self, id: SlotId) -> Option<&Slot> {
        self.slots.get(id.index())
    }

    pub fn slot_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index())
    }

    pub fn slot_ids(&self) -> impl Iterator<Item = SlotId> {
        (0..self.slots.len()).map(SlotId::of_index)
    }

    pub fn worker(&self, pid: i32) -> Option<&Worker> {
        self.workers.iter().find(|w| w.pid == pid)
    }

    pub fn worker_mut(&mut self, pid: i32) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.pid == pid)
    }

    pub fn alloc_cell(&mut self) -> Option<usize> {
        self.cells.alloc()
    }

    pub fn free_cell(&mut self, cell: usize) {
        self.cells.free(cell);
    }

    /// A cell an adopted worker already holds.
    pub fn take_cell(&mut self, cell: usize) {
        if cell < scoreboard::CAPACITY {
            self.cells.take(cell);
        }
    }

    /// Every slot targets `g` (a re-exec's new generation).
    pub fn retarget_all(&mut self, g: u64) {
        for s in &mut self.slots {
            s.target = g;
        }
    }

    /// Slot `id` now targets `g`, with a fresh failure count.
    pub fn retarget(&mut self, id: SlotId, g: u64) {
        if let Some(s) = self.slot_mut(id) {
            s.target = g;
            s.failed_starts = 0;
            s.next_spawn = None;
        }
    }

    /// A new worker of slot `id`, starting.
    pub fn add_started(&mut self, w: Worker, now_ms: u64) {
        if let Some(s) = self.slot_mut(w.slot) {
            s.respawn_count += 1;
            s.last_spawn = now_ms / 1000;
        }
        self.workers.push(w);
    }

    /// True if slot `id` has a starting or ready worker of generation `g`.
    pub fn has_live(&self, id: SlotId, g: u64) -> bool {
        self.workers
            .iter()
            .any(|w| w.slot == id && w.generation == g && w.alive_for_slot() && w.recycle.is_none())
    }

    /// True if slot `id` has a ready worker of generation `g`.
    pub fn has_ready(&self, id: SlotId, g: u64) -> bool {
        self.workers
            .iter()
            .any(|w| w.slot == id && w.generation == g && w.is_ready() && w.recycle.is_none())
    }

    /// Slots holding a ready worker of generation `g`.
    pub fn ready_count(&self, g: u64) -> usize {
        self.slot_ids().filter(|&id| self.has_ready(id, g)).count()
    }

    /// Workers of generations other than `g` still in the table, parked ones left out (a
    /// parking one counts until it is parked: its last requests are not done).
    pub fn old_alive(&self, g: u64) -> usize {
        self.workers
            .iter()
            .filter(|w| w.generation != g && !w.is_parked())
            .count()
    }

    /// Every slot holds a ready worker of `g` and no other worker is alive (parked ones
    /// aside).
    pub fn complete(&self, g: u64) -> bool {
        self.ready_count(g) == self.slots.len() && self.old_alive(g) == 0
    }

    /// A rollback's end: every slot holds a ready worker of its own target and no worker of
    /// another generation is alive (parked ones aside). A slot the snapshot had no worker
    /// for keeps the generation it had.
    pub fn settled(&self) -> bool {
        self.slot_ids()
            .all(|id| self.slot(id).is_some_and(|s| self.has_ready(id, s.target)))
            && self.workers.iter().all(|w| {
                w.is_parked()
                    || self
                        .slot(w.slot)
                        .is_some_and(|s| s.target == w.generation && w.alive_for_slot())
            })
    }

    /// The snapshot's generation: the newest generation with a parking or parked worker.
    pub fn snapshot_generation(&self) -> Option<u64> {
        self.workers
            .iter()
            .filter(|w| w.in_snapshot())
            .map(|w| w.generation)
            .max()
    }

    /// `pid`, replaced in its slot ([`Table::replaced`]), may be parked instead of retired:
    /// it is ready, not recycled, older than its slot's target which a ready worker holds,
    /// its slot has no parked worker yet, and no newer snapshot exists (a stand-in older
    /// than the snapshot is retired).
    pub fn parkable(&self, pid: i32) -> bool {
        let Some(w) = self.worker(pid) else {
            return false;
        };
        let Some(s) = self.slot(w.slot) else {
            return false;
        };
        w.is_ready()
            && w.recycle.is_none()
            && w.generation < s.target
            && self.has_ready(w.slot, s.target)
            && self.snapshot_generation().is_none_or(|g| g <= w.generation)
            && !self
                .workers
                .iter()
                .any(|o| o.slot == w.slot && o.generation == w.generation && o.in_snapshot())
    }

    /// Ready → Parking until `now + mercy`. False if it was not ready.
    pub fn park(&mut self, pid: i32, now: Instant, mercy: Duration) -> bool {
        match self.worker_mut(pid) {
            Some(w) if w.is_ready() => {
                w.state = WorkerState::Parking {
                    since: now,
                    deadline: now + mercy,
                };
                true
            }
            _ => false,
        }
    }

    /// `waitpid` saw `pid` stop: a parking worker is now parked. The worker, if so.
    pub fn set_parked(&mut self, pid: i32) -> Option<&Worker> {
        let w = self.worker_mut(pid)?;
        let WorkerState::Parking { since, .. } = w.state else {
            return None;
        };
        w.state = WorkerState::Parked { since };
        Some(w)
    }

    /// Snapshot workers of a generation other than `keep`: a newer snapshot replaces them.
    pub fn snapshot_except(&self, keep: u64) -> Vec<i32> {
        self.workers
            .iter()
            .filter(|w| w.in_snapshot() && w.generation != keep)
            .map(|w| w.pid)
            .collect()
    }

    /// Snapshot workers of slots beyond the configured count (`-`): nothing to restore them
    /// into.
    pub fn snapshot_without_slot(&self) -> Vec<i32> {
        self.workers
            .iter()
            .filter(|w| w.in_snapshot() && self.slot(w.slot).is_none())
            .map(|w| w.pid)
            .collect()
    }

    /// Every snapshot worker (the snapshot is dropped).
    pub fn snapshot_pids(&self) -> Vec<i32> {
        self.workers
            .iter()
            .filter(|w| w.in_snapshot())
            .map(|w| w.pid)
            .collect()
    }

    /// When the snapshot was taken: its first worker told to park.
    pub fn snapshot_since(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Parking { since, .. } | WorkerState::Parked { since } => Some(since),
                _ => None,
            })
            .min()
    }

    /// A rollback: every slot with a parked worker of `g` targets `g` again and that worker
    /// is ready now (the caller sends it SIGCONT); the slot's current workers are then
    /// replaced ([`Table::replaced`]). Returns the pids restored, with their slots.
    pub fn restore(&mut self, g: u64, now: Instant) -> Vec<(SlotId, i32)> {
        let mut out = Vec::new();
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.generation != g || !w.is_parked() || self.slot(w.slot).is_none() {
                continue;
            }
            let (id, pid) = (w.slot, w.pid);
            if out.iter().any(|&(s, _)| s == id) {
                continue;
            }
            let w = &mut self.workers[i];
            w.state = WorkerState::Resuming { since: now };
            self.retarget(id, g);
            out.push((id, pid));
        }
        out
    }

    /// The slots that need a worker spawned now, with the generation to spawn: those without
    /// a starting or ready worker of their target, no fork pending for it, and no backoff
    /// running. A pending fork for a generation the slot no longer targets is dropped (a late
    /// worker is retired when it shows up).
    pub fn missing(&mut self, now: Instant) -> Vec<(SlotId, u64)> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            let id = SlotId::of_index(i);
            let target = self.slots[i].target;
            if self.has_live(id, target) {
                continue;
            }
            let slot = &mut self.slots[i];
            match slot.pending {
                Some(p) if p.generation == target => continue,
                Some(_) => slot.pending = None,
                None => {}
            }
            if slot.next_spawn.is_some_and(|t| now < t) {
                continue;
            }
            slot.next_spawn = None;
            out.push((id, target));
        }
        out
    }

    /// A start of slot `id` failed (`how`): count it and back off. Returns the failure count
    /// and the wait before the next try.
    pub fn fail_start(&mut self, id: SlotId, how: &str, now: Instant) -> Option<(u32, Duration)> {
        let slot = self.slot_mut(id)?;
        slot.last_exit = Some(how.to_string());
        slot.failed_starts += 1;
        let delay = backoff(slot.failed_starts);
        slot.next_spawn = Some(now + delay);
        Some((slot.failed_starts, delay))
    }

    /// The workers to retire (issue 10: reload kinds compose):
    /// - a worker of a slot beyond the configured count;
    /// - a worker not of its slot's target once a ready worker of the target holds the slot;
    /// - a *starting* worker not of its slot's target: it serves nothing and its slot now
    ///   wants another generation (kept, reloads faster than readiness, a re-exec running the
    ///   FIFO bytes left over before it hears any READY=1, piled up one starting worker per
    ///   slot and reload, without bound);
    /// - a ready worker not of the target when a newer ready one serves the slot in its place.
    ///
    /// So a slot holds at most one ready worker of another generation (serving until its
    /// replacement is ready) and one worker of its target; everything else drains.
    pub fn replaced(&self) -> Vec<i32> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.alive_for_slot())
            .filter(|&(i, w)| match self.slot(w.slot) {
                None => true,
                // A recycled worker serves until a fresh one of the target is ready.
                Some(s) if w.generation == s.target => {
                    w.recycle.is_some() && self.has_ready(w.slot, s.target)
                }
                Some(s) => {
                    self.has_ready(w.slot, s.target)
                        || !w.is_ready()
                        || self.stand_in(w.slot, s.target) != Some(i)
                }
            })
            .map(|(_, w)| w.pid)
            .collect()
    }

    /// The one ready worker of another generation that keeps slot `id` served until a worker
    /// of `target` is ready: the newest (then the latest in the table), as an index.
    fn stand_in(&self, id: SlotId, target: u64) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.slot == id && w.generation != target && w.is_ready())
            .max_by_key(|&(i, w)| (w.generation, i))
            .map(|(i, _)| i)
    }

    /// Mark `pid` draining until `now + mercy`. False if it was not starting or ready (the
    /// caller sends no stop signal then).
    pub fn retire(&mut self, pid: i32, now: Instant, mercy: Duration) -> bool {
        match self.worker_mut(pid) {
            Some(w) if w.alive_for_slot() || w.in_snapshot() => {
                w.state = WorkerState::Draining {
                    since: now,
                    deadline: now + mercy,
                };
                true
            }
            _ => false,
        }
    }

    /// Mark every worker matching `which` killed; the pids to SIGKILL.
    pub fn kill_where(&mut self, which: impl Fn(&Worker) -> bool) -> Vec<i32> {
        let mut pids = Vec::new();
        for w in &mut self.workers {
            if w.state != WorkerState::Killed && which(w) {
                w.state = WorkerState::Killed;
                pids.push(w.pid);
            }
        }
        pids
    }

    /// Starting → Ready on READY=1. The worker, if this made it ready.
    pub fn set_ready(&mut self, pid: i32, now: Instant) -> Option<&Worker> {
        let w = self.workers.iter_mut().find(|w| w.pid == pid)?;
        if !w.is_starting() {
            return None;
        }
        w.state = WorkerState::Ready;
        w.ready_at = Some(now);
        Some(w)
    }

    /// STOPPING=1 unasked from a worker ready for long enough not to be a crash loop: it
    /// drains within the mercy and its slot gets a replacement now. True if so; sooner, or
    /// while starting, its exit still counts as a failed start.
    pub fn says_stopping(&mut self, pid: i32, now: Instant, mercy: Duration) -> bool {
        let Some(w) = self.worker_mut(pid) else {
            return false;
        };
        let stable = w
            .ready_at
            .is_some_and(|t| now.duration_since(t) >= STABLE_AFTER);
        if w.is_ready() && stable {
            w.state = WorkerState::Draining {
                since: now,
                deadline: now + mercy,
            };
            true
        } else {
            false
        }
    }

    /// `waitpid` returned `pid`: take it out of the table (its counters go to its slot, its
    /// cell is freed) and say what its exit means. `None` if it is not a worker.
    pub fn on_exit(
        &mut self,
        pid: i32,
        how: &str,
        now: Instant,
        stopping: bool,
    ) -> Option<(Worker, Exit)> {
        let pos = self.workers.iter().position(|w| w.pid == pid)?;
        let w = self.workers.remove(pos);
        let cell = self.board.cell(w.cell);
        if let Some(slot) = self.slots.get_mut(w.slot.index()) {
            slot.requests += cell.requests.load(Relaxed);
            slot.tx += cell.tx.load(Relaxed);
            slot.running_time_us += cell.running_time_us.load(Relaxed);
        }
        cell.pid.store(0, Relaxed);
        cell.state.store(scoreboard::FREE, Relaxed);
        self.cells.free(w.cell);
        let exit = match w.state {
            WorkerState::Draining { since, .. } => Exit::Retired(now.duration_since(since)),
            WorkerState::Killed => Exit::Killed,
            WorkerState::Parking { .. } | WorkerState::Parked { .. } => Exit::FromSnapshot,
            _ if stopping => Exit::WhileStopping,
            _ => {
                let Some(slot) = self.slots.get_mut(w.slot.index()) else {
                    return Some((w, Exit::WhileStopping));
                };
                slot.last_exit = Some(how.to_string());
                let stable = w
                    .ready_at
                    .is_some_and(|t| now.duration_since(t) >= STABLE_AFTER);
                if stable {
                    slot.failed_starts = 0;
                    slot.next_spawn = None;
                    Exit::Died {
                        lived: now.duration_since(w.spawned),
                    }
                } else {
                    slot.failed_starts += 1;
                    let delay = backoff(slot.failed_starts);
                    slot.next_spawn = Some(now + delay);
                    Exit::FailedStart {
                        failed: slot.failed_starts,
                        delay,
                        was_ready: w.ready_at.is_some(),
                    }
                }
            }
        };
        Some((w, exit))
    }

    /// Act on the deadlines workers passed: drains past the mercy are killed, exec workers
    /// past their ready grace count as ready, starts past the start timeout are killed.
    /// `grace` is the exec workers' `--ready-timeout`, if any.
    pub fn expire(
        &mut self,
        now: Instant,
        grace: Option<Duration>,
        start_timeout: Duration,
    ) -> Vec<Expired> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            match w.state {
                WorkerState::Draining { deadline, .. } | WorkerState::Parking { deadline, .. }
                    if now >= deadline =>
                {
                    w.state = WorkerState::Killed;
                    out.push(Expired::Mercy(w.pid));
                }
                WorkerState::Resuming { since } if now >= since + RESUME_GRACE => {
                    w.state = WorkerState::Ready;
                    w.ready_at = Some(now);
                    out.push(Expired::Resumed(w.pid));
                }
                WorkerState::Starting { killed: false } => {
                    if grace.is_some_and(|g| now >= w.spawned + g) {
                        w.state = WorkerState::Ready;
                        w.ready_at = Some(now);
                        out.push(Expired::Grace(w.pid));
                    } else if now >= w.spawned + start_timeout {
                        w.state = WorkerState::Starting { killed: true };
                        out.push(Expired::StartTimeout(w.pid));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The earliest deadline of a worker or slot still to come (one that fired is not
    /// offered again, so a killed worker not yet reaped does not make `poll` spin).
    pub fn next_deadline(
        &self,
        now: Instant,
        grace: Option<Duration>,
        start_timeout: Duration,
    ) -> Option<Instant> {
        let start = grace.unwrap_or(start_timeout).min(start_timeout);
        let workers = self.workers.iter().filter_map(|w| match w.state {
            WorkerState::Draining { deadline, .. } | WorkerState::Parking { deadline, .. } => {
                Some(deadline)
            }
            WorkerState::Starting { killed: false } => Some(w.spawned + start),
            WorkerState::Resuming { since } => Some(since + RESUME_GRACE),
            _ => None,
        });
        let slots = self.slots.iter().flat_map(|s| {
            [
                s.next_spawn,
                s.pending.and_then(|p| p.asked).map(|t| t + start_timeout),
            ]
        });
        workers.chain(slots.flatten()).filter(|&t| t > now).min()
    }

    /// The pending forks whose worker did not show up within `timeout` of the request; each
    /// is dropped (the caller counts a failed start).
    pub fn expire_pending(&mut self, now: Instant, timeout: Duration) -> Vec<(SlotId, u64)> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(p) = s.pending {
                if p.asked.is_some_and(|t| now >= t + timeout) {
                    s.pending = None;
                    out.push((SlotId::of_index(i), p.generation));
                }
            }
        }
        out
    }

    /// The slots waiting for a fork from the zygote of `g`; their pending entry is dropped.
    pub fn drop_pending(&mut self, g: u64) -> Vec<SlotId> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.pending.is_some_and(|p| p.generation == g) {
                s.pending = None;
                out.push(SlotId::of_index(i));
            }
        }
        out
    }

    /// A failed reload to `g` is aborted: every slot targeting `g` that still holds a ready
    /// worker of an older generation targets that generation again (the newest one), with a
    /// fresh failure count, so `g` is tried no more there and its starting workers are
    /// retired ([`Table::replaced`]). A slot with no such worker (added during the reload, or
    /// its old worker died meanwhile) keeps `g`: nothing else can serve it. Returns the slots
    /// given back, with their generation.
    pub fn abort_to_older(&mut self, g: u64) -> Vec<(SlotId, u64)> {
        let mut out = Vec::new();
        for id in self.slot_ids().collect::<Vec<_>>() {
            if self.slot(id).is_none_or(|s| s.target != g) {
                continue;
            }
            let old = self
                .workers
                .iter()
                .filter(|w| w.slot == id && w.generation < g && w.is_ready())
                .map(|w| w.generation)
                .max();
            if let Some(old) = old {
                self.retarget(id, old);
                out.push((id, old));
            }
        }
        out
    }

    /// A reload to `g` is being aborted (`--auto-snapshot`): a slot with no ready worker
    /// older than `g` but a parked one (its old worker parked once the new one was ready)
    /// gets that worker back, ready now, so that the abort can give the slot back to it (the
    /// caller sends it SIGCONT). `only`: that slot alone (a chain that stops). Returns their
    /// pids.
    pub fn unpark_older(&mut self, g: u64, only: Option<SlotId>, now: Instant) -> Vec<i32> {
        let mut out = Vec::new();
        for id in self.slot_ids().collect::<Vec<_>>() {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let ready_older = self
                .workers
                .iter()
                .any(|w| w.slot == id && w.generation < g && w.is_ready());
            if ready_older {
                continue;
            }
            let parked = self
                .workers
                .iter_mut()
                .filter(|w| w.slot == id && w.generation < g && w.is_parked())
                .max_by_key(|w| w.generation);
            if let Some(w) = parked {
                w.state = WorkerState::Ready;
                w.ready_at = Some(now);
                out.push(w.pid);
            }
        }
        out
    }

    /// The newest worker of a generation older than `g` in slot `id` (a chain that stops
    /// gives the slot back to it).
    pub fn newest_older(&self, id: SlotId, g: u64) -> Option<u64> {
        self.workers
            .iter()
            .filter(|w| w.slot == id && w.generation < g)
            .map(|w| w.generation)
            .max()
    }
}

#[cfg(test)]
#[path = "tests/table.rs"]
pub(crate) mod tests;
