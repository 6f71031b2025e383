//! `status`: one line and an LSB exit code, from the pidfile, the stats or the FIFO.

use std::time::Duration;

use common::stats::StatsDocument;
use serde_json::{json, Value};

use super::{Ctx, Report};
use crate::exit::Exit;
use crate::master;
use crate::statsclient::{self, FetchError};
use crate::wait;

/// `status`: never an error; the exit code is in the report's JSON (`exit_code`).
pub fn status(ctx: &Ctx) -> Report {
    let (exit, state, line, mut json) = status_inner(ctx);
    json["ok"] = json!(exit == Exit::Ok);
    json["status"] = json!(state);
    json["exit_code"] = json!(status_code(exit));
    Report::new(line, json)
}

/// The LSB code for a status outcome.
pub fn status_code(exit: Exit) -> i32 {
    match exit {
        Exit::Ok => 0,
        Exit::Stale | Exit::NotAMaster | Exit::PidReused => 1,
        Exit::NotRunning => 3,
        _ => 4,
    }
}

fn status_inner(ctx: &Ctx) -> (Exit, &'static str, String, Value) {
    let t = &ctx.target;
    let mut json = json!({
        "command": "status",
        "pidfile": t.pidfile,
        "name": t.name,
    });
    let master = match &t.pidfile {
        Some(p) => match master::from_pidfile(p) {
            Ok(m) => Some(m),
            Err(e) => {
                let state = match status_code(e.exit) {
                    1 => "dead",
                    3 => "not-running",
                    _ => "unknown",
                };
                let message = e.message.replace("nothing was sent; ", "");
                json["message"] = json!(message);
                return (e.exit, state, format!("{state}: {message}"), json);
            }
        },
        None => None,
    };
    if let Some(m) = master.as_ref().filter(|m| m.is_stopped()) {
        // Its stats server accepts but never answers: say why instead of timing out.
        let message = master::stopped_error(m.pid, m.kind_name())
            .message
            .replace("; nothing was sent", "");
        json["pid"] = json!(m.pid);
        json["master"] = json!(m.kind_name());
        json["state"] = json!("stopped");
        json["message"] = json!(message);
        return (Exit::Ok, "stopped", format!("stopped: {message}"), json);
    }
    let doc = t.stats.as_ref().map(|a| {
        statsclient::fetch(a, Duration::from_millis(500)).and_then(|(doc, raw)| {
            match ctx.check_doc(a, &doc) {
                Ok(()) => Ok((doc, raw)),
                Err(e) => Err(FetchError::Broken(e.message)),
            }
        })
    });
    let pid = master.as_ref().map(|m| m.pid);
    match (&master, doc) {
        (_, Some(Ok((doc, _)))) => {
            let (state, summary) = summarize(&doc);
            let pid = pid.unwrap_or(doc.pid as i32);
            let kind = if doc.uwsgid.is_some() {
                "uwsgid"
            } else {
                "uwsgi"
            };
            json["pid"] = json!(pid);
            json["master"] = json!(kind);
            json["state"] = json!(state);
            json["version"] = json!(doc.version);
            json["workers"] = json!({
                "running": doc.workers.iter().filter(|w| w.pid > 0).count(),
                "total": doc.workers.len(),
            });
            if let Some(ext) = &doc.uwsgid {
                json["generation"] = json!(ext.generation);
            }
            let mut line = format!("running: {kind} pid {pid}, {state}, {summary}");
            if let Some(p) = &t.pidfile {
                line.push_str(&format!(" (pidfile {})", p.display()));
            }
            (Exit::Ok, "running", line, json)
        }
        (Some(m), stats) => {
            json["pid"] = json!(m.pid);
            json["master"] = json!(m.kind_name());
            let mut line = format!("running: {} pid {}", m.kind_name(), m.pid);
            if let Some(Err(e)) = stats {
                json["stats_error"] = json!(e.message());
                line.push_str(&format!(" (stats unavailable: {})", e.message()));
            }
            if let Some(p) = &t.pidfile {
                line.push_str(&format!(" (pidfile {})", p.display()));
            }
            (Exit::Ok, "running", line, json)
        }
        (None, Some(Err(e))) => {
            if matches!(e, FetchError::Unreachable(_)) {
                json["message"] = json!(e.message());
                (
                    Exit::NotRunning,
                    "not-running",
                    format!("not-running: {}", e.message()),
                    json,
                )
            } else {
                json["message"] = json!(e.message());
                (
                    Exit::Unknown,
                    "unknown",
                    format!("unknown: {}", e.message()),
                    json,
                )
            }
        }
        (None, None) => match t.fifos.first() {
            Some(f) if crate::fifo::has_reader(f) => (
                Exit::Ok,
                "running",
                format!("running: a master reads {}", f.display()),
                json,
            ),
            Some(f) => (
                Exit::NotRunning,
                "not-running",
                format!("not-running: no master reads {}", f.display()),
                json,
            ),
            None => (
                Exit::Unknown,
                "unknown",
                "unknown: no pidfile, stats or FIFO to check".into(),
                json,
            ),
        },
    }
}

fn summarize(doc: &StatsDocument) -> (String, String) {
    let running = doc.workers.iter().filter(|w| w.pid > 0).count();
    let total = doc.workers.len();
    match &doc.uwsgid {
        Some(ext) => {
            let ready = doc
                .workers
                .iter()
                .filter(|w| w.pid > 0 && w.uwsgid.as_ref().is_some_and(|x| x.ready))
                .count();
            let state = if ext.state.is_empty() {
                "running".to_string()
            } else {
                ext.state.clone()
            };
            (
                state,
                format!(
                    "generation {}, {ready}/{} workers ready",
                    ext.generation,
                    ext.processes.max(total as u32)
                ),
            )
        }
        None => {
            let state = if wait::is_paused(doc) {
                "paused"
            } else {
                "running"
            };
            let accepting = doc
                .workers
                .iter()
                .filter(|w| w.pid > 0 && w.accepting == 1)
                .count();
            (
                state.to_string(),
                format!(
                    "uWSGI {}, {accepting}/{total} workers accepting ({running} alive)",
                    doc.version
                ),
            )
        }
    }
}
