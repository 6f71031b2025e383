//! Reloads: the one under way (with its chain cursor), how the last one ended, and the
//! `--check-config` child that vets a new binary before a re-exec.
//!
//! A generation change is the same mechanism for every reload: each slot has a target
//! generation (see [`super::table`]); this part only says when a reload advances (a chain
//! moves to its next slot), completes or fails. Its decisions take the table and `now` and
//! return what happened; the step logs and records it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::reload::{ReloadKind, ReloadResult};
use common::stats::ReloadOutcome;

use super::table::{SlotId, Table};
use super::Now;

/// A reload is reported failed once a new worker failed to start this many times in a row.
pub const RELOAD_FAIL_AFTER: u32 = 3;
/// The `--check-config` child is killed after this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this much of the checker's output is kept (the rest is read and dropped).
const CHECK_OUTPUT_MAX: usize = 8192;
/// The instance quiet this long, the next in-process check is prepared (see
/// [`Reloads::prepare_due`]).
pub const PREPARE_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Reload {
    pub kind: ReloadKind,
    pub generation: u64,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// Chain reload: the slot being replaced now.
    pub chain_cursor: Option<SlotId>,
}

/// What the reload under way did in this step.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// Nothing changed.
    Waiting,
    /// A chain moved on: `from` is replaced, `next` now targets the new generation.
    ChainNext { from: SlotId, next: SlotId },
    /// Every slot holds a ready worker of the new generation and no older worker is alive.
    Complete,
}

#[derive(Default)]
pub struct Reloads {
    pub current: Option<Reload>,
    pub last: Option<ReloadOutcome>,
    /// The reload under way runs the previous configuration because the new one was refused:
    /// it ends as failed, with this reason.
    pub refused: Option<String>,
    /// Every reload that ended (for `/metrics`), carried across re-execs.
    pub counts: common::stats::ReloadCounts,
    /// When the next in-process check is to be prepared, once the instance is quiet.
    pub prepare_at: Option<Instant>,
    /// Prepared already in this image.
    pub prepared: bool,
}

impl Reloads {
    /// True once per image, when the instance has been `quiet` (serving, no reload under
    /// way, every slot settled) for [`PREPARE_AFTER`]: then the caller builds what the next
    /// in-process check of the options needs (`crate::config::prepare`), so that a reload
    /// does not wait for it. A fresh start built it reading its configuration; a re-exec'd
    /// image took its configuration from the handoff and built nothing. Not quiet: the wait
    /// starts again.
    pub fn prepare_due(&mut self, quiet: bool, now: Instant) -> bool {
        if self.prepared || !quiet {
            self.prepare_at = None;
            return false;
        }
        match self.prepare_at {
            None => {
                self.prepare_at = Some(now + PREPARE_AFTER);
                false
            }
            Some(at) if now >= at => {
                self.prepared = true;
                self.prepare_at = None;
                true
            }
            Some(_) => false,
        }
    }

    /// Start a workers or chain reload to generation `g`: every slot (a chain: the first
    /// only) targets it.
    pub fn begin(&mut self, kind: ReloadKind, g: u64, table: &mut Table, now: Now) {
        let chain = kind == ReloadKind::Chain;
        for id in table.slot_ids().collect::<Vec<_>>() {
            if !chain || id.index() == 0 {
                table.retarget(id, g);
            }
        }
        self.current = Some(Reload {
            kind,
            generation: g,
            started: now.at,
            started_unix_ms: now.unix_ms,
            chain_cursor: chain.then(|| SlotId::of_index(0)),
        });
    }

    /// True if a second chain must be refused: one is running already.
    pub fn chain_running(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|r| r.kind == ReloadKind::Chain)
    }

    /// Advance a chain, or see whether the reload is complete.
    pub fn progress(&mut self, table: &mut Table) -> Progress {
        let Some(reload) = &mut self.current else {
            return Progress::Waiting;
        };
        let g = reload.generation;
        if let Some(id) = reload.chain_cursor {
            if id.index() >= table.slots.len() {
                reload.chain_cursor = None;
            } else {
                let old_gone = !table
                    .workers
                    .iter()
                    .any(|w| w.slot == id && w.generation < g && w.alive_for_slot());
                if !(table.has_ready(id, g) && old_gone) {
                    return Progress::Waiting;
                }
                let next = SlotId::of_index(id.index() + 1);
                if next.index() < table.slots.len() {
                    reload.chain_cursor = Some(next);
                    table.retarget(next, g);
                    return Progress::ChainNext { from: id, next };
                }
                reload.chain_cursor = None;
            }
        }
        let done = if reload.kind == ReloadKind::Rollback {
            table.settled()
        } else {
            table.complete(g)
        };
        if done {
            Progress::Complete
        } else {
            Progress::Waiting
        }
    }

    /// A worker of generation `g` in slot `id` failed to start (`failed` times in a row):
    /// the reason the reload fails, if it does. A chain stops at once (this slot and the ones
    /// after it keep their old workers); another reload is aborted after
    /// [`RELOAD_FAIL_AFTER`]: every slot that still has a ready older worker goes back to it
    /// ([`Table::abort_to_older`]) and the new generation is not tried again there.
    pub fn on_failed_start(
        &mut self,
        table: &mut Table,
        id: SlotId,
        g: u64,
        failed: u32,
        how: &str,
    ) -> Option<String> {
        let reload = self.current.as_ref()?;
        if reload.generation != g {
            return None;
        }
        if reload.kind == ReloadKind::Chain {
            if let Some(old) = table.newest_older(id, g) {
                table.retarget(id, old);
            }
            return Some(format!("chain stopped at worker {id}: its replacement {how} before it was ready; the remaining old workers keep serving"));
        }
        if failed < RELOAD_FAIL_AFTER {
            return None;
        }
        let back = table.abort_to_older(g);
        let serving = match back.iter().map(|&(_, o)| o).max() {
            Some(o) => format!(
                "reload aborted: {} of {} slot(s) stay with generation {o}",
                back.len(),
                table.slots.len()
            ),
            None => "reload aborted, but no older worker is left to serve: the new generation is still retried".to_string(),
        };
        Some(format!(
            "new worker {id} of generation {g} failed to start {failed} times (last: {how}); {serving}; the next reload tries the binary and options on disk again"
        ))
    }

    /// A rollback asked while a reload is under way: every slot that still holds a ready worker of an older generation
    /// goes back to it ([`Table::abort_to_older`]). Returns whether the reload is aborted
    /// (the caller ends it as failed) and what to log; `None` when no reload is under way.
    /// A reload with no ready older worker left (a brutal one) goes on.
    pub fn abort_for_rollback(&mut self, table: &mut Table) -> Option<(bool, String)> {
        let g = self.current.as_ref()?.generation;
        let back = table.abort_to_older(g);
        Some(match back.iter().map(|&(_, o)| o).max() {
            Some(o) => (
                true,
                format!(
                    "reload to generation {g} aborted by a rollback request: {} of {} slot(s) back to generation {o}",
                    back.len(),
                    table.slots.len()
                ),
            ),
            None => (
                false,
                format!("rollback requested during the reload to generation {g}: no ready worker of an older generation is left to go back to; the reload goes on"),
            ),
        })
    }

    /// End the reload under way. Returns whether it counts as a success and its message (a
    /// refused configuration turns a success into a failure).
    pub fn finish(&mut self, ok: bool, message: String, now: Now) -> Option<(bool, String)> {
        let reload = self.current.take()?;
        let (ok, message) = match self.refused.take() {
            Some(reason) if ok => (false, reason),
            _ => (ok, message),
        };
        self.record(
            reload.kind,
            reload.generation,
            ok,
            message.clone(),
            reload.started,
            now,
        );
        Some((ok, message))
    }

    /// Record how a reload ended (shown in stats as `last_reload`).
    pub fn record(
        &mut self,
        kind: ReloadKind,
        generation: u64,
        ok: bool,
        message: String,
        started: Instant,
        now: Now,
    ) {
        let result = if ok {
            ReloadResult::Complete
        } else {
            ReloadResult::Failed
        };
        let seconds = now.at.saturating_duration_since(started).as_secs_f64();
        self.counts.add(kind.name(), result.name(), seconds);
        self.last = Some(ReloadOutcome {
            kind,
            generation,
            result,
            reason: (!ok).then_some(message),
            duration_ms: seconds * 1e3,
            finished_unix_ms: now.unix_ms,
        });
    }
}

/// The `--check-config` run of the binary on disk, before a re-exec into it.
#[derive(Debug)]
pub struct Check {
    pub kind: ReloadKind,
    pub cause: String,
    /// When the reload was asked for (the check counts in its duration).
    pub asked: Now,
    pub pid: i32,
    /// Its stdout and stderr (non-blocking), drained whenever readable.
    pub output: OwnedFd,
    pub text: Vec<u8>,
    pub deadline: Instant,
    /// SIGKILLed at the deadline (which is then not offered again).
    pub killed: bool,
    /// Its output reached end of file: the pipe is not polled any more.
    pub eof: bool,
}

impl Check {
    /// Read what the checker wrote so far (keeping the first 8 KiB), so that it never blocks
    /// on a full pipe and `poll` never spins on unread output.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into our buffer from the non-blocking pipe we own.
            let n = unsafe {
                libc::read(
                    self.output.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n == 0 {
                self.eof = true;
            }
            if n <= 0 {
                return;
            }
            let room = CHECK_OUTPUT_MAX.saturating_sub(self.text.len());
            self.text.extend_from_slice(&buf[..(n as usize).min(room)]);
        }
    }

    /// Its output on one line.
    pub fn message(&mut self) -> String {
        self.drain();
        String::from_utf8_lossy(&self.text)
            .trim()
            .replace('\n', " ")
    }
}

#[cfg(test)]
#[path = "tests/reload.rs"]
pub(crate) mod tests;
