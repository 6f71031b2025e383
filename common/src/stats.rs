//! The stats document: one JSON object per connection to `--stats`.
//!
//! Every key uWSGI 2.0 emits is here with uWSGI's name and type, in uWSGI's order, so uwsgitop,
//! exporters and scripts written for uWSGI read a uwsgid instance unchanged. uwsgid's own facts
//! live under one extra key, `uwsgid`, at the top level and in each worker; its absence tells a
//! reader it is talking to real uWSGI. Every struct defaults missing keys when reading, so an
//! older reader accepts a newer document and uWSGI's documents parse too.
//!
//! Units follow uWSGI: `rss`/`vsz` bytes, `running_time`/`avg_rt` microseconds, `last_spawn`
//! epoch seconds, `tx` bytes. uwsgid's additions say their unit in their name (`_ms`, `_unix`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::reload::{ReloadKind, ReloadResult};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsDocument {
    pub version: String,
    pub listen_queue: u64,
    pub listen_queue_errors: u64,
    pub signal_queue: u64,
    pub load: u64,
    pub pid: i64,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    pub locks: Vec<BTreeMap<String, i64>>,
    pub sockets: Vec<Socket>,
    pub workers: Vec<Worker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uwsgid: Option<Instance>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Socket {
    pub name: String,
    pub proto: String,
    pub queue: u64,
    pub max_queue: u64,
    pub shared: u8,
    pub can_offload: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Worker {
    pub id: u32,
    pub pid: i64,
    pub accepting: u8,
    pub requests: u64,
    pub delta_requests: u64,
    pub exceptions: u64,
    pub harakiri_count: u64,
    pub signals: u64,
    pub signal_queue: u64,
    /// `idle`, `busy`, `pause`, `cheap`, `sigN`; uwsgid also says `starting` and `dead`
    /// instead of uWSGI's misleading `idle` for slots without a ready worker.
    pub status: String,
    pub rss: u64,
    pub vsz: u64,
    pub running_time: u64,
    pub last_spawn: u64,
    pub respawn_count: u64,
    pub tx: u64,
    pub avg_rt: u64,
    pub apps: Vec<App>,
    pub cores: Vec<Core>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uwsgid: Option<WorkerExt>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct App {
    pub id: u32,
    pub modifier1: u32,
    pub mountpoint: String,
    pub startup_time: u64,
    pub requests: u64,
    pub exceptions: u64,
    pub chdir: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Core {
    pub id: u32,
    pub requests: u64,
    pub static_requests: u64,
    pub routed_requests: u64,
    pub offloaded_requests: u64,
    pub write_errors: u64,
    pub read_errors: u64,
    pub in_request: u8,
    pub vars: Vec<String>,
    pub req_info: BTreeMap<String, u64>,
}

/// uwsgid's instance facts (top-level key `uwsgid`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub version: String,
    /// `starting`, `running`, `reloading`, `paused`, `stopping`.
    pub state: String,
    pub paused: bool,
    pub generation: u64,
    /// Worker slots configured now.
    pub processes: u32,
    /// `builtin` or `exec`.
    pub worker_kind: String,
    pub started_unix: u64,
    /// A reload under way.
    pub reload: Option<ReloadProgress>,
    /// The last reload that ended, complete or failed.
    pub last_reload: Option<ReloadOutcome>,
    /// Every reload that ended since the instance started (across re-execs): counts by kind
    /// and result, and a duration histogram.
    pub reload_counts: ReloadCounts,
    /// Workers started again in their slot since the instance started, by cause: `died` (it
    /// exited while serving) or `failed_start` (it exited or failed before it was ready, or
    /// soon after).
    pub respawns_by_cause: BTreeMap<String, u64>,
    /// The last error the master survived (bad reload configuration, failed execve, ...).
    pub last_error: Option<String>,
    /// Generation parked as a snapshot for rollback, if any.
    pub snapshot: Option<u64>,
    /// The snapshot in detail (`--auto-snapshot`): its generation, since when, its parked
    /// workers. Left out of the document when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_detail: Option<Snapshot>,
    /// Workers of older generations still alive (draining their last requests).
    pub draining: Vec<Draining>,
    /// FIFO paths, slot order, and the active slot.
    pub fifo: Vec<String>,
    pub fifo_slot: u32,
    /// Python preload zygotes (`--wsgi-file`/`--module` without `--lazy-apps`): one process
    /// per generation that imported the application and forks the workers. Not workers.
    /// Left out of the document when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zygotes: Vec<Zygote>,
    /// Workers recycled or killed by harakiri since the master started, by cause (all slots).
    pub recycles: Recycles,
    /// Cheaper mode (`--cheaper`), when on; left out of the document otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cheaper: Option<Cheaper>,
}

/// Cheaper mode: the active workers move between `min` and `max` with the load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cheaper {
    /// `spare` or `backlog`.
    pub algo: String,
    pub min: u32,
    pub max: u32,
    pub step: u32,
    pub overload: u64,
    /// Active worker slots now (the count the master keeps).
    pub active: u32,
    /// Of those, the slots holding a ready worker.
    pub ready: u32,
}

/// Recycles by cause (`--harakiri`, `--max-requests`, `--reload-on-rss`, `--reload-on-pss`,
/// `--max-worker-lifetime`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recycles {
    pub harakiri: u64,
    pub max_requests: u64,
    pub reload_on_rss: u64,
    pub reload_on_pss: u64,
    pub max_worker_lifetime: u64,
}

/// A preload zygote of one generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Zygote {
    pub pid: i64,
    pub generation: u64,
    /// `starting` (importing the application), `ready` (forking workers on request) or
    /// `stopping`.
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadProgress {
    /// `graceful`, `brutal`, `chain`, `workers`, `brutal-workers`.
    pub kind: ReloadKind,
    pub generation: u64,
    pub started_unix_ms: u64,
    /// Slots holding a ready worker of `generation`.
    pub ready: u32,
    pub total: u32,
    /// Workers of older generations still alive.
    pub old_alive: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadOutcome {
    pub kind: ReloadKind,
    pub generation: u64,
    /// `complete` or `failed`.
    pub result: ReloadResult,
    pub reason: Option<String>,
    pub duration_ms: f64,
    pub finished_unix_ms: u64,
}

/// The parked previous generation a rollback restores (`--auto-snapshot`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub generation: u64,
    /// When its first worker was parked.
    pub since_unix_ms: u64,
    /// When `--snapshot-max-age` drops it, if set.
    pub expires_unix_ms: Option<u64>,
    /// Its workers, parked (`SIGSTOP`ped, accepting nothing) or still finishing their last
    /// requests before they park.
    pub workers: Vec<Parked>,
}

/// One worker of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parked {
    pub id: u32,
    pub pid: i64,
    /// `parked`, or `parking` while its last requests finish.
    pub state: String,
    pub since_unix_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Draining {
    pub pid: i64,
    pub generation: u64,
    pub id: u32,
    pub since_unix_ms: u64,
}

/// uwsgid's per-worker facts (key `uwsgid` in each worker).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerExt {
    pub generation: u64,
    pub ready: bool,
    /// `starting`, `ready`, `backoff`, `dead`, `stopping`.
    pub state: String,
    /// Exec workers' last `STATUS=` line.
    pub status_text: Option<String>,
    /// `known` for built-in workers; `unknown` for exec workers, whose request counters are 0.
    pub counters: String,
    /// Consecutive failed starts, and when the next attempt is due.
    pub failed_starts: u32,
    pub next_spawn_unix_ms: Option<u64>,
    pub last_exit: Option<String>,
    /// This slot's recycles by cause (its `harakiri_count` is the harakiri one).
    pub recycles: Recycles,
}

/// Parse a stats document, with an error that says where it broke.
pub fn parse(text: &str) -> Result<StatsDocument, String> {
    if text.trim().is_empty() {
        return Err("stats document is empty".into());
    }
    // Through a JSON value, as uwsgictl's reader does: a key given twice takes its last value
    // in both (a direct typed parse would refuse it where uwsgictl accepts it).
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("stats document is not valid: {e}"))
}

/// Upper bounds (seconds) of the reload-duration histogram's buckets; `+Inf` is implied.
pub const RELOAD_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Reloads that ended, by kind and result, and how long they took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadCounts {
    /// `(kind, result, count)`, e.g. `("graceful", "complete", 3)`.
    pub total: Vec<(String, String, u64)>,
    /// Per bucket of [`RELOAD_BUCKETS`], the reloads that took at most its bound (not
    /// cumulative); the last entry counts those above every bound.
    pub buckets: Vec<u64>,
    pub duration_sum_seconds: f64,
}

impl ReloadCounts {
    /// Count one reload that ended.
    pub fn add(&mut self, kind: &str, result: &str, seconds: f64) {
        match self
            .total
            .iter_mut()
            .find(|(k, r, _)| k == kind && r == result)
        {
            Some(t) => t.2 += 1,
            None => self.total.push((kind.to_string(), result.to_string(), 1)),
        }
        self.buckets.resize(RELOAD_BUCKETS.len() + 1, 0);
        let i = RELOAD_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(RELOAD_BUCKETS.len());
        self.buckets[i] += 1;
        self.duration_sum_seconds += seconds;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[cfg(test)]
mod reload_counts_tests {
    use super::*;

    #[test]
    fn reloads_are_counted_by_kind_result_and_bucket() {
        let mut c = ReloadCounts::default();
        c.add("graceful", "complete", 0.03);
        c.add("graceful", "complete", 0.3);
        c.add("chain", "failed", 100.0);
        assert_eq!(
            c.total,
            vec![
                ("graceful".into(), "complete".into(), 2),
                ("chain".into(), "failed".into(), 1)
            ]
        );
        assert_eq!(c.buckets[0], 1);
        assert_eq!(c.buckets[3], 1);
        assert_eq!(c.buckets[RELOAD_BUCKETS.len()], 1);
        assert_eq!(c.count(), 3);
        assert!((c.duration_sum_seconds - 100.33).abs() < 1e-9);
    }
}
