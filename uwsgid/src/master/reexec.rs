//! Re-exec, both halves side by side: [`Master::exec_self`] hands each part's state over in a
//! [`Handoff`] and calls `execve`; [`resume`], in the new image, has each part take its state
//! back. Every fd the handoff names is validated once, by `sys::take_fd` (open, close-on-exec
//! again), before the part that owns it adopts it; an fd the new configuration no longer wants
//! is closed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering::Relaxed;

use common::reload::ReloadKind;

use super::handoff::{
    Handoff, HandoffFifo, HandoffListener, HandoffSlot, HandoffWorker, HandoffZygote,
};
use super::preload::{Preload, Zygote};
use super::reload::Reload;
use super::step::Phase;
use super::table::{Slot, SlotId, Table, Worker, WorkerState};
use super::{Error, Master, Now};
use crate::fifo::Fifo;
use crate::listener;
use crate::log;
use crate::scoreboard::Scoreboard;
use crate::stats_server::StatsServer;
use crate::sys;

impl Table {
    fn to_handoff(&self, now: Now) -> (Vec<HandoffWorker>, Vec<HandoffSlot>) {
        let workers = self
            .workers
            .iter()
            .map(|w| HandoffWorker {
                pid: w.pid,
                id: w.slot.get(),
                generation: w.generation,
                cell: w.cell,
                // A restored worker not yet heard from serves (its listeners are open).
                ready: w.is_ready() || matches!(w.state, WorkerState::Resuming { .. }),
                retiring: matches!(w.state, WorkerState::Draining { .. } | WorkerState::Killed),
                deadline_unix_ms: match w.state {
                    WorkerState::Draining { deadline, .. }
                    | WorkerState::Parking { deadline, .. } => Some(now.unix_ms_at(deadline)),
                    _ => None,
                },
                killed: w.state == WorkerState::Killed,
                parking: matches!(w.state, WorkerState::Parking { .. }),
                parked: w.is_parked(),
                park_since_unix_ms: match w.state {
                    WorkerState::Parking { since, .. } | WorkerState::Parked { since } => {
                        now.unix_ms_of(since)
                    }
                    _ => 0,
                },
                spawned_unix_ms: w.spawned_unix_ms,
                status_text: w.status_text.clone(),
            })
            .collect();
        let slots = self
            .slots
            .iter()
            .map(|s| HandoffSlot {
                respawn_count: s.respawn_count,
                requests: s.requests,
                tx: s.tx,
                running_time_us: s.running_time_us,
                last_spawn: s.last_spawn,
            })
            .collect();
        (workers, slots)
    }

    /// Take back the workers (still our children) and the slots' counters.
    fn adopt_handoff(&mut self, h: &Handoff, now: Now, mercy: std::time::Duration) {
        for w in &h.workers {
            let Some(slot) = SlotId::new(w.id) else {
                continue;
            };
            self.take_cell(w.cell);
            // A re-exec renews neither a draining worker's mercy nor a starting one's timeout:
            // re-execs faster than the mercy would otherwise keep a stuck worker forever.
            let state = if w.killed {
                WorkerState::Killed
            } else if w.parked {
                WorkerState::Parked {
                    since: now.instant_at(w.park_since_unix_ms),
                }
            } else if w.parking {
                WorkerState::Parking {
                    since: now.instant_at(w.park_since_unix_ms),
                    deadline: w
                        .deadline_unix_ms
                        .map_or(now.at + mercy, |ms| now.instant_at(ms).min(now.at + mercy)),
                }
            } else if w.retiring {
                WorkerState::Draining {
                    since: now.at,
                    deadline: w
                        .deadline_unix_ms
                        .map_or(now.at + mercy, |ms| now.instant_at(ms).min(now.at + mercy)),
                }
            } else if w.ready {
                WorkerState::Ready
            } else {
                WorkerState::Starting { killed: false }
            };
            self.workers.push(Worker {
                pid: w.pid,
                slot,
                generation: w.generation,
                cell: w.cell,
                state,
                spawned: now.instant_of(w.spawned_unix_ms),
                spawned_unix_ms: w.spawned_unix_ms,
                ready_at: w.ready.then_some(now.at),
                status_text: w.status_text.clone(),
                recycle: None,
            });
        }
        self.slots = h
            .slots
            .iter()
            .map(|s| Slot {
                respawn_count: s.respawn_count,
                requests: s.requests,
                tx: s.tx,
                running_time_us: s.running_time_us,
                last_spawn: s.last_spawn,
                ..Slot::default()
            })
            .collect();
    }
}

impl Preload {
    fn to_handoff(&self, now: Now) -> Vec<HandoffZygote> {
        self.zygotes
            .iter()
            .map(|z| HandoffZygote {
                pid: z.pid,
                generation: z.generation,
                control_fd: z.control.as_raw_fd(),
                ready: z.ready,
                standby: z.standby,
                interpreter: z.interpreter,
                stopping: z.stopping.is_some(),
                spawned_unix_ms: now.unix_ms_of(z.spawned),
            })
            .collect()
    }

    fn from_handoff(zygotes: &[HandoffZygote], now: Now, mercy: std::time::Duration) -> Preload {
        let mut p = Preload::default();
        for z in zygotes {
            let control = match sys::take_fd(z.control_fd, "zygote control socket") {
                Ok(fd) => fd,
                Err(e) => {
                    log!("reload: zygote pid {}: {e}; stopping it", z.pid);
                    sys::kill_group(z.pid);
                    continue;
                }
            };
            p.zygotes.push(Zygote {
                pid: z.pid,
                generation: z.generation,
                control,
                ready: z.ready,
                standby: z.standby,
                interpreter: z.interpreter,
                spawned: now.instant_of(z.spawned_unix_ms),
                stopping: z.stopping.then_some(now.at + mercy),
                killed: false,
            });
        }
        p
    }
}

impl Master {
    fn to_handoff(
        &self,
        kind: ReloadKind,
        asked: Now,
        leftover: &[u8],
        checked: Option<Box<super::handoff::Checked>>,
        now: Now,
    ) -> Handoff {
        let (workers, slots) = self.table.to_handoff(now);
        let s = &self.sources;
        Handoff {
            exe: self.exe.clone(),
            config: self.config.clone(),
            generation: self.generation,
            kind,
            reload_started_unix_ms: asked.unix_ms,
            started_unix: self.started_unix,
            paused: self.paused,
            last_error: self.last_error.clone(),
            listeners: self
                .listeners
                .iter()
                .map(|l| HandoffListener {
                    fd: l.raw(),
                    configured: l.configured.clone(),
                    created_path: l.created_path.clone(),
                })
                .collect(),
            scoreboard_fd: self.table.board.raw_fd(),
            notify_fd: s.notify.as_raw_fd(),
            notify_addr: s.notify_addr.clone(),
            lock_fds: self
                .files
                .locks
                .iter()
                .map(|(p, fd)| (p.clone(), fd.as_raw_fd()))
                .collect(),
            pidfiles_written: self.files.pidfiles_written.clone(),
            fifo: s.fifo.as_ref().map(|f| {
                let (read_fd, keep_fd) = f.fds();
                HandoffFifo {
                    read_fd,
                    keep_fd,
                    paths: f.paths.clone(),
                    active: f.active,
                    created: f.created.clone(),
                }
            }),
            stats_fd: s.stats.as_ref().map(|s| s.raw()),
            stats_created: s.stats.as_ref().and_then(|s| s.created_path.clone()),
            workers,
            slots,
            last_reload: self.reloads.last.clone(),
            reload_counts: self.reloads.counts.clone(),
            respawns: self.respawns.clone(),
            zygotes: self.preload.to_handoff(now),
            config_refused: None,
            fifo_pending: leftover.to_vec(),
            python: self.runner.as_ref().map(|r| r.python.clone()),
            relay: s.relay.as_ref().map(|r| (r.read_fd(), r.write_fd())),
            checked,
        }
    }

    /// Re-execute the master in place (the phase is `ReExec`). Returns only if `execve`
    /// failed: the reload is then failed, the instance keeps serving, and the FIFO commands
    /// kept for the next image run here.
    pub(super) fn exec_self(&mut self, now: Now) -> Vec<u8> {
        let Phase::ReExec {
            kind,
            cause,
            asked,
            leftover,
            checked,
        } = std::mem::replace(&mut self.phase, Phase::Running)
        else {
            return Vec::new();
        };
        if kind == ReloadKind::Brutal {
            // The snapshot survives: it is what a rollback goes back to.
            for pid in self.table.kill_where(|w| !w.in_snapshot()) {
                sys::kill_group(pid);
            }
        }
        // Preload: the next generation's zygote starts loading now, while we re-execute (the
        // new image adopts it, or stops it if the worker configuration changed): the standby
        // if it is still valid, else a fresh one. Only for the same binary: another one may
        // bring another runner.
        let next = self.generation + 1;
        let same_exe = self.exe_unchanged();
        if self.preload_on() && !self.activate_standby(next, same_exe, now) && same_exe {
            if let Err(e) = self.spawn_zygote(next, false, now) {
                log!("cannot start the zygote of generation {next} before re-executing: {e}");
            }
        }
        let handoff = self.to_handoff(kind, asked, &leftover, checked, now);
        let mut keep = handed_over_fds(&handoff);
        // Large handoffs travel in a memfd (closed here if execve fails).
        let (json, memfd) = match handoff.encode() {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("{kind} reload failed: {e}; the instance keeps serving");
                self.reload_failed(reason.clone());
                self.reloads
                    .record(kind, self.generation, false, reason, asked.at, now);
                return leftover;
            }
        };
        keep.extend(memfd.as_ref().map(|fd| fd.as_raw_fd()));
        for &fd in &keep {
            let _ = sys::set_cloexec(fd, false);
        }
        let mut env = super::spawn::environment(Some(super::handoff::ENV));
        env.push(CString::new(format!("{}={json}", super::handoff::ENV)).expect("json has no NUL"));
        let path = CString::new(self.exe.as_os_str().as_bytes()).unwrap_or_default();
        let argv: Vec<CString> = self
            .argv
            .iter()
            .map(|a| CString::new(a.as_str()).unwrap_or_default())
            .collect();
        crate::log_event!("reload_begun", kind = kind.to_string(), cause = &cause, generation = self.generation + 1;
            "{cause}: re-executing {} in place (generation {} -> {})",
            self.exe.display(),
            self.generation,
            self.generation + 1
        );
        if let Some(s) = &mut self.sources.stats {
            s.finish_in_background();
        }
        let e = sys::execve(&path, &argv, &env);
        for &fd in &keep {
            let _ = sys::set_cloexec(fd, true);
        }
        let reason = format!(
            "{kind} reload failed: execve {}: {e}; the instance keeps serving",
            self.exe.display()
        );
        self.reload_failed(reason.clone());
        self.reloads
            .record(kind, self.generation, false, reason, asked.at, now);
        leftover
    }
}

/// The fds a handoff names: close-on-exec is cleared on exactly these for the `execve`.
fn handed_over_fds(h: &Handoff) -> Vec<RawFd> {
    let mut keep: Vec<RawFd> = vec![h.scoreboard_fd, h.notify_fd];
    keep.extend(h.listeners.iter().map(|l| l.fd));
    keep.extend(h.lock_fds.iter().map(|(_, fd)| *fd));
    if let Some(f) = &h.fifo {
        keep.extend([f.read_fd, f.keep_fd]);
    }
    keep.extend(h.stats_fd);
    keep.extend(h.relay.iter().flat_map(|&(r, w)| [r, w]));
    keep.extend(h.zygotes.iter().map(|z| z.control_fd));
    keep
}

/// Continue after a re-exec from the state the previous image handed over. Also returns the
/// FIFO commands the previous image read but left for this one (the loop runs them first).
pub(super) fn resume(
    argv: Vec<String>,
    config: crate::cli::Config,
    h: Handoff,
    now: Now,
) -> Result<(super::Master, Vec<u8>), Error> {
    let board = sys::take_fd(h.scoreboard_fd, "scoreboard")
        .and_then(Scoreboard::inherit)
        .map_err(Error::Scoreboard)?;
    let notify = sys::take_fd(h.notify_fd, "notify socket").map_err(Error::Notify)?;
    let mut m = super::files::base(argv, config, board, (notify, h.notify_addr.clone()), now)?;
    if h.exe.exists() {
        m.exe = h.exe.clone();
    }
    m.started_unix = h.started_unix;
    m.paused = h.paused;
    m.last_error = h.last_error.clone();
    m.reloads.last = h.last_reload.clone();
    m.reloads.counts = h.reload_counts.clone();
    m.respawns = h.respawns.clone();
    m.reloads.refused = h.config_refused.clone();
    m.files.pidfiles_written = h.pidfiles_written.clone();

    // Pidfile locks: keep those still configured, take the new ones.
    for (path, fd) in &h.lock_fds {
        match sys::take_fd(*fd, "pidfile lock") {
            Ok(fd) if m.config.pidfiles.contains(path) => m.files.locks.push((path.clone(), fd)),
            Ok(_) => {}
            Err(e) => m.note_error(format!("reload: {}: {e}", path.display())),
        }
    }
    for p in m.config.pidfiles.clone() {
        if !m.files.locks.iter().any(|(q, _)| *q == p) {
            match super::files::lock_pidfile(&p) {
                Ok(fd) => m.files.locks.push((p, fd)),
                Err(e) => m.note_error(format!("reload: {e}")),
            }
        }
    }

    resume_listeners(&mut m, &h);
    if m.listeners.is_empty() {
        return Err(Error::NoListenerLeft);
    }

    // Workers are still our children: adopt them.
    m.table.adopt_handoff(&h, now, m.config.mercy);
    let keep = super::cheaper::slots_after_reexec(&m.config, m.table.slots.len());
    m.table.resize(keep, m.generation);
    m.preload = Preload::from_handoff(&h.zygotes, now, m.config.mercy);

    if let Some((read, write)) = h.relay {
        match (
            sys::take_fd(read, "log relay"),
            sys::take_fd(write, "log relay"),
        ) {
            (Ok(r), Ok(w)) => {
                let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
                // SAFETY: the handoff names these fds as the relay's ends, validated above and
                // owned by nobody else in this image.
                let relay = unsafe { crate::log::Relay::inherit(r, w) };
                m.sources.relay = Some(relay);
            }
            (r, w) => log!("reload: log relay: {:?} {:?}", r.err(), w.err()),
        }
    }
    let fifo = resume_fifo(&mut m, &h);
    let stats = resume_stats(&mut m, &h);
    m.open_channels(fifo, stats, false)?;
    m.runner = super::runner::prepare(&m.config, Some(&h))?;

    m.generation = h.generation + 1;
    crate::log::set_generation(m.generation);
    m.table.retarget_all(m.generation);
    m.reloads.current = Some(Reload {
        kind: h.kind,
        generation: m.generation,
        started: now.instant_of(h.reload_started_unix_ms),
        started_unix_ms: h.reload_started_unix_ms,
        chain_cursor: None,
    });
    m.table
        .board
        .header()
        .paused
        .store(u32::from(m.paused), Relaxed);
    log!(
        "re-executed in place (pid {}): generation {} starting, {} worker(s) of older generations adopted",
        std::process::id(),
        m.generation,
        m.table.workers.len()
    );
    // A zygote the old image started for this generation runs the old worker options and
    // holds the old listeners.
    if h.config.worker != m.config.worker || h.config.listeners != m.config.listeners {
        for i in 0..m.preload.zygotes.len() {
            if m.preload.zygotes[i].generation == m.generation {
                m.preload.stop(i, now.at, m.config.mercy);
            }
        }
    }
    // A snapshot taken before, without --auto-snapshot now (or with exec workers): dropped.
    if !m.snapshots_on() {
        for pid in m.table.snapshot_pids() {
            log!("reload: --auto-snapshot is off now: snapshot worker pid {pid} stops");
            m.retire(pid, now);
        }
    }
    // Pidfiles stay valid (same pid); write only ones that are new in this configuration.
    m.write_pidfiles(true);
    m.spawn_missing(now);
    if !h.fifo_pending.is_empty() {
        log!(
            "running {} FIFO command(s) written before the re-exec",
            h.fifo_pending.len()
        );
    }
    Ok((m, h.fifo_pending))
}

/// Listeners: adopt the inherited ones still configured, bind the new ones, close the rest.
fn resume_listeners(m: &mut Master, h: &Handoff) {
    let mut inherited: Vec<HandoffListener> = h.listeners.clone();
    let take = |l: &HandoffListener| {
        sys::take_fd(l.fd, "listener")
            .and_then(|fd| listener::inherit(fd, &l.configured, l.created_path.clone()))
    };
    // Socket activation: without --http-socket, systemd's sockets are the only listeners.
    let activated = inherited
        .iter()
        .any(|l| l.configured.starts_with("systemd:"));
    let specs = if activated && m.config.default_listener {
        Vec::new()
    } else {
        m.config.listeners.clone()
    };
    for spec in specs {
        // Every inherited listener of this text (`fd://NAME` may name several).
        let mine: Vec<HandoffListener> = inherited
            .iter()
            .filter(|l| l.configured == spec.configured)
            .cloned()
            .collect();
        inherited.retain(|l| l.configured != spec.configured);
        if !mine.is_empty() {
            for l in mine {
                match take(&l) {
                    Ok(l) => {
                        // The reloaded configuration's --no-defer-accept, on the same socket.
                        if matches!(spec.addr, crate::cli::ListenAddr::Tcp(_)) {
                            if let Err(e) =
                                listener::set_defer_accept(l.raw(), !spec.no_defer_accept)
                            {
                                m.note_error(format!(
                                    "reload: listener {}: TCP_DEFER_ACCEPT: {e}",
                                    l.name
                                ));
                            }
                        }
                        m.listeners.push(l)
                    }
                    Err(e) => {
                        m.note_error(format!("reload: inherited listener {}: {e}", l.configured))
                    }
                }
            }
        } else {
            match listener::bind(&spec, m.config.backlog) {
                Ok(l) => {
                    log!("reload: new listener {}", l.name);
                    m.listeners.push(l);
                }
                Err(e) => m.note_error(format!("reload: {e}")),
            }
        }
    }
    for l in inherited {
        if l.configured.starts_with("systemd:") {
            if let Ok(l) = take(&l) {
                m.listeners.push(l);
            }
            continue;
        }
        log!(
            "reload: closing listener {} (no longer configured)",
            l.configured
        );
        drop(sys::take_fd(l.fd, "listener"));
        if let Some(p) = l.created_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The FIFO, kept if its paths did not change (else closed: the new one is opened).
fn resume_fifo(m: &mut Master, h: &Handoff) -> Option<Fifo> {
    let f = h.fifo.clone()?;
    let fds: std::io::Result<(OwnedFd, OwnedFd)> =
        sys::take_fd(f.read_fd, "FIFO").and_then(|r| Ok((r, sys::take_fd(f.keep_fd, "FIFO")?)));
    match fds {
        Ok((read, keep)) if f.paths == m.config.fifos => {
            Some(Fifo::inherit(f.paths, f.active, read, keep, f.created))
        }
        Ok(_) => None,
        Err(e) => {
            m.note_error(format!("reload: inherited FIFO: {e}"));
            None
        }
    }
}

/// The stats listener, kept if its address did not change (else closed and its file removed).
fn resume_stats(m: &mut Master, h: &Handoff) -> Option<StatsServer> {
    let fd = h.stats_fd?;
    let fd = match sys::take_fd(fd, "stats socket") {
        Ok(fd) => fd,
        Err(e) => {
            m.note_error(format!("reload: inherited stats socket: {e}"));
            return None;
        }
    };
    let (Some(addr), true) = (&m.config.stats, h.config.stats == m.config.stats) else {
        drop(fd);
        if let Some(p) = &h.stats_created {
            let _ = std::fs::remove_file(p);
        }
        return None;
    };
    match StatsServer::inherit(
        addr.clone(),
        m.config.stats_http,
        fd,
        h.stats_created.clone(),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            m.note_error(format!("reload: inherited stats socket: {e}"));
            None
        }
    }
}
