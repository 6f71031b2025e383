//! The master's talk to systemd (`Type=notify` / `Type=notify-reload`) over
//! [`crate::sd_notify`]: what is sent when, decided here from what the step reports.
//!
//! - `READY=1` once the first generation is complete ([`first_ready`]); a re-executed master
//!   continues a reload its previous image announced, so it never sends this initial one (its
//!   reload's end sends `READY=1`).
//! - `RELOADING=1` + `MONOTONIC_USEC=` when a reload of any kind is accepted (before its
//!   options or binary are checked), sent by the image that read the request; a re-exec keeps
//!   the same pid and `NOTIFY_SOCKET`, and the new image's reload ends with `READY=1`.
//! - `READY=1` when the reload ends, complete or failed: a failed reload leaves the old
//!   generation serving, so the unit is ready again; `STATUS=` then names the failure.
//! - `STOPPING=1` at a stop; a graceful one also sends `EXTEND_TIMEOUT_USEC=` covering the
//!   drain (the mercy plus the brutal grace), so a `TimeoutStopSec=` shorter than the mercy does
//!   not cut the drain.
//! - `STATUS=` (state, generation, workers ready) whenever the text changes, checked once per
//!   loop turn.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`: a deadline of the loop's poll ([`Systemd::next_deadline`]),
//!   no thread.

use std::time::{Duration, Instant};

use crate::sd_notify::Notifier;

pub struct Systemd {
    notifier: Notifier,
    /// The initial `READY=1` was sent (or is not ours to send: after a re-exec).
    pub ready_sent: bool,
    watchdog_at: Option<Instant>,
}

/// Whether the initial `READY=1` is due: not sent yet, no reload under way (its end sends it),
/// and the generation complete.
pub fn first_ready(ready_sent: bool, reload_running: bool, complete: bool) -> bool {
    !ready_sent && !reload_running && complete
}

/// The `STATUS=` state word.
pub fn state_word(stopping: bool, reloading: bool, paused: bool) -> &'static str {
    if stopping {
        "stopping"
    } else if reloading {
        "reloading"
    } else if paused {
        "paused"
    } else {
        "running"
    }
}

impl Systemd {
    /// From the environment (`None` without `NOTIFY_SOCKET`); `resumed`: after a re-exec.
    pub fn from_env(resumed: bool, now: Instant) -> Option<Systemd> {
        let notifier = Notifier::from_env()?;
        let watchdog_at = notifier.watchdog_interval().map(|_| now);
        Some(Systemd {
            notifier,
            ready_sent: resumed,
            watchdog_at,
        })
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.watchdog_at
    }

    /// Send `WATCHDOG=1` if it is due.
    pub fn tick(&mut self, now: Instant) {
        if let (Some(at), Some(every)) = (self.watchdog_at, self.notifier.watchdog_interval()) {
            if now >= at {
                self.notifier.watchdog();
                self.watchdog_at = Some(now + every);
            }
        }
    }

    pub fn ready(&mut self) {
        self.ready_sent = true;
        self.notifier.ready();
    }

    pub fn reloading(&self) {
        self.notifier.reloading();
    }

    /// A reload ended: ready again (the old generation serves if it failed).
    pub fn reload_ended(&mut self, failure: Option<&str>) {
        if let Some(why) = failure {
            self.notifier.status(&format!(
                "reload failed, previous generation serving: {why}"
            ));
        }
        self.ready();
    }

    pub fn stopping(&self, drain: Option<Duration>) {
        self.notifier.stopping();
        if let Some(d) = drain {
            self.notifier.extend_timeout(d);
        }
    }

    pub fn status(&mut self, text: &str) {
        self.notifier.status(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ready_waits_for_a_complete_generation_and_no_reload() {
        assert!(first_ready(false, false, true));
        assert!(!first_ready(false, false, false));
        assert!(!first_ready(false, true, true), "the reload's end sends it");
        assert!(!first_ready(true, false, true), "sent once (or resumed)");
    }

    #[test]
    fn the_state_word_prefers_stopping_then_reloading() {
        assert_eq!(state_word(true, true, true), "stopping");
        assert_eq!(state_word(false, true, true), "reloading");
        assert_eq!(state_word(false, false, true), "paused");
        assert_eq!(state_word(false, false, false), "running");
    }
}
