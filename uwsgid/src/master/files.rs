//! Startup and the files of an instance: the first start (lock, bind, channels, first generation), pidfile locks, pidfiles and instance
//! records, log reopen and rotation, and `--vacuum`.
//!
//! Startup errors are [`Error`]s: fatal, printed, nothing left behind. Once running, a file
//! that cannot be written is a runtime error: logged, shown in stats, survived.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use super::record::Requests;
use super::sources::Sources;
use super::step::Phase;
use super::table::Table;
use super::{Error, Master, Now};
use crate::cli::{Config, StatsAddr, WorkerKind};
use crate::fifo::Fifo;
use crate::listener;
use crate::log;
use crate::scoreboard::Scoreboard;
use crate::stats_server::StatsServer;
use crate::sys;
use crate::touch::{Touch, TouchAction};

/// The pidfile locks this instance holds and the pidfiles it wrote; the log's bookkeeping.
#[derive(Default)]
pub struct Files {
    pub locks: Vec<(PathBuf, OwnedFd)>,
    pub pidfiles_written: Vec<PathBuf>,
    /// The generation the log last heard of (0: none yet in this image).
    pub log_generation: u64,
    /// When `--log-maxsize` next looks at the log's size.
    pub log_check_at: Option<std::time::Instant>,
}

/// How often `--log-maxsize` looks at the log's size (uWSGI's master does once a second too).
pub const LOG_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Files {
    /// The next size check of `--log-maxsize`, if any.
    pub fn log_deadline(&self) -> Option<std::time::Instant> {
        self.log_check_at
    }
}

/// Lock `PIDFILE.lock`: a second instance with the same pidfile is refused.
///
/// A master that exits removes its lock file while it still holds the lock
/// ([`Master::release_locks`]), so nothing is left behind. A starter that opened the file
/// just before that removal can lock it once the old master is gone, but it then holds a file
/// nobody else can find: so a lock counts only if the file locked is still the one at the
/// path (same device and inode); otherwise the path is opened and locked again. Two instances
/// can therefore never both hold "the" lock.
pub fn lock_pidfile(path: &Path) -> Result<OwnedFd, Error> {
    let lock = common::pidfile::lock_path(path);
    for _ in 0..LOCK_ATTEMPTS {
        let file = common::pidfile::open_lock(path).map_err(Error::Lock)?;
        let fd: OwnedFd = file.into();
        match sys::try_lock(fd.as_raw_fd()) {
            Ok(true) if is_file_at(&fd, &lock) => return Ok(fd),
            Ok(true) => continue, // removed (or replaced) by its last holder meanwhile
            Ok(false) => {
                return Err(Error::PidfileBusy {
                    path: path.to_path_buf(),
                    holder: common::pidfile::read(path).ok().map(|c| c.pid),
                })
            }
            Err(e) => return Err(Error::PidfileLock(lock, e)),
        }
    }
    Err(Error::PidfileLock(
        lock,
        std::io::Error::other(
            "the lock file was replaced at every attempt: is another instance starting and \
             stopping in a loop?",
        ),
    ))
}

/// How often [`lock_pidfile`] opens a lock file again that was removed under it.
const LOCK_ATTEMPTS: usize = 10;

/// True if `fd` is the file at `path` now (not a symlink: lock files never are).
fn is_file_at(fd: &OwnedFd, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(at_path) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let Ok(open) = fd.try_clone().map(std::fs::File::from) else {
        return false;
    };
    open.metadata()
        .is_ok_and(|m| m.dev() == at_path.dev() && m.ino() == at_path.ino())
}

/// The notify socket of a first start: an abstract name of our own.
fn create_notify(now: Now) -> Result<(OwnedFd, String), Error> {
    let addr = format!("@uwsgid-notify-{}-{}", std::process::id(), now.unix_ms);
    let fd = crate::notify::bind(&addr).map_err(Error::Notify)?;
    Ok((fd, addr))
}

/// The parts every master has, first start or re-exec.
pub(super) fn base(
    argv: Vec<String>,
    config: Config,
    board: Scoreboard,
    notify: (OwnedFd, String),
    now: Now,
) -> Result<Master, Error> {
    let signals = sys::signalfd(&sys::managed_signals()).map_err(Error::Signalfd)?;
    // Workers forked by a preload zygote's child are re-parented to us, so we can reap them.
    sys::set_child_subreaper();
    let exe = std::env::current_exe().map_err(Error::OwnBinary)?;
    // After a rebuild /proc/self/exe reads "PATH (deleted)": re-exec the path, which now
    // holds the new binary.
    let exe = PathBuf::from(
        exe.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string(),
    );
    Ok(Master {
        config,
        argv,
        exe,
        generation: 1,
        paused: false,
        last_error: None,
        started_unix: now.unix_ms / 1000,
        listeners: Vec::new(),
        sources: Sources {
            signals,
            notify: notify.0,
            notify_addr: notify.1,
            fifo: None,
            stats: None,
            touch: None,
            relay: None,
        },
        table: Table::new(board),
        reloads: Default::default(),
        preload: Default::default(),
        runner: None,
        files: Files::default(),
        stats_cache: Default::default(),
        ticker: Default::default(),
        phase: Phase::Running,
        requests: Requests::default(),
        exit_code: None,
        systemd: None,
        respawns: Default::default(),
    })
}

/// First start: lock, bind, create the channels, spawn the first generation, write the
/// pidfile. Any error here stops startup; nothing is left behind.
pub(super) fn start(argv: Vec<String>, config: Config, now: Now) -> Result<Master, Error> {
    if let Some(dir) = &config.instance_dir {
        common::discovery::InstancePaths::in_dir(dir.clone())
            .create()
            .map_err(Error::InstanceDir)?;
    }
    if let Some(log) = &config.logto {
        crate::log::redirect_to(log).map_err(|e| Error::Logto(log.clone(), e))?;
    }
    crate::fifo::check_paths(&config.fifos).map_err(Error::FifoPath)?;
    let mut locks = Vec::new();
    for p in &config.pidfiles {
        locks.push((p.clone(), lock_pidfile(p)?));
    }
    let (mut listeners, names): (Vec<_>, Vec<_>) = listener::take_systemd().into_iter().unzip();
    let activated = !listeners.is_empty();
    for spec in config
        .listeners
        .iter()
        .filter(|_| !(activated && config.default_listener))
    {
        // `--http-socket fd://N` naming a socket systemd passed: that listener, taken once;
        // `fd://NAME`: every socket passed under that name not taken yet.
        let passed: Vec<usize> = match &spec.addr {
            crate::cli::ListenAddr::Fd(n) => listeners
                .iter()
                .position(|l| l.raw() == *n)
                .into_iter()
                .collect(),
            crate::cli::ListenAddr::Named(name) => (0..names.len())
                .filter(|&i| names[i] == *name && listeners[i].configured.starts_with("systemd:"))
                .collect(),
            _ => Vec::new(),
        };
        if passed.is_empty() {
            listeners.push(
                listener::bind(spec, config.backlog)
                    .map_err(|mut e| {
                        if let listener::ErrorKind::NotPassed { passed, .. } = &mut e.kind {
                            passed.clone_from(&names);
                        }
                        e
                    })
                    .map_err(Error::Listener)?,
            );
        }
        for i in passed {
            listeners[i].configured = spec.configured.clone();
        }
    }
    let board = Scoreboard::create().map_err(Error::Scoreboard)?;
    let notify = create_notify(now)?;
    let mut m = base(argv, config, board, notify, now)?;
    m.files.locks = locks;
    m.listeners = listeners;
    m.open_channels(None, None, true)?;
    m.runner = super::runner::prepare(&m.config, None)?;
    m.table.resize(super::cheaper::initial_slots(&m.config), 1);
    m.table.retarget_all(1);
    // uwsgi listeners are shown as `uwsgi=ADDR`, as exec workers see them.
    let names: Vec<String> = m.listeners.iter().map(|l| l.fd_label()).collect();
    log!(
        "uwsgid {} master pid {} listening on {} with {} {} worker(s), mercy {}s",
        common::VERSION,
        std::process::id(),
        names.join(", "),
        m.config.processes,
        m.kind_name(),
        m.config.mercy.as_secs_f64()
    );
    if let Some(why) = &m.config.processes_from {
        log!("worker count: {why}");
    }
    m.log_snapshot_mode();
    // Said before the pidfile appears, so that whoever waits for the pidfile finds it logged.
    if let Some(dir) = &m.config.instance_dir {
        log!(
            "instance {:?}: pidfile, master FIFO and stats socket in {}",
            m.config.name.as_deref().unwrap_or("default"),
            dir.display()
        );
    }
    m.spawn_missing(now);
    m.write_pidfiles(false);
    // Everything needing root is made (listeners, pidfile, FIFO, stats socket): drop.
    crate::privileges::drop_master(m.config.identity.as_ref()).map_err(Error::Privileges)?;
    crate::daemonize::report_to_launcher(&format!("ok {}", std::process::id()));
    Ok(m)
}

impl Master {
    /// Open the FIFO, stats server and touch watches, adopting the ones a previous image
    /// handed over (`fifo_in`, `stats_in`) when their configuration did not change. Returns
    /// A channel that cannot be opened is fatal at `startup` (nothing else is opened); after
    /// a re-exec it is logged and the instance keeps serving without it.
    pub(super) fn open_channels(
        &mut self,
        fifo_in: Option<Fifo>,
        stats_in: Option<StatsServer>,
        startup: bool,
    ) -> Result<(), Error> {
        let failed = |m: &mut Master, e: Error| {
            if startup {
                return Err(e);
            }
            m.note_error(format!(
                "reload: {e}; the instance keeps serving without it"
            ));
            Ok(())
        };
        self.sources.fifo = fifo_in;
        if self.sources.fifo.is_none() && !self.config.fifos.is_empty() {
            match Fifo::open(self.config.fifos.clone(), 0) {
                Ok(f) => self.sources.fifo = Some(f),
                Err(e) => failed(self, Error::Fifo(e))?,
            }
        }
        self.sources.stats = stats_in;
        if self.sources.stats.is_none() {
            if let Some(addr) = &self.config.stats {
                match StatsServer::bind(addr, self.config.stats_http, 128) {
                    Ok(s) => self.sources.stats = Some(s),
                    Err(e) => failed(self, Error::Stats(e))?,
                }
            }
        }
        let c = &self.config;
        let touch = (c
            .touch_reload
            .iter()
            .map(|p| (p.clone(), TouchAction::Reload)))
        .chain(
            c.touch_workers_reload
                .iter()
                .map(|p| (p.clone(), TouchAction::WorkersReload)),
        )
        .chain(
            c.touch_chain_reload
                .iter()
                .map(|p| (p.clone(), TouchAction::ChainReload)),
        )
        .collect();
        match Touch::new(touch) {
            Ok(t) => self.sources.touch = t,
            Err(e) => failed(self, Error::Touch(e))?,
        }
        Ok(())
    }

    /// Once per loop turn: the log learns the newest generation (every line carries it); a
    /// new one is a reload, at which `--log-reopen` reopens the file. `--log-maxsize`: rotate
    /// once the file is larger (looked at each turn and every [`LOG_CHECK_EVERY`]).
    pub(super) fn tend_log(&mut self, now: Now) {
        if self.files.log_generation != self.generation {
            let reload = self.files.log_generation != 0 || self.generation > 1;
            self.files.log_generation = self.generation;
            log::set_generation(self.generation);
            if reload && self.config.log_reopen {
                self.reopen_log(false);
            }
        }
        let Some(max) = self.config.log_maxsize else {
            return;
        };
        if self.files.log_check_at.is_some_and(|t| t > now.at) {
            return;
        }
        self.files.log_check_at = Some(now.at + LOG_CHECK_EVERY);
        if log::size().is_some_and(|s| s > max) {
            self.reopen_log(true);
        }
    }

    pub(super) fn reopen_log(&mut self, rotate: bool) {
        let Some(path) = self.config.logto.clone() else {
            log!("log reopen/rotate asked, but there is no --logto file");
            return;
        };
        let result = if rotate {
            crate::log::rotate(&path).map(|b| format!("log rotated to {}", b.display()))
        } else {
            crate::log::redirect_to(&path).map(|_| "log reopened".to_string())
        };
        match result {
            Ok(m) => {
                log!("{m}");
                // Built-in workers reopen the file too; exec workers write through the relay.
                self.table.board.header().log_epoch.fetch_add(1, Relaxed);
                if matches!(self.config.worker, WorkerKind::Builtin) {
                    for w in &self.table.workers {
                        sys::kill(w.pid, libc::SIGCONT);
                    }
                }
            }
            Err(e) => self.note_error(format!("log {}: {e}", path.display())),
        }
    }

    pub(super) fn write_pidfiles(&mut self, only_new: bool) {
        let pid = std::process::id() as i32;
        for p in self.config.pidfiles.clone() {
            if only_new && self.files.pidfiles_written.contains(&p) {
                continue;
            }
            match common::pidfile::write_atomic(&p, pid) {
                Ok(()) => {
                    if !self.files.pidfiles_written.contains(&p) {
                        self.files.pidfiles_written.push(p.clone());
                    }
                }
                Err(e) => self.note_error(format!("pidfile {}: {e}", p.display())),
            }
            let record = common::discovery::InstanceRecord {
                pid,
                name: self.config.name.clone(),
                pidfile: absolute(&p),
                fifo: self.config.fifos.iter().map(|f| absolute(f)).collect(),
                stats: self.config.stats.as_ref().map(|s| match s {
                    StatsAddr::Tcp(a) => a.to_string(),
                    StatsAddr::Unix(p) => absolute(p).to_string_lossy().into_owned(),
                }),
                stats_http: self.config.stats_http,
                version: common::VERSION.to_string(),
                listeners: self.listeners.iter().map(|l| l.name.clone()).collect(),
            };
            let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
            if let Err(e) = common::pidfile::write_file_atomic(
                &common::discovery::record_path(&p),
                &json,
                0o644,
            ) {
                log!("instance record for {}: {e}", p.display());
            }
        }
    }

    /// At exit: remove each `PIDFILE.lock` while still holding its lock, if the path still
    /// names the file locked, then let the lock go. Safe against a starter that opened the
    /// file just before: [`lock_pidfile`] accepts a lock only on the file at the path. (An
    /// unprivileged master cannot remove a lock file in a directory it may not write, made
    /// there as root: that one stays, harmless.)
    pub(super) fn release_locks(&mut self) {
        for (pidfile, fd) in self.files.locks.drain(..) {
            let lock = common::pidfile::lock_path(&pidfile);
            if is_file_at(&fd, &lock) {
                if let Err(e) = std::fs::remove_file(&lock) {
                    log!("cannot remove {}: {e}", lock.display());
                }
            }
            drop(fd);
        }
    }

    /// `--vacuum` (or an instance directory): remove what this instance created.
    pub(super) fn cleanup(&mut self) {
        let pid = std::process::id() as i32;
        let vacuum = self.config.vacuum || self.config.instance_dir.is_some();
        if !vacuum {
            return;
        }
        for p in &self.files.pidfiles_written {
            if common::pidfile::holds(p, pid) {
                let _ = std::fs::remove_file(p);
                let _ = std::fs::remove_file(common::discovery::record_path(p));
                log!("vacuum: removed {}", p.display());
            }
        }
        if let Some(f) = &self.sources.fifo {
            for p in &f.created {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(p) = self
            .sources
            .stats
            .as_ref()
            .and_then(|s| s.created_path.clone())
        {
            let _ = std::fs::remove_file(p);
        }
        for l in &self.listeners {
            if let Some(p) = &l.created_path {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    /// A lock file removed by its holder while a starter had it open: the starter's lock on
    /// the removed file is worth nothing (it is not the file at the path), and a lock taken
    /// on the path is the only one that counts.
    #[test]
    fn a_lock_counts_only_on_the_file_at_the_path() {
        let dir = TempDir::new();
        let pidfile = dir.path.join("x.pid");
        let lock = common::pidfile::lock_path(&pidfile);
        let first = lock_pidfile(&pidfile).unwrap();
        assert!(is_file_at(&first, &lock));
        // A starter opens the file, then the holder removes it and exits.
        let stale: OwnedFd = common::pidfile::open_lock(&pidfile).unwrap().into();
        assert!(!sys::try_lock(stale.as_raw_fd()).unwrap(), "held");
        std::fs::remove_file(&lock).unwrap();
        drop(first);
        // The starter can lock what it opened, but that is no longer the file at the path.
        assert!(sys::try_lock(stale.as_raw_fd()).unwrap());
        assert!(!is_file_at(&stale, &lock));
        // lock_pidfile opens the path again: a new file, locked, and a second one is refused.
        let second = lock_pidfile(&pidfile).unwrap();
        assert!(is_file_at(&second, &lock));
        assert!(matches!(
            lock_pidfile(&pidfile),
            Err(Error::PidfileBusy { .. })
        ));
        drop(second);
        assert!(lock_pidfile(&pidfile).is_ok());
    }
}
