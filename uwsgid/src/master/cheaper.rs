//! Cheaper mode (`--cheaper N`, `--cheaper-initial`, `--cheaper-step`, `--cheaper-algo`,
//! `--cheaper-overload`): the number of active workers moves between `--cheaper` and
//! `--processes` with the load.
//!
//! The active workers are the table's slots: growing adds slots (a worker is spawned into
//! each, as for `+`), shrinking drops the last slot, whose worker is retired gracefully like
//! any worker of a removed slot ([`super::table::Table::replaced`]): it finishes its requests
//! within `--worker-reload-mercy`, so no request fails. The check runs on the recycling tick
//! ([`super::recycle::TICK`]); the decision is the pure [`decide`] (unit tests in
//! `tests/cheaper.rs`):
//!
//! - `spare` (default): when every ready active worker has been busy (a request in flight, from
//!   its scoreboard cell) for `--cheaper-overload` seconds, `--cheaper-step` workers are added.
//! - `backlog`: when the listen queue (read from the kernel, as `/metrics` does) holds more
//!   than `--cheaper-overload` connections, `--cheaper-step` workers are added (uWSGI reads the
//!   option as a queue length for this algorithm).
//! - both: while workers added earlier are still starting nothing more is added; when more
//!   than one active worker has been idle (and, for `backlog`, the queue is no longer over its
//!   threshold) for `--cheaper-overload` seconds (at least 1), one worker is removed, and the
//!   wait starts again: one at a time, never below `--cheaper`.
//!
//! Workers that write no scoreboard cell (exec programs other than the native Python worker)
//! always look idle, so `spare` never grows them; `backlog` does.
//!
//! Reloads: a workers reload (`w`, `c`, touch) keeps the active count; a re-exec (`r`, `R`)
//! keeps it too, bounded by the new configuration's `--cheaper` and `--processes`
//! ([`slots_after_reexec`]); FIFO `+`/`-` change the maximum (`--processes`), never below
//! `--cheaper` + 1, and the active count follows when it is above the new maximum.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::table::WorkerState;
use super::{Master, Now};
use crate::cli::Config;
use crate::log;
use crate::sys;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algo {
    #[default]
    Spare,
    Backlog,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Spare => "spare",
            Algo::Backlog => "backlog",
        }
    }
}

/// The validated cheaper options; `processes` is the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cheaper {
    pub min: u32,
    pub initial: u32,
    pub step: u32,
    pub algo: Algo,
    /// Seconds (`spare`, and the idle wait of both), or a queue length (`backlog`'s growth).
    pub overload: u64,
}

/// uWSGI's default `--cheaper-overload`.
pub const DEFAULT_OVERLOAD: u64 = 3;

/// Why the cheaper options are refused; each message names the option and the fix.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `--cheaper-algo` names an algorithm uwsgid does not have.
    Algo(String),
    /// A cheaper option given without `--cheaper`.
    WithoutCheaper(&'static str),
    /// `--cheaper` at or above `--processes`.
    NotBelowProcesses { min: u32, processes: u32 },
    /// `--cheaper-step 0`.
    ZeroStep,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Algo(other) => write!(
                f,
                "--cheaper-algo {other}: not an algorithm of uwsgid; use spare (the default) or \
                 backlog"
            ),
            Invalid::WithoutCheaper(flag) => write!(
                f,
                "{flag} applies to cheaper mode only: add --cheaper N (the fewest workers to \
                 keep), or leave {flag} out"
            ),
            Invalid::NotBelowProcesses { min, processes } => write!(
                f,
                "--cheaper {min}: must be lower than --processes ({processes}), the most workers \
                 cheaper mode may run; raise --processes or lower --cheaper"
            ),
            Invalid::ZeroStep => {
                f.write_str("--cheaper-step 0: give how many workers to add at a time (1 or more)")
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// The cheaper options from the command line, checked against `processes` as uWSGI checks
/// them: `--cheaper 0` (or none) is off; `--cheaper` must be below `--processes`;
/// `--cheaper-initial` is brought within `--cheaper..=--processes` (uWSGI warns and does the
/// same); the other options need `--cheaper`.
pub fn validate(
    min: Option<u32>,
    initial: Option<u32>,
    step: Option<u32>,
    algo: Option<&str>,
    overload: Option<u64>,
    processes: u32,
) -> Result<Option<Cheaper>, Invalid> {
    let algo = match algo.map(str::trim) {
        None | Some("") | Some("spare") => Algo::Spare,
        Some("backlog") => Algo::Backlog,
        Some(other) => return Err(Invalid::Algo(other.to_string())),
    };
    let min = match min {
        None | Some(0) => {
            let given = [
                ("--cheaper-initial", initial.is_some()),
                ("--cheaper-step", step.is_some()),
                ("--cheaper-overload", overload.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return Err(Invalid::WithoutCheaper(flag));
            }
            return Ok(None);
        }
        Some(n) => n,
    };
    if min >= processes {
        return Err(Invalid::NotBelowProcesses { min, processes });
    }
    if step == Some(0) {
        return Err(Invalid::ZeroStep);
    }
    Ok(Some(Cheaper {
        min,
        initial: initial.unwrap_or(min).clamp(min, processes),
        step: step.unwrap_or(1),
        algo,
        overload: overload.unwrap_or(DEFAULT_OVERLOAD).min(86_400),
    }))
}

/// What the check sees of the active workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Active slots (the current target count).
    pub active: usize,
    /// Ready workers of active slots with no request in flight.
    pub idle: usize,
    /// Ready workers of active slots.
    pub ready: usize,
    /// Active slots whose worker is still starting (or not spawned yet).
    pub starting: usize,
    /// Connections waiting in the listen queues (the largest).
    pub queue: u64,
}

/// The timers of the decision, kept between checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Since when the growth condition holds.
    pub pressure_since: Option<Instant>,
    /// Since when more than one worker is idle.
    pub slack_since: Option<Instant>,
    /// The start line was logged.
    pub announced: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Stay,
    /// Add this many workers.
    Grow(usize),
    /// Remove one worker.
    Shrink,
}

/// The decision at `now` for a maximum of `max` workers (see the module docs).
pub fn decide(c: &Cheaper, max: usize, st: &mut State, o: &Observed, now: Instant) -> Change {
    let hold = Duration::from_secs(c.overload);
    let pressure = match c.algo {
        Algo::Spare => o.ready > 0 && o.idle == 0,
        Algo::Backlog => o.queue > c.overload,
    };
    if o.starting > 0 {
        // A step is still coming up: judge once it serves.
        st.slack_since = None;
        return Change::Stay;
    }
    if pressure {
        st.slack_since = None;
        let since = *st.pressure_since.get_or_insert(now);
        let held = match c.algo {
            Algo::Spare => now.saturating_duration_since(since) >= hold,
            Algo::Backlog => true,
        };
        let room = max.saturating_sub(o.active).min(c.step as usize);
        if held && room > 0 {
            st.pressure_since = None;
            return Change::Grow(room);
        }
        return Change::Stay;
    }
    st.pressure_since = None;
    if o.idle > 1 && o.active > c.min as usize {
        let since = *st.slack_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= hold.max(Duration::from_secs(1)) {
            st.slack_since = Some(now);
            return Change::Shrink;
        }
    } else {
        st.slack_since = None;
    }
    Change::Stay
}

/// How many slots a master starts with.
pub fn initial_slots(config: &Config) -> usize {
    match &config.recycle.cheaper {
        Some(c) => c.initial as usize,
        None => config.processes as usize,
    }
}

/// How many slots a re-executed master keeps, holding `current` before: the same, within the
/// new configuration's bounds (without cheaper mode, `--processes`).
pub fn slots_after_reexec(config: &Config, current: usize) -> usize {
    match &config.recycle.cheaper {
        Some(c) => current.clamp(c.min as usize, config.processes as usize),
        None => config.processes as usize,
    }
}

/// FIFO `+`/`-` in cheaper mode: the new maximum `n` stays above `--cheaper`.
pub fn bound_max(config: &Config, n: u32) -> u32 {
    match &config.recycle.cheaper {
        Some(c) => n.max(c.min + 1),
        None => n,
    }
}

/// The slots to keep when the maximum becomes `max` (FIFO `+`/`-`), holding `current`.
pub fn slots_for_max(config: &Config, current: usize, max: u32) -> usize {
    match &config.recycle.cheaper {
        Some(_) => current.min(max as usize),
        None => max as usize,
    }
}

impl Master {
    /// The cheaper check, on the recycling tick.
    pub(super) fn check_cheaper(&mut self, now: Now) {
        let Some(c) = self.config.recycle.cheaper else {
            return;
        };
        let max = self.config.processes as usize;
        if !self.ticker.cheaper.announced {
            self.ticker.cheaper.announced = true;
            log!(
                "cheaper mode ({}): {} to {max} workers, {} active now, step {}, overload {}",
                c.algo.name(),
                c.min,
                self.table.slots.len(),
                c.step,
                c.overload
            );
        }
        if self.paused || self.reloads.current.is_some() {
            self.ticker.cheaper = State {
                announced: true,
                ..State::default()
            };
            return;
        }
        let seen = self.cheaper_observed();
        match decide(&c, max, &mut self.ticker.cheaper, &seen, now.at) {
            Change::Stay => {}
            Change::Grow(n) => {
                let to = seen.active + n;
                log!(
                    "cheaper ({}): {} -> {to} workers ({})",
                    c.algo.name(),
                    seen.active,
                    match c.algo {
                        Algo::Spare => format!("all busy for {}s", c.overload),
                        Algo::Backlog => format!("{} connection(s) waiting", seen.queue),
                    }
                );
                self.table.resize(to, self.generation);
                self.spawn_missing(now);
            }
            Change::Shrink => {
                let to = seen.active - 1;
                log!(
                    "cheaper ({}): {} -> {to} workers ({} idle for {}s); worker {} retires",
                    c.algo.name(),
                    seen.active,
                    seen.idle,
                    c.overload.max(1),
                    seen.active
                );
                self.table.resize(to, self.generation);
                // Its worker is retired gracefully by the settle that follows.
            }
        }
    }

    /// The stats document's `uwsgid.cheaper`.
    pub(super) fn cheaper_stats(&self) -> Option<common::stats::Cheaper> {
        let c = self.config.recycle.cheaper?;
        let o = self.cheaper_observed();
        Some(common::stats::Cheaper {
            algo: c.algo.name().into(),
            min: c.min,
            max: self.config.processes,
            step: c.step,
            overload: c.overload,
            active: o.active as u32,
            ready: o.ready as u32,
        })
    }

    fn cheaper_observed(&self) -> Observed {
        let mut o = Observed {
            active: self.table.slots.len(),
            ..Observed::default()
        };
        for (i, slot) in self.table.slots.iter().enumerate() {
            let id = super::table::SlotId::of_index(i);
            let worker = self
                .table
                .workers
                .iter()
                .find(|w| w.slot == id && w.generation == slot.target && w.recycle.is_none());
            match worker {
                Some(w) if w.state == WorkerState::Ready => {
                    o.ready += 1;
                    if self.table.board.cell(w.cell).in_flight.load(Relaxed) == 0 {
                        o.idle += 1;
                    }
                }
                Some(w) if w.is_starting() => o.starting += 1,
                // A slot being refilled (recycled, respawning after a crash) counts as
                // starting only while its worker is on the way; one in backoff does not hold
                // the decision up.
                _ if slot.pending.is_some() => o.starting += 1,
                _ => {}
            }
        }
        o.queue = self
            .listeners
            .iter()
            .filter_map(|l| sys::listen_queue(l.raw()))
            .map(|(q, _)| q)
            .max()
            .unwrap_or(0);
        o
    }
}

#[cfg(test)]
#[path = "tests/cheaper.rs"]
mod tests;
