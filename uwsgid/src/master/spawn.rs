//! Forking: the one path by which a worker or a zygote is started ([`Master::fork_child`] and
//! [`Master::exec_child`]), and the `--check-config` child.
//!
//! The fork-child fence: after `fork` the child runs only what is written in `exec_child`
//! (never returning into the master's code): die with the master, stdio to the relay, every fd
//! closed but the listeners (and a zygote's control socket), then the built-in worker's loop or
//! `execve` of the program; a failed `execve` is logged and `_exit(127)`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use common::reload::ReloadKind;

use super::reload::{Check, CHECK_TIMEOUT};
use super::table::{SlotId, Worker, WorkerState};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::exec::ExecSpec;
use crate::log;
use crate::sys;

/// Why a worker, zygote or checker could not be started (a runtime error: logged, counted as
/// a failed start, retried after the backoff).
#[derive(Debug)]
pub enum SpawnError {
    ScoreboardFull,
    Fork(std::io::Error),
    Pipe(std::io::Error),
    Socketpair(std::io::Error),
    NoZygote(u64),
    /// The fork request could not be written to the zygote's control socket.
    Zygote {
        pid: i32,
        error: std::io::Error,
    },
    NotExec,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::ScoreboardFull => f.write_str("scoreboard full"),
            SpawnError::Fork(e) => write!(f, "fork: {e}"),
            SpawnError::Pipe(e) => write!(f, "pipe: {e}"),
            SpawnError::Socketpair(e) => write!(f, "zygote socketpair: {e}"),
            SpawnError::NoZygote(g) => write!(f, "no zygote for generation {g}"),
            SpawnError::Zygote { pid, error } => {
                write!(f, "fork request to zygote pid {pid}: {error}")
            }
            SpawnError::NotExec => f.write_str("not an exec worker"),
        }
    }
}

/// What a forked child becomes.
pub enum Child {
    /// Worker `id` of `generation`, writing scoreboard cell `cell`; `spec` for exec workers.
    Worker {
        id: SlotId,
        generation: u64,
        cell: usize,
        spec: Option<ExecSpec>,
    },
    /// The preload zygote of `generation`, with its end of the control socket.
    Zygote {
        generation: u64,
        control: RawFd,
        spec: ExecSpec,
    },
}

impl Master {
    /// Give every slot that needs one a new worker (after its backoff).
    pub(super) fn spawn_missing(&mut self, now: Now) {
        for (id, g) in self.table.missing(now.at) {
            if let Err(e) = self.spawn(id, g, now) {
                log!("cannot spawn worker {id}: {e}");
                self.table.fail_start(id, &e.to_string(), now.at);
            }
        }
    }

    fn spawn(&mut self, id: SlotId, generation: u64, now: Now) -> Result<(), SpawnError> {
        if self.preload_on() {
            return self.spawn_forked(id, generation, now);
        }
        let spec = match &self.config.worker {
            WorkerKind::Builtin => None,
            WorkerKind::Exec {
                argv, env, chdir, ..
            } => {
                let (argv, env, chdir) = (argv.clone(), env.clone(), chdir.clone());
                self.ensure_relay();
                Some(self.exec_spec(argv, env, chdir))
            }
        };
        let cell = self.table.alloc_cell().ok_or(SpawnError::ScoreboardFull)?;
        match self.fork_child(Child::Worker {
            id,
            generation,
            cell,
            spec,
        }) {
            Err(e) => {
                self.table.free_cell(cell);
                Err(SpawnError::Fork(e))
            }
            Ok(pid) => {
                self.table.board.cell(cell).pid.store(pid, Relaxed);
                self.table.add_started(
                    Worker {
                        pid,
                        slot: id,
                        generation,
                        cell,
                        state: WorkerState::Starting { killed: false },
                        spawned: now.at,
                        spawned_unix_ms: now.unix_ms,
                        ready_at: None,
                        status_text: None,
                        recycle: None,
                    },
                    now.unix_ms,
                );
                Ok(())
            }
        }
    }

    /// Fork a child that becomes `what`; its pid, in the master.
    pub(super) fn fork_child(&self, what: Child) -> std::io::Result<i32> {
        let master_pid = std::process::id() as i32;
        // The log epoch of the fd 2 the child inherits: read here, as the shared scoreboard
        // may count a reopen the master does after the fork before the child looks.
        let log_epoch = self.table.board.header().log_epoch.load(Relaxed);
        // Paths a built-in worker opens later, made absolute before its --chdir: here, where
        // this code is already in memory, not in the child (whose first touch of each code
        // page is a page fault).
        let absolute =
            |p: &Option<PathBuf>| p.clone().map(|p| std::path::absolute(&p).unwrap_or(p));
        let paths = (
            absolute(&self.config.logto),
            absolute(&self.config.check_static),
        );
        match sys::fork()? {
            sys::Fork::Parent(pid) => Ok(pid),
            sys::Fork::Child => self.exec_child(what, master_pid, log_epoch, paths),
        }
    }

    /// In the forked child: become `what`. Never returns. `paths`: `--logto` and
    /// `--check-static`, absolute.
    fn exec_child(
        &self,
        what: Child,
        master_pid: i32,
        log_epoch: u32,
        paths: (Option<PathBuf>, Option<PathBuf>),
    ) -> ! {
        if let Child::Worker { cell, .. } = &what {
            // SAFETY: getpid in the child.
            let me = unsafe { libc::getpid() };
            self.table.board.cell(*cell).reset(me);
        }
        // --uid/--gid before the parent-death signal (a credential change clears it).
        crate::privileges::drop_in_child(self.config.identity.as_ref());
        if !sys::die_with_parent(master_pid) {
            // SAFETY: the master is already gone; leave at once.
            unsafe { libc::_exit(1) }
        }
        let (logto, check_static) = paths;
        if let Child::Worker {
            id,
            generation,
            spec,
            ..
        } = &what
        {
            crate::log::set_worker(id.get(), *generation);
            sys::set_process_name(&format!("uwsgid:w{id}"));
            if let Some(n) = self.config.serve.cpu_affinity {
                crate::options::pin(0, id.get(), n);
            }
            if spec.is_none() {
                crate::options::apply_in_builtin_worker(&self.config.serve, id.get(), *generation);
            }
        }
        let exec = !matches!(&what, Child::Worker { spec: None, .. });
        if exec {
            self.stdio_to_relay();
        }
        let named = self.named_listeners();
        let mut keep: Vec<RawFd> = named.iter().map(|(fd, _)| *fd).collect();
        if let Child::Zygote { control, .. } = &what {
            keep.push(*control);
        }
        sys::close_fds_except(&keep);
        sys::stdin_from_devnull();
        if exec {
            // SAFETY: own process group, so a terminal's Ctrl-C reaches the master only.
            unsafe {
                libc::setpgid(0, 0);
            }
            sys::reset_signals_for_exec();
        }
        // Only the master talks to systemd: a child is single-threaded here, before it execs or
        // serves.
        crate::sd_notify::remove_from_process_env();
        let addr = &self.sources.notify_addr;
        let (e, spec) = match what {
            Child::Worker {
                id,
                generation,
                cell,
                spec: None,
            } => crate::worker::run(crate::worker::WorkerSetup {
                id: id.get(),
                generation,
                listeners: keep,
                board: &self.table.board,
                cell,
                demo_routes: self.config.demo_routes,
                check_static,
                notify_addr: Some(addr.clone()),
                logto,
                log_epoch,
                serve: self.config.serve.clone(),
                uwsgi: crate::worker::UwsgiSetup::of(&self.listeners, &self.config),
                standby: self.snapshots_on(),
            }),
            Child::Worker {
                id,
                generation,
                spec: Some(spec),
                ..
            } => (
                crate::exec::exec_worker(&spec, &named, addr, id.get(), generation),
                spec,
            ),
            Child::Zygote {
                generation,
                control,
                spec,
            } => (
                crate::exec::exec_zygote(&spec, &named, addr, generation, control),
                spec,
            ),
        };
        log!("cannot execute {:?}: {e}", spec.argv.first());
        // SAFETY: leave the failed child without running the master's destructors.
        unsafe { libc::_exit(127) }
    }

    /// The exec program with `{runner}` and the interpreter resolved.
    pub(super) fn exec_spec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        chdir: Option<PathBuf>,
    ) -> ExecSpec {
        let (mut argv, runner) = crate::runner::expand(argv);
        if let Some(r) = &self.runner {
            argv[0] = r.python.1.clone();
        }
        ExecSpec {
            argv,
            env,
            cwd: chdir,
            runner,
        }
    }

    fn named_listeners(&self) -> Vec<(RawFd, String)> {
        self.listeners
            .iter()
            .map(|l| (l.raw(), l.fd_label()))
            .collect()
    }

    /// With `--logto`, make sure the relay pipe for exec workers exists (before a fork).
    pub(super) fn ensure_relay(&mut self) {
        if self.sources.relay.is_some() || self.config.logto.is_none() {
            return;
        }
        match crate::log::Relay::new() {
            Ok(r) => self.sources.relay = Some(r),
            Err(e) => log!("cannot create the log pipe for exec workers (they write to the log file directly): {e}"),
        }
    }

    /// In a forked child about to exec a program: stdout and stderr to the relay, if any.
    fn stdio_to_relay(&self) {
        if let Some(r) = &self.sources.relay {
            // SAFETY: dup2 onto the standard fds of this fresh child.
            unsafe {
                libc::dup2(r.write_fd(), 1);
                libc::dup2(r.write_fd(), 2);
            }
        }
    }

    /// Run the binary on disk with `--check-config` before re-executing into it.
    pub(super) fn start_checker(
        &mut self,
        kind: ReloadKind,
        cause: &str,
        now: Now,
    ) -> Result<Check, SpawnError> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(SpawnError::Pipe(std::io::Error::last_os_error()));
        }
        // SAFETY: both fds were just created by pipe2.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let path = CString::new(self.exe.as_os_str().as_bytes()).unwrap_or_default();
        let mut argv: Vec<CString> = self
            .argv
            .iter()
            .map(|a| CString::new(a.as_str()).unwrap_or_default())
            .collect();
        argv.push(CString::new("--check-config").expect("static"));
        // The checker never talks to systemd: only the master does.
        let env: Vec<CString> = environment(None)
            .into_iter()
            .filter(|kv| {
                let key = kv
                    .as_bytes()
                    .split(|&b| b == b'=')
                    .next()
                    .unwrap_or_default();
                !crate::sd_notify::is_systemd_variable(key)
            })
            .collect();
        match sys::fork().map_err(SpawnError::Fork)? {
            sys::Fork::Child => {
                // SAFETY: in the child: route stdout/stderr to the pipe, then exec.
                unsafe {
                    libc::dup2(write.as_raw_fd(), 1);
                    libc::dup2(write.as_raw_fd(), 2);
                }
                sys::reset_signals_for_exec();
                let e = sys::execve(&path, &argv, &env);
                let msg = format!("cannot execute {}: {e}\n", self.exe.display());
                // SAFETY: writing to our stderr (the pipe), then exiting without unwinding.
                unsafe {
                    libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
                    libc::_exit(127);
                }
            }
            sys::Fork::Parent(pid) => Ok(Check {
                kind,
                cause: cause.to_string(),
                asked: now,
                pid,
                output: read,
                text: Vec::new(),
                deadline: now.at + CHECK_TIMEOUT,
                killed: false,
                eof: false,
            }),
        }
    }
}

/// The master's environment as C strings, minus `without`.
pub(super) fn environment(without: Option<&str>) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt as _;
    std::env::vars_os()
        .filter(|(k, _)| without.is_none_or(|w| k != w))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}
