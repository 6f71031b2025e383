//! `uwsgid --reload PIDFILE` and the other pidfile conveniences of uWSGI's management page,
//! done safely.
//!
//! | option | what is sent |
//! |---|---|
//! | `--reload PIDFILE` | SIGHUP: graceful reload |
//! | `--stop PIDFILE` | SIGINT: the whole stack at once (as uWSGI's `--stop`) |
//! | `--graceful-stop PIDFILE` | FIFO `q`: requests in flight finish |
//! | `--brutal-reload PIDFILE` | FIFO `R` |
//! | `--chain-reload PIDFILE` | FIFO `c`: one worker at a time |
//! | `--pause`, `--suspend PIDFILE` | FIFO `h`: pause (already paused: nothing changes) |
//! | `--resume PIDFILE` | FIFO `u`: resume (already running: nothing changes) |
//!
//! uWSGI reads the pidfile with `atoi` and calls `kill` with whatever it got: an empty file
//! signals the caller's own process group, a stale one whatever process took the pid. Here the
//! pidfile is read strictly ([`common::pidfile`]), the pid is pinned with a pidfd
//! ([`common::pidfd`]) and checked to be a live uwsgid or uWSGI master that started before the
//! file was written ([`common::process`]), and every signal goes through that pidfd; a FIFO
//! byte is written only to a FIFO named by the instance record beside the pidfile *and* open in
//! that master. Nothing is ever sent to a process group. The exit codes are uwsgictl's
//! ([`common::exit`]): 0 done, 3 no pidfile, 10-14 a bad pidfile, 15 stale, 16 not a master,
//! 17 pid reused, 5 not allowed, 24 no usable FIFO, 2 a FIFO-only action on an instance
//! without one; with `--wait`, 20 timeout, 21 the master died during a reload, 22 the reload
//! failed, 23 the stats are unreachable.
//!
//! `--wait` blocks until the action is done: a stop until the master has exited, a reload until
//! the stats (the instance's `--stats`) report it complete, a pause or resume until the stats
//! show it; at most [`WAIT_TIMEOUT`].

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::exit::{self, Exit};
use common::fifo::FifoCommand;
use common::pidfd::PidHandle;
use common::pidfile::{self, PidfileError};
use common::process::{self, MasterError, MasterKind};
use common::stats::StatsDocument;

/// How long `--wait` waits at most.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// uWSGI rewrites its pidfile in place: an empty one is read again for this long.
const EMPTY_RETRY: Duration = Duration::from_millis(50);

/// One management action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Reload,
    BrutalReload,
    ChainReload,
    Stop,
    GracefulStop,
    Pause,
    Resume,
}

impl Action {
    fn option(self) -> &'static str {
        match self {
            Action::Reload => "--reload",
            Action::BrutalReload => "--brutal-reload",
            Action::ChainReload => "--chain-reload",
            Action::Stop => "--stop",
            Action::GracefulStop => "--graceful-stop",
            Action::Pause => "--pause",
            Action::Resume => "--resume",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Action::Reload => "graceful reload",
            Action::BrutalReload => "brutal reload",
            Action::ChainReload => "chain reload",
            Action::Stop => "stop",
            Action::GracefulStop => "graceful stop",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    fn is_reload(self) -> bool {
        matches!(
            self,
            Action::Reload | Action::BrutalReload | Action::ChainReload
        )
    }
}

/// A failure: the exit code and the message (which says what to do).
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

fn fail(exit: Exit, message: impl Into<String>) -> Failure {
    Failure {
        exit,
        message: message.into(),
    }
}

/// Two management options given together (the first two, in the order of [`Action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwoActions(pub Action, pub Action);

impl std::fmt::Display for TwoActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} and {} given together: give one management option at a time",
            self.0.option(),
            self.1.option()
        )
    }
}

impl std::error::Error for TwoActions {}

/// The action the arguments ask for, if any; an error if they ask for more than one.
pub fn requested(args: &crate::cli::Args) -> Result<Option<(Action, PathBuf)>, TwoActions> {
    let all = [
        (Action::Reload, &args.reload),
        (Action::BrutalReload, &args.brutal_reload),
        (Action::ChainReload, &args.chain_reload),
        (Action::Stop, &args.stop),
        (Action::GracefulStop, &args.graceful_stop),
        (Action::Pause, &args.pause),
        (Action::Pause, &args.suspend),
        (Action::Resume, &args.resume),
    ];
    let given: Vec<(Action, PathBuf)> = all
        .iter()
        .filter_map(|(a, p)| p.as_ref().map(|p| (*a, p.clone())))
        .collect();
    match given.len() {
        0 => Ok(None),
        1 => Ok(given.into_iter().next()),
        _ => Err(TwoActions(given[0].0, given[1].0)),
    }
}

/// The validated master: its pinned handle, kind and record.
struct Master {
    pid: i32,
    kind: MasterKind,
    handle: PidHandle,
}

fn kind_name(kind: MasterKind) -> &'static str {
    match kind {
        MasterKind::Uwsgid => "uwsgid",
        MasterKind::Uwsgi => "uwsgi",
    }
}

fn pidfile_failure(err: &PidfileError) -> Failure {
    let (exit, fix) = exit::pidfile_exit(err);
    let fix = match err {
        PidfileError::Missing(_) => "the instance is not running, or the path is not its pidfile",
        _ => fix,
    };
    fail(exit, format!("{err}; {fix}"))
}

fn master_failure(path: &Path, err: &MasterError) -> Failure {
    let (exit, fix) = exit::master_exit(err);
    fail(exit, format!("pidfile {}: {err}; {fix}", path.display()))
}

fn validate(path: &Path) -> Result<Master, Failure> {
    let started = Instant::now();
    let content = loop {
        match pidfile::read(path) {
            Ok(c) => break c,
            Err(PidfileError::Empty(_)) if started.elapsed() < EMPTY_RETRY => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(pidfile_failure(&e)),
        }
    };
    let pid = content.pid;
    let handle = match PidHandle::open(pid) {
        Ok(h) => h,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Err(master_failure(path, &MasterError::Dead { pid }))
        }
        Err(e) => {
            return Err(fail(
                Exit::Failure,
                format!("cannot open a handle on pid {pid}: {e}"),
            ))
        }
    };
    let kind =
        process::check_master(pid, Some(content.modified)).map_err(|e| master_failure(path, &e))?;
    // The pidfd was opened before the /proc checks: if the process is still alive now, they
    // were about it.
    match handle.send(0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Err(master_failure(path, &MasterError::Dead { pid }))
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => return Err(fail(Exit::Failure, format!("pid {pid}: {e}"))),
    }
    Ok(Master { pid, kind, handle })
}

impl Master {
    fn signal(&self, sig: i32, name: &str) -> Result<(), Failure> {
        self.handle.send(sig).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => fail(
                Exit::Permission,
                format!(
                    "not allowed to send SIG{name} to pid {}: it belongs to another user; run \
                     this as that user or as root",
                    self.pid
                ),
            ),
            Some(libc::ESRCH) => fail(
                Exit::Stale,
                format!("pid {} exited before SIG{name} could be sent", self.pid),
            ),
            _ => fail(
                Exit::Failure,
                format!("sending SIG{name} to pid {}: {e}", self.pid),
            ),
        })
    }

    fn describe(&self) -> String {
        format!("{} master pid {}", kind_name(self.kind), self.pid)
    }
}

/// Open the instance's FIFO: one the record beside the pidfile names, that is a FIFO and that
/// the validated master has open.
fn open_fifo(path: &Path, m: &Master, action: Action) -> Result<std::fs::File, Failure> {
    let record = common::discovery::read_record(path).ok();
    let fifos: Vec<PathBuf> = record.map(|r| r.fifo).unwrap_or_default();
    if fifos.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} goes through the master FIFO, and the {} has none (no {} beside the \
                 pidfile names one); start the instance with --master-fifo PATH, or use \
                 --reload/--stop (signals)",
                action.option(),
                m.describe(),
                common::discovery::record_path(path).display()
            ),
        ));
    }
    let mut last = String::new();
    for fifo in &fifos {
        match std::fs::symlink_metadata(fifo) {
            Ok(meta) if meta.file_type().is_fifo() => {}
            Ok(_) => {
                last = format!("{} is not a FIFO", fifo.display());
                continue;
            }
            Err(e) => {
                last = format!("{}: {e}", fifo.display());
                continue;
            }
        }
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(fifo)
        {
            Ok(f) => f,
            Err(e) => {
                last = format!("{}: {e}", fifo.display());
                continue;
            }
        };
        match process::holds_file(m.pid, &file) {
            Ok(true) => return Ok(file),
            Ok(false) => last = format!("{} is not open in the {}", fifo.display(), m.describe()),
            Err(e) => {
                return Err(fail(
                    Exit::Permission,
                    format!(
                        "cannot check that {} belongs to the {} (/proc/{}/fd: {e}); nothing was \
                         sent; run this as the instance's user or as root",
                        fifo.display(),
                        m.describe(),
                        m.pid
                    ),
                ))
            }
        }
    }
    Err(fail(
        Exit::Fifo,
        format!(
            "no usable master FIFO for the {} ({last}); nothing was sent; restart the instance \
             to rewrite its record",
            m.describe()
        ),
    ))
}

fn write_fifo(mut file: std::fs::File, byte: u8) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match file.write(&[byte]) {
            Ok(1) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(_) => {}
            Err(e) => return Err(fail(Exit::Fifo, format!("writing the master FIFO: {e}"))),
        }
    }
}

/// Why the instance's stats could not be read: its address and the cause.
#[derive(Debug)]
enum StatsError {
    /// Connecting, sending or reading.
    Io(String, io::Error),
    /// The address in the record is not one.
    Addr(String, std::net::AddrParseError),
    /// What came back is not a stats document (the reader's message).
    Parse(String, String),
}

impl std::fmt::Display for StatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsError::Io(addr, e) => write!(f, "{addr}: {e}"),
            StatsError::Addr(addr, e) => write!(f, "{addr}: {e}"),
            StatsError::Parse(addr, e) => write!(f, "{addr}: {e}"),
        }
    }
}

/// One stats document from the instance's `--stats` (as its record names it).
fn fetch_stats(addr: &str, http: bool) -> Result<StatsDocument, StatsError> {
    let timeout = Duration::from_secs(2);
    let io = |e| StatsError::Io(addr.to_string(), e);
    let mut raw = Vec::new();
    if addr.contains(':') && !addr.contains('/') {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| StatsError::Addr(addr.to_string(), e))?;
        let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).map_err(io)?;
        s.set_read_timeout(Some(timeout)).ok();
        if http {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(io)?;
        }
        s.take(16 << 20).read_to_end(&mut raw).map_err(io)?;
    } else {
        let mut s = std::os::unix::net::UnixStream::connect(addr).map_err(io)?;
        s.set_read_timeout(Some(timeout)).ok();
        if http {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(io)?;
        }
        s.take(16 << 20).read_to_end(&mut raw).map_err(io)?;
    }
    let text = String::from_utf8_lossy(&raw);
    let body = match text.find("\r\n\r\n") {
        Some(i) if http => &text[i + 4..],
        _ => &text[..],
    };
    common::stats::parse(body).map_err(|e| StatsError::Parse(addr.to_string(), e.to_string()))
}

struct Stats {
    addr: String,
    http: bool,
}

impl Stats {
    fn of(pidfile: &Path) -> Option<Stats> {
        let r = common::discovery::read_record(pidfile).ok()?;
        Some(Stats {
            addr: r.stats?,
            http: r.stats_http,
        })
    }

    fn fetch(&self) -> Result<StatsDocument, Failure> {
        fetch_stats(&self.addr, self.http).map_err(|e| {
            fail(
                Exit::Stats,
                format!("stats {e}; the action was sent, its outcome is unknown"),
            )
        })
    }
}

/// Wait until `done` says yes (Ok) or no (Err), or the deadline passes.
fn wait_until(
    m: &Master,
    what: &str,
    dying_is_done: bool,
    mut done: impl FnMut() -> Option<Result<(), Failure>>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if let Some(r) = done() {
            return r;
        }
        if m.handle.exited(Duration::from_millis(20)) {
            if dying_is_done {
                return Ok(());
            }
            return Err(fail(
                Exit::MasterDied,
                format!("the {} died while waiting for {what}", m.describe()),
            ));
        }
        if Instant::now() >= deadline {
            return Err(fail(
                Exit::Timeout,
                format!(
                    "{what}: not done within {}s (the action was sent)",
                    WAIT_TIMEOUT.as_secs()
                ),
            ));
        }
    }
}

/// Carry out `action` on the master of `pidfile`; the message to print on success.
pub fn perform(action: Action, pidfile: &Path, wait: bool) -> Result<String, Failure> {
    let m = validate(pidfile)?;
    let fifo_byte = match action {
        Action::Reload | Action::Stop => None,
        Action::BrutalReload => Some(FifoCommand::BrutalReload),
        Action::ChainReload => Some(FifoCommand::ChainReload),
        Action::GracefulStop => Some(FifoCommand::Stop),
        Action::Pause | Action::Resume if m.kind == MasterKind::Uwsgi => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "{}: the {} only has a pause toggle; use 'uwsgictl --pidfile {} {}', which \
                     reads its state first",
                    action.option(),
                    m.describe(),
                    pidfile.display(),
                    action.what()
                ),
            ))
        }
        Action::Pause => Some(FifoCommand::Pause),
        Action::Resume => Some(FifoCommand::Resume),
    };
    // What --wait needs is checked before anything is sent.
    let stats = Stats::of(pidfile);
    let needs_stats =
        wait && (action.is_reload() || matches!(action, Action::Pause | Action::Resume));
    let baseline = match (&stats, needs_stats) {
        (Some(s), true) => Some(s.fetch()?),
        (None, true) => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "{} --wait learns the outcome from the instance's stats, and the {} has no \
                     --stats; nothing was sent; drop --wait or start the instance with --stats",
                    action.option(),
                    m.describe()
                ),
            ))
        }
        _ => None,
    };
    let file = match fifo_byte {
        Some(_) => Some(open_fifo(pidfile, &m, action)?),
        None => None,
    };
    let how = match (fifo_byte, file) {
        (Some(cmd), Some(file)) => {
            write_fifo(file, cmd.as_byte())?;
            format!("FIFO '{}'", cmd.as_byte() as char)
        }
        _ => {
            let (sig, name) = match action {
                Action::Reload => (libc::SIGHUP, "HUP"),
                _ => (libc::SIGINT, "INT"),
            };
            m.signal(sig, name)?;
            format!("SIG{name}")
        }
    };
    let sent = format!("{} of the {} ({how})", action.what(), m.describe());
    if !wait {
        return Ok(format!("sent {sent}"));
    }
    match action {
        Action::Stop | Action::GracefulStop => {
            wait_until(&m, "the master to exit", true, || None)?;
            Ok(format!("{sent}: the master has exited"))
        }
        Action::Pause | Action::Resume => {
            let want = action == Action::Pause;
            let s = stats.as_ref().expect("checked above");
            wait_until(&m, action.what(), false, || match s.fetch() {
                Ok(d) if d.uwsgid.as_ref().is_some_and(|u| u.paused == want) => Some(Ok(())),
                _ => None,
            })?;
            Ok(format!("{sent}: done"))
        }
        _ => {
            let s = stats.as_ref().expect("checked above");
            let base = baseline.and_then(|b| b.uwsgid).unwrap_or_default();
            wait_until(&m, action.what(), false, || {
                let doc = s.fetch().ok()?;
                let ext = doc.uwsgid?;
                let outcome = ext.last_reload.filter(|o| o.generation > base.generation)?;
                Some(
                    if outcome.result == common::reload::ReloadResult::Complete {
                        Ok(())
                    } else {
                        Err(fail(
                            Exit::ReloadFailed,
                            format!(
                                "the {} of generation {} failed: {}",
                                action.what(),
                                outcome.generation,
                                outcome.reason.unwrap_or_default()
                            ),
                        ))
                    },
                )
            })?;
            Ok(format!("{sent}: complete"))
        }
    }
}

/// Run the management action the arguments ask for, if any; the process's exit code.
pub fn run(argv: &[String]) -> Option<i32> {
    // Only the command line asks for these (never a configuration file): look for them
    // before reading any file, so an instance's start reads its configuration once.
    const OPTIONS: &[&str] = &[
        "--reload",
        "--brutal-reload",
        "--chain-reload",
        "--stop",
        "--graceful-stop",
        "--pause",
        "--suspend",
        "--resume",
    ];
    let asked = argv.iter().skip(1).any(|a| {
        let name = a.split('=').next().unwrap_or(a);
        OPTIONS.contains(&name)
    });
    if !asked {
        return None;
    }
    let args = match <crate::cli::Args as clap::Parser>::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let text = e.to_string();
            eprintln!(
                "uwsgid: {}",
                text.trim_end()
                    .strip_prefix("error: ")
                    .map_or(text.trim_end().to_string(), |t| format!("error: {t}"))
            );
            return Some(Exit::Usage.code());
        }
    };
    let (action, pidfile) = match requested(&args) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("uwsgid: error: {e}");
            return Some(Exit::Usage.code());
        }
    };
    Some(match perform(action, &pidfile, args.wait) {
        Ok(done) => {
            println!("uwsgid: {done}");
            0
        }
        Err(f) => {
            eprintln!("uwsgid: error: {}", f.message);
            f.exit.code()
        }
    })
}
