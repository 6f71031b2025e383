//! `rollback`: abort a reload under way, or bring the parked snapshot generation back
//! (uwsgid only); `--wait` until it is over.

use std::time::{Duration, Instant};

use common::fifo::FifoCommand;
use common::process::MasterKind;
use serde_json::json;

use super::{deliver, instance_kind, merge, ms, who, Ctx, Delivery, Report, PROBE_TIMEOUT};
use crate::cli::{RollbackArgs, Via};
use crate::exit::{CtlError, Exit};
use crate::statsclient::{self, FetchError};
use crate::wait::{self, wait_until, Probe, ReloadState, UwsgidBaseline};

pub(super) fn rollback(ctx: &Ctx, a: &RollbackArgs) -> Result<Report, CtlError> {
    let master = ctx.optional_master()?;
    let doc = if a.wait {
        Some(ctx.fetch("rollback --wait")?.0)
    } else {
        ctx.try_fetch()
    };
    if instance_kind(master.as_ref(), doc.as_ref()) == Some(MasterKind::Uwsgi) {
        return Err(CtlError::new(
            Exit::Failure,
            "uWSGI 2.0 has no snapshots to roll back to (the feature was removed); nothing was \
             sent",
        ));
    }
    if let Some(ext) = doc.as_ref().and_then(|d| d.uwsgid.as_ref()) {
        // Without a snapshot, a rollback still aborts a reload under way (back to the
        // generation that serves): send it then.
        if ext.snapshot.is_none() && ext.reload.is_none() {
            return Err(CtlError::new(
                Exit::NoSnapshot,
                "no snapshot generation is parked and no reload is under way, so there is \
                 nothing to roll back to (uwsgid keeps a snapshot only with --auto-snapshot, \
                 after a graceful, workers or chain reload, of built-in and native Python \
                 workers: exec workers are never parked); nothing was sent",
            ));
        }
    }
    let delivery = match a.via {
        Some(Via::Signal) => Delivery::Signal(libc::SIGURG, "URG"),
        Some(Via::Fifo) => Delivery::Fifo(FifoCommand::Rollback.as_byte()),
        None if ctx.fifo_path(doc.as_ref()).is_some() => {
            Delivery::Fifo(FifoCommand::Rollback.as_byte())
        }
        None => Delivery::Signal(libc::SIGURG, "URG"),
    };
    let master = match (delivery, master) {
        (Delivery::Signal(..), None) => Some(ctx.master("rollback")?),
        (_, m) => m,
    };
    let started = Instant::now();
    deliver(ctx, delivery, master.as_ref(), doc.as_ref(), "rollback")?;
    let snapshot = doc
        .as_ref()
        .and_then(|d| d.uwsgid.as_ref())
        .and_then(|e| e.snapshot);
    let target_desc = who(master.as_ref(), doc.as_ref());
    let mut json = json!({
        "ok": true,
        "command": "rollback",
        "pid": master.as_ref().map(|m| m.pid),
        "snapshot": snapshot,
        "waited": a.wait,
    });
    merge(&mut json, delivery.json());
    let Some(base) = doc.filter(|_| a.wait) else {
        return Ok(Report::new(
            format!("sent rollback to {target_desc} ({})", delivery.describe()),
            json,
        ));
    };
    let base = UwsgidBaseline::of(&base);
    let addr = ctx.stats_addr("rollback --wait")?.clone();
    let deadline = started + Duration::from_secs_f64(a.timeout);
    let mut last = ReloadState {
        phase: "sent".into(),
        ..Default::default()
    };
    let state = wait_until(
        &format!("the rollback of {target_desc} to complete"),
        deadline,
        || {
            if let Some(m) = &master {
                if m.exited(Duration::ZERO) {
                    return Probe::Failed {
                        exit: Exit::MasterDied,
                        reason: format!("the master pid {} exited during the rollback", m.pid),
                        state: last.clone(),
                    };
                }
            }
            let verdict = match statsclient::fetch(&addr, PROBE_TIMEOUT) {
                Ok((doc, _)) => wait::uwsgid_rollback(&doc, &base),
                Err(FetchError::Unreachable(m) | FetchError::Broken(m)) => {
                    Probe::Pending(ReloadState {
                        detail: Some(m),
                        ..last.clone()
                    })
                }
            };
            if let Probe::Pending(s) = &verdict {
                last = s.clone();
            }
            verdict
        },
    )?;
    let elapsed = started.elapsed();
    json["state"] = serde_json::to_value(&state).unwrap_or_default();
    json["elapsed_ms"] = json!(ms(elapsed));
    let what = if state.phase == "reload-aborted" {
        "the reload under way was aborted".to_string()
    } else {
        format!(
            "generation {} serves again",
            state.generation.unwrap_or_default()
        )
    };
    let mut text = format!(
        "rollback of {target_desc} complete: {what} ({:.1} ms",
        ms(elapsed)
    );
    if let Some(d) = state.duration_ms {
        text.push_str(&format!(", daemon reported {d:.1} ms"));
    }
    text.push(')');
    Ok(Report::new(text, json))
}
