//! The commands: each decides what to send and what to report, and returns a [`Report`]
//! (a human line or table, and a JSON document); `main` writes it. Only `stats --watch`
//! writes frames itself, as they come.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fifo::{decode, Decoded, FifoCommand};
use common::process::MasterKind;
use common::reload::ReloadKind;
use common::signals;
use common::stats::StatsDocument;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{
    Cli, Command, FifoArgs, ReloadArgs, SignalArgs, StatsArgs, StopArgs, Via, ViaArgs,
};
use crate::exit::{CtlError, Exit};
use crate::fifo;
use crate::master::{self, kind_name, Master};
use crate::render::{self, ListRow, Previous, RenderOptions};
use crate::statsclient::{self, FetchError};
use crate::target::{self, StatsAddr, Target};
use crate::term::{self, Progress};
use crate::wait::{self, wait_until, Probe, ReloadState, UwsgidBaseline};

/// What a command prints: `text` normally, `json` with `--json`.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub json: Value,
}

impl Report {
    fn new(text: impl Into<String>, json: Value) -> Report {
        Report {
            text: text.into(),
            json,
        }
    }
}

/// Everything a command needs besides its own arguments.
pub struct Ctx {
    pub json: bool,
    pub target: Target,
    /// Draw `--wait` progress (stderr is a terminal and no `--json`).
    pub progress: bool,
}

/// Stats reads during one-shot commands.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// Stats reads inside `--wait` loops: short, the loop retries.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a FIFO without a reader is retried when the master is known to be alive.
const FIFO_RETRY: Duration = Duration::from_millis(500);
/// How long pause/resume wait to see their effect in the stats.
const CONFIRM: Duration = Duration::from_secs(3);

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Report, CtlError> {
    if let Command::Completions(a) = &cli.command {
        let script = crate::gen::completion(a.shell, crate::cli::command());
        return Ok(Report::new(
            script.clone(),
            json!({"ok": true, "shell": a.shell.to_string(), "script": script}),
        ));
    }
    if let Command::List = &cli.command {
        return list(cli.json);
    }
    let target = target::resolve(&cli.target)?;
    for w in &target.warnings {
        eprintln!("uwsgictl: warning: {w}");
    }
    let ctx = Ctx {
        json: cli.json,
        progress: !cli.json && term::stderr_is_terminal(),
        target,
    };
    match cli.command {
        Command::Reload(a) => reload(&ctx, &a),
        Command::Stop(a) => stop(&ctx, &a),
        Command::Pause(a) => pause_resume(&ctx, true, &a),
        Command::Resume(a) => pause_resume(&ctx, false, &a),
        Command::Rollback(a) => rollback(&ctx, &a),
        Command::Stats(a) => stats(&ctx, &a),
        Command::Status => Ok(status(&ctx)),
        Command::Signal(a) => signal(&ctx, &a),
        Command::Fifo(a) => fifo_cmd(&ctx, &a),
        Command::List | Command::Completions(_) => unreachable!("handled above"),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Ctx {
    fn stats_addr(&self, why: &str) -> Result<&StatsAddr, CtlError> {
        self.target.stats.as_ref().ok_or_else(|| {
            CtlError::usage(format!(
                "{why} needs the stats server, and {} names none; give --stats ADDR or --ini FILE",
                self.target.describe()
            ))
        })
    }

    fn fetch(&self, why: &str) -> Result<(StatsDocument, Vec<u8>), CtlError> {
        let addr = self.stats_addr(why)?;
        statsclient::fetch(addr, STATS_TIMEOUT).map_err(FetchError::into_ctl)
    }

    /// The stats document if a stats address is known and answers.
    fn try_fetch(&self) -> Option<StatsDocument> {
        let addr = self.target.stats.as_ref()?;
        statsclient::fetch(addr, STATS_TIMEOUT).ok().map(|(d, _)| d)
    }

    /// The validated master from the pidfile, or (without one) from the stats document's pid.
    fn master(&self, why: &str) -> Result<Master, CtlError> {
        if let Some(p) = &self.target.pidfile {
            return master::from_pidfile(p);
        }
        if let Some(addr) = &self.target.stats {
            if let Ok((doc, _)) = statsclient::fetch(addr, STATS_TIMEOUT) {
                if doc.pid > 1 && doc.pid <= i64::from(i32::MAX) {
                    return master::validate(doc.pid as i32, None, None);
                }
            }
        }
        Err(CtlError::usage(format!(
            "{why} needs the master's pid, and {} names no pidfile; give --pidfile, --ini or \
             --name",
            self.target.describe()
        )))
    }

    /// The validated master if a pidfile is known (validation errors are errors).
    fn optional_master(&self) -> Result<Option<Master>, CtlError> {
        match &self.target.pidfile {
            Some(p) => master::from_pidfile(p).map(Some),
            None => Ok(None),
        }
    }

    /// The FIFO to write to: the active slot per the stats, else the first.
    fn fifo_path(&self, doc: Option<&StatsDocument>) -> Option<PathBuf> {
        if self.target.fifos.len() > 1 {
            if let Some(ext) = doc.and_then(|d| d.uwsgid.as_ref()) {
                if let Some(p) = ext.fifo.get(ext.fifo_slot as usize) {
                    return Some(PathBuf::from(p));
                }
            }
        }
        self.target.fifos.first().cloned()
    }

    fn require_fifo(&self, why: &str, doc: Option<&StatsDocument>) -> Result<PathBuf, CtlError> {
        self.fifo_path(doc).ok_or_else(|| {
            CtlError::usage(format!(
                "{why} goes through the master FIFO, and {} names none; give --fifo PATH or \
                 --ini FILE (the instance needs --master-fifo)",
                self.target.describe()
            ))
        })
    }
}

fn instance_kind(master: Option<&Master>, doc: Option<&StatsDocument>) -> Option<MasterKind> {
    master.map(|m| m.kind).or_else(|| {
        doc.map(|d| {
            if d.uwsgid.is_some() {
                MasterKind::Uwsgid
            } else {
                MasterKind::Uwsgi
            }
        })
    })
}

/// How one operation reaches the master.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    Signal(i32, &'static str),
    Fifo(u8),
}

impl Delivery {
    fn describe(self) -> String {
        match self {
            Delivery::Signal(_, name) => format!("SIG{name}"),
            Delivery::Fifo(b) => format!("FIFO '{}'", b as char),
        }
    }

    fn json(self) -> Value {
        match self {
            Delivery::Signal(_, name) => json!({"via": "signal", "signal": name}),
            Delivery::Fifo(b) => json!({"via": "fifo", "byte": (b as char).to_string()}),
        }
    }
}

fn deliver(
    ctx: &Ctx,
    delivery: Delivery,
    master: Option<&Master>,
    doc: Option<&StatsDocument>,
    why: &str,
) -> Result<(), CtlError> {
    match delivery {
        Delivery::Signal(sig, name) => match master {
            Some(m) => m.signal(sig, name),
            None => Err(CtlError::usage(format!("{why} needs the master's pidfile"))),
        },
        Delivery::Fifo(byte) => {
            let path = ctx.require_fifo(why, doc)?;
            let retry = if master.is_some() {
                FIFO_RETRY
            } else {
                Duration::ZERO
            };
            fifo::write(&path, &[byte], retry)
        }
    }
}

fn who(master: Option<&Master>, doc: Option<&StatsDocument>) -> String {
    match (master, doc) {
        (Some(m), _) => format!("{} pid {}", m.kind_name(), m.pid),
        (None, Some(d)) => format!(
            "{} pid {}",
            if d.uwsgid.is_some() {
                "uwsgid"
            } else {
                "uwsgi"
            },
            d.pid
        ),
        (None, None) => "the instance".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// reload

fn reload(ctx: &Ctx, a: &ReloadArgs) -> Result<Report, CtlError> {
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

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

// ---------------------------------------------------------------------------------------------
// stop

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

fn stop(ctx: &Ctx, a: &StopArgs) -> Result<Report, CtlError> {
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

// ---------------------------------------------------------------------------------------------
// pause / resume

fn pause_resume(ctx: &Ctx, want_paused: bool, a: &ViaArgs) -> Result<Report, CtlError> {
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

// ---------------------------------------------------------------------------------------------
// rollback

fn rollback(ctx: &Ctx, a: &ViaArgs) -> Result<Report, CtlError> {
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
        if ext.snapshot.is_none() {
            return Err(CtlError::new(
                Exit::Failure,
                "no snapshot generation is parked, so there is nothing to roll back to; start \
                 uwsgid with --auto-snapshot and reload once; nothing was sent",
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

// ---------------------------------------------------------------------------------------------
// signal, fifo

fn signal(ctx: &Ctx, a: &SignalArgs) -> Result<Report, CtlError> {
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

fn fifo_cmd(ctx: &Ctx, a: &FifoArgs) -> Result<Report, CtlError> {
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
    fifo::write(&path, &bytes, retry)?;
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

// ---------------------------------------------------------------------------------------------
// status

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
    let doc = t
        .stats
        .as_ref()
        .map(|a| statsclient::fetch(a, Duration::from_millis(500)));
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
            Some(f) if fifo::has_reader(f) => (
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

// ---------------------------------------------------------------------------------------------
// stats

fn render_opts() -> RenderOptions {
    RenderOptions {
        width: term::stdout_width(),
        color: term::stdout_color(),
        now_unix: now_unix(),
    }
}

fn stats(ctx: &Ctx, a: &StatsArgs) -> Result<Report, CtlError> {
    let addr = ctx.stats_addr("stats")?.clone();
    if !a.watch {
        let raw = statsclient::fetch_raw(&addr, STATS_TIMEOUT).map_err(FetchError::into_ctl)?;
        let doc = statsclient::parse(&addr, &raw).map_err(FetchError::into_ctl)?;
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

// ---------------------------------------------------------------------------------------------
// list

fn list(json_out: bool) -> Result<Report, CtlError> {
    let mut rows = Vec::new();
    for (name, paths) in common::discovery::list_instances() {
        let mut row = ListRow {
            name,
            status: String::new(),
            pid: None,
            workers: None,
            pidfile: paths.pidfile.display().to_string(),
        };
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
                if let Ok((doc, _)) = statsclient::fetch(&addr, Duration::from_millis(300)) {
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
    let runtime = common::discovery::runtime_dir();
    let _ = json_out;
    Ok(Report::new(
        text.trim_end().to_string(),
        json!({"ok": true, "command": "list", "runtime_dir": runtime, "instances": rows}),
    ))
}
