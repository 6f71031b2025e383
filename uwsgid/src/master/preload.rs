//! Preload: the zygote of each generation (it imports the application once and forks the
//! workers on request), the standby zygote of the next generation, and the adoption of the
//! workers they fork (see the module docs of [`super`] for the protocol).
//!
//! [`Preload`] owns the zygotes and their control sockets; signalling a zygote is its own
//! business. The fork requests pending per slot live in the worker table.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::spawn::SpawnError;
use super::table::{Pending, SlotId, Worker, WorkerState};
use super::{Master, Now};
use crate::cli::WorkerKind;
use crate::log;
use crate::notify::NotifyMessage;
use crate::sys::{self, FileStamp};

/// After a standby zygote exited unasked (or could not start), wait this long for the next.
pub const STANDBY_RETRY: Duration = Duration::from_secs(30);

/// The process of one generation that imported the app and forks its workers.
#[derive(Debug)]
pub struct Zygote {
    pub pid: i32,
    pub generation: u64,
    /// The master's end of the control socket (non-blocking).
    pub control: OwnedFd,
    pub ready: bool,
    /// A standby, not yet told to `load`: it has no start deadline.
    pub standby: bool,
    /// The interpreter it was started from, to tell whether it is still the one on disk.
    pub interpreter: Option<FileStamp>,
    /// When it was started, or told to `load`.
    pub spawned: Instant,
    /// Told to stop: SIGKILL at this deadline (once).
    pub stopping: Option<Instant>,
    pub killed: bool,
}

impl Zygote {
    /// Write one line to the control socket.
    fn send(&self, line: &str) -> Result<(), SpawnError> {
        // SAFETY: writing our buffer to the control socket we own (non-blocking).
        let n = unsafe {
            libc::send(
                self.control.as_raw_fd(),
                line.as_ptr() as *const libc::c_void,
                line.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != line.len() as isize {
            return Err(SpawnError::Zygote {
                pid: self.pid,
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Preload {
    pub zygotes: Vec<Zygote>,
    /// No standby zygote is started before this (one exited unasked, or could not start).
    pub standby_retry: Option<Instant>,
}

impl Preload {
    pub fn is_zygote(&self, pid: i32) -> bool {
        self.zygotes.iter().any(|z| z.pid == pid)
    }

    /// READY=1 from zygote `pid`: its generation and how long it took, if this made it ready.
    pub fn set_ready(&mut self, pid: i32, now: Instant) -> Option<(u64, Duration)> {
        let z = self.zygotes.iter_mut().find(|z| z.pid == pid)?;
        if z.ready || z.stopping.is_some() {
            return None;
        }
        z.ready = true;
        Some((z.generation, now.saturating_duration_since(z.spawned)))
    }

    /// `waitpid` returned `pid`: the zygote, if it was one.
    pub fn remove(&mut self, pid: i32) -> Option<Zygote> {
        let pos = self.zygotes.iter().position(|z| z.pid == pid)?;
        Some(self.zygotes.remove(pos))
    }

    /// The zygote serving `generation` (not told to stop).
    fn active(&self, generation: u64) -> Option<&Zygote> {
        self.zygotes
            .iter()
            .find(|z| z.generation == generation && z.stopping.is_none())
    }

    /// Stop zygote `i` (SIGTERM now, SIGKILL after the mercy).
    pub fn stop(&mut self, i: usize, now: Instant, mercy: Duration) {
        let z = &mut self.zygotes[i];
        if z.stopping.is_some() {
            return;
        }
        z.stopping = Some(now + mercy);
        sys::kill(z.pid, libc::SIGTERM);
        log!(
            "zygote of generation {} (pid {}) no longer needed: stopping it",
            z.generation,
            z.pid
        );
    }

    pub fn stop_all(&mut self, now: Instant, mercy: Duration) {
        for i in 0..self.zygotes.len() {
            self.stop(i, now, mercy);
        }
    }

    pub fn kill_all(&mut self, now: Instant) {
        for z in &mut self.zygotes {
            if !z.killed {
                sys::kill_group(z.pid);
            }
            z.stopping.get_or_insert(now);
            z.killed = true;
        }
    }

    /// The earliest zygote deadline still to come.
    pub fn next_deadline(&self, now: Instant, start_timeout: Duration) -> Option<Instant> {
        let zygotes = self.zygotes.iter().filter_map(|z| match z.stopping {
            Some(t) if !z.killed => Some(t),
            None if !z.ready && !z.standby && !z.killed => Some(z.spawned + start_timeout),
            _ => None,
        });
        zygotes.chain(self.standby_retry).filter(|&t| t > now).min()
    }
}

impl Master {
    /// Python workers are forked by a zygote per generation (not `--lazy-apps`).
    pub(super) fn preload_on(&self) -> bool {
        matches!(self.config.worker, WorkerKind::Exec { preload: true, .. })
            && self.runner.is_some()
    }

    /// Ask the zygote of `generation` for a worker in slot `id`, starting the zygote first if
    /// there is none. The slot is pending until the worker says it is ready.
    pub(super) fn spawn_forked(
        &mut self,
        id: SlotId,
        generation: u64,
        now: Now,
    ) -> Result<(), SpawnError> {
        match self.preload.active(generation).map(|z| z.standby) {
            None => self.spawn_zygote(generation, false, now)?,
            Some(true) => {
                let same_exe = self.exe_unchanged();
                if !self.activate_standby(generation, same_exe, now) {
                    self.spawn_zygote(generation, false, now)?;
                }
            }
            Some(false) => {}
        }
        if let Some(s) = self.table.slot_mut(id) {
            s.pending = Some(Pending {
                generation,
                since: now.at,
                asked: None,
            });
        }
        // Asked at once, even of a zygote still loading: it reads the request as soon as it
        // is ready, without waiting for us to hear its READY=1.
        if let Err(e) = self.ask_fork(id, generation, now) {
            if let Some(s) = self.table.slot_mut(id) {
                s.pending = None;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Write `fork SLOT GEN` to the zygote of `generation` (read once it is ready).
    fn ask_fork(&mut self, id: SlotId, generation: u64, now: Now) -> Result<(), SpawnError> {
        let Some(z) = self.preload.active(generation) else {
            return Err(SpawnError::NoZygote(generation));
        };
        z.send(&format!("fork {id} {generation}\n"))?;
        if let Some(p) = self.table.slot_mut(id).and_then(|s| s.pending.as_mut()) {
            p.asked = Some(now.at);
        }
        Ok(())
    }

    /// The zygote of `generation` is ready: send the forks its slots wait for.
    pub(super) fn ask_pending_forks(&mut self, generation: u64, now: Now) {
        for id in self.table.slot_ids().collect::<Vec<_>>() {
            let waiting = self
                .table
                .slot(id)
                .and_then(|s| s.pending)
                .is_some_and(|p| p.generation == generation && p.asked.is_none());
            if waiting {
                if let Err(e) = self.ask_fork(id, generation, now) {
                    if let Some(s) = self.table.slot_mut(id) {
                        s.pending = None;
                    }
                    self.fail_start(id, generation, &e.to_string(), now);
                }
            }
        }
    }

    /// Fork and exec the runner as the zygote of `generation`; as a standby that waits for
    /// `load` before importing the application, if `standby`.
    pub(super) fn spawn_zygote(
        &mut self,
        generation: u64,
        standby: bool,
        now: Now,
    ) -> Result<(), SpawnError> {
        let WorkerKind::Exec {
            argv, env, chdir, ..
        } = &self.config.worker
        else {
            return Err(SpawnError::NotExec);
        };
        let mut argv = argv.clone();
        argv.push("--zygote".into());
        if standby {
            argv.push("--standby".into());
        }
        let (env, chdir) = (env.clone(), chdir.clone());
        let interpreter = self.interpreter_stamp();
        let spec = self.exec_spec(argv, env, chdir);
        let (ours, theirs) = sys::socketpair().map_err(SpawnError::Socketpair)?;
        self.ensure_relay();
        let pid = self
            .fork_child(super::spawn::Child::Zygote {
                generation,
                control: theirs.as_raw_fd(),
                spec,
            })
            .map_err(SpawnError::Fork)?;
        drop(theirs);
        if standby {
            log!("standby zygote of generation {generation} (pid {pid}) started: the next reload imports the application into it");
        } else {
            log!("zygote of generation {generation} (pid {pid}) loading the application");
        }
        self.preload.zygotes.push(Zygote {
            pid,
            generation,
            control: ours,
            ready: false,
            standby,
            interpreter,
            spawned: now.at,
            stopping: None,
            killed: false,
        });
        Ok(())
    }

    /// Once the current generation is complete and nothing else is under way, start the next
    /// generation's zygote as a standby, so the next reload skips the interpreter's start-up.
    pub(super) fn ensure_standby(&mut self, now: Now) {
        let WorkerKind::Exec { standby: true, .. } = self.config.worker else {
            return;
        };
        let next = self.generation + 1;
        let settled = self.reloads.current.is_none()
            && matches!(self.phase, super::step::Phase::Running)
            && self.table.slots.iter().all(|s| {
                s.target == self.generation && s.pending.is_none() && s.next_spawn.is_none()
            })
            && !self.preload.zygotes.iter().any(|z| z.generation >= next);
        if !settled || !self.preload_on() || self.preload.standby_retry.is_some_and(|t| now.at < t)
        {
            return;
        }
        self.preload.standby_retry = None;
        // A binary replaced on disk would bring its own runner at the next reload.
        if !self.exe_unchanged() {
            self.preload.standby_retry = Some(now.at + STANDBY_RETRY);
            return;
        }
        if let Err(e) = self.spawn_zygote(next, true, now) {
            log!("cannot start a standby zygote for generation {next}: {e}");
            self.preload.standby_retry = Some(now.at + STANDBY_RETRY);
        }
    }

    /// Tell the standby zygote of `generation`, if there is one, to import the application.
    /// A standby whose master binary (`same_exe`) or interpreter changed on disk since it
    /// started is stopped instead. True if a standby now loads.
    pub(super) fn activate_standby(&mut self, generation: u64, same_exe: bool, now: Now) -> bool {
        let Some(i) = self
            .preload
            .zygotes
            .iter()
            .position(|z| z.generation == generation && z.standby && z.stopping.is_none())
        else {
            return false;
        };
        let interpreter = self.interpreter_stamp();
        let mercy = self.config.mercy;
        let z = &self.preload.zygotes[i];
        let stale = if !same_exe {
            Some("the uwsgid binary changed".to_string())
        } else if interpreter.is_none() || interpreter != z.interpreter {
            Some("the Python interpreter changed on disk".to_string())
        } else {
            z.send("load\n").err().map(|e| e.to_string())
        };
        if let Some(why) = stale {
            log!(
                "standby zygote of generation {generation} (pid {}) not used: {why}",
                z.pid
            );
            self.preload.stop(i, now.at, mercy);
            return false;
        }
        let z = &mut self.preload.zygotes[i];
        z.standby = false;
        z.spawned = now.at;
        log!(
            "zygote of generation {generation} (pid {}) loading the application (from standby)",
            z.pid
        );
        true
    }

    /// The interpreter the bundled runner runs on, as it is on disk now.
    fn interpreter_stamp(&self) -> Option<FileStamp> {
        FileStamp::of_program(&self.runner.as_ref()?.python.1)
    }

    /// Stop the zygotes no slot targets (but the next generation's standby).
    pub(super) fn stop_unused_zygotes(&mut self, now: Now) {
        for i in 0..self.preload.zygotes.len() {
            let z = &self.preload.zygotes[i];
            let next_standby = z.standby && z.generation == self.generation + 1;
            let g = z.generation;
            if !next_standby && !self.table.slots.iter().any(|s| s.target == g) {
                self.preload.stop(i, now.at, self.config.mercy);
            }
        }
    }

    pub(super) fn enforce_preload_deadlines(&mut self, now: Now) {
        let timeout = self.config.start_timeout;
        for z in &mut self.preload.zygotes {
            match z.stopping {
                Some(t) if now.at >= t && !z.killed => {
                    log!("zygote pid {} still alive after the mercy: SIGKILL", z.pid);
                    sys::kill_group(z.pid);
                    z.killed = true;
                }
                None if !z.ready && !z.standby && !z.killed && now.at >= z.spawned + timeout => {
                    log!(
                        "zygote of generation {} (pid {}) not ready after {}s: SIGKILL",
                        z.generation,
                        z.pid,
                        timeout.as_secs_f64()
                    );
                    sys::kill_group(z.pid);
                    // Its exit fails the slots waiting for it.
                    z.killed = true;
                }
                _ => {}
            }
        }
        for (id, g) in self.table.expire_pending(now.at, timeout) {
            let how = format!("was not ready {}s after its fork", timeout.as_secs_f64());
            self.fail_start(id, g, &how, now);
        }
    }

    /// A zygote exited: unless asked to stop, every slot waiting on it failed to start.
    pub(super) fn on_zygote_exit(&mut self, z: Zygote, status: i32, now: Now) {
        let how = sys::describe_status(status);
        if z.stopping.is_some() || self.phase.is_stopping() {
            log!(
                "zygote of generation {} (pid {}) stopped: {how}",
                z.generation,
                z.pid
            );
            return;
        }
        if z.standby {
            self.preload.standby_retry = Some(now.at + STANDBY_RETRY);
            log!(
                "standby zygote of generation {} (pid {}) exited: {how}; the next reload starts a fresh one (next standby in {}s)",
                z.generation,
                z.pid,
                STANDBY_RETRY.as_secs()
            );
            return;
        }
        let when = if z.ready { "" } else { " before it was ready" };
        log!(
            "zygote of generation {} (pid {}) exited{when}: {how}",
            z.generation,
            z.pid
        );
        for id in self.table.drop_pending(z.generation) {
            let what = format!("(its zygote, pid {}) {how}", z.pid);
            self.fail_start(id, z.generation, &what, now);
        }
    }

    /// A notify sender we do not know says it is the worker of slot `id`, generation `g`:
    /// adopt it if it is our child (a zygote's grandchild re-parented to us).
    pub(super) fn adopt(&mut self, msg: NotifyMessage, id: u32, g: u64, now: Now) {
        let pid = msg.pid;
        let me = std::process::id() as i32;
        let slot = SlotId::new(id);
        let Some(slot) = slot.filter(|_| parent_of(pid) == Some(me)) else {
            log!("notify from pid {pid} (worker {id}, generation {g}) which is not our child: ignored");
            return;
        };
        let Some(cell) = self.table.alloc_cell() else {
            log!("forked worker pid {pid}: scoreboard full, SIGKILL");
            sys::kill_group(pid);
            return;
        };
        self.table.board.cell(cell).reset(pid);
        if let Some(n) = self.config.serve.cpu_affinity {
            crate::options::pin(pid, id, n);
        }
        let pending = self
            .table
            .slot(slot)
            .and_then(|s| s.pending)
            .filter(|p| p.generation == g && p.asked.is_some());
        let since = pending.map_or(now.at, |p| p.since);
        // A worker announces itself while it starts, so that an exit before READY=1 is a
        // failed start at once; older runners announce themselves with READY=1.
        let ready = msg.ready;
        self.table.add_started(
            Worker {
                pid,
                slot,
                generation: g,
                cell,
                state: if ready {
                    WorkerState::Ready
                } else {
                    WorkerState::Starting { killed: false }
                },
                spawned: since,
                spawned_unix_ms: now.unix_ms,
                ready_at: ready.then_some(now.at),
                status_text: msg.status,
                recycle: None,
            },
            now.unix_ms,
        );
        if pending.is_some() {
            if let Some(s) = self.table.slot_mut(slot) {
                s.pending = None;
            }
        }
        if pending.is_none() || self.phase.is_stopping() {
            log!(
                "worker {id} (pid {pid}, generation {g}) forked but no longer wanted: retiring it"
            );
            if let super::step::Phase::Stopping { brutal: true, .. } = self.phase {
                for pid in self.table.kill_where(|w| w.pid == pid) {
                    sys::kill_group(pid);
                }
            } else {
                self.retire(pid, now);
            }
            return;
        }
        if !ready {
            return; // its READY=1 is handled like any exec worker's
        }
        crate::log_event!("worker_ready", worker = id, pid = pid, generation = g;
            "worker {id} (pid {pid}, generation {g}) forked and ready in {:.1} ms",
            now.at.saturating_duration_since(since).as_secs_f64() * 1e3
        );
        if super::step::freeze_when_ready(self.paused, self.is_exec()) {
            sys::kill(pid, libc::SIGSTOP);
        }
    }
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
