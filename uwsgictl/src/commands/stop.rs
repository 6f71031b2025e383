//! `stop`: graceful or brutal, and `--wait` until the master has exited.

use std::time::{Duration, Instant};

use common::fifo::FifoCommand;
use serde::Serialize;
use serde_json::json;

use super::{deliver, merge, ms, who, Ctx, Delivery, Report};
use crate::cli::{StopArgs, Via};
use crate::exit::CtlError;
use crate::term::Progress;
use crate::wait::{wait_until, Probe};

#[derive(Clone, Debug, Serialize)]
struct StopState {
    phase: String,
    pid: i32,
    /// `removed`, `stale`, or `absent` (never had one).
    pidfile: Option<String>,
}

impl std::fmt::Display for StopState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.phase, self.pid)
    }
}

pub(super) fn stop(ctx: &Ctx, a: &StopArgs) -> Result<Report, CtlError> {
    let delivery = match (a.brutal, a.via) {
        (true, Some(Via::Fifo)) => Delivery::Fifo(FifoCommand::BrutalStop.as_byte()),
        (true, Some(Via::Signal)) => Delivery::Signal(libc::SIGINT, "INT"),
        (true, None) if ctx.target.pidfile.is_some() => Delivery::Signal(libc::SIGINT, "INT"),
        (true, None) => Delivery::Fifo(FifoCommand::BrutalStop.as_byte()),
        (false, Some(Via::Signal)) => {
            return Err(CtlError::usage(
                "a graceful stop has no signal that means the same to every master (SIGTERM \
                 stops uwsgid only with --die-on-term and reloads uWSGI 2.0); use the FIFO, or \
                 --brutal for SIGINT",
            ))
        }
        (false, _) => Delivery::Fifo(FifoCommand::Stop.as_byte()),
    };
    let master = match delivery {
        Delivery::Signal(..) => Some(ctx.master("stop via a signal")?),
        Delivery::Fifo(_) if a.wait => Some(ctx.master("stop --wait")?),
        Delivery::Fifo(_) => ctx.optional_master()?,
    };
    let started = Instant::now();
    deliver(ctx, delivery, master.as_ref(), None, "stop")?;
    let kind = if a.brutal { "brutal" } else { "graceful" };
    let target_desc = who(master.as_ref(), None);
    let mut json = json!({
        "ok": true,
        "command": "stop",
        "kind": kind,
        "pid": master.as_ref().map(|m| m.pid),
        "master": master.as_ref().map(|m| m.kind_name()),
        "waited": a.wait,
    });
    merge(&mut json, delivery.json());
    if !a.wait {
        return Ok(Report::new(
            format!(
                "sent {kind} stop to {target_desc} ({})",
                delivery.describe()
            ),
            json,
        ));
    }
    let m = master.expect("stop --wait resolved the master");
    let progress = Progress::new(ctx.progress, &format!("{kind} stop of {target_desc}"));
    progress.update("waiting for the master to exit");
    let deadline = started + Duration::from_secs_f64(a.timeout);
    let state = wait_until(&format!("{target_desc} to exit"), deadline, || {
        // Blocking on the pidfd reports the exit at once; the bounded poll keeps the deadline.
        if m.exited(Duration::from_millis(5)) {
            Probe::Done(StopState {
                phase: "stopped".into(),
                pid: m.pid,
                pidfile: None,
            })
        } else {
            Probe::Pending(StopState {
                phase: "stopping".into(),
                pid: m.pid,
                pidfile: None,
            })
        }
    })?;
    drop(progress);
    let pidfile_state = m
        .pidfile
        .as_ref()
        .map(|p| if p.exists() { "stale" } else { "removed" });
    let elapsed = started.elapsed();
    json["state"] = json!({"phase": state.phase, "pidfile": pidfile_state});
    json["elapsed_ms"] = json!(ms(elapsed));
    let mut text = format!("{target_desc} stopped ({:.1} ms)", ms(elapsed));
    if let Some(s) = pidfile_state {
        text.push_str(&format!("; pidfile {s}"));
    }
    Ok(Report::new(text, json))
}
