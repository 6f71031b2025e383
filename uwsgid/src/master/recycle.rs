//! Harakiri and worker recycling (`--harakiri*`, `--max-requests*`, `--reload-on-rss`,
//! `--reload-on-pss`, `--min/max-worker-lifetime*`).
//!
//! The master looks at its workers' scoreboard cells on a bounded tick ([`TICK`]; memory is
//! read from `/proc` at most every [`MEMORY_EVERY`]); no thread, no signal timer. The pure
//! decisions are the functions below (unit tests in `tests/recycle.rs`):
//!
//! - harakiri: a worker whose oldest request in flight started `--harakiri` seconds ago or
//!   more. Its slot is refilled first (the worker is marked killed, so the slot lacks a live
//!   worker and `spawn_missing` forks one), then it is SIGKILLed with its group, or sent
//!   `--harakiri-graceful-signal` and SIGKILLed `--harakiri-graceful-timeout` later (the drain
//!   deadline). A Python worker (either runner) is first sent SIGUSR2, on which it writes every
//!   thread's stack to the log (`faulthandler`); the master marks it draining for
//!   [`DUMP_WAIT`], relays what it wrote, then kills it (or sends the graceful signal), so the
//!   stacks come before the kill line. A worker already harakiri'd is not judged again (a
//!   graceful one still stuck is SIGKILLed at its deadline, which is not pushed back).
//! - recycling: a ready worker of its slot's target generation past a limit is marked
//!   ([`super::table::Worker::recycle`]); the table then treats its slot as lacking a worker, so
//!   a replacement is spawned while it keeps serving, and it is retired gracefully once the
//!   replacement is ready ([`super::table::Table::replaced`]): capacity never drops.
//!   `--max-requests` and `--max-worker-lifetime` are jittered per slot (slot K adds K times
//!   the delta), so workers do not recycle together; `--min-worker-lifetime` (default 10 s)
//!   holds back request and memory recycling of a young worker.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::table::Exit;
use super::table::{SlotId, WorkerState};
use super::{Master, Now};
use crate::cli::{Recycle, WorkerKind};
use crate::log;
use crate::sys;

/// How often the master looks at busy workers and request counts.
pub const TICK: Duration = Duration::from_millis(250);
/// How often it reads workers' memory.
pub const MEMORY_EVERY: Duration = Duration::from_secs(1);
/// How long a harakiri waits for a Python worker's stack dump before the kill.
pub const DUMP_WAIT: Duration = Duration::from_millis(500);

/// A harakiri waiting for a Python worker's stack dump: at `at`, `pid` is SIGKILLed (or sent
/// `graceful`, its deadline already set).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dumping {
    pub pid: i32,
    pub slot: SlotId,
    pub at: Instant,
    pub graceful: Option<i32>,
}

/// The dumps whose wait is over at `now` (taken out of `list`).
pub fn dumps_done(list: &mut Vec<Dumping>, now: Instant) -> Vec<Dumping> {
    let (done, wait): (Vec<Dumping>, Vec<Dumping>) = list.drain(..).partition(|d| now >= d.at);
    *list = wait;
    done
}

/// Why a worker was recycled (or killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Harakiri,
    MaxRequests,
    Rss,
    Pss,
    Lifetime,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Harakiri => "harakiri",
            Cause::MaxRequests => "max-requests",
            Cause::Rss => "reload-on-rss",
            Cause::Pss => "reload-on-pss",
            Cause::Lifetime => "max-worker-lifetime",
        }
    }
}

/// Recycles counted by cause (a slot's, summed for the instance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub harakiri: u64,
    pub max_requests: u64,
    pub rss: u64,
    pub pss: u64,
    pub lifetime: u64,
}

impl Counts {
    pub fn add(&mut self, c: Cause) {
        match c {
            Cause::Harakiri => self.harakiri += 1,
            Cause::MaxRequests => self.max_requests += 1,
            Cause::Rss => self.rss += 1,
            Cause::Pss => self.pss += 1,
            Cause::Lifetime => self.lifetime += 1,
        }
    }

    pub fn wire(&self) -> common::stats::Recycles {
        common::stats::Recycles {
            harakiri: self.harakiri,
            max_requests: self.max_requests,
            reload_on_rss: self.rss,
            reload_on_pss: self.pss,
            max_worker_lifetime: self.lifetime,
        }
    }

    pub fn sum(&self, o: &Counts) -> Counts {
        Counts {
            harakiri: self.harakiri + o.harakiri,
            max_requests: self.max_requests + o.max_requests,
            rss: self.rss + o.rss,
            pss: self.pss + o.pss,
            lifetime: self.lifetime + o.lifetime,
        }
    }
}

/// Slot `id`'s request limit: `--max-requests` plus `id` times `--max-requests-delta`.
pub fn max_requests_of(r: &Recycle, id: SlotId) -> Option<u64> {
    r.max_requests
        .map(|n| n.saturating_add(r.max_requests_delta.saturating_mul(id.get() as u64)))
}

/// Slot `id`'s lifetime limit: `--max-worker-lifetime` plus `id` times the delta.
pub fn max_lifetime_of(r: &Recycle, id: SlotId) -> Option<Duration> {
    r.max_lifetime
        .map(|d| d.saturating_add(r.max_lifetime_delta.saturating_mul(id.get())))
}

/// How long the request in flight has run, if that is past `--harakiri`. `start_us` is the
/// scoreboard's epoch microseconds (0 = none in flight).
pub fn harakiri_due(limit: Duration, start_us: u64, now_unix_ms: u64) -> Option<Duration> {
    if start_us == 0 {
        return None;
    }
    let held = Duration::from_micros((now_unix_ms * 1000).saturating_sub(start_us));
    (held >= limit).then_some(held)
}

/// What one worker looks like to the recycling rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub lived: Duration,
    pub requests: u64,
    /// Bytes, when read this tick.
    pub rss: Option<u64>,
    pub pss: Option<u64>,
}

/// The cause for which a worker of slot `id` is recycled now, if any (the first in the order
/// lifetime, requests, RSS, PSS).
pub fn recycle_due(r: &Recycle, id: SlotId, s: &Seen) -> Option<Cause> {
    if max_lifetime_of(r, id).is_some_and(|l| s.lived >= l) {
        return Some(Cause::Lifetime);
    }
    if s.lived < r.min_lifetime {
        return None;
    }
    if max_requests_of(r, id).is_some_and(|n| s.requests >= n) {
        return Some(Cause::MaxRequests);
    }
    let over = |limit: Option<u64>, have: Option<u64>| matches!((limit, have), (Some(mb), Some(b)) if b > mb * 1024 * 1024);
    if over(r.reload_on_rss, s.rss) {
        return Some(Cause::Rss);
    }
    if over(r.reload_on_pss, s.pss) {
        return Some(Cause::Pss);
    }
    None
}

/// The master's recycling clock.
#[derive(Debug, Default)]
pub struct Ticker {
    pub next: Option<Instant>,
    pub next_memory: Option<Instant>,
    /// Harakiris waiting for a Python worker's stack dump.
    pub dumping: Vec<Dumping>,
    /// Cheaper mode's timers.
    pub cheaper: super::cheaper::State,
}

impl Ticker {
    pub fn next_deadline(&self, r: &Recycle, now: Instant) -> Option<Instant> {
        if !r.any() {
            return None;
        }
        let tick = self.next.unwrap_or(now).max(now);
        let dump = self.dumping.iter().map(|d| d.at.max(now)).min();
        Some(dump.map_or(tick, |d| d.min(tick)))
    }
}

/// PSS in bytes from /proc/PID/smaps_rollup (0 when unreadable).
fn pss_of(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Master {
    /// Harakiri and recycling, on the tick (see the module docs).
    pub(super) fn check_recycling(&mut self, now: Now) {
        let r = self.config.recycle.clone();
        if !r.any() || self.ticker.next.is_some_and(|t| now.at < t) {
            return;
        }
        self.ticker.next = Some(now.at + TICK);
        if let Some(limit) = r.harakiri {
            self.harakiri(limit, &r, now);
        }
        self.check_cheaper(now);
        let memory = (r.reload_on_rss.is_some() || r.reload_on_pss.is_some())
            && self.ticker.next_memory.is_none_or(|t| now.at >= t);
        if memory {
            self.ticker.next_memory = Some(now.at + MEMORY_EVERY);
        }
        let mut due = Vec::new();
        for w in &self.table.workers {
            let current = self
                .table
                .slot(w.slot)
                .is_some_and(|s| s.target == w.generation);
            if !w.is_ready() || w.recycle.is_some() || !current {
                continue;
            }
            let cell = self.table.board.cell(w.cell);
            let seen = Seen {
                lived: now.at.saturating_duration_since(w.spawned),
                requests: cell.requests.load(Relaxed),
                rss: (memory && r.reload_on_rss.is_some()).then(|| sys::memory_of(w.pid).0),
                pss: (memory && r.reload_on_pss.is_some()).then(|| pss_of(w.pid)),
            };
            if let Some(cause) = recycle_due(&r, w.slot, &seen) {
                due.push((w.pid, cause, seen));
            }
        }
        for (pid, cause, seen) in due {
            let Some(w) = self.table.worker_mut(pid) else {
                continue;
            };
            w.recycle = Some(cause);
            let id = w.slot;
            let detail = match cause {
                Cause::Lifetime => format!("ran {:.0}s", seen.lived.as_secs_f64()),
                Cause::MaxRequests => format!("served {} requests", seen.requests),
                Cause::Rss => format!("RSS {} MB", seen.rss.unwrap_or(0) >> 20),
                Cause::Pss => format!("PSS {} MB", seen.pss.unwrap_or(0) >> 20),
                Cause::Harakiri => String::new(),
            };
            if let Some(s) = self.table.slot_mut(id) {
                s.recycles.add(cause);
            }
            crate::log_event!("worker_recycled", worker = id.get(), pid = pid, cause = cause.name();
                "worker {id} (pid {pid}) recycled ({}: {detail}): a replacement starts, it retires once that one is ready",
                cause.name()
            );
        }
    }

    /// Say which worker took slot `id` over from `pid` (forked before `pid` is signalled).
    fn log_replacement(&self, id: SlotId, pid: i32) {
        let fresh = self
            .table
            .workers
            .iter()
            .filter(|w| w.slot == id && w.is_starting())
            .map(|w| w.pid.to_string())
            .collect::<Vec<_>>();
        let pending = self.table.slot(id).and_then(|s| s.pending);
        if let (true, Some(p)) = (fresh.is_empty(), pending) {
            log!(
                "harakiri: worker {id}: replacement asked of the zygote of generation {}; signalling pid {pid}",
                p.generation
            );
        } else if fresh.is_empty() {
            log!("harakiri: worker {id}: no replacement could be forked yet; signalling pid {pid}");
        } else {
            log!(
                "harakiri: worker {id}: replacement pid {} forked; signalling pid {pid}",
                fresh.join(",")
            );
        }
    }

    fn harakiri(&mut self, limit: Duration, r: &Recycle, now: Now) {
        let mut stuck = Vec::new();
        for w in &self.table.workers {
            let judged = w.recycle == Some(Cause::Harakiri);
            if judged || !matches!(w.state, WorkerState::Ready | WorkerState::Draining { .. }) {
                continue;
            }
            let cell = self.table.board.cell(w.cell);
            let start_us = cell.request_start_us.load(Relaxed);
            if let Some(held) = harakiri_due(limit, start_us, now.unix_ms) {
                stuck.push((
                    w.pid,
                    w.slot,
                    held,
                    cell.request(),
                    cell.in_flight.load(Relaxed),
                ));
            }
        }
        for (pid, id, held, request, in_flight) in stuck {
            let request = if request.is_empty() {
                "(unknown request)".into()
            } else {
                request
            };
            log!(
                "harakiri: worker {id} (pid {pid}) stuck {:.1}s (limit {}s) in {request}; its slot is refilled first, then it is {}",
                held.as_secs_f64(),
                limit.as_secs(),
                match r.harakiri_graceful {
                    Some((sig, t)) => format!("sent signal {sig}, SIGKILL in {}s", t.as_secs()),
                    None => "SIGKILLed".into(),
                }
            );
            if r.harakiri_verbose {
                let w = self.table.worker(pid);
                log!(
                    "harakiri: worker {id} (pid {pid}) generation {}, {in_flight} request(s) in flight, {} served, alive {:.1}s",
                    w.map_or(0, |w| w.generation),
                    w.map_or(0, |w| self.table.board.cell(w.cell).requests.load(Relaxed)),
                    w.map_or(0.0, |w| now.at.saturating_duration_since(w.spawned).as_secs_f64())
                );
            }
            if let Some(s) = self.table.slot_mut(id) {
                s.recycles.add(Cause::Harakiri);
            }
            if let Some(w) = self.table.worker_mut(pid) {
                w.recycle = Some(Cause::Harakiri);
            }
            if self.python_worker() {
                // The stacks first: the worker is draining (its slot refilled) until the dump
                // wait is over, then killed (`after_dumps`).
                let graceful = r.harakiri_graceful.map(|(sig, _)| sig);
                let extra = r.harakiri_graceful.map_or(Duration::ZERO, |(_, t)| t);
                if let Some(w) = self.table.worker_mut(pid) {
                    w.state = WorkerState::Draining {
                        since: now.at,
                        deadline: now.at + DUMP_WAIT + extra,
                    };
                }
                self.spawn_missing(now);
                self.log_replacement(id, pid);
                log!(
                    "harakiri: worker {id} (pid {pid}): its Python thread stacks follow (SIGUSR2); {} in {:.1}s",
                    if graceful.is_some() { "graceful signal" } else { "SIGKILL" },
                    DUMP_WAIT.as_secs_f64()
                );
                sys::kill(pid, libc::SIGUSR2);
                self.ticker.dumping.push(Dumping {
                    pid,
                    slot: id,
                    at: now.at + DUMP_WAIT,
                    graceful,
                });
                continue;
            }
            match r.harakiri_graceful {
                Some((sig, t)) => {
                    if let Some(w) = self.table.worker_mut(pid) {
                        w.state = WorkerState::Draining {
                            since: now.at,
                            deadline: now.at + t,
                        };
                    }
                    self.spawn_missing(now);
                    self.log_replacement(id, pid);
                    sys::kill(pid, sig);
                }
                None => {
                    let killed = self.table.kill_where(|w| w.pid == pid);
                    self.spawn_missing(now);
                    self.log_replacement(id, pid);
                    for pid in killed {
                        sys::kill_group(pid);
                    }
                }
            }
        }
    }

    /// Python workers run by the bundled runner (native or stdlib): both dump their thread
    /// stacks on SIGUSR2.
    fn python_worker(&self) -> bool {
        matches!(&self.config.worker, WorkerKind::Exec { argv, .. }
            if argv.get(1).is_some_and(|a| a == "{runner}"))
    }

    /// The harakiris whose stack dump wait is over: what the workers wrote is relayed to the
    /// log first, then each is SIGKILLed with its group (or sent its graceful signal; the
    /// drain deadline kills it). A worker that left the table meanwhile is not signalled.
    pub(super) fn after_dumps(&mut self, now: Now) {
        if self.ticker.dumping.is_empty() {
            return;
        }
        let done = dumps_done(&mut self.ticker.dumping, now.at);
        if done.is_empty() {
            return;
        }
        self.sources.pump_relay();
        for d in done {
            let draining = self
                .table
                .worker(d.pid)
                .is_some_and(|w| matches!(w.state, WorkerState::Draining { .. }));
            if !draining {
                continue;
            }
            match d.graceful {
                Some(sig) => {
                    log!(
                        "harakiri: worker {} (pid {}): stacks dumped; sending signal {sig}",
                        d.slot,
                        d.pid
                    );
                    sys::kill(d.pid, sig);
                }
                None => {
                    log!(
                        "harakiri: worker {} (pid {}): stacks dumped; SIGKILL",
                        d.slot,
                        d.pid
                    );
                    for pid in self.table.kill_where(|w| w.pid == d.pid) {
                        sys::kill_group(pid);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/recycle.rs"]
mod tests;
