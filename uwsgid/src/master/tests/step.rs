//! The transition table of [`super`], row by row, and the pure helpers beside it.
use super::*;
use crate::master::record::{record_fifo, record_signal, Requests};
use crate::master::reload::Check;
use crate::master::Now;
use common::fifo::FifoCommand;
use common::reload::ReloadKind;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

fn checking() -> Phase {
    let (r, _w) = std::io::pipe().expect("pipe");
    let output: OwnedFd = r.into();
    let t0 = Instant::now();
    Phase::Checking(Check {
        kind: ReloadKind::Graceful,
        cause: "test".into(),
        asked: Now { at: t0, unix_ms: 0 },
        pid: 0,
        output,
        text: Vec::new(),
        deadline: t0,
        killed: false,
        eof: false,
    })
}

fn reexec() -> Phase {
    Phase::ReExec {
        kind: ReloadKind::Graceful,
        cause: "test".into(),
        asked: Now {
            at: Instant::now(),
            unix_ms: 0,
        },
        leftover: Vec::new(),
        checked: None,
    }
}

fn stopping(brutal: bool) -> Phase {
    Phase::Stopping {
        brutal,
        deadline: Instant::now(),
    }
}

fn reload(kind: ReloadKind, exe_unchanged: bool) -> Input {
    Input::Reload {
        kind,
        exe_unchanged,
        chain_running: false,
    }
}

#[test]
fn running_reexec_reload_with_the_same_binary_re_executes() {
    for k in [ReloadKind::Graceful, ReloadKind::Brutal] {
        assert_eq!(decide(&Phase::Running, reload(k, true)), Decision::ReExec);
    }
}

#[test]
fn running_reexec_reload_with_a_new_binary_checks_it_first() {
    for k in [ReloadKind::Graceful, ReloadKind::Brutal] {
        assert_eq!(decide(&Phase::Running, reload(k, false)), Decision::Check);
    }
}

#[test]
fn running_workers_and_chain_reloads_start_a_generation() {
    for k in [
        ReloadKind::Workers,
        ReloadKind::BrutalWorkers,
        ReloadKind::Chain,
    ] {
        for same in [true, false] {
            assert_eq!(
                decide(&Phase::Running, reload(k, same)),
                Decision::NewGeneration
            );
        }
    }
}

#[test]
fn a_second_chain_is_ignored_but_other_reloads_go_ahead() {
    let busy = |kind| Input::Reload {
        kind,
        exe_unchanged: true,
        chain_running: true,
    };
    assert!(matches!(
        decide(&Phase::Running, busy(ReloadKind::Chain)),
        Decision::Ignore(_)
    ));
    assert_eq!(
        decide(&Phase::Running, busy(ReloadKind::Workers)),
        Decision::NewGeneration
    );
    assert_eq!(
        decide(&Phase::Running, busy(ReloadKind::Graceful)),
        Decision::ReExec
    );
}

#[test]
fn checking_ignores_reloads_and_follows_the_checker() {
    let c = checking();
    for k in ReloadKind::ALL {
        assert!(matches!(decide(&c, reload(k, true)), Decision::Ignore(_)));
    }
    assert_eq!(
        decide(&c, Input::CheckerExited { ok: true }),
        Decision::ReExec
    );
    assert_eq!(
        decide(&c, Input::CheckerExited { ok: false }),
        Decision::Refuse
    );
    assert!(matches!(
        decide(&Phase::Running, Input::CheckerExited { ok: true }),
        Decision::Ignore(_)
    ));
}

#[test]
fn reexec_takes_nothing_new_but_a_stop() {
    let p = reexec();
    for k in ReloadKind::ALL {
        assert!(matches!(decide(&p, reload(k, true)), Decision::Ignore(_)));
    }
    assert_eq!(
        decide(&p, Input::Stop { brutal: false }),
        Decision::Stop { brutal: false }
    );
}

#[test]
fn stops_from_running_and_checking() {
    for p in [Phase::Running, checking()] {
        for brutal in [false, true] {
            assert_eq!(
                decide(&p, Input::Stop { brutal }),
                Decision::Stop { brutal }
            );
        }
    }
}

#[test]
fn a_brutal_stop_overrides_a_graceful_one_never_the_reverse() {
    assert_eq!(
        decide(&stopping(false), Input::Stop { brutal: true }),
        Decision::Stop { brutal: true }
    );
    assert!(matches!(
        decide(&stopping(false), Input::Stop { brutal: false }),
        Decision::Ignore(_)
    ));
    for brutal in [false, true] {
        assert!(matches!(
            decide(&stopping(true), Input::Stop { brutal }),
            Decision::Ignore(_)
        ));
    }
}

#[test]
fn stopping_ignores_reloads() {
    for p in [stopping(false), stopping(true)] {
        for k in ReloadKind::ALL {
            assert!(matches!(decide(&p, reload(k, true)), Decision::Ignore(_)));
        }
    }
}

#[test]
fn stop_deadline_kills_then_exits() {
    let t0 = Instant::now();
    let mercy = Duration::from_secs(3);
    let graceful = stop_deadline(false, mercy, t0);
    assert_eq!(graceful, t0 + Duration::from_secs(4));
    assert_eq!(stop_deadline(true, mercy, t0), t0 + STOP_GRACE);
    assert_eq!(stop_progress(graceful, t0, false), StopAction::Wait);
    assert_eq!(stop_progress(graceful, t0, true), StopAction::Exit(0));
    assert_eq!(
        stop_progress(graceful, graceful, false),
        StopAction::KillAll
    );
    assert_eq!(
        stop_progress(graceful, graceful + STOP_GRACE, false),
        StopAction::Exit(1)
    );
    assert_eq!(
        stop_progress(graceful, graceful + STOP_GRACE, true),
        StopAction::Exit(0)
    );
}

#[test]
fn a_fired_stop_deadline_is_not_offered_again() {
    let t0 = Instant::now();
    let p = Phase::Stopping {
        brutal: false,
        deadline: t0,
    };
    assert_eq!(p.next_deadline(t0 - Duration::from_millis(1)), Some(t0));
    assert_eq!(p.next_deadline(t0), Some(t0 + STOP_GRACE));
    let Phase::Checking(mut c) = checking() else {
        unreachable!()
    };
    c.killed = true;
    assert_eq!(Phase::Checking(c).next_deadline(t0), None);
}

#[test]
fn pause_freezes_exec_workers_and_tells_builtin_ones() {
    assert_eq!(pause_signal(true, true), libc::SIGSTOP);
    assert_eq!(pause_signal(true, false), libc::SIGCONT);
    assert_eq!(pause_signal(false, true), libc::SIGTSTP);
    assert_eq!(pause_signal(false, false), libc::SIGTSTP);
}

#[test]
fn fifo_pause_and_resume_cancel_a_toggle_in_the_same_step() {
    let mut r = Requests::default();
    record_fifo(&mut r, FifoCommand::TogglePause);
    record_fifo(&mut r, FifoCommand::Resume);
    assert!(!r.toggle_pause);
    assert_eq!(r.pause, Some(false));
    record_fifo(&mut r, FifoCommand::AddWorker);
    record_fifo(&mut r, FifoCommand::AddWorker);
    record_fifo(&mut r, FifoCommand::RemoveWorker);
    assert_eq!(r.worker_delta, 1);
}

#[test]
fn signals_map_to_requests() {
    let mut r = Requests::default();
    record_signal(&mut r, libc::SIGTERM, "TERM".into(), false);
    assert_eq!(r.reload.as_ref().map(|x| x.0), Some(ReloadKind::Brutal));
    record_signal(&mut r, libc::SIGTERM, "TERM".into(), true);
    assert!(r.graceful_stop.is_some());
    record_signal(&mut r, libc::SIGHUP, "HUP".into(), false);
    assert_eq!(r.reload.as_ref().map(|x| x.0), Some(ReloadKind::Graceful));
    record_signal(&mut r, libc::SIGINT, "INT".into(), false);
    assert!(r.brutal_stop.is_some());
}

#[test]
fn pause_while_starting_freezes_exec_workers_once_ready() {
    assert!(freeze_when_ready(true, true));
    assert!(
        !freeze_when_ready(true, false),
        "built-in workers read the pause flag"
    );
    assert!(!freeze_when_ready(false, true));
    // The pause itself reaches starting workers too (every worker gets the signal).
    assert_eq!(pause_signal(true, true), libc::SIGSTOP);
}
