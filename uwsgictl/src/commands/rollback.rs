//! `rollback`: back to the parked snapshot generation (uwsgid only).

use common::fifo::FifoCommand;
use common::process::MasterKind;
use serde_json::json;

use super::{deliver, instance_kind, merge, who, Ctx, Delivery, Report};
use crate::cli::{Via, ViaArgs};
use crate::exit::{CtlError, Exit};

pub(super) fn rollback(ctx: &Ctx, a: &ViaArgs) -> Result<Report, CtlError> {
    let master = ctx.optional_master()?;
    let doc = ctx.try_fetch();
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
                 nothing to roll back to (uwsgid does not take snapshots yet); nothing was sent",
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
    deliver(ctx, delivery, master.as_ref(), doc.as_ref(), "rollback")?;
    let snapshot = doc
        .as_ref()
        .and_then(|d| d.uwsgid.as_ref())
        .and_then(|e| e.snapshot);
    let mut json = json!({
        "ok": true,
        "command": "rollback",
        "pid": master.as_ref().map(|m| m.pid),
        "snapshot": snapshot,
    });
    merge(&mut json, delivery.json());
    Ok(Report::new(
        format!(
            "sent rollback to {} ({})",
            who(master.as_ref(), doc.as_ref()),
            delivery.describe()
        ),
        json,
    ))
}
