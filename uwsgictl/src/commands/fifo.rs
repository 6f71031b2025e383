//! `fifo`: raw command bytes to the master FIFO, each checked against what the master knows.

use std::time::Duration;

use common::fifo::{decode, Decoded, FifoCommand};
use common::process::MasterKind;
use serde_json::json;

use super::{instance_kind, Ctx, Report, FIFO_RETRY};
use crate::cli::FifoArgs;
use crate::exit::CtlError;
use crate::master::kind_name;

pub(super) fn fifo_cmd(ctx: &Ctx, a: &FifoArgs) -> Result<Report, CtlError> {
    let master = ctx.optional_master()?;
    let doc = if master.is_none() || ctx.target.fifos.len() > 1 {
        ctx.try_fetch()
    } else {
        None
    };
    let kind = instance_kind(master.as_ref(), doc.as_ref());
    let mut bytes = Vec::new();
    let mut names = Vec::new();
    for &b in a.bytes.as_bytes() {
        match decode(b) {
            Decoded::Whitespace => continue,
            Decoded::Command(c) => {
                let uwsgid_only = matches!(
                    c,
                    FifoCommand::Pause | FifoCommand::Resume | FifoCommand::Rollback
                );
                if uwsgid_only && kind == Some(MasterKind::Uwsgi) && !a.force {
                    return Err(CtlError::usage(format!(
                        "fifo byte '{}' ({}) is uwsgid-only and means nothing to uWSGI; nothing \
                         was sent; add --force to send it anyway",
                        b as char,
                        c.name()
                    )));
                }
                names.push(c.name().to_string());
            }
            Decoded::UwsgiOnly(_) if kind == Some(MasterKind::Uwsgi) || a.force => {
                names.push(format!("uwsgi-{}", b as char));
            }
            Decoded::UwsgiOnly(_) | Decoded::Unknown(_) if a.force => {
                names.push(format!("raw-{b:#04x}"));
            }
            Decoded::UwsgiOnly(_) | Decoded::Unknown(_) => {
                return Err(CtlError::usage(format!(
                    "fifo byte {:?} is not a command {} knows; nothing was sent; see FIFO \
                     COMMANDS in uwsgictl(1), or add --force",
                    (b as char).to_string(),
                    kind.map(kind_name).unwrap_or("uwsgid")
                )));
            }
        }
        bytes.push(b);
    }
    if bytes.is_empty() {
        return Err(CtlError::usage(
            "no command bytes given; e.g. uwsgictl fifo r (see FIFO COMMANDS in uwsgictl(1))",
        ));
    }
    let path = ctx.require_fifo("fifo", doc.as_ref())?;
    let retry = if master.is_some() {
        FIFO_RETRY
    } else {
        Duration::ZERO
    };
    crate::fifo::write(&path, &bytes, retry, master.as_ref())?;
    let sent = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Report::new(
        format!(
            "wrote {sent:?} ({}) to {}",
            names.join(", "),
            path.display()
        ),
        json!({
            "ok": true,
            "command": "fifo",
            "fifo": path,
            "bytes": sent,
            "commands": names,
            "pid": master.as_ref().map(|m| m.pid),
        }),
    ))
}
