//! `--wait`: one polling loop, [`wait_until`], and the pure conditions it is used with.
//!
//! The loop polls quickly (1 ms, growing to a 5 ms cap) so a completed operation is reported
//! within a few milliseconds; every iteration asks the probe for a [`Probe`] verdict. The
//! conditions are pure functions of a stats document and a baseline taken before the command
//! was sent, so they are unit-tested here without any process:
//!
//! | target | reload complete when | reload failed when |
//! |---|---|---|
//! | uwsgid | `last_reload` changed since the baseline, says `complete`, no reload is under way, every worker belongs to that generation and is ready, nothing drains | `last_reload` changed and says `failed`, or a worker of the new generation has failed starts (crash loop) |
//! | uWSGI | every worker slot has a pid, none of them from before, all accepting | (only master death and the timeout) |

use std::fmt;
use std::time::{Duration, Instant};

use common::reload::ReloadKind;
use common::stats::{ReloadOutcome, ReloadResult, StatsDocument};
use serde::Serialize;

use crate::exit::{CtlError, Exit};

/// A probe's verdict.
#[derive(Debug, PartialEq)]
pub enum Probe<S> {
    Done(S),
    Pending(S),
    Failed {
        exit: Exit,
        reason: String,
        state: S,
    },
}

const FIRST_INTERVAL: Duration = Duration::from_millis(1);
const MAX_INTERVAL: Duration = Duration::from_millis(5);
const FAST_POLLING: Duration = Duration::from_millis(100);

/// Poll `probe` until it is done or failed, or `deadline` passes. `what` names what is awaited
/// in the timeout message ("reload of pid 123 to complete").
pub fn wait_until<S: fmt::Display + Serialize>(
    what: &str,
    deadline: Instant,
    mut probe: impl FnMut() -> Probe<S>,
) -> Result<S, CtlError> {
    let started = Instant::now();
    let mut interval = FIRST_INTERVAL;
    loop {
        let state = match probe() {
            Probe::Done(state) => return Ok(state),
            Probe::Failed {
                exit,
                reason,
                state,
            } => {
                let json = serde_json::to_value(&state).unwrap_or_default();
                return Err(
                    CtlError::new(exit, format!("{reason}; last state: {state}")).with_state(json),
                );
            }
            Probe::Pending(state) => state,
        };
        let now = Instant::now();
        if now >= deadline {
            let json = serde_json::to_value(&state).unwrap_or_default();
            return Err(CtlError::new(
                Exit::Timeout,
                format!(
                    "timed out after {:.1}s waiting for {what}; last state: {state}; raise \
                     --timeout if the instance is just slow",
                    (now - started).as_secs_f64()
                ),
            )
            .with_state(json));
        }
        std::thread::sleep(interval.min(deadline - now));
        // Most reloads finish within a few ms: poll tightly at first so completion is reported
        // within a millisecond, then back off so a long wait costs the master little.
        if now - started > FAST_POLLING {
            interval = (interval * 2).min(MAX_INTERVAL);
        }
    }
}

/// What a reload wait saw last.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReloadState {
    /// `sent`, `re-executing`, `reloading`, `complete`, `failed`.
    pub phase: String,
    pub generation: Option<u64>,
    pub ready: u32,
    pub total: u32,
    pub draining: u32,
    pub duration_ms: Option<f64>,
    pub detail: Option<String>,
}

impl fmt::Display for ReloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.phase)?;
        if let Some(g) = self.generation {
            write!(f, ", generation {g}")?;
        }
        if self.total > 0 || self.ready > 0 {
            write!(f, ", {}/{} workers ready", self.ready, self.total)?;
        }
        if self.draining > 0 {
            write!(f, ", {} old workers draining", self.draining)?;
        }
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// What uwsgictl records before sending a reload to uwsgid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UwsgidBaseline {
    pub generation: u64,
    pub last_reload: Option<ReloadOutcome>,
}

impl UwsgidBaseline {
    pub fn of(doc: &StatsDocument) -> UwsgidBaseline {
        let ext = doc.uwsgid.clone().unwrap_or_default();
        UwsgidBaseline {
            generation: ext.generation,
            last_reload: ext.last_reload,
        }
    }
}

/// The uwsgid reload condition.
pub fn uwsgid_reload(doc: &StatsDocument, base: &UwsgidBaseline) -> Probe<ReloadState> {
    let ext = doc.uwsgid.clone().unwrap_or_default();
    let live: Vec<_> = doc.workers.iter().filter(|w| w.pid > 0).collect();
    let total = ext.processes.max(doc.workers.len() as u32);
    let outcome = ext
        .last_reload
        .clone()
        .filter(|o| Some(o) != base.last_reload.as_ref() || o.generation > base.generation);
    let target_gen = outcome
        .as_ref()
        .map(|o| o.generation)
        .or(ext.reload.as_ref().map(|r| r.generation))
        .filter(|g| *g > base.generation);
    let ready = |generation: u64| {
        live.iter()
            .filter(|w| {
                w.uwsgid
                    .as_ref()
                    .is_some_and(|x| x.generation == generation && x.ready)
            })
            .count() as u32
    };
    let mut state = ReloadState {
        phase: "reloading".into(),
        generation: target_gen,
        ready: target_gen.map(ready).unwrap_or(0),
        total,
        draining: ext.draining.len() as u32,
        duration_ms: None,
        detail: None,
    };
    if let Some(r) = &ext.reload {
        state.ready = r.ready;
        state.total = r.total.max(state.total);
        state.draining = state.draining.max(r.old_alive);
    }
    if let Some(o) = &outcome {
        if o.result == ReloadResult::Failed {
            state.phase = ReloadResult::Failed.name().into();
            state.duration_ms = Some(o.duration_ms);
            let reason = o.reason.clone().unwrap_or_else(|| "no reason given".into());
            return Probe::Failed {
                exit: Exit::ReloadFailed,
                reason: format!(
                    "the {} reload to generation {} failed: {reason}",
                    o.kind, o.generation
                ),
                state,
            };
        }
    }
    if let Some(generation) = target_gen {
        let crashing: Vec<String> = doc
            .workers
            .iter()
            .filter_map(|w| {
                let x = w.uwsgid.as_ref()?;
                (x.generation == generation && x.failed_starts > 0).then(|| {
                    format!(
                        "worker {} failed to start {} times{}",
                        w.id,
                        x.failed_starts,
                        x.last_exit
                            .as_deref()
                            .map(|e| format!(" (last exit: {e})"))
                            .unwrap_or_default()
                    )
                })
            })
            .collect();
        if !crashing.is_empty() {
            state.phase = ReloadResult::Failed.name().into();
            return Probe::Failed {
                exit: Exit::ReloadFailed,
                reason: format!(
                    "the new generation {generation} crash-loops: {}",
                    crashing.join("; ")
                ),
                state,
            };
        }
    }
    if let Some(o) = &outcome {
        if o.result == ReloadResult::Complete {
            let all_ready = live.len() as u32 >= total
                && live.iter().all(|w| {
                    w.uwsgid
                        .as_ref()
                        .is_some_and(|x| x.generation == o.generation && x.ready)
                });
            if ext.reload.is_none() && ext.draining.is_empty() && all_ready {
                state.phase = ReloadResult::Complete.name().into();
                state.duration_ms = Some(o.duration_ms);
                return Probe::Done(state);
            }
        }
    }
    Probe::Pending(state)
}

/// The uwsgid rollback condition: `last_reload` changed since the baseline; a `rollback`
/// that failed fails; otherwise (a restore complete, or the reload it aborted ended) done once
/// no reload is under way and nothing drains.
pub fn uwsgid_rollback(doc: &StatsDocument, base: &UwsgidBaseline) -> Probe<ReloadState> {
    let ext = doc.uwsgid.clone().unwrap_or_default();
    let outcome = ext
        .last_reload
        .clone()
        .filter(|o| Some(o) != base.last_reload.as_ref());
    let live: Vec<_> = doc.workers.iter().filter(|w| w.pid > 0).collect();
    let mut state = ReloadState {
        phase: "rolling-back".into(),
        generation: outcome
            .as_ref()
            .map(|o| o.generation)
            .or(ext.reload.as_ref().map(|r| r.generation)),
        ready: live
            .iter()
            .filter(|w| w.uwsgid.as_ref().is_some_and(|x| x.ready))
            .count() as u32,
        total: ext.processes.max(doc.workers.len() as u32),
        draining: ext.draining.len() as u32,
        duration_ms: None,
        detail: None,
    };
    let Some(o) = outcome else {
        return Probe::Pending(state);
    };
    state.duration_ms = Some(o.duration_ms);
    if o.kind == ReloadKind::Rollback && o.result == ReloadResult::Failed {
        state.phase = ReloadResult::Failed.name().into();
        let reason = o.reason.clone().unwrap_or_else(|| "no reason given".into());
        return Probe::Failed {
            exit: Exit::ReloadFailed,
            reason: format!(
                "the rollback to generation {} failed: {reason}",
                o.generation
            ),
            state,
        };
    }
    if ext.reload.is_none() && ext.draining.is_empty() {
        state.phase = if o.kind == ReloadKind::Rollback {
            ReloadResult::Complete.name().into()
        } else {
            "reload-aborted".into()
        };
        return Probe::Done(state);
    }
    Probe::Pending(state)
}

/// The pids uWSGI's workers had before the reload.
pub fn worker_pids(doc: &StatsDocument) -> Vec<i64> {
    doc.workers
        .iter()
        .map(|w| w.pid)
        .filter(|p| *p > 0)
        .collect()
}

/// The uWSGI reload condition: all slots hold new, accepting workers.
pub fn uwsgi_reload(doc: &StatsDocument, old_pids: &[i64]) -> Probe<ReloadState> {
    let total = doc.workers.len() as u32;
    let new_ready = doc
        .workers
        .iter()
        .filter(|w| w.pid > 0 && !old_pids.contains(&w.pid) && w.accepting == 1)
        .count() as u32;
    let draining = doc
        .workers
        .iter()
        .filter(|w| w.pid > 0 && old_pids.contains(&w.pid))
        .count() as u32;
    let mut state = ReloadState {
        phase: "reloading".into(),
        generation: None,
        ready: new_ready,
        total,
        draining,
        duration_ms: None,
        detail: None,
    };
    if total > 0 && new_ready == total {
        state.phase = ReloadResult::Complete.name().into();
        return Probe::Done(state);
    }
    Probe::Pending(state)
}

/// Whether an instance is paused: uwsgid says so; for uWSGI, a worker shows `pause`.
pub fn is_paused(doc: &StatsDocument) -> bool {
    match &doc.uwsgid {
        Some(ext) => ext.paused || ext.state == "paused",
        None => doc.workers.iter().any(|w| w.status == "pause"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::stats::{Draining, Instance, ReloadKind, ReloadProgress, Worker, WorkerExt};

    fn worker(id: u32, pid: i64, generation: u64, ready: bool) -> Worker {
        Worker {
            id,
            pid,
            accepting: ready as u8,
            status: "idle".into(),
            uwsgid: Some(WorkerExt {
                generation,
                ready,
                state: if ready { "ready" } else { "starting" }.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn doc(generation: u64, workers: Vec<Worker>) -> StatsDocument {
        StatsDocument {
            workers,
            uwsgid: Some(Instance {
                generation,
                processes: 2,
                state: "running".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn outcome(generation: u64, result: ReloadResult) -> ReloadOutcome {
        ReloadOutcome {
            kind: ReloadKind::Graceful,
            generation,
            result,
            reason: (result == ReloadResult::Failed).then(|| "bad option --x".into()),
            duration_ms: 12.5,
            finished_unix_ms: 1,
        }
    }

    #[test]
    fn uwsgid_reload_completes_only_when_everything_is_new_and_ready() {
        let before = doc(1, vec![worker(1, 10, 1, true), worker(2, 11, 1, true)]);
        let base = UwsgidBaseline::of(&before);
        assert!(matches!(uwsgid_reload(&before, &base), Probe::Pending(_)));

        let mut during = doc(2, vec![worker(1, 20, 2, true), worker(2, 11, 1, true)]);
        let ext = during.uwsgid.as_mut().unwrap();
        ext.reload = Some(ReloadProgress {
            kind: ReloadKind::Graceful,
            generation: 2,
            ready: 1,
            total: 2,
            old_alive: 1,
            ..Default::default()
        });
        match uwsgid_reload(&during, &base) {
            Probe::Pending(s) => {
                assert_eq!(
                    (s.generation, s.ready, s.total, s.draining),
                    (Some(2), 1, 2, 1)
                )
            }
            other => panic!("{other:?}"),
        }

        let mut draining = doc(2, vec![worker(1, 20, 2, true), worker(2, 21, 2, true)]);
        let ext = draining.uwsgid.as_mut().unwrap();
        ext.last_reload = Some(outcome(2, ReloadResult::Complete));
        ext.draining = vec![Draining {
            pid: 11,
            generation: 1,
            id: 2,
            since_unix_ms: 0,
        }];
        assert!(matches!(uwsgid_reload(&draining, &base), Probe::Pending(_)));

        let mut done = doc(2, vec![worker(1, 20, 2, true), worker(2, 21, 2, true)]);
        done.uwsgid.as_mut().unwrap().last_reload = Some(outcome(2, ReloadResult::Complete));
        match uwsgid_reload(&done, &base) {
            Probe::Done(s) => assert_eq!(s.duration_ms, Some(12.5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_old_outcome_is_not_mistaken_for_ours() {
        let mut before = doc(3, vec![worker(1, 10, 3, true), worker(2, 11, 3, true)]);
        before.uwsgid.as_mut().unwrap().last_reload = Some(outcome(3, ReloadResult::Complete));
        let base = UwsgidBaseline::of(&before);
        assert!(matches!(uwsgid_reload(&before, &base), Probe::Pending(_)));
    }

    #[test]
    fn uwsgid_reload_failures() {
        let before = doc(1, vec![worker(1, 10, 1, true), worker(2, 11, 1, true)]);
        let base = UwsgidBaseline::of(&before);
        let mut failed = before.clone();
        failed.uwsgid.as_mut().unwrap().last_reload = Some(outcome(2, ReloadResult::Failed));
        match uwsgid_reload(&failed, &base) {
            Probe::Failed { exit, reason, .. } => {
                assert_eq!(exit, Exit::ReloadFailed);
                assert!(reason.contains("bad option --x"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut crashing = doc(2, vec![worker(1, 0, 2, false), worker(2, 11, 1, true)]);
        let ext = crashing.uwsgid.as_mut().unwrap();
        ext.reload = Some(ReloadProgress {
            generation: 2,
            ..Default::default()
        });
        let w = crashing.workers[0].uwsgid.as_mut().unwrap();
        w.failed_starts = 2;
        w.last_exit = Some("exit status 1".into());
        match uwsgid_reload(&crashing, &base) {
            Probe::Failed { exit, reason, .. } => {
                assert_eq!(exit, Exit::ReloadFailed);
                assert!(reason.contains("crash-loops"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uwsgi_reload_needs_every_pid_new_and_accepting() {
        let mk = |pids: &[(i64, u8)]| StatsDocument {
            workers: pids
                .iter()
                .enumerate()
                .map(|(i, &(pid, accepting))| Worker {
                    id: i as u32 + 1,
                    pid,
                    accepting,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let before = mk(&[(10, 1), (11, 1)]);
        let old = worker_pids(&before);
        assert!(matches!(uwsgi_reload(&before, &old), Probe::Pending(_)));
        assert!(matches!(
            uwsgi_reload(&mk(&[(0, 0), (0, 0)]), &old),
            Probe::Pending(_)
        ));
        assert!(matches!(
            uwsgi_reload(&mk(&[(20, 1), (11, 1)]), &old),
            Probe::Pending(_)
        ));
        assert!(matches!(
            uwsgi_reload(&mk(&[(20, 1), (21, 0)]), &old),
            Probe::Pending(_)
        ));
        assert!(matches!(
            uwsgi_reload(&mk(&[(20, 1), (21, 1)]), &old),
            Probe::Done(_)
        ));
    }

    #[test]
    fn wait_until_reports_timeouts_with_the_last_state() {
        let err = wait_until(
            "nothing",
            Instant::now() + Duration::from_millis(20),
            || {
                Probe::Pending(ReloadState {
                    phase: "reloading".into(),
                    ready: 1,
                    total: 2,
                    ..Default::default()
                })
            },
        )
        .unwrap_err();
        assert_eq!(err.exit, Exit::Timeout);
        assert!(
            err.message.contains("waiting for nothing"),
            "{}",
            err.message
        );
        assert!(err.message.contains("1/2 workers ready"), "{}", err.message);
        assert_eq!(err.state.unwrap()["ready"], 1);
    }

    #[test]
    fn pause_detection() {
        let mut d = doc(1, vec![worker(1, 10, 1, true)]);
        assert!(!is_paused(&d));
        d.uwsgid.as_mut().unwrap().paused = true;
        assert!(is_paused(&d));
        let mut u = StatsDocument {
            workers: vec![Worker {
                status: "idle".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!is_paused(&u));
        u.workers[0].status = "pause".into();
        assert!(is_paused(&u));
    }

    #[test]
    fn uwsgid_rollback_is_done_once_the_restored_generation_alone_serves() {
        let mut before = doc(2, vec![worker(1, 20, 2, true), worker(2, 21, 2, true)]);
        before.uwsgid.as_mut().unwrap().last_reload = Some(outcome(2, ReloadResult::Complete));
        before.uwsgid.as_mut().unwrap().snapshot = Some(1);
        let base = UwsgidBaseline::of(&before);
        assert!(matches!(uwsgid_rollback(&before, &base), Probe::Pending(_)));
        // Restoring: the current generation still drains.
        let mut during = doc(2, vec![worker(1, 10, 1, true), worker(2, 11, 1, true)]);
        let ext = during.uwsgid.as_mut().unwrap();
        ext.last_reload = before.uwsgid.as_ref().unwrap().last_reload.clone();
        ext.reload = Some(ReloadProgress {
            kind: ReloadKind::Rollback,
            generation: 1,
            started_unix_ms: 1,
            ready: 2,
            total: 2,
            old_alive: 2,
        });
        assert!(matches!(uwsgid_rollback(&during, &base), Probe::Pending(_)));
        let mut done = during.clone();
        let ext = done.uwsgid.as_mut().unwrap();
        ext.reload = None;
        ext.last_reload = Some(ReloadOutcome {
            kind: ReloadKind::Rollback,
            ..outcome(1, ReloadResult::Complete)
        });
        ext.draining = vec![Draining {
            pid: 20,
            generation: 2,
            id: 1,
            since_unix_ms: 1,
        }];
        assert!(matches!(uwsgid_rollback(&done, &base), Probe::Pending(_)));
        done.uwsgid.as_mut().unwrap().draining.clear();
        match uwsgid_rollback(&done, &base) {
            Probe::Done(s) => {
                assert_eq!(s.phase, "complete");
                assert_eq!(s.generation, Some(1));
            }
            other => panic!("{other:?}"),
        }
        // A rollback that aborted a reload under way: that reload's failure is its success.
        let mut aborted = done.clone();
        aborted.uwsgid.as_mut().unwrap().last_reload = Some(outcome(3, ReloadResult::Failed));
        match uwsgid_rollback(&aborted, &base) {
            Probe::Done(s) => assert_eq!(s.phase, "reload-aborted"),
            other => panic!("{other:?}"),
        }
        let mut failed = done;
        failed.uwsgid.as_mut().unwrap().last_reload = Some(ReloadOutcome {
            kind: ReloadKind::Rollback,
            ..outcome(1, ReloadResult::Failed)
        });
        assert!(matches!(
            uwsgid_rollback(&failed, &base),
            Probe::Failed {
                exit: Exit::ReloadFailed,
                ..
            }
        ));
    }
}
