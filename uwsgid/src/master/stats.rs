//! The stats document and the SIGUSR1/SIGUSR2 log views: a read-only view of the parts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::stats as wire;

use super::reload::Check;
use super::step::Phase;
use super::table::{Slot, SlotId, Worker, WorkerState};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::log;
use crate::sys;

/// Workers' `(rss, vsz)` read from /proc are reused this long, so that frequent stats requests
/// (a `--wait` polls every millisecond) do not cost a file read per worker each.
const MEMORY_TTL: Duration = Duration::from_millis(500);

/// When a worker's `(rss, vsz)` was read, and the values.
type MemorySample = (Instant, (u64, u64));

#[derive(Default)]
pub struct MemoryCache {
    memory: RefCell<HashMap<i32, MemorySample>>,
}

impl MemoryCache {
    pub fn forget(&mut self, pid: i32) {
        self.memory.get_mut().remove(&pid);
    }
}

impl Master {
    /// Answer the stats clients waiting to be accepted.
    pub(super) fn serve_stats(&mut self, now: Now) {
        let mut stats = self.sources.stats.take();
        if let Some(s) = &mut stats {
            s.accept(|| self.stats_document(now));
        }
        self.sources.stats = stats;
    }

    pub(super) fn log_stats(&self, now: Now) {
        let doc = self.stats_document(now);
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

    pub(super) fn log_status(&self, now: Now) {
        let now_us = now.unix_ms * 1000;
        log!("worker status ({} process(es))", self.table.workers.len());
        for w in &self.table.workers {
            let cell = self.table.board.cell(w.cell);
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
                w.slot,
                w.pid,
                w.generation,
                w.state
            );
        }
    }

    pub(super) fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Stopping { .. } => "stopping",
            Phase::Checking(_) | Phase::ReExec { .. } => "reloading",
            Phase::Running if self.reloads.current.is_some() => "reloading",
            Phase::Running if self.paused => "paused",
            Phase::Running if self.table.workers.iter().all(|w| !w.is_ready()) => "starting",
            Phase::Running => "running",
        }
    }

    pub fn stats_document(&self, now: Now) -> wire::StatsDocument {
        let (uid, gid) = sys::ids();
        let now_ms = now.unix_ms;
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
                    proto: l.proto().name().into(),
                    queue: q,
                    max_queue: max,
                    shared: 0,
                    can_offload: 0,
                }
            })
            .collect();
        let exec = matches!(self.config.worker, WorkerKind::Exec { .. });
        // Exec programs write no counters, except the Python workers (the native worker and
        // the bundled runner, named by its `{runner}` placeholder): they write their cell.
        let counters_unknown = matches!(&self.config.worker, WorkerKind::Exec { argv, .. }
            if !argv.first().is_some_and(|p| p.ends_with(crate::cli::NATIVE_PYTHON))
                && argv.get(1).map(String::as_str) != Some(crate::runner::PLACEHOLDER));
        let workers = self
            .table
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let id = SlotId::of_index(i);
                // The slot's current worker: the newest of its target generation, else any.
                let current = self
                    .table
                    .workers
                    .iter()
                    .filter(|w| w.slot == id && w.alive_for_slot())
                    .max_by_key(|w| (w.generation == slot.target, w.is_ready(), w.generation));
                self.worker_entry(id, slot, current, counters_unknown, now)
            })
            .collect();
        let draining =
            self.table
                .workers
                .iter()
                .filter(|w| {
                    matches!(
                        w.state,
                        WorkerState::Draining { .. }
                            | WorkerState::Killed
                            | WorkerState::Parking { .. }
                    ) || self.table.slot(w.slot).is_some_and(|s| {
                        w.generation != s.target
                            && w.alive_for_slot()
                            && self.table.workers.iter().any(|n| {
                                n.slot == w.slot && n.generation == s.target && n.alive_for_slot()
                            })
                    })
                })
                .map(|w| wire::Draining {
                    pid: w.pid as i64,
                    generation: w.generation,
                    id: w.slot.get(),
                    since_unix_ms: match w.state {
                        WorkerState::Draining { since, .. }
                        | WorkerState::Parking { since, .. } => now.unix_ms_of(since),
                        _ => now_ms,
                    },
                })
                .collect();
        let reload = self.reloads.current.as_ref().map(|r| wire::ReloadProgress {
            kind: r.kind,
            generation: r.generation,
            started_unix_ms: r.started_unix_ms,
            ready: self.table.ready_count(r.generation) as u32,
            total: self.table.slots.len() as u32,
            old_alive: self.table.old_alive(r.generation) as u32,
        });
        let reload = reload.or_else(|| match &self.phase {
            Phase::Checking(Check { kind, .. }) | Phase::ReExec { kind, .. } => {
                Some(wire::ReloadProgress {
                    kind: *kind,
                    generation: self.generation + 1,
                    started_unix_ms: now_ms,
                    ready: 0,
                    total: self.table.slots.len() as u32,
                    old_alive: self.table.workers.len() as u32,
                })
            }
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
                last_reload: self.reloads.last.clone(),
                reload_counts: self.reloads.counts.clone(),
                respawns_by_cause: self.respawns.clone(),
                last_error: self.last_error.clone(),
                snapshot: self.table.snapshot_generation(),
                snapshot_detail: self.snapshot_view(now),
                draining,
                fifo: self
                    .sources
                    .fifo
                    .as_ref()
                    .map(|f| {
                        f.paths
                            .iter()
                            .map(|p| p.to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                fifo_slot: self.sources.fifo.as_ref().map_or(0, |f| f.active as u32),
                zygotes: self
                    .preload
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
                recycles: self
                    .table
                    .slots
                    .iter()
                    .fold(super::recycle::Counts::default(), |a, s| a.sum(&s.recycles))
                    .wire(),
                cheaper: self.cheaper_stats(),
            }),
        }
    }

    fn memory_of(&self, pid: i32, now: Instant) -> (u64, u64) {
        let mut cache = self.stats_cache.memory.borrow_mut();
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
        id: SlotId,
        slot: &Slot,
        current: Option<&Worker>,
        counters_unknown: bool,
        now: Now,
    ) -> wire::Worker {
        let mut entry = wire::Worker {
            id: id.get(),
            requests: slot.requests,
            tx: slot.tx,
            running_time: slot.running_time_us,
            last_spawn: slot.last_spawn,
            respawn_count: slot.respawn_count,
            harakiri_count: slot.recycles.harakiri,
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
                .map(|t| now.unix_ms + t.saturating_duration_since(now.at).as_millis() as u64),
            last_exit: slot.last_exit.clone(),
            recycles: slot.recycles.wire(),
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
                let cell = self.table.board.cell(w.cell);
                // A worker settling in (an exec'd program loading) changes fast: read it live.
                let settled = w
                    .ready_at
                    .is_some_and(|t| now.at.saturating_duration_since(t) > Duration::from_secs(1));
                let (rss, vsz) = if settled {
                    self.memory_of(w.pid, now.at)
                } else {
                    sys::memory_of(w.pid)
                };
                let busy = cell.in_flight.load(Relaxed) > 0;
                entry.pid = w.pid as i64;
                entry.accepting = u8::from(w.is_ready() && !self.paused);
                let live = cell.requests.load(Relaxed);
                entry.requests += live;
                entry.delta_requests = live;
                entry.tx += cell.tx.load(Relaxed);
                entry.running_time += cell.running_time_us.load(Relaxed);
                entry.avg_rt = cell.avg_rt_us.load(Relaxed);
                entry.rss = rss;
                entry.vsz = vsz;
                entry.status = match (&w.state, busy, self.paused) {
                    (WorkerState::Starting { .. } | WorkerState::Resuming { .. }, _, _) => {
                        "starting"
                    }
                    (_, true, _) => "busy",
                    (_, false, true) => "pause",
                    _ => "idle",
                }
                .into();
                ext.generation = w.generation;
                ext.ready = w.is_ready();
                ext.state = match w.state {
                    WorkerState::Starting { .. } | WorkerState::Resuming { .. } => "starting",
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
