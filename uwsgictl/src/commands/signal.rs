//! `signal`: one signal from the master's table, through the validated master's pidfd.

use common::process::MasterKind;
use common::signals;
use serde_json::json;

use super::{Ctx, Report};
use crate::cli::SignalArgs;
use crate::exit::{CtlError, Exit};

pub(super) fn signal(ctx: &Ctx, a: &SignalArgs) -> Result<Report, CtlError> {
    let Some(sig) = signals::lookup(&a.signal) else {
        let names: Vec<&str> = signals::MASTER_SIGNALS.iter().map(|s| s.name).collect();
        return Err(CtlError::usage(format!(
            "signal {:?} is not in the master's signal table; use one of {}",
            a.signal,
            names.join(", ")
        )));
    };
    let master = ctx.master("signal")?;
    if master.kind == MasterKind::Uwsgi {
        if sig.number == libc::SIGUSR2 && !a.force {
            return Err(CtlError::new(
                Exit::Failure,
                format!(
                    "a uWSGI 2.0 master (pid {}) has no SIGUSR2 handler and would die; nothing \
                     was sent; add --force if that is what you want",
                    master.pid
                ),
            ));
        }
        if sig.number == libc::SIGTERM || sig.number == libc::SIGQUIT {
            eprintln!(
                "uwsgictl: warning: SIG{} means a brutal reload or a stop depending on the uWSGI \
                 version and --die-on-term; prefer 'uwsgictl reload --brutal' or 'uwsgictl stop'",
                sig.name
            );
        }
    }
    master.signal(sig.number, sig.name)?;
    Ok(Report::new(
        format!(
            "sent SIG{} to {} pid {}",
            sig.name,
            master.kind_name(),
            master.pid
        ),
        json!({
            "ok": true,
            "command": "signal",
            "signal": sig.name,
            "number": sig.number,
            "pid": master.pid,
            "master": master.kind_name(),
            "action": sig.action,
        }),
    ))
}
