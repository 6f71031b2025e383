//! `pause` and `resume`: the idempotent uwsgid bytes, or uWSGI's toggle after reading the
//! state; confirmed through the stats.

use std::time::Instant;

use common::fifo::FifoCommand;
use common::process::MasterKind;
use serde::Serialize;
use serde_json::json;

use super::{deliver, instance_kind, merge, who, Ctx, Delivery, Report, CONFIRM, PROBE_TIMEOUT};
use crate::cli::{Via, ViaArgs};
use crate::exit::CtlError;
use crate::master::kind_name;
use crate::statsclient;
use crate::wait::{self, wait_until, Probe};

pub(super) fn pause_resume(ctx: &Ctx, want_paused: bool, a: &ViaArgs) -> Result<Report, CtlError> {
    let verb = if want_paused { "pause" } else { "resume" };
    let master = ctx.optional_master()?;
    let doc = ctx.try_fetch();
    let kind = instance_kind(master.as_ref(), doc.as_ref());
    let has_fifo = ctx.fifo_path(doc.as_ref()).is_some();
    let was_paused = doc.as_ref().map(wait::is_paused);
    let idempotent_byte = kind == Some(MasterKind::Uwsgid)
        && a.via != Some(Via::Signal)
        && (has_fifo || a.via == Some(Via::Fifo));
    let target_desc = who(master.as_ref(), doc.as_ref());
    let mut json = json!({
        "ok": true,
        "command": verb,
        "pid": master.as_ref().map(|m| m.pid).or(doc.as_ref().map(|d| d.pid as i32)),
        "master": kind.map(kind_name),
        "was_paused": was_paused,
    });
    let delivery;
    if idempotent_byte {
        let cmd = if want_paused {
            FifoCommand::Pause
        } else {
            FifoCommand::Resume
        };
        delivery = Delivery::Fifo(cmd.as_byte());
        if was_paused == Some(want_paused) {
            json["changed"] = json!(false);
            return Ok(Report::new(
                format!(
                    "{target_desc} is already {}; nothing sent",
                    paused_word(want_paused)
                ),
                json,
            ));
        }
    } else {
        // uWSGI (or uwsgid without a FIFO) only has a toggle: read the state, toggle if needed.
        let current = match was_paused {
            Some(current) => current,
            None => {
                let why = format!(
                    "{verb} of a master that only has a pause toggle needs its stats to know \
                     whether it is paused"
                );
                wait::is_paused(&ctx.fetch(&why)?.0)
            }
        };
        if current == want_paused {
            json["changed"] = json!(false);
            return Ok(Report::new(
                format!(
                    "{target_desc} is already {}; nothing sent",
                    paused_word(want_paused)
                ),
                json,
            ));
        }
        delivery = match a.via {
            Some(Via::Signal) => Delivery::Signal(libc::SIGTSTP, "TSTP"),
            Some(Via::Fifo) => Delivery::Fifo(FifoCommand::TogglePause.as_byte()),
            None if has_fifo => Delivery::Fifo(FifoCommand::TogglePause.as_byte()),
            None => Delivery::Signal(libc::SIGTSTP, "TSTP"),
        };
    }
    let master = match (delivery, master) {
        (Delivery::Signal(..), None) => Some(ctx.master(verb)?),
        (_, m) => m,
    };
    deliver(ctx, delivery, master.as_ref(), doc.as_ref(), verb)?;
    merge(&mut json, delivery.json());
    json["changed"] = json!(true);
    // Confirm through the stats, so a second pause/resume right after sees the new state.
    let mut confirmed = None;
    if let Some(addr) = &ctx.target.stats {
        let ok = wait_until(
            &format!("{target_desc} to {verb}"),
            Instant::now() + CONFIRM,
            || match statsclient::fetch(addr, PROBE_TIMEOUT) {
                Ok((d, _)) if wait::is_paused(&d) == want_paused => Probe::Done(PauseState(true)),
                _ => Probe::Pending(PauseState(false)),
            },
        )
        .is_ok();
        if !ok {
            eprintln!(
                "uwsgictl: warning: sent {verb}, but the stats do not show it yet (busy workers \
                 show 'busy' until their request ends)"
            );
        }
        confirmed = Some(ok);
    }
    json["confirmed"] = json!(confirmed);
    Ok(Report::new(
        format!(
            "{target_desc} {} ({})",
            paused_word(want_paused),
            delivery.describe()
        ),
        json,
    ))
}

#[derive(Serialize)]
struct PauseState(bool);

impl std::fmt::Display for PauseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0 { "confirmed" } else { "not confirmed" })
    }
}

fn paused_word(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        "running"
    }
}
