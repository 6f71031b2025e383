//! Pure rendering: data in, `String` out. Nothing here reads the clock, the terminal or the
//! environment; the caller passes `now`, the width and whether to colour, so every output is
//! snapshot-tested.
//!
//! The stats table shows one row per worker slot: id, pid, generation, status, requests,
//! req/s, average response time, rss, respawns, uptime. req/s is the rate since the previous
//! frame under `--watch`, else the average since the worker spawned. On a narrow terminal the
//! least useful columns are dropped (respawns, uptime, rss, avg, req/s, generation, in that
//! order) before anything wraps.

use comfy_table::{
    presets, Cell, CellAlignment, Color, ContentArrangement, LineStyle, Table, TableStyle,
};
use common::stats::{StatsDocument, Worker};

/// How to render.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    /// Terminal width; `None` means unlimited (not a terminal).
    pub width: Option<u16>,
    /// ANSI colours (a terminal and `NO_COLOR` unset).
    pub color: bool,
    /// Seconds since the epoch, for uptimes.
    pub now_unix: u64,
}

/// The previous frame of `--watch`: its document and how many seconds ago it was taken.
pub struct Previous<'a> {
    pub doc: &'a StatsDocument,
    pub elapsed_secs: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Col {
    Id,
    Pid,
    Gen,
    Status,
    Requests,
    Rps,
    Avg,
    Rss,
    Respawns,
    Uptime,
}

const ALL_COLS: [Col; 10] = [
    Col::Id,
    Col::Pid,
    Col::Gen,
    Col::Status,
    Col::Requests,
    Col::Rps,
    Col::Avg,
    Col::Rss,
    Col::Respawns,
    Col::Uptime,
];

/// No borders: a rule under the header, nothing between rows.
const TABLE_STYLE: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));

/// Dropped first to last when the terminal is too narrow.
const DROP_ORDER: [Col; 6] = [
    Col::Respawns,
    Col::Uptime,
    Col::Rss,
    Col::Avg,
    Col::Rps,
    Col::Gen,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Id => "ID",
            Col::Pid => "PID",
            Col::Gen => "GEN",
            Col::Status => "STATUS",
            Col::Requests => "REQUESTS",
            Col::Rps => "REQ/S",
            Col::Avg => "AVG",
            Col::Rss => "RSS",
            Col::Respawns => "RESPAWNS",
            Col::Uptime => "UPTIME",
        }
    }

    fn numeric(self) -> bool {
        !matches!(self, Col::Status)
    }
}

/// `1.2s`, `35.0ms`, `120us` from microseconds.
pub fn format_micros(us: u64) -> String {
    if us == 0 {
        "-".into()
    } else if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// `512K`, `31.4M`, `1.2G` from bytes; 0 (not measured) is `-`.
pub fn format_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if bytes == 0 {
        "-".into()
    } else if b < K * K {
        format!("{:.0}K", b / K)
    } else if b < K * K * K {
        format!("{:.1}M", b / (K * K))
    } else {
        format!("{:.1}G", b / (K * K * K))
    }
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn format_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86400 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{}d{:02}h", secs / 86400, (secs % 86400) / 3600)
    }
}

fn format_rate(rate: f64) -> String {
    if rate <= 0.0 || !rate.is_finite() {
        "0".into()
    } else if rate < 10.0 {
        format!("{rate:.2}")
    } else if rate < 1000.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

/// The status to show: uWSGI calls a slot without a process `idle`; we say `dead`.
pub fn display_status(w: &Worker) -> String {
    if w.pid <= 0 && w.status == "idle" {
        return "dead".into();
    }
    if let Some(x) = &w.uwsgid {
        if !x.ready && w.pid > 0 && w.status == "idle" && !x.state.is_empty() {
            return x.state.clone();
        }
    }
    if w.status.is_empty() {
        "-".into()
    } else {
        w.status.clone()
    }
}

fn status_color(status: &str) -> Option<Color> {
    match status {
        "idle" | "ready" => Some(Color::Green),
        "busy" => Some(Color::Yellow),
        "pause" | "paused" | "cheap" | "starting" => Some(Color::Cyan),
        "dead" | "backoff" | "stopping" => Some(Color::Red),
        s if s.starts_with("sig") => Some(Color::Magenta),
        _ => None,
    }
}

fn worker_rate(w: &Worker, prev: Option<&Previous<'_>>, now_unix: u64) -> f64 {
    if let Some(p) = prev {
        if let Some(old) = p.doc.workers.iter().find(|o| o.id == w.id) {
            if old.pid == w.pid && p.elapsed_secs > 0.0 && w.requests >= old.requests {
                return (w.requests - old.requests) as f64 / p.elapsed_secs;
            }
        }
    }
    let up = now_unix.saturating_sub(w.last_spawn);
    if w.last_spawn == 0 || up == 0 {
        0.0
    } else {
        w.requests as f64 / up as f64
    }
}

/// An exec worker's request counters are not kept (uwsgid says `counters: unknown`): they
/// are shown as `-`, never as a zero that would look like an idle worker.
fn counters_unknown(w: &Worker) -> bool {
    w.uwsgid.as_ref().is_some_and(|x| x.counters == "unknown")
}

fn cell_text(col: Col, w: &Worker, prev: Option<&Previous<'_>>, now: u64) -> String {
    match col {
        Col::Requests | Col::Rps | Col::Avg if counters_unknown(w) => "-".into(),
        Col::Id => w.id.to_string(),
        Col::Pid => {
            if w.pid > 0 {
                w.pid.to_string()
            } else {
                "-".into()
            }
        }
        Col::Gen => w
            .uwsgid
            .as_ref()
            .map(|x| x.generation.to_string())
            .unwrap_or_else(|| "-".into()),
        Col::Status => display_status(w),
        Col::Requests => w.requests.to_string(),
        Col::Rps => format_rate(worker_rate(w, prev, now)),
        Col::Avg => format_micros(w.avg_rt),
        Col::Rss => format_bytes(w.rss),
        Col::Respawns => w.respawn_count.to_string(),
        Col::Uptime => {
            if w.last_spawn == 0 || w.pid <= 0 {
                "-".into()
            } else {
                format_duration(now.saturating_sub(w.last_spawn))
            }
        }
    }
}

fn build_table(
    doc: &StatsDocument,
    cols: &[Col],
    prev: Option<&Previous<'_>>,
    opts: &RenderOptions,
) -> Table {
    let mut table = Table::new();
    table.force_no_tty();
    if opts.color {
        table.enforce_styling();
    }
    table.load_style(TABLE_STYLE);
    table.set_header(
        cols.iter()
            .map(|c| Cell::new(c.header()))
            .collect::<Vec<_>>(),
    );
    for (i, c) in cols.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 1));
            if c.numeric() {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    for w in &doc.workers {
        let row: Vec<Cell> = cols
            .iter()
            .map(|&c| {
                let text = cell_text(c, w, prev, opts.now_unix);
                let mut cell = Cell::new(&text);
                if c == Col::Status && opts.color {
                    if let Some(color) = status_color(&text) {
                        cell = cell.fg(color);
                    }
                }
                cell
            })
            .collect();
        table.add_row(row);
    }
    table
}

fn visible_width(line: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in line.chars() {
        if in_escape {
            in_escape = c != 'm';
        } else if c == '\x1b' {
            in_escape = true;
        } else {
            width += 1;
        }
    }
    width
}

fn fits(text: &str, width: u16) -> bool {
    text.lines().all(|l| visible_width(l) <= width as usize)
}

/// The instance summary above the table.
pub fn render_header(doc: &StatsDocument) -> Vec<String> {
    let mut lines = Vec::new();
    let listeners: Vec<String> = doc
        .sockets
        .iter()
        .map(|s| {
            if s.proto.is_empty() {
                s.name.clone()
            } else {
                format!("{} ({})", s.name, s.proto)
            }
        })
        .collect();
    let ready = doc.workers.iter().filter(|w| w.pid > 0).count();
    match &doc.uwsgid {
        Some(ext) => {
            let version = if ext.version.is_empty() {
                &doc.version
            } else {
                &ext.version
            };
            lines.push(format!(
                "uwsgid {version}, pid {}, {}, generation {}, {ready}/{} workers",
                doc.pid,
                if ext.state.is_empty() {
                    "running"
                } else {
                    &ext.state
                },
                ext.generation,
                ext.processes.max(doc.workers.len() as u32),
            ));
        }
        None => lines.push(format!(
            "uWSGI {}, pid {}, {ready}/{} workers",
            doc.version,
            doc.pid,
            doc.workers.len()
        )),
    }
    let max_queue = doc.sockets.iter().map(|s| s.max_queue).max().unwrap_or(0);
    let mut second = format!("listen queue {}/{max_queue}", doc.listen_queue);
    if !listeners.is_empty() {
        second.push_str(&format!(", listeners {}", listeners.join(", ")));
    }
    lines.push(second);
    if let Some(ext) = &doc.uwsgid {
        if let Some(r) = &ext.reload {
            lines.push(format!(
                "reloading ({}) to generation {}: {}/{} ready, {} old alive",
                r.kind, r.generation, r.ready, r.total, r.old_alive
            ));
        }
        if let Some(o) = &ext.last_reload {
            let mut line = format!(
                "last reload: {}, generation {}, {} in {:.1} ms",
                o.kind, o.generation, o.result, o.duration_ms
            );
            if let Some(reason) = &o.reason {
                line.push_str(&format!(": {reason}"));
            }
            lines.push(line);
        }
        if !ext.draining.is_empty() {
            let pids: Vec<String> = ext
                .draining
                .iter()
                .map(|d| format!("{} (gen {})", d.pid, d.generation))
                .collect();
            lines.push(format!("draining: {}", pids.join(", ")));
        }
        if !ext.zygotes.is_empty() {
            let zygotes: Vec<String> = ext
                .zygotes
                .iter()
                .map(|z| format!("{} (gen {}, {})", z.pid, z.generation, z.state))
                .collect();
            lines.push(format!("python zygotes: {}", zygotes.join(", ")));
        }
        if let Some(line) = recycle_line(doc, &ext.recycles) {
            lines.push(line);
        }
        if let Some(c) = &ext.cheaper {
            lines.push(format!(
                "cheaper ({}): {} active ({} ready), {} to {}, step {}",
                c.algo, c.active, c.ready, c.min, c.max, c.step
            ));
        }
        match (&ext.snapshot_detail, ext.snapshot) {
            (Some(snap), _) => {
                let workers: Vec<String> = snap
                    .workers
                    .iter()
                    .map(|w| format!("{} (pid {}, {})", w.id, w.pid, w.state))
                    .collect();
                lines.push(format!(
                    "snapshot: generation {} parked since {}{}; workers {}",
                    snap.generation,
                    clock_time(snap.since_unix_ms),
                    snap.expires_unix_ms
                        .map(|t| format!(", dropped at {}", clock_time(t)))
                        .unwrap_or_default(),
                    workers.join(", ")
                ));
            }
            (None, Some(g)) => lines.push(format!("snapshot: generation {g} parked")),
            (None, None) => {}
        }
        if let Some(e) = &ext.last_error {
            lines.push(format!("last error: {e}"));
        }
    }
    lines
}

/// A wall-clock time as `HH:MM:SS` UTC (the day is left out: a snapshot is recent).
fn clock_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// `recycled: harakiri 1 (worker 2), max-requests 4`: recycles by cause, the workers that
/// harakiri killed named; `None` when nothing was recycled.
fn recycle_line(doc: &StatsDocument, r: &common::stats::Recycles) -> Option<String> {
    let mut parts = Vec::new();
    if r.harakiri > 0 {
        let hit: Vec<String> = doc
            .workers
            .iter()
            .filter(|w| w.harakiri_count > 0)
            .map(|w| match w.harakiri_count {
                1 => format!("worker {}", w.id),
                n => format!("worker {} x{n}", w.id),
            })
            .collect();
        let who = if hit.is_empty() {
            String::new()
        } else {
            format!(" ({})", hit.join(", "))
        };
        parts.push(format!("harakiri {}{who}", r.harakiri));
    }
    for (name, n) in [
        ("max-requests", r.max_requests),
        ("reload-on-rss", r.reload_on_rss),
        ("reload-on-pss", r.reload_on_pss),
        ("max-worker-lifetime", r.max_worker_lifetime),
    ] {
        if n > 0 {
            parts.push(format!("{name} {n}"));
        }
    }
    (!parts.is_empty()).then(|| format!("recycled: {}", parts.join(", ")))
}

/// The stats view: header lines, then the worker table, narrowed to `opts.width`.
pub fn render_stats(
    doc: &StatsDocument,
    prev: Option<&Previous<'_>>,
    opts: &RenderOptions,
) -> String {
    let mut out = String::new();
    for line in render_header(doc) {
        out.push_str(&line);
        out.push('\n');
    }
    if doc.workers.is_empty() {
        out.push_str("no workers\n");
        return out;
    }
    let mut cols: Vec<Col> = ALL_COLS.to_vec();
    let mut text = build_table(doc, &cols, prev, opts).trim_fmt();
    if let Some(width) = opts.width {
        let mut drop = DROP_ORDER.iter();
        while !fits(&text, width) {
            match drop.next() {
                Some(col) => {
                    cols.retain(|c| c != col);
                    text = build_table(doc, &cols, prev, opts).trim_fmt();
                }
                None => {
                    // Not even the essential columns fit: one short line per worker.
                    text = doc
                        .workers
                        .iter()
                        .map(|w| {
                            format!(
                                "#{} {} {} {}req",
                                w.id,
                                cell_text(Col::Pid, w, prev, opts.now_unix),
                                display_status(w),
                                cell_text(Col::Requests, w, prev, opts.now_unix)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    break;
                }
            }
        }
    }
    out.push_str(&text);
    out.push('\n');
    out
}

/// One row of `list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListRow {
    pub name: String,
    pub status: String,
    pub pid: Option<i32>,
    pub workers: Option<String>,
    pub pidfile: String,
}

/// The `list` table.
pub fn render_list(rows: &[ListRow], opts: &RenderOptions) -> String {
    if rows.is_empty() {
        return "no instances found\n".into();
    }
    let mut table = Table::new();
    table.force_no_tty();
    table.load_style(presets::NOTHING);
    table.set_header(vec!["NAME", "STATUS", "PID", "WORKERS", "PIDFILE"]);
    for i in 0..5 {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 2));
        }
    }
    for r in rows {
        table.add_row(vec![
            Cell::new(&r.name),
            Cell::new(&r.status),
            Cell::new(r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()))
                .set_alignment(CellAlignment::Right),
            Cell::new(r.workers.as_deref().unwrap_or("-")),
            Cell::new(&r.pidfile),
        ]);
    }
    if let Some(w) = opts.width {
        table.set_width(w);
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    let mut s = table.trim_fmt();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::stats::{
        Instance, ReloadKind, ReloadOutcome, ReloadResult, Socket, WorkerExt, Zygote,
    };

    const NOW: u64 = 1_800_000_000;

    fn opts(width: Option<u16>) -> RenderOptions {
        RenderOptions {
            width,
            color: false,
            now_unix: NOW,
        }
    }

    fn uwsgid_doc() -> StatsDocument {
        let w = |id: u32, pid: i64, status: &str, requests: u64, avg: u64, rss: u64| Worker {
            id,
            pid,
            accepting: 1,
            requests,
            status: status.into(),
            avg_rt: avg,
            rss,
            respawn_count: 1,
            last_spawn: NOW - 125,
            uwsgid: Some(WorkerExt {
                generation: 3,
                ready: true,
                state: "ready".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        StatsDocument {
            version: "0.1.0".into(),
            pid: 4242,
            listen_queue: 0,
            sockets: vec![Socket {
                name: "127.0.0.1:8000".into(),
                proto: "http".into(),
                max_queue: 1024,
                ..Default::default()
            }],
            workers: vec![
                w(1, 4243, "idle", 1000, 350, 12 << 20),
                w(2, 4244, "busy", 250, 1_500, 14 << 20),
                w(3, 0, "idle", 0, 0, 0),
            ],
            uwsgid: Some(Instance {
                version: "0.1.0".into(),
                state: "running".into(),
                generation: 3,
                processes: 3,
                last_reload: Some(ReloadOutcome {
                    kind: ReloadKind::Graceful,
                    generation: 3,
                    result: ReloadResult::Complete,
                    reason: None,
                    duration_ms: 12.34,
                    finished_unix_ms: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_uwsgid_wide() {
        let got = render_stats(&uwsgid_doc(), None, &opts(None));
        let want = "\
uwsgid 0.1.0, pid 4242, running, generation 3, 2/3 workers
listen queue 0/1024, listeners 127.0.0.1:8000 (http)
last reload: graceful, generation 3, complete in 12.3 ms
ID   PID  GEN  STATUS  REQUESTS  REQ/S    AVG    RSS  RESPAWNS  UPTIME
───────────────────────────────────────────────────────────────────────
 1  4243    3  idle        1000   8.00  350us  12.0M         1   2m05s
 2  4244    3  busy         250   2.00  1.5ms  14.0M         1   2m05s
 3     -    3  dead           0      0      -      -         1       -
";
        assert_eq!(got, want, "got:\n{got}");
    }

    #[test]
    fn recycles_and_harakiri_show_on_one_line() {
        let mut doc = uwsgid_doc();
        assert!(!render_stats(&doc, None, &opts(None)).contains("recycled:"));
        doc.workers[1].harakiri_count = 2;
        if let Some(x) = &mut doc.uwsgid {
            x.recycles.harakiri = 2;
            x.recycles.max_requests = 5;
        }
        let got = render_stats(&doc, None, &opts(None));
        assert!(
            got.contains("\nrecycled: harakiri 2 (worker 2 x2), max-requests 5\n"),
            "got:\n{got}"
        );
    }

    #[test]
    fn cheaper_mode_shows_on_one_line() {
        let mut doc = uwsgid_doc();
        assert!(!render_stats(&doc, None, &opts(None)).contains("cheaper"));
        if let Some(x) = &mut doc.uwsgid {
            x.cheaper = Some(common::stats::Cheaper {
                algo: "spare".into(),
                min: 1,
                max: 4,
                step: 1,
                overload: 3,
                active: 2,
                ready: 2,
            });
        }
        let got = render_stats(&doc, None, &opts(None));
        assert!(
            got.contains("\ncheaper (spare): 2 active (2 ready), 1 to 4, step 1\n"),
            "got:\n{got}"
        );
    }

    #[test]
    fn exec_workers_show_unknown_counters_as_dashes_and_zygotes_on_a_line() {
        let mut doc = uwsgid_doc();
        for w in &mut doc.workers {
            w.requests = 0;
            w.avg_rt = 0;
            if let Some(x) = &mut w.uwsgid {
                x.counters = "unknown".into();
            }
        }
        doc.workers[2].pid = 4245;
        if let Some(x) = &mut doc.uwsgid {
            x.zygotes = vec![
                Zygote {
                    pid: 4240,
                    generation: 3,
                    state: "ready".into(),
                },
                Zygote {
                    pid: 4250,
                    generation: 4,
                    state: "standby".into(),
                },
            ];
        }
        let got = render_stats(&doc, None, &opts(None));
        assert!(
            got.contains("\npython zygotes: 4240 (gen 3, ready), 4250 (gen 4, standby)\n"),
            "got:\n{got}"
        );
        let want_rows = "\
ID   PID  GEN  STATUS  REQUESTS  REQ/S  AVG    RSS  RESPAWNS  UPTIME
─────────────────────────────────────────────────────────────────────
 1  4243    3  idle           -      -    -  12.0M         1   2m05s
 2  4244    3  busy           -      -    -  14.0M         1   2m05s
 3  4245    3  idle           -      -    -      -         1   2m05s
";
        assert!(got.ends_with(want_rows), "got:\n{got}");
    }

    #[test]
    fn snapshot_narrow_drops_columns_instead_of_wrapping() {
        let got = render_stats(&uwsgid_doc(), None, &opts(Some(50)));
        for line in got.lines().skip(3) {
            assert!(visible_width(line) <= 50, "too wide: {line:?}");
        }
        let want_table = "\
ID   PID  GEN  STATUS  REQUESTS  REQ/S    AVG
──────────────────────────────────────────────
 1  4243    3  idle        1000   8.00  350us
 2  4244    3  busy         250   2.00  1.5ms
 3     -    3  dead           0      0      -
";
        assert!(got.ends_with(want_table), "got:\n{got}");
    }

    #[test]
    fn very_narrow_terminals_still_render() {
        let got = render_stats(&uwsgid_doc(), None, &opts(Some(30)));
        assert!(got.contains("ID   PID  STATUS  REQUESTS\n"), "{got}");
        for width in [1u16, 10, 20] {
            let got = render_stats(&uwsgid_doc(), None, &opts(Some(width)));
            assert!(
                got.contains("#1 4243 idle 1000req"),
                "width {width}:\n{got}"
            );
        }
    }

    #[test]
    fn snapshot_uwsgi_sample() {
        let raw = include_str!("../../tests/fixtures/uwsgi-2.0.31/idle.raw.json");
        let doc: StatsDocument = serde_json::from_str(raw).unwrap();
        let got = render_stats(&doc, None, &opts(Some(200)));
        assert!(
            got.starts_with("uWSGI 2.0.31, pid 27001, 4/4 workers\n"),
            "{got}"
        );
        assert!(got.contains(" GEN "), "{got}");
        let row = got
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap();
        assert!(
            row.contains("27002") && row.contains(" - ") && row.contains("idle"),
            "{row}"
        );
    }

    #[test]
    fn watch_rates_come_from_the_previous_frame() {
        let before = uwsgid_doc();
        let mut after = uwsgid_doc();
        after.workers[0].requests += 50;
        let prev = Previous {
            doc: &before,
            elapsed_secs: 2.0,
        };
        let got = render_stats(&after, Some(&prev), &opts(None));
        let row = got.lines().find(|l| l.contains("4243")).unwrap();
        assert!(row.contains(" 25.0 "), "{row}");
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = render_stats(&uwsgid_doc(), None, &opts(None));
        assert!(!plain.contains('\x1b'));
        let mut o = opts(None);
        o.color = true;
        let coloured = render_stats(&uwsgid_doc(), None, &o);
        assert!(coloured.contains('\x1b'));
    }

    #[test]
    fn formats() {
        assert_eq!(format_micros(0), "-");
        assert_eq!(format_micros(999), "999us");
        assert_eq!(format_micros(1500), "1.5ms");
        assert_eq!(format_micros(2_500_000), "2.50s");
        assert_eq!(format_bytes(512 * 1024), "512K");
        assert_eq!(format_bytes(3 << 30), "3.0G");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(3725), "1h02m");
        assert_eq!(format_duration(90000), "1d01h");
    }

    #[test]
    fn snapshot_list() {
        let rows = vec![
            ListRow {
                name: "default".into(),
                status: "running".into(),
                pid: Some(100),
                workers: Some("4/4".into()),
                pidfile: "/run/uwsgid/default/uwsgid.pid".into(),
            },
            ListRow {
                name: "old".into(),
                status: "stale".into(),
                pid: Some(7),
                workers: None,
                pidfile: "/run/uwsgid/old/uwsgid.pid".into(),
            },
        ];
        let got = render_list(&rows, &opts(None));
        let want = "\
NAME     STATUS   PID  WORKERS  PIDFILE
default  running  100  4/4      /run/uwsgid/default/uwsgid.pid
old      stale      7  -        /run/uwsgid/old/uwsgid.pid
";
        assert_eq!(got, want, "got:\n{got}");
    }

    #[test]
    fn the_snapshot_line_names_its_generation_time_and_workers() {
        let mut doc = uwsgid_doc();
        let ext = doc.uwsgid.as_mut().unwrap();
        ext.snapshot = Some(2);
        // 1970-01-02 03:04:05 UTC
        let at = (86_400 + 3 * 3600 + 4 * 60 + 5) * 1000;
        ext.snapshot_detail = Some(common::stats::Snapshot {
            generation: 2,
            since_unix_ms: at,
            expires_unix_ms: Some(at + 60_000),
            workers: vec![common::stats::Parked {
                id: 1,
                pid: 4000,
                state: "parked".into(),
                since_unix_ms: at,
            }],
        });
        let lines = render_header(&doc);
        assert!(
            lines.contains(&"snapshot: generation 2 parked since 03:04:05 UTC, dropped at 03:05:05 UTC; workers 1 (pid 4000, parked)".to_string()),
            "{lines:?}"
        );
    }
}
