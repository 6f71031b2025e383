//! `reload`: every reload kind, by signal or FIFO byte, and `--wait` until the new
//! generation is ready.

use common::reload::ReloadKind;
use std::time::{Duration, Instant};

use common::fifo::FifoCommand;

use super::{deliver, instance_kind, merge, ms, who, Ctx, Delivery, Report, PROBE_TIMEOUT};
use crate::cli::{ReloadArgs, Via};
use crate::exit::{CtlError, Exit};
use crate::master::{self, kind_name};
use crate::statsclient::{self, FetchError};
use crate::term::Progress;
use crate::wait::{self, wait_until, Probe, ReloadState, UwsgidBaseline};
use serde_json::json;

pub(super) fn reload(ctx: &Ctx, a: &ReloadArgs) -> Result<Report, CtlError> {
    let (kind, byte, sig): (ReloadKind, u8, Option<(i32, &'static str)>) =
        match (a.brutal, a.chain, a.workers) {
            (_, true, _) => (ReloadKind::Chain, FifoCommand::ChainReload.as_byte(), None),
            (true, _, true) => (
                ReloadKind::BrutalWorkers,
                FifoCommand::BrutalWorkersReload.as_byte(),
                None,
            ),
            (false, _, true) => (
                ReloadKind::Workers,
                FifoCommand::WorkersReload.as_byte(),
                None,
            ),
            (true, _, false) => (
                ReloadKind::Brutal,
                FifoCommand::BrutalReload.as_byte(),
                None,
            ),
            (false, false, false) => (
                ReloadKind::Graceful,
                FifoCommand::Reload.as_byte(),
                Some((libc::SIGHUP, "HUP")),
            ),
        };
    let via = match a.via {
        Some(v) => v,
        None if sig.is_some() && ctx.target.pidfile.is_some() => Via::Signal,
        None => Via::Fifo,
    };
    let delivery = match (via, sig) {
        (Via::Signal, Some((s, n))) => Delivery::Signal(s, n),
        (Via::Signal, None) => {
            return Err(CtlError::usage(format!(
                "a {kind} reload has no signal that means the same to every master (SIGTERM \
                 depends on --die-on-term and the uWSGI version); use --via fifo"
            )))
        }
        (Via::Fifo, _) => Delivery::Fifo(byte),
    };
    let master = match delivery {
        Delivery::Signal(..) => Some(ctx.master("reload via a signal")?),
        Delivery::Fifo(_) => ctx.optional_master()?,
    };
    let baseline = if a.wait {
        Some(ctx.fetch("reload --wait")?.0)
    } else {
        None
    };
    // Without a pidfile, watch the pid the stats name so a dying master is noticed.
    let master = match (master, &baseline) {
        (None, Some(doc)) if doc.pid > 1 && doc.pid <= i64::from(i32::MAX) => {
            master::validate(doc.pid as i32, None, None).ok()
        }
        (m, _) => m,
    };
    if master.is_none() && delivery_is_fifo(delivery) {
        ctx.require_fifo("reload", baseline.as_ref())?;
    }
    let started = Instant::now();
    deliver(ctx, delivery, master.as_ref(), baseline.as_ref(), "reload")?;
    let target_desc = who(master.as_ref(), baseline.as_ref());
    let mut json = json!({
        "ok": true,
        "command": "reload",
        "kind": kind,
        "pid": master.as_ref().map(|m| m.pid),
        "master": instance_kind(master.as_ref(), baseline.as_ref()).map(kind_name),
        "waited": a.wait,
    });
    merge(&mut json, delivery.json());
    let Some(base) = baseline else {
        return Ok(Report::new(
            format!(
                "sent {kind} reload to {target_desc} ({})",
                delivery.describe()
            ),
            json,
        ));
    };
    let uwsgid = base.uwsgid.is_some();
    let base_uwsgid = UwsgidBaseline::of(&base);
    let old_pids = wait::worker_pids(&base);
    let addr = ctx.stats_addr("reload --wait")?.clone();
    let progress = Progress::new(ctx.progress, &format!("{kind} reload of {target_desc}"));
    let deadline = started + Duration::from_secs_f64(a.timeout);
    let mut last = ReloadState {
        phase: "sent".into(),
        ..Default::default()
    };
    let state = wait_until(
        &format!("the {kind} reload of {target_desc} to complete"),
        deadline,
        || {
            if let Some(m) = &master {
                if m.exited(Duration::ZERO) {
                    return Probe::Failed {
                        exit: Exit::MasterDied,
                        reason: format!("the master pid {} exited during the reload", m.pid),
                        state: last.clone(),
                    };
                }
            }
            let verdict = match statsclient::fetch(&addr, PROBE_TIMEOUT) {
                Ok((doc, _)) if uwsgid => wait::uwsgid_reload(&doc, &base_uwsgid),
                Ok((doc, _)) => wait::uwsgi_reload(&doc, &old_pids),
                Err(FetchError::Unreachable(_)) => Probe::Pending(ReloadState {
                    phase: "re-executing".into(),
                    detail: Some("stats server not answering yet".into()),
                    ..last.clone()
                }),
                Err(FetchError::Broken(m)) => Probe::Pending(ReloadState {
                    detail: Some(m),
                    ..last.clone()
                }),
            };
            if let Probe::Pending(s) = &verdict {
                progress.update(format!(
                    "{}/{} workers ready, {} old draining",
                    s.ready, s.total, s.draining
                ));
                last = s.clone();
            }
            verdict
        },
    )?;
    drop(progress);
    let elapsed = started.elapsed();
    json["state"] = serde_json::to_value(&state).unwrap_or_default();
    json["elapsed_ms"] = json!(ms(elapsed));
    let mut text = format!(
        "{kind} reload of {target_desc} complete: {}/{} workers ready",
        state.ready, state.total
    );
    if let Some(g) = state.generation {
        text.push_str(&format!(", generation {g}"));
    }
    text.push_str(&format!(" ({:.1} ms", ms(elapsed)));
    if let Some(d) = state.duration_ms {
        text.push_str(&format!(", daemon reported {d:.1} ms"));
    }
    text.push(')');
    Ok(Report::new(text, json))
}

fn delivery_is_fifo(d: Delivery) -> bool {
    matches!(d, Delivery::Fifo(_))
}
