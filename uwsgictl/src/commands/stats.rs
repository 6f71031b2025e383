//! `stats`: one rendered document (or the daemon's own JSON), or `--watch` frames.

use std::io::Write;
use std::time::{Duration, Instant};

use common::stats::StatsDocument;
use serde_json::Value;

use super::{render_opts, Ctx, Report, STATS_TIMEOUT};
use crate::cli::StatsArgs;
use crate::exit::{CtlError, Exit};
use crate::render::{self, Previous};
use crate::statsclient::{self, FetchError};
use crate::target::StatsAddr;
use crate::term;

pub(super) fn stats(ctx: &Ctx, a: &StatsArgs) -> Result<Report, CtlError> {
    let addr = ctx.stats_addr("stats")?.clone();
    ctx.refuse_if_stopped()?;
    if !a.watch {
        let raw = statsclient::fetch_raw(&addr, STATS_TIMEOUT).map_err(|e| ctx.explain_fetch(e))?;
        let doc = statsclient::parse(&addr, &raw).map_err(FetchError::into_ctl)?;
        ctx.check_doc(&addr, &doc)?;
        if ctx.json {
            // The daemon's own document, as it sent it (validated above).
            let text = String::from_utf8_lossy(&raw).trim().to_string();
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                CtlError::new(
                    Exit::Stats,
                    format!("stats {addr}: the document is malformed ({e})"),
                )
            })?;
            return Ok(Report::new(String::new(), value));
        }
        let text = render::render_stats(&doc, None, &render_opts());
        return Ok(Report::new(text.trim_end().to_string(), Value::Null));
    }
    watch(ctx, &addr, a)
}

fn watch(ctx: &Ctx, addr: &StatsAddr, a: &StatsArgs) -> Result<Report, CtlError> {
    let interval = Duration::from_secs_f64(a.interval);
    let clear = term::stdout_is_terminal() && !ctx.json;
    let mut stdout = std::io::stdout().lock();
    let mut prev: Option<(StatsDocument, Instant)> = None;
    let mut frames = 0u64;
    loop {
        let frame_start = Instant::now();
        let frame = match statsclient::fetch(addr, STATS_TIMEOUT) {
            Ok((doc, raw)) => {
                let text = if ctx.json {
                    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                    format!("{v}\n")
                } else {
                    let p = prev.as_ref().map(|(d, at)| Previous {
                        doc: d,
                        elapsed_secs: at.elapsed().as_secs_f64(),
                    });
                    render::render_stats(&doc, p.as_ref(), &render_opts())
                };
                prev = Some((doc, frame_start));
                text
            }
            Err(e) if ctx.json => {
                format!("{}\n", CtlError::new(Exit::Stats, e.message()).to_json())
            }
            Err(e) => format!("{}\n(retrying every {:.1}s)\n", e.message(), a.interval),
        };
        let mut out = String::new();
        if clear {
            out.push_str("\x1b[H\x1b[2J");
        } else if frames > 0 && !ctx.json {
            out.push('\n');
        }
        out.push_str(&frame);
        if stdout
            .write_all(out.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break; // stdout closed (e.g. piped into head): stop quietly
        }
        frames += 1;
        if a.count.is_some_and(|c| frames >= c) {
            break;
        }
        std::thread::sleep(interval.saturating_sub(frame_start.elapsed()));
    }
    Ok(Report::new(String::new(), Value::Null))
}
