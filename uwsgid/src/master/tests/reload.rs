//! Reload progress, chain advance and stop on failure, completion and outcome.
use super::*;
use crate::master::table::tests::{add, id, ready, table};

fn now(at: Instant) -> Now {
    Now { at, unix_ms: 1000 }
}

/// Two slots, each with a ready worker of generation 1 (pids 10, 11).
fn running() -> (Table, Instant) {
    let t0 = Instant::now();
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 11, 2, 1, t0);
    ready(&mut t, 10, t0);
    ready(&mut t, 11, t0);
    (t, t0)
}

#[test]
fn workers_reload_completes_when_all_new_are_ready_and_old_are_gone() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    assert!(t.slots.iter().all(|s| s.target == 2));
    add(&mut t, 20, 1, 2, t0);
    add(&mut t, 21, 2, 2, t0);
    ready(&mut t, 20, t0);
    ready(&mut t, 21, t0);
    assert_eq!(
        r.progress(&mut t),
        Progress::Waiting,
        "old ones still alive"
    );
    t.on_exit(10, "exited 0", t0, false);
    t.on_exit(11, "exited 0", t0, false);
    assert_eq!(r.progress(&mut t), Progress::Complete);
    let (ok, _) = r.finish(true, "done".into(), now(t0)).unwrap();
    assert!(ok);
    let last = r.last.as_ref().unwrap();
    assert_eq!(
        (last.kind, last.generation, last.result),
        (ReloadKind::Workers, 2, ReloadResult::Complete)
    );
    assert!(r.current.is_none());
}

#[test]
fn chain_replaces_one_slot_after_the_other() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Chain, 2, &mut t, now(t0));
    assert_eq!((t.slots[0].target, t.slots[1].target), (2, 1));
    assert_eq!(t.missing(t0), vec![(id(1), 2)]);
    add(&mut t, 20, 1, 2, t0);
    ready(&mut t, 20, t0);
    assert_eq!(
        r.progress(&mut t),
        Progress::Waiting,
        "worker 10 not retired yet"
    );
    assert_eq!(t.replaced(), vec![10]);
    t.retire(10, t0, Duration::from_secs(1));
    assert_eq!(
        r.progress(&mut t),
        Progress::ChainNext {
            from: id(1),
            next: id(2)
        }
    );
    assert_eq!(t.slots[1].target, 2);
    add(&mut t, 21, 2, 2, t0);
    ready(&mut t, 21, t0);
    t.retire(11, t0, Duration::from_secs(1));
    assert_eq!(
        r.progress(&mut t),
        Progress::Waiting,
        "old ones still draining"
    );
    t.on_exit(10, "exited 0", t0, false);
    t.on_exit(11, "exited 0", t0, false);
    assert_eq!(r.progress(&mut t), Progress::Complete);
}

#[test]
fn chain_stops_at_the_first_failure_and_gives_the_slot_back() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Chain, 2, &mut t, now(t0));
    add(&mut t, 20, 1, 2, t0);
    let (_, exit) = t.on_exit(20, "exited 1", t0, false).unwrap();
    assert!(matches!(
        exit,
        super::super::table::Exit::FailedStart { .. }
    ));
    let why = r.on_failed_start(&mut t, id(1), 2, 1, "exited 1");
    assert!(why.unwrap().contains("chain stopped at worker 1"));
    assert_eq!(t.slots[0].target, 1, "slot 1 keeps its old worker");
    assert_eq!(t.slots[0].failed_starts, 0);
    assert!(
        t.missing(t0).is_empty(),
        "nothing to spawn: old workers serve"
    );
    let (ok, _) = r.finish(false, "chain stopped".into(), now(t0)).unwrap();
    assert!(!ok);
    assert_eq!(r.last.as_ref().unwrap().result, ReloadResult::Failed);
}

#[test]
fn workers_reload_fails_after_three_failed_starts() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    assert_eq!(r.on_failed_start(&mut t, id(1), 2, 1, "x"), None);
    assert_eq!(r.on_failed_start(&mut t, id(1), 2, 2, "x"), None);
    assert!(r.on_failed_start(&mut t, id(1), 2, 3, "x").is_some());
    assert_eq!(
        r.on_failed_start(&mut t, id(1), 1, 3, "x"),
        None,
        "older gen"
    );
}

#[test]
fn a_failed_workers_reload_is_aborted_and_gives_every_slot_back() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Graceful, 2, &mut t, now(t0));
    // Slot 2's new worker is starting; slot 1's crashed for the third time.
    add(&mut t, 21, 2, 2, t0);
    let why = r.on_failed_start(&mut t, id(1), 2, 3, "exited 1").unwrap();
    assert!(
        why.contains("reload aborted: 2 of 2 slot(s) stay with generation 1"),
        "{why}"
    );
    assert!(why.contains("the next reload tries"), "{why}");
    assert!(t
        .slots
        .iter()
        .all(|s| s.target == 1 && s.failed_starts == 0));
    assert!(t.missing(t0).is_empty(), "generation 2 is not tried again");
    assert_eq!(t.replaced(), vec![21], "its starting worker is retired");
    let (ok, _) = r.finish(false, why, now(t0)).unwrap();
    assert!(!ok);
    assert_eq!(r.last.as_ref().unwrap().result, ReloadResult::Failed);
    assert!(r.current.is_none());
}

#[test]
fn an_aborted_reload_keeps_retrying_a_slot_no_old_worker_serves() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    t.on_exit(11, "killed by signal 9", t0, false);
    let why = r.on_failed_start(&mut t, id(1), 2, 3, "x").unwrap();
    assert!(
        why.contains("1 of 2 slot(s) stay with generation 1"),
        "{why}"
    );
    assert_eq!((t.slots[0].target, t.slots[1].target), (1, 2));
}

#[test]
fn a_rollback_aborts_the_reload_under_way_and_nothing_else() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    assert_eq!(r.abort_for_rollback(&mut t), None, "no reload under way");
    assert!(t.slots.iter().all(|s| s.target == 1));
    r.begin(ReloadKind::Graceful, 2, &mut t, now(t0));
    add(&mut t, 20, 1, 2, t0);
    let (aborted, why) = r.abort_for_rollback(&mut t).unwrap();
    assert!(aborted);
    assert!(why.contains("2 of 2 slot(s) back to generation 1"), "{why}");
    assert!(t.slots.iter().all(|s| s.target == 1));
    assert_eq!(t.replaced(), vec![20]);
}

#[test]
fn a_rollback_without_an_older_ready_worker_lets_the_reload_go_on() {
    let t0 = Instant::now();
    let mut t = table(1);
    let mut r = Reloads::default();
    r.begin(ReloadKind::BrutalWorkers, 2, &mut t, now(t0));
    add(&mut t, 20, 1, 2, t0);
    let (aborted, _) = r.abort_for_rollback(&mut t).unwrap();
    assert!(!aborted);
    assert_eq!(t.slots[0].target, 2);
    assert!(r.current.is_some());
}

#[test]
fn a_refused_configuration_fails_a_reload_that_completed() {
    let (mut t, t0) = running();
    let mut r = Reloads {
        refused: Some("new configuration refused".into()),
        ..Reloads::default()
    };
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    let (ok, why) = r.finish(true, "complete".into(), now(t0)).unwrap();
    assert!(!ok);
    assert_eq!(why, "new configuration refused");
    assert!(
        r.finish(true, "again".into(), now(t0)).is_none(),
        "finished once"
    );
}

#[test]
fn plus_during_a_reload_adds_a_slot_of_the_new_generation() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    // `+`: the step grows the table with slots targeting the newest generation.
    t.resize(3, 2);
    assert_eq!(t.slots[2].target, 2);
    for (pid, slot) in [(20, 1), (21, 2), (22, 3)] {
        add(&mut t, pid, slot, 2, t0);
        ready(&mut t, pid, t0);
    }
    for pid in t.replaced() {
        t.retire(pid, t0, Duration::from_secs(1));
    }
    t.on_exit(10, "exited 0", t0, false);
    assert_eq!(
        r.progress(&mut t),
        Progress::Waiting,
        "worker 11 still drains"
    );
    t.on_exit(11, "exited 0", t0, false);
    assert_eq!(r.progress(&mut t), Progress::Complete);
}

#[test]
fn minus_during_a_reload_retires_the_dropped_slot_and_completes_without_it() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Workers, 2, &mut t, now(t0));
    add(&mut t, 20, 1, 2, t0);
    add(&mut t, 21, 2, 2, t0);
    // `-`: slot 2 goes; both its workers (old and starting) are retired.
    t.resize(1, 2);
    let mut gone = t.replaced();
    gone.sort();
    assert_eq!(gone, vec![11, 21]);
    for pid in gone {
        t.retire(pid, t0, Duration::from_secs(1));
    }
    ready(&mut t, 20, t0);
    assert_eq!(t.replaced(), vec![10]);
    for pid in [10, 11, 21] {
        t.on_exit(pid, "exited 0", t0, false);
    }
    assert_eq!(r.progress(&mut t), Progress::Complete);
}

#[test]
fn plus_during_a_chain_is_replaced_in_its_turn() {
    let (mut t, t0) = running();
    let mut r = Reloads::default();
    r.begin(ReloadKind::Chain, 2, &mut t, now(t0));
    t.resize(3, 2);
    add(&mut t, 20, 1, 2, t0);
    add(&mut t, 22, 3, 2, t0);
    ready(&mut t, 20, t0);
    ready(&mut t, 22, t0);
    t.retire(10, t0, Duration::from_secs(1));
    assert_eq!(
        r.progress(&mut t),
        Progress::ChainNext {
            from: id(1),
            next: id(2)
        }
    );
    add(&mut t, 21, 2, 2, t0);
    ready(&mut t, 21, t0);
    t.retire(11, t0, Duration::from_secs(1));
    // Slot 3 already runs the new generation: the chain passes it.
    assert_eq!(
        r.progress(&mut t),
        Progress::ChainNext {
            from: id(2),
            next: id(3)
        }
    );
    t.on_exit(10, "exited 0", t0, false);
    t.on_exit(11, "exited 0", t0, false);
    assert_eq!(r.progress(&mut t), Progress::Complete);
}

#[test]
fn the_checker_pipe_is_drained_and_its_output_bounded() {
    use std::io::Write;
    use std::os::fd::OwnedFd;
    let (r, mut w) = std::io::pipe().expect("pipe");
    crate::sys::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(&r)).unwrap();
    let t0 = Instant::now();
    let mut c = Check {
        kind: ReloadKind::Graceful,
        cause: "test".into(),
        asked: now(t0),
        pid: 0,
        output: OwnedFd::from(r),
        text: Vec::new(),
        deadline: t0 + CHECK_TIMEOUT,
        killed: false,
        eof: false,
    };
    // More than a pipe holds comes in several writes; each drain empties the pipe.
    for _ in 0..4 {
        w.write_all(&[b'x'; 60 * 1024]).unwrap();
        c.drain();
    }
    w.write_all(b"\nlast line\n").unwrap();
    drop(w);
    let msg = c.message();
    assert!(c.eof, "end of file seen: the pipe is polled no more");
    assert_eq!(msg.len(), 8192, "the first 8 KiB are kept");
    assert!(msg.bytes().all(|b| b == b'x'));
}

/// The next check is prepared once per image, after the instance has been quiet for
/// PREPARE_AFTER; anything that is not quiet starts the wait again.
#[test]
fn the_next_check_is_prepared_once_after_a_quiet_spell() {
    let t0 = Instant::now();
    let mut r = Reloads::default();
    assert!(!r.prepare_due(false, t0), "not quiet: nothing");
    assert_eq!(r.prepare_at, None);
    assert!(!r.prepare_due(true, t0), "quiet: the wait starts");
    assert_eq!(r.prepare_at, Some(t0 + PREPARE_AFTER));
    assert!(!r.prepare_due(true, t0 + PREPARE_AFTER / 2));
    assert!(!r.prepare_due(false, t0 + PREPARE_AFTER / 2), "busy again");
    assert_eq!(r.prepare_at, None, "the wait starts over");
    let t1 = t0 + PREPARE_AFTER;
    assert!(!r.prepare_due(true, t1));
    assert!(r.prepare_due(true, t1 + PREPARE_AFTER), "quiet long enough");
    assert_eq!(r.prepare_at, None, "a fired deadline is not offered again");
    assert!(
        !r.prepare_due(true, t1 + PREPARE_AFTER * 3),
        "once per image"
    );
    assert_eq!(r.prepare_at, None);
}
