//! `list`: every instance recorded in the runtime directory, with its state.

use std::time::Duration;

use serde_json::json;

use super::{render_opts, Report};
use crate::exit::{CtlError, Exit};
use crate::master;
use crate::render::{self, ListRow};
use crate::statsclient;
use crate::target::{self, StatsAddr};

pub(super) fn list(json_out: bool) -> Result<Report, CtlError> {
    let runtime = common::discovery::runtime_dir();
    if std::fs::symlink_metadata(&runtime).is_ok() {
        common::trust::check_dir("runtime directory", &runtime, true)
            .map_err(|e| CtlError::new(Exit::Permission, e.to_string()))?;
    }
    let mut rows = Vec::new();
    for (name, paths) in common::discovery::list_instances() {
        let mut row = ListRow {
            name,
            status: String::new(),
            pid: None,
            workers: None,
            pidfile: paths.pidfile.display().to_string(),
        };
        if let Err(e) = paths.check() {
            eprintln!("uwsgictl: warning: {e}");
            row.status = "untrusted".into();
            rows.push(row);
            continue;
        }
        match master::from_pidfile(&paths.pidfile) {
            Ok(m) => {
                row.pid = Some(m.pid);
                row.status = "running".into();
                let record = common::discovery::read_record(&paths.pidfile).ok();
                let addr = record
                    .as_ref()
                    .and_then(|r| r.stats.as_ref().map(|s| (s.clone(), r.stats_http)))
                    .and_then(|(s, http)| StatsAddr::parse(&s, http).ok())
                    .unwrap_or(StatsAddr {
                        endpoint: target::Endpoint::Unix(paths.stats.clone()),
                        http: false,
                    });
                let doc = statsclient::fetch(&addr, Duration::from_millis(300))
                    .ok()
                    .filter(|(doc, _)| doc.pid == i64::from(m.pid));
                if let Some((doc, _)) = doc {
                    if let Some(ext) = &doc.uwsgid {
                        if !ext.state.is_empty() {
                            row.status = ext.state.clone();
                        }
                    }
                    let ready = doc.workers.iter().filter(|w| w.pid > 0).count();
                    row.workers = Some(format!("{ready}/{}", doc.workers.len()));
                }
            }
            Err(e) => {
                row.status = match e.exit {
                    Exit::Stale | Exit::PidReused | Exit::NotAMaster => "stale".into(),
                    Exit::NotRunning => "not-running".into(),
                    _ => "unknown".into(),
                };
                if let Ok(c) = common::pidfile::read(&paths.pidfile) {
                    row.pid = Some(c.pid);
                }
            }
        }
        rows.push(row);
    }
    let text = render::render_list(&rows, &render_opts());
    let _ = json_out;
    Ok(Report::new(
        text.trim_end().to_string(),
        json!({"ok": true, "command": "list", "runtime_dir": runtime, "instances": rows}),
    ))
}
