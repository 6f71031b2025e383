//! The stats server's HTTP routes other than the stats document: `/metrics` in Prometheus'
//! text format 0.0.4 ([`render`]) and the health answers ([`health`]). Both are pure functions
//! of the stats document ([`common::stats::StatsDocument`]) and a few facts about the host
//! ([`Host`]) that the document does not carry; [`crate::stats_server`] calls them.
//!
//! Health, for Kubernetes and load balancers (see `docs/production.md`):
//!
//! | route | probe | 200 | 503 |
//! |---|---|---|---|
//! | `/livez` | liveness | whenever the master answers | never (a draining or paused instance must not be restarted) |
//! | `/readyz`, `/health` | readiness, load balancers | serving (`running` or `reloading`) with at least one ready worker | `starting`, `paused`, `stopping`, or no ready worker |
//!
//! The body is one JSON object: `{"status":"ok"|"unavailable","state":…,"generation":…,
//! "workers_ready":…,"workers":…}`.
//!
//! Metrics (all prefixed `uwsgid_`): instance state, generation and uptime; workers by state;
//! requests, exceptions and bytes sent, for the instance and per worker; respawns; the reload
//! under way and the last one that ended (kind, result, duration); the listen queue depth and
//! its maximum per socket; master and worker RSS and PSS. The stats document keeps no history, so there
//! are no reload counters or duration histogram here: only what the document says.
//!
//! PSS (proportional set size: shared pages divided among the processes that share them, the
//! honest sum for pre-forked workers) comes from `/proc/PID/smaps_rollup`, which the kernel
//! computes by walking the process's mappings: tens to hundreds of microseconds each. So a
//! scrape reads at most [`PSS_READS`] of them, within [`PSS_BUDGET`], the least recently read
//! first, and reuses a value for [`PSS_TTL`] ([`PssCache`]); a worker not read yet has no PSS
//! sample, and the instance total is given only once every process has one.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use common::stats::StatsDocument;

/// The instance states the document may name, each exported (0 or 1) so a query sees them all.
pub const STATES: &[&str] = &["starting", "running", "reloading", "paused", "stopping"];
/// Worker states of the document (`uwsgid.state` of each worker).
pub const WORKER_STATES: &[&str] = &["starting", "ready", "backoff", "dead", "stopping"];

/// Facts outside the stats document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Host {
    /// Now, in seconds since the epoch.
    pub now_unix: f64,
    /// The master's resident set size in bytes, if known.
    pub master_rss: Option<u64>,
    /// Proportional set size in bytes by pid (master and workers), where known.
    pub pss: HashMap<i64, u64>,
}

/// At most this many `smaps_rollup` reads per scrape.
pub const PSS_READS: usize = 8;
/// And no new read once a scrape has spent this long reading.
pub const PSS_BUDGET: Duration = Duration::from_millis(1);
/// A PSS value is reused this long.
pub const PSS_TTL: Duration = Duration::from_secs(10);

/// PSS in bytes from `/proc/PID/smaps_rollup` (None when unreadable: gone, or not ours).
pub fn read_pss(pid: i64) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The PSS values read by earlier scrapes, and when (see the module docs).
#[derive(Default)]
pub struct PssCache {
    seen: HashMap<i64, (Instant, Option<u64>)>,
}

impl PssCache {
    /// The PSS of `pids` for one scrape: cached values younger than [`PSS_TTL`], and new reads
    /// for the others (never read first, then the oldest), within the bounds. Pids not asked
    /// for are forgotten.
    pub fn sample(
        &mut self,
        pids: &[i64],
        now: Instant,
        mut read: impl FnMut(i64) -> Option<u64>,
    ) -> HashMap<i64, u64> {
        self.seen.retain(|pid, _| pids.contains(pid));
        let mut due: Vec<(Option<Instant>, i64)> = pids
            .iter()
            .map(|&pid| (self.seen.get(&pid).map(|e| e.0), pid))
            .filter(|(at, _)| at.is_none_or(|t| now.saturating_duration_since(t) >= PSS_TTL))
            .collect();
        due.sort();
        let started = Instant::now();
        for (_, pid) in due.into_iter().take(PSS_READS) {
            if started.elapsed() > PSS_BUDGET {
                break;
            }
            self.seen.insert(pid, (now, read(pid)));
        }
        pids.iter()
            .filter_map(|pid| Some((*pid, self.seen.get(pid)?.1?)))
            .collect()
    }
}

thread_local! {
    /// The master's cache (it serves every scrape, on one thread).
    static PSS: std::cell::RefCell<PssCache> = Default::default();
}

impl Host {
    /// The real clock, the master's RSS and the PSS of the master and `workers` (from `/proc`,
    /// bounded: see the module docs).
    pub fn now(master_pid: i32, workers: &[i64]) -> Host {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let (rss, _) = crate::sys::memory_of(master_pid);
        let mut pids = vec![i64::from(master_pid)];
        pids.extend(workers.iter().filter(|&&p| p > 0));
        let pss = PSS.with(|c| c.borrow_mut().sample(&pids, Instant::now(), read_pss));
        Host {
            now_unix,
            master_rss: (rss > 0).then_some(rss),
            pss,
        }
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP uwsgid_{name} {help}");
        let _ = writeln!(self.0, "# TYPE uwsgid_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "uwsgid_{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A float as Prometheus reads it (Rust's `Display` never uses exponents for finite values,
/// which the format allows anyway).
fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The instance state: uwsgid's own when present, else `running` (a uWSGI document).
fn state(doc: &StatsDocument) -> &str {
    doc.uwsgid.as_ref().map_or("running", |i| i.state.as_str())
}

fn worker_ready(w: &common::stats::Worker) -> bool {
    match &w.uwsgid {
        Some(e) => e.ready,
        None => matches!(w.status.as_str(), "idle" | "busy"),
    }
}

/// The health answer for `path` (`/livez`, `/readyz` or `/health`): status code and JSON body.
pub fn health(doc: &StatsDocument, path: &str) -> (u16, String) {
    let state = state(doc);
    let generation = doc.uwsgid.as_ref().map_or(0, |i| i.generation);
    let ready = doc.workers.iter().filter(|w| worker_ready(w)).count();
    let ok = path == "/livez"
        || (matches!(state, "running" | "reloading")
            && !doc.uwsgid.as_ref().is_some_and(|i| i.paused)
            && ready > 0);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "state": state,
        "generation": generation,
        "workers_ready": ready,
        "workers": doc.workers.len(),
    });
    (if ok { 200 } else { 503 }, format!("{body}\n"))
}

/// The whole `/metrics` page for `doc`.
pub fn render(doc: &StatsDocument, host: &Host) -> String {
    let mut o = Out(String::with_capacity(4096 + doc.workers.len() * 1024));
    let inst = doc.uwsgid.as_ref();
    let version = inst.map_or(doc.version.as_str(), |i| i.version.as_str());
    o.family("info", "gauge", "Always 1; the labels say the version.");
    o.sample("info", &[("version", version)], 1);

    let current = state(doc);
    o.family(
        "state",
        "gauge",
        "1 for the instance's current state, 0 for the others.",
    );
    for s in STATES {
        o.sample("state", &[("state", s)], u8::from(*s == current));
    }
    let paused = inst.is_some_and(|i| i.paused);
    o.one(
        "paused",
        "gauge",
        "1 while paused (workers accept nothing).",
        u8::from(paused),
    );
    o.one(
        "generation",
        "gauge",
        "The newest generation of workers.",
        inst.map_or(0, |i| i.generation),
    );
    o.one(
        "processes",
        "gauge",
        "Worker slots configured.",
        inst.map_or(doc.workers.len() as u64, |i| u64::from(i.processes)),
    );
    if let Some(i) = inst.filter(|i| i.started_unix > 0) {
        o.one(
            "start_time_seconds",
            "gauge",
            "When the instance started, in seconds since the epoch.",
            i.started_unix,
        );
        o.one(
            "uptime_seconds",
            "gauge",
            "Seconds since the instance started (it survives reloads).",
            float((host.now_unix - i.started_unix as f64).max(0.0)),
        );
    }

    o.family("workers", "gauge", "Workers in the current slots by state.");
    let worker_state = |w: &common::stats::Worker| -> String {
        match &w.uwsgid {
            Some(e) => e.state.clone(),
            None if worker_ready(w) => "ready".into(),
            None => "starting".into(),
        }
    };
    let mut states: Vec<String> = WORKER_STATES.iter().map(|s| s.to_string()).collect();
    for w in &doc.workers {
        let s = worker_state(w);
        if !states.contains(&s) {
            states.push(s);
        }
    }
    for s in &states {
        let n = doc.workers.iter().filter(|w| worker_state(w) == *s).count();
        o.sample("workers", &[("state", s)], n);
    }
    o.one(
        "workers_busy",
        "gauge",
        "Workers serving a request now.",
        doc.workers.iter().filter(|w| w.status == "busy").count(),
    );
    o.one(
        "draining_workers",
        "gauge",
        "Workers of older generations still finishing their requests.",
        inst.map_or(0, |i| i.draining.len()),
    );
    if let Some(i) = inst.filter(|i| !i.zygotes.is_empty()) {
        o.one(
            "zygotes",
            "gauge",
            "Python preload zygotes (not workers).",
            i.zygotes.len(),
        );
    }

    let sum = |f: fn(&common::stats::Worker) -> u64| doc.workers.iter().map(f).sum::<u64>();
    o.one(
        "requests_total",
        "counter",
        "Requests served by the current workers.",
        sum(|w| w.requests),
    );
    o.one(
        "exceptions_total",
        "counter",
        "Requests that ended in an application error, current workers.",
        sum(|w| w.exceptions),
    );
    o.one(
        "transmitted_bytes_total",
        "counter",
        "Bytes sent to clients by the current workers.",
        sum(|w| w.tx),
    );
    o.one(
        "respawns_total",
        "counter",
        "Workers started again in a slot, over all slots.",
        sum(|w| w.respawn_count),
    );

    let ids: Vec<String> = doc.workers.iter().map(|w| w.id.to_string()).collect();
    type Field = fn(&common::stats::Worker) -> String;
    let per_worker: &[(&str, &str, &str, Field)] = &[
        (
            "worker_requests_total",
            "counter",
            "Requests served by the worker in this slot.",
            |w| w.requests.to_string(),
        ),
        (
            "worker_exceptions_total",
            "counter",
            "Application errors of the worker in this slot.",
            |w| w.exceptions.to_string(),
        ),
        (
            "worker_transmitted_bytes_total",
            "counter",
            "Bytes sent by the worker in this slot.",
            |w| w.tx.to_string(),
        ),
        (
            "worker_respawns_total",
            "counter",
            "Times this slot's worker was started again.",
            |w| w.respawn_count.to_string(),
        ),
        (
            "worker_ready",
            "gauge",
            "1 when the slot holds a ready worker.",
            |w| u8::from(worker_ready(w)).to_string(),
        ),
        (
            "worker_busy",
            "gauge",
            "1 while the worker serves a request.",
            |w| u8::from(w.status == "busy").to_string(),
        ),
        (
            "worker_generation",
            "gauge",
            "The generation of the slot's worker.",
            |w| w.uwsgid.as_ref().map_or(0, |e| e.generation).to_string(),
        ),
        (
            "worker_resident_memory_bytes",
            "gauge",
            "Resident set size of the slot's worker.",
            |w| w.rss.to_string(),
        ),
        (
            "worker_average_response_seconds",
            "gauge",
            "Average response time of the slot's worker.",
            |w| float(w.avg_rt as f64 / 1e6),
        ),
    ];
    for (name, kind, help, value) in per_worker {
        o.family(name, kind, help);
        for (w, id) in doc.workers.iter().zip(&ids) {
            o.sample(name, &[("worker", id)], value(w));
        }
    }

    let pss: Vec<(&str, u64)> = doc
        .workers
        .iter()
        .zip(&ids)
        .filter_map(|(w, id)| Some((id.as_str(), *host.pss.get(&w.pid)?)))
        .collect();
    o.family(
        "worker_proportional_memory_bytes",
        "gauge",
        "Proportional set size (PSS) of the slot's worker: its shared pages divided among their sharers.",
    );
    for (id, v) in &pss {
        o.sample("worker_proportional_memory_bytes", &[("worker", id)], v);
    }
    let master_pss = host.pss.get(&doc.pid).copied();
    if let Some(v) = master_pss {
        o.one(
            "master_proportional_memory_bytes",
            "gauge",
            "Proportional set size (PSS) of the master.",
            v,
        );
    }
    let live = doc.workers.iter().filter(|w| w.pid > 0).count();
    if let (Some(m), true) = (master_pss, pss.len() == live) {
        o.one(
            "proportional_memory_bytes",
            "gauge",
            "PSS of the master and the current workers together: the memory the instance costs.",
            m + pss.iter().map(|(_, v)| v).sum::<u64>(),
        );
    }

    o.one(
        "resident_memory_bytes",
        "gauge",
        "Resident set size of the master and the current workers together.",
        host.master_rss.unwrap_or(0) + sum(|w| w.rss),
    );
    if let Some(rss) = host.master_rss {
        o.one(
            "master_resident_memory_bytes",
            "gauge",
            "Resident set size of the master.",
            rss,
        );
    }

    o.one(
        "listen_queue",
        "gauge",
        "Connections waiting in the listeners' accept queues, all listeners.",
        doc.listen_queue,
    );
    o.family(
        "socket_listen_queue",
        "gauge",
        "Connections waiting in this listener's accept queue (from the kernel).",
    );
    for s in &doc.sockets {
        o.sample("socket_listen_queue", &[("socket", &s.name)], s.queue);
    }
    o.family(
        "socket_listen_queue_max",
        "gauge",
        "The accept queue's maximum (the listen backlog).",
    );
    for s in &doc.sockets {
        o.sample(
            "socket_listen_queue_max",
            &[("socket", &s.name)],
            s.max_queue,
        );
    }

    let reload = inst.and_then(|i| i.reload.as_ref());
    o.one(
        "reload_in_progress",
        "gauge",
        "1 while a reload is under way.",
        u8::from(reload.is_some()),
    );
    if let Some(r) = reload {
        o.family(
            "reload_ready_workers",
            "gauge",
            "Slots holding a ready worker of the reload's generation.",
        );
        o.sample("reload_ready_workers", &[("kind", r.kind.name())], r.ready);
        o.one(
            "reload_started_seconds",
            "gauge",
            "When the reload under way began, in seconds since the epoch.",
            float(r.started_unix_ms as f64 / 1000.0),
        );
    }
    if let Some(r) = inst.and_then(|i| i.last_reload.as_ref()) {
        let labels = [("kind", r.kind.name()), ("result", r.result.name())];
        o.family(
            "last_reload_duration_seconds",
            "gauge",
            "How long the last reload that ended took.",
        );
        o.sample(
            "last_reload_duration_seconds",
            &labels,
            float(r.duration_ms / 1000.0),
        );
        o.family(
            "last_reload_end_seconds",
            "gauge",
            "When the last reload ended, in seconds since the epoch.",
        );
        o.sample(
            "last_reload_end_seconds",
            &labels,
            float(r.finished_unix_ms as f64 / 1000.0),
        );
    }
    if let Some(i) = inst {
        o.family(
            "respawns_by_cause_total",
            "counter",
            "Workers started again in their slot since the instance started, by cause.",
        );
        for cause in ["died", "failed_start"] {
            let n = i.respawns_by_cause.get(cause).copied().unwrap_or(0);
            o.sample("respawns_by_cause_total", &[("cause", cause)], n);
        }
    }
    if let Some(c) = inst.map(|i| &i.reload_counts) {
        o.family(
            "reloads_total",
            "counter",
            "Reloads that ended since the instance started, by kind and result.",
        );
        for (kind, result, n) in &c.total {
            o.sample("reloads_total", &[("kind", kind), ("result", result)], n);
        }
        o.family(
            "reload_duration_seconds",
            "histogram",
            "How long the reloads that ended took.",
        );
        let mut cumulative = 0;
        for (i, bound) in common::stats::RELOAD_BUCKETS.iter().enumerate() {
            cumulative += c.buckets.get(i).copied().unwrap_or(0);
            o.sample(
                "reload_duration_seconds_bucket",
                &[("le", &float(*bound))],
                cumulative,
            );
        }
        o.sample(
            "reload_duration_seconds_bucket",
            &[("le", "+Inf")],
            c.count(),
        );
        o.sample(
            "reload_duration_seconds_sum",
            &[],
            float(c.duration_sum_seconds),
        );
        o.sample("reload_duration_seconds_count", &[], c.count());
    }
    o.one(
        "last_error",
        "gauge",
        "1 when the master survived an error it still reports (see the stats document).",
        u8::from(inst.is_some_and(|i| i.last_error.is_some())),
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::stats::*;

    fn worker(id: u32, state: &str, ready: bool, status: &str) -> Worker {
        Worker {
            id,
            pid: 100 + id as i64,
            requests: 10 * id as u64,
            tx: 1000,
            respawn_count: 1,
            rss: 4096,
            avg_rt: 1500,
            status: status.into(),
            uwsgid: Some(WorkerExt {
                generation: 2,
                ready,
                state: state.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn doc(state: &str, paused: bool) -> StatsDocument {
        StatsDocument {
            version: "2.0.31".into(),
            listen_queue: 3,
            sockets: vec![Socket {
                name: "127.0.0.1:8000 \"x\"\\".into(),
                queue: 3,
                max_queue: 4096,
                ..Default::default()
            }],
            workers: vec![
                worker(1, "ready", true, "busy"),
                worker(2, "starting", false, "starting"),
            ],
            uwsgid: Some(Instance {
                version: "0.1.0".into(),
                state: state.into(),
                paused,
                generation: 2,
                processes: 2,
                started_unix: 1000,
                last_reload: Some(ReloadOutcome {
                    kind: common::reload::ReloadKind::Graceful,
                    generation: 2,
                    result: common::reload::ReloadResult::Complete,
                    duration_ms: 250.0,
                    finished_unix_ms: 1_500_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn readiness_follows_state_pause_and_ready_workers_liveness_does_not() {
        let (code, body) = health(&doc("running", false), "/health");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["state"], "running");
        assert_eq!(v["generation"], 2);
        assert_eq!(v["workers_ready"], 1);
        assert_eq!(health(&doc("reloading", false), "/readyz").0, 200);
        for (state, paused) in [
            ("paused", true),
            ("running", true),
            ("stopping", false),
            ("starting", false),
        ] {
            let d = doc(state, paused);
            let (code, body) = health(&d, "/readyz");
            assert_eq!(code, 503, "{state} paused={paused}");
            assert!(
                body.contains("\"unavailable\"") && body.contains(state),
                "{body}"
            );
            assert_eq!(health(&d, "/livez").0, 200);
        }
        let mut none_ready = doc("running", false);
        none_ready
            .workers
            .retain(|w| !w.uwsgid.as_ref().unwrap().ready);
        assert_eq!(health(&none_ready, "/health").0, 503);
    }

    #[test]
    fn renders_the_families_and_escapes_labels() {
        let host = Host {
            now_unix: 1060.5,
            master_rss: Some(8192),
            pss: [(0, 3000), (101, 1000), (102, 2000)].into_iter().collect(),
        };
        let text = render(&doc("running", false), &host);
        for line in [
            "# TYPE uwsgid_requests_total counter",
            "uwsgid_state{state=\"running\"} 1",
            "uwsgid_state{state=\"stopping\"} 0",
            "uwsgid_generation 2",
            "uwsgid_uptime_seconds 60.5",
            "uwsgid_workers{state=\"ready\"} 1",
            "uwsgid_workers{state=\"starting\"} 1",
            "uwsgid_workers{state=\"dead\"} 0",
            "uwsgid_workers_busy 1",
            "uwsgid_requests_total 30",
            "uwsgid_worker_requests_total{worker=\"2\"} 20",
            "uwsgid_transmitted_bytes_total 2000",
            "uwsgid_respawns_total 2",
            "uwsgid_worker_average_response_seconds{worker=\"1\"} 0.0015",
            "uwsgid_master_resident_memory_bytes 8192",
            "uwsgid_resident_memory_bytes 16384",
            "uwsgid_worker_proportional_memory_bytes{worker=\"1\"} 1000",
            "uwsgid_worker_proportional_memory_bytes{worker=\"2\"} 2000",
            "uwsgid_master_proportional_memory_bytes 3000",
            "uwsgid_proportional_memory_bytes 6000",
            "uwsgid_socket_listen_queue{socket=\"127.0.0.1:8000 \\\"x\\\"\\\\\"} 3",
            "uwsgid_socket_listen_queue_max{socket=\"127.0.0.1:8000 \\\"x\\\"\\\\\"} 4096",
            "uwsgid_last_reload_duration_seconds{kind=\"graceful\",result=\"complete\"} 0.25",
            "uwsgid_reload_in_progress 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        // Every sample belongs to the family declared just before it, declared once.
        let mut declared = Vec::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name.clone());
                current = name;
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| *f == current))
                    .unwrap_or(name);
                assert_eq!(family, current, "sample {l:?} outside its family");
            }
        }
        assert_eq!(escape_label("a\nb"), "a\\nb");
    }

    #[test]
    fn pss_is_read_within_bounds_and_reused() {
        let mut cache = PssCache::default();
        let pids: Vec<i64> = (1..=20).collect();
        let t0 = Instant::now();
        let mut reads = Vec::new();
        let first = cache.sample(&pids, t0, |p| {
            reads.push(p);
            Some(p as u64 * 10)
        });
        assert_eq!(reads.len(), PSS_READS.min(reads.len()));
        assert!(reads.len() <= PSS_READS && !reads.is_empty());
        assert_eq!(first.len(), reads.len());
        // The next scrape reads the ones not read yet, not the fresh ones again.
        let mut again = Vec::new();
        let second = cache.sample(&pids, t0 + Duration::from_secs(1), |p| {
            again.push(p);
            Some(p as u64 * 10)
        });
        assert!(
            again.iter().all(|p| !reads.contains(p)),
            "{again:?} {reads:?}"
        );
        assert_eq!(second.len(), reads.len() + again.len());
        // Past the TTL a value is read again; an unreadable pid has no sample; gone pids leave.
        let late = cache.sample(&[1], t0 + PSS_TTL + Duration::from_secs(1), |_| None);
        assert!(late.is_empty());
        assert_eq!(cache.seen.len(), 1);
        // A real process has one (ours).
        assert!(read_pss(std::process::id() as i64).is_some_and(|v| v > 0));
    }

    #[test]
    fn a_partial_pss_gives_no_total() {
        let host = Host {
            pss: [(0, 3000), (101, 1000)].into_iter().collect(),
            ..Host::default()
        };
        let text = render(&doc("running", false), &host);
        assert!(text.contains("uwsgid_worker_proportional_memory_bytes{worker=\"1\"} 1000"));
        assert!(!text.contains("{worker=\"2\"} 2000"));
        assert!(
            !text.contains("uwsgid_proportional_memory_bytes "),
            "{text}"
        );
    }

    #[test]
    fn a_uwsgi_document_without_uwsgid_keys_renders_too() {
        let mut d = doc("running", false);
        d.uwsgid = None;
        for w in &mut d.workers {
            w.uwsgid = None;
        }
        let text = render(&d, &Host::default());
        assert!(text.contains("uwsgid_info{version=\"2.0.31\"} 1"));
        assert!(text.contains("uwsgid_state{state=\"running\"} 1"));
        assert!(text.contains("uwsgid_workers{state=\"ready\"} 1"));
        assert!(!text.contains("uptime"));
        assert_eq!(health(&d, "/health").0, 200);
    }
}
