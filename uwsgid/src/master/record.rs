//! Recording: each [`Event`] a source saw becomes a field of [`Requests`] (a notify message
//! updates the table at once), and a FIFO write is stepped one command at a time, so the
//! commands of one write run in the order written. Nothing here decides.

use common::fifo::FifoCommand;
use common::reload::ReloadKind;

use super::sources::Event;
use super::step::Phase;
use super::{Master, Now};
use crate::log;
use crate::touch::TouchAction;

/// What the sources asked for since the last step.
#[derive(Default, Debug)]
pub struct Requests {
    pub brutal_stop: Option<String>,
    pub graceful_stop: Option<String>,
    pub reload: Option<(ReloadKind, String)>,
    pub toggle_pause: bool,
    pub pause: Option<bool>,
    pub stats_log: bool,
    pub status_log: bool,
    pub rollback: bool,
    pub wake_workers: bool,
    pub reopen_log: bool,
    pub rotate_log: bool,
    pub write_pidfiles: bool,
    pub worker_delta: i32,
    pub fifo_slot: Option<u8>,
}

/// The FIFO command's request.
pub fn record_fifo(r: &mut Requests, c: FifoCommand) {
    let cause = format!("FIFO '{}'", c.as_byte() as char);
    log!("{cause}: {}", c.name());
    match c {
        FifoCommand::Reload => r.reload = Some((ReloadKind::Graceful, cause)),
        FifoCommand::BrutalReload => r.reload = Some((ReloadKind::Brutal, cause)),
        FifoCommand::WorkersReload => r.reload = Some((ReloadKind::Workers, cause)),
        FifoCommand::BrutalWorkersReload => r.reload = Some((ReloadKind::BrutalWorkers, cause)),
        FifoCommand::ChainReload => r.reload = Some((ReloadKind::Chain, cause)),
        FifoCommand::Stop => r.graceful_stop = Some(cause),
        FifoCommand::BrutalStop => r.brutal_stop = Some(cause),
        FifoCommand::TogglePause => r.toggle_pause = !r.toggle_pause,
        FifoCommand::Pause => {
            r.toggle_pause = false;
            r.pause = Some(true)
        }
        FifoCommand::Resume => {
            r.toggle_pause = false;
            r.pause = Some(false)
        }
        FifoCommand::Rollback => r.rollback = true,
        FifoCommand::Stats => r.stats_log = true,
        FifoCommand::ReopenLog => r.reopen_log = true,
        FifoCommand::RotateLog => r.rotate_log = true,
        FifoCommand::WritePidfile => r.write_pidfiles = true,
        FifoCommand::AddWorker => r.worker_delta += 1,
        FifoCommand::RemoveWorker => r.worker_delta -= 1,
        FifoCommand::Slot(n) => r.fifo_slot = Some(n),
    }
}

/// A signal's request (`die_on_term`: SIGTERM stops instead of reloading brutally).
pub fn record_signal(r: &mut Requests, sig: i32, cause: String, die_on_term: bool) {
    match sig {
        libc::SIGCHLD => {}
        libc::SIGHUP => r.reload = Some((ReloadKind::Graceful, cause)),
        libc::SIGTERM if die_on_term => r.graceful_stop = Some(cause),
        libc::SIGTERM => r.reload = Some((ReloadKind::Brutal, cause)),
        libc::SIGINT | libc::SIGQUIT => r.brutal_stop = Some(cause),
        libc::SIGUSR1 => r.stats_log = true,
        libc::SIGUSR2 => r.status_log = true,
        libc::SIGURG => r.rollback = true,
        libc::SIGTSTP => r.toggle_pause = true,
        libc::SIGWINCH => r.wake_workers = true,
        _ => log!("{cause}: ignored"),
    }
}

impl Master {
    /// Record what the sources saw, stepping after each FIFO command. Stats clients are
    /// answered last, from the state this turn's step left (a worker's READY=1 read in the
    /// same wake-up as a stats request: the document already says what it changed, say the
    /// reload it completed).
    pub(super) fn handle(&mut self, events: Vec<Event>, now: Now) {
        let mut stats_ready = false;
        for e in events {
            match e {
                Event::Fifo(c) => {
                    if let Phase::ReExec { leftover, .. } = &mut self.phase {
                        leftover.push(c.as_byte());
                        continue;
                    }
                    record_fifo(&mut self.requests, c);
                    self.step(now);
                }
                Event::Signal { sig, cause } => {
                    record_signal(&mut self.requests, sig, cause, self.config.die_on_term)
                }
                Event::Notify(msg) => self.on_notify(msg, now),
                Event::Touch { path, action } => {
                    let cause = format!("touch file {}", path.display());
                    log!("{cause} was touched");
                    let kind = match action {
                        TouchAction::Reload => ReloadKind::Graceful,
                        TouchAction::WorkersReload => ReloadKind::Workers,
                        TouchAction::ChainReload => ReloadKind::Chain,
                    };
                    self.requests.reload = Some((kind, cause));
                }
                Event::StatsReady => stats_ready = true,
                Event::CheckerOutput => {
                    if let Phase::Checking(c) = &mut self.phase {
                        c.drain();
                    }
                }
            }
        }
        if !matches!(self.phase, Phase::ReExec { .. }) {
            self.step(now);
        }
        if stats_ready {
            self.serve_stats(now);
        }
    }
}

/// FIFO command bytes kept over from before a re-exec (or a failed one), as events.
pub fn fifo_events(bytes: &[u8]) -> Vec<Event> {
    bytes
        .iter()
        .filter_map(|&b| FifoCommand::from_byte(b))
        .map(Event::Fifo)
        .collect()
}
