//! The commands: each decides what to send and what to report, and returns a [`Report`]
//! (a human line or table, and a JSON document); `main` writes it. Only `stats --watch`
//! writes frames itself, as they come.
//!
//! One file per verb (`reload`, `stop`, `pause` for pause/resume, `rollback`, `signal`,
//! `fifo`, `status`, `stats`, `list`); this file holds what they share: the [`Ctx`] (target,
//! validated master, FIFO choice), how an operation is delivered, and the report.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::process::MasterKind;
use common::stats::StatsDocument;
use serde_json::{json, Value};

use crate::cli::{Cli, Command};
use crate::exit::{CtlError, Exit};
use crate::master::{self, Master};
use crate::render::RenderOptions;
use crate::statsclient::{self, FetchError};
use crate::target::{self, StatsAddr, Target};
use crate::term;

mod fifo;
mod list;
mod pause;
mod reload;
mod rollback;
mod signal;
mod stats;
mod status;
mod stop;

pub use status::{status, status_code};

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
    /// The pid of the live master the pidfile names, if any: a stats document must carry it.
    pub pinned: Option<i32>,
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
        return list::list(cli.json);
    }
    let target = target::resolve(&cli.target)?;
    for w in &target.warnings {
        eprintln!("uwsgictl: warning: {w}");
    }
    let pinned = target
        .pidfile
        .as_ref()
        .and_then(|p| common::pidfile::read(p).ok())
        .map(|c| c.pid)
        .filter(|&pid| common::process::check_master(pid, None).is_ok());
    let ctx = Ctx {
        json: cli.json,
        progress: !cli.json && term::stderr_is_terminal(),
        target,
        pinned,
    };
    match cli.command {
        Command::Reload(a) => reload::reload(&ctx, &a),
        Command::Stop(a) => stop::stop(&ctx, &a),
        Command::Pause(a) => pause::pause_resume(&ctx, true, &a),
        Command::Resume(a) => pause::pause_resume(&ctx, false, &a),
        Command::Rollback(a) => rollback::rollback(&ctx, &a),
        Command::Stats(a) => stats::stats(&ctx, &a),
        Command::Status => Ok(status(&ctx)),
        Command::Signal(a) => signal::signal(&ctx, &a),
        Command::Fifo(a) => fifo::fifo_cmd(&ctx, &a),
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
        let (doc, raw) =
            statsclient::fetch(addr, STATS_TIMEOUT).map_err(|e| self.explain_fetch(e))?;
        self.check_doc(addr, &doc)?;
        Ok((doc, raw))
    }

    /// The stats document if a stats address is known, answers, and is the pinned master's.
    fn try_fetch(&self) -> Option<StatsDocument> {
        let addr = self.target.stats.as_ref()?;
        let (doc, _) = statsclient::fetch(addr, STATS_TIMEOUT).ok()?;
        match self.check_doc(addr, &doc) {
            Ok(()) => Some(doc),
            Err(e) => {
                eprintln!("uwsgictl: warning: {}; ignoring it", e.message);
                None
            }
        }
    }

    /// A stats document must come from the master the pidfile names: a record naming another
    /// instance's stats socket must not make a command report on (or decide from) that one.
    /// The document must carry its pid, and the socket must be one it holds.
    pub(super) fn check_doc(&self, addr: &StatsAddr, doc: &StatsDocument) -> Result<(), CtlError> {
        match self.pinned {
            Some(pid) if doc.pid != i64::from(pid) => Err(CtlError::new(
                Exit::Stats,
                format!(
                    "stats {addr} answer for pid {}, not for the master pid {pid} that {} names: \
                     the address belongs to another instance, or the instance record is stale \
                     or forged; give the instance's own --stats ADDR",
                    doc.pid,
                    self.target.describe()
                ),
            )),
            Some(pid) if master::listens_on(pid, addr) == Some(false) => Err(CtlError::new(
                Exit::Stats,
                format!(
                    "stats {addr} is not a socket the master pid {pid} that {} names holds: \
                     the address belongs to another process, or the instance record is stale \
                     or forged; give the instance's own --stats ADDR",
                    self.target.describe()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Err if the master the pidfile names is stopped: it would answer nothing.
    pub(super) fn refuse_if_stopped(&self) -> Result<(), CtlError> {
        match self.pinned {
            Some(pid)
                if common::process::ProcessInfo::read(pid).is_some_and(|i| i.is_stopped()) =>
            {
                let kind = common::process::check_master(pid, None)
                    .map(master::kind_name)
                    .unwrap_or("uwsgid");
                Err(master::stopped_error(pid, kind))
            }
            _ => Ok(()),
        }
    }

    /// A stats read that failed: if the master is stopped (SIGSTOP), say that instead (its
    /// listening socket still accepts, so the read just times out).
    pub(super) fn explain_fetch(&self, e: FetchError) -> CtlError {
        match self.refuse_if_stopped() {
            Err(stopped) => stopped,
            Ok(()) => e.into_ctl(),
        }
    }

    /// The validated master from the pidfile, or (without one) from the stats document's pid;
    /// refused if it is stopped.
    fn master(&self, why: &str) -> Result<Master, CtlError> {
        let m = self.find_master(why)?;
        m.check_running()?;
        Ok(m)
    }

    fn find_master(&self, why: &str) -> Result<Master, CtlError> {
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

    /// The validated master if a pidfile is known (validation errors are errors, and so is a
    /// stopped master).
    fn optional_master(&self) -> Result<Option<Master>, CtlError> {
        match &self.target.pidfile {
            Some(p) => {
                let m = master::from_pidfile(p)?;
                m.check_running()?;
                Ok(Some(m))
            }
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
            crate::fifo::write(&path, &[byte], retry, master)
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

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn render_opts() -> RenderOptions {
    RenderOptions {
        width: term::stdout_width(),
        color: term::stdout_color(),
        now_unix: now_unix(),
    }
}
