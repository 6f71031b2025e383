//! The master's sources: the signalfd, the notify socket, the FIFO, the stats listener, touch
//! files, the exec workers' log relay, and the `--check-config` child's output.
//!
//! [`Sources::wait`] is the only blocking call of the master: one `poll` over all of them,
//! bounded by the earliest deadline, that turns what became readable into [`Event`]s. It
//! decides nothing: the step records each event and decides. Two chores it does itself, since
//! they involve no decision: copying the relay pipe into the log, and moving bytes between the
//! stats server and its clients.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use common::fifo::FifoCommand;

use crate::fifo::{Batch, Fifo};
use crate::log;
use crate::notify::NotifyMessage;
use crate::stats_server::StatsServer;
use crate::sys;
use crate::touch::{Touch, TouchAction};

/// What happened, as recorded by the sources.
#[derive(Debug)]
pub enum Event {
    /// A signal, with its cause for the log (`SIGHUP from pid 12`).
    Signal {
        sig: i32,
        cause: String,
    },
    /// A datagram on the notify socket, attributed by the kernel's credentials.
    Notify(NotifyMessage),
    /// One command read from the FIFO (a write of several comes as several, in order).
    Fifo(FifoCommand),
    Touch {
        path: PathBuf,
        action: TouchAction,
    },
    /// A stats client waits to be accepted.
    StatsReady,
    /// The `--check-config` child wrote something.
    CheckerOutput,
}

pub struct Sources {
    pub signals: OwnedFd,
    pub notify: OwnedFd,
    pub notify_addr: String,
    pub fifo: Option<Fifo>,
    pub stats: Option<StatsServer>,
    pub touch: Option<Touch>,
    /// With `--logto`, exec workers write their stdout and stderr here; the master copies it
    /// into the log as it is now (so a rotation reaches them too).
    pub relay: Option<crate::log::Relay>,
}

/// Add `fd` to a poll set; its index there.
fn watch(fds: &mut Vec<libc::pollfd>, fd: RawFd, events: libc::c_short) -> usize {
    fds.push(libc::pollfd {
        fd,
        events,
        revents: 0,
    });
    fds.len() - 1
}

impl Sources {
    /// Wait until something is readable or `deadline` passes; what happened.
    pub fn wait(&mut self, deadline: Option<Instant>, checker: Option<RawFd>) -> Vec<Event> {
        const SIGNALS: usize = 0;
        const NOTIFY: usize = 1;
        let mut fds = Vec::new();
        watch(&mut fds, self.signals.as_raw_fd(), libc::POLLIN);
        watch(&mut fds, self.notify.as_raw_fd(), libc::POLLIN);
        let fifo_at = self
            .fifo
            .as_ref()
            .map(|f| watch(&mut fds, f.raw(), libc::POLLIN));
        // A full stats server leaves its listener unpolled: clients wait in the backlog.
        let stats_at = self.stats.as_ref().map(|s| {
            let events = if s.wants_accept(Instant::now()) {
                libc::POLLIN
            } else {
                0
            };
            watch(&mut fds, s.raw(), events)
        });
        let touch_at = self
            .touch
            .as_ref()
            .map(|t| watch(&mut fds, t.raw(), libc::POLLIN));
        let relay_at = self
            .relay
            .as_ref()
            .map(|r| watch(&mut fds, r.read_fd(), libc::POLLIN));
        let checker_at = checker.map(|fd| watch(&mut fds, fd, libc::POLLIN));
        let clients_from = fds.len();
        if let Some(s) = &self.stats {
            fds.extend(s.poll_fds());
        }
        let timeout = deadline.map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .min(3_600_000) as i32
                + 1
        });
        let mut events = Vec::new();
        if let Err(e) = sys::poll(&mut fds, timeout) {
            log!("poll failed: {e}");
            return events;
        }
        let ready = |i: Option<usize>| i.is_some_and(|i| fds[i].revents != 0);
        if fds[SIGNALS].revents != 0 {
            self.read_signals(&mut events);
        }
        if fds[NOTIFY].revents != 0 {
            events.extend(self.read_notify().into_iter().map(Event::Notify));
        }
        if ready(fifo_at) {
            self.read_fifo(&mut events);
        }
        if ready(stats_at) {
            events.push(Event::StatsReady);
        }
        if ready(touch_at) {
            if let Some(t) = &mut self.touch {
                events.extend(
                    t.check()
                        .into_iter()
                        .map(|(path, action)| Event::Touch { path, action }),
                );
            }
        }
        if ready(relay_at) {
            self.pump_relay();
        }
        if ready(checker_at) {
            events.push(Event::CheckerOutput);
        }
        if let Some(s) = &mut self.stats {
            s.service(&fds[clients_from..]);
        }
        events
    }

    /// The stats server's own deadline (a slow client's timeout), if any.
    pub fn stats_deadline(&self) -> Option<Instant> {
        self.stats.as_ref().and_then(|s| s.next_deadline())
    }

    pub fn pump_relay(&self) {
        if let Some(r) = &self.relay {
            r.pump();
        }
    }

    fn read_signals(&mut self, events: &mut Vec<Event>) {
        loop {
            let (sig, sender) = match sys::read_signal(self.signals.as_raw_fd()) {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) => {
                    log!("signalfd read failed: {e}");
                    break;
                }
            };
            let name = sys::signal_name(sig);
            let cause = if sender > 0 {
                format!("{name} from pid {sender}")
            } else {
                name.to_string()
            };
            if sig != libc::SIGCHLD && sig != libc::SIGWINCH {
                log!("{cause} received");
            }
            events.push(Event::Signal { sig, cause });
        }
    }

    /// Every datagram waiting on the notify socket.
    pub fn read_notify(&mut self) -> Vec<NotifyMessage> {
        let mut out = Vec::new();
        loop {
            match crate::notify::recv(&self.notify) {
                Ok(Some(msg)) => out.push(msg),
                Ok(None) => break,
                Err(e) => {
                    log!("notify socket: {e}");
                    break;
                }
            }
        }
        out
    }

    fn read_fifo(&mut self, events: &mut Vec<Event>) {
        let Some(fifo) = &mut self.fifo else { return };
        let Some(batch) = fifo.read_batch() else {
            return;
        };
        let commands = match batch {
            Batch::Commands(c) => c,
            Batch::Refused {
                commands,
                uwsgi_only,
            } => {
                for b in uwsgi_only {
                    let what = common::fifo::UWSGI_ONLY
                        .iter()
                        .find(|(x, _)| *x == b)
                        .map_or("", |(_, w)| w);
                    log!(
                        "FIFO: {:?} ({what}) is a uWSGI command uwsgid does not have: refused",
                        b as char
                    );
                }
                commands
            }
            Batch::Garbage {
                len,
                first_bad,
                offset,
            } => {
                log!("FIFO: refused a write of {len} byte(s): byte 0x{first_bad:02x} at offset {offset} is not a command; nothing executed");
                return;
            }
        };
        events.extend(commands.into_iter().map(Event::Fifo));
    }

    /// `FIFO '0'`..`'9'`: make another of the configured FIFOs the active one.
    pub fn switch_fifo(&mut self, n: u8) {
        if let Some(f) = &mut self.fifo {
            match f.switch(n as usize) {
                Ok(()) => log!(
                    "active master FIFO is now slot {n}: {}",
                    f.active_path().display()
                ),
                Err(e) => log!("FIFO slot switch refused: {e}"),
            }
        }
    }
}
