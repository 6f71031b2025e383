//! The worker table's decisions, without forking: spawn, retire, exits, backoff, deadlines.
use super::*;

pub fn table(slots: usize) -> Table {
    let mut t = Table::new(Scoreboard::create().expect("scoreboard"));
    t.resize(slots, 1);
    t
}

pub fn id(n: u32) -> SlotId {
    SlotId::new(n).unwrap()
}

/// Add a worker of slot `slot`, generation `g`, spawned at `at`.
pub fn add(t: &mut Table, pid: i32, slot: u32, g: u64, at: Instant) {
    let cell = t.alloc_cell().unwrap();
    t.add_started(
        Worker {
            pid,
            slot: id(slot),
            generation: g,
            cell,
            state: WorkerState::Starting { killed: false },
            spawned: at,
            spawned_unix_ms: 0,
            ready_at: None,
            status_text: None,
            recycle: None,
        },
        0,
    );
}

pub fn ready(t: &mut Table, pid: i32, at: Instant) {
    assert!(t.set_ready(pid, at).is_some());
}

#[test]
fn slot_ids_are_one_based() {
    assert_eq!(SlotId::new(0), None);
    assert_eq!(id(1).index(), 0);
    assert_eq!(SlotId::of_index(2).get(), 3);
}

#[test]
fn backoff_doubles_from_100ms_up_to_10s() {
    let ms = |n| backoff(n).as_millis();
    assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
    assert_eq!(ms(8), 10_000);
    assert_eq!(ms(40), 10_000);
    assert_eq!(ms(0), 100);
}

#[test]
fn crash_before_ready_backs_off_and_stable_death_does_not() {
    let t0 = Instant::now();
    let mut t = table(1);
    add(&mut t, 10, 1, 1, t0);
    let (_, exit) = t.on_exit(10, "exited 1", t0, false).unwrap();
    assert_eq!(
        exit,
        Exit::FailedStart {
            failed: 1,
            delay: backoff(1),
            was_ready: false
        }
    );
    assert!(t.missing(t0).is_empty(), "backoff holds the respawn");
    assert_eq!(t.missing(t0 + backoff(1)), vec![(id(1), 1)]);

    add(&mut t, 11, 1, 1, t0);
    ready(&mut t, 11, t0);
    let (_, exit) = t.on_exit(11, "killed", t0 + STABLE_AFTER, false).unwrap();
    assert!(matches!(exit, Exit::Died { .. }));
    assert_eq!(t.slots[0].failed_starts, 0);
    assert_eq!(t.missing(t0 + STABLE_AFTER), vec![(id(1), 1)]);
}

#[test]
fn failed_starts_in_a_row_double_the_wait() {
    let t0 = Instant::now();
    let mut t = table(1);
    for (n, pid) in (1..=4).zip(20..) {
        add(&mut t, pid, 1, 1, t0);
        let (_, exit) = t.on_exit(pid, "exited 1", t0, false).unwrap();
        assert!(matches!(exit, Exit::FailedStart { failed, delay, .. }
            if failed == n && delay == backoff(n)));
    }
    // A fork failure counts the same way (one formula).
    assert_eq!(t.fail_start(id(1), "fork", t0), Some((5, backoff(5))));
}

#[test]
fn exits_while_stopping_decide_nothing() {
    let t0 = Instant::now();
    let mut t = table(1);
    add(&mut t, 10, 1, 1, t0);
    let (_, exit) = t.on_exit(10, "exited 0", t0, true).unwrap();
    assert_eq!(exit, Exit::WhileStopping);
    assert_eq!(t.slots[0].failed_starts, 0);
    assert!(
        t.on_exit(99, "exited 0", t0, false).is_none(),
        "not a worker"
    );
}

#[test]
fn old_workers_are_retired_only_once_the_new_one_is_ready() {
    let t0 = Instant::now();
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 11, 2, 1, t0);
    ready(&mut t, 10, t0);
    ready(&mut t, 11, t0);
    t.retarget_all(2);
    assert_eq!(t.missing(t0), vec![(id(1), 2), (id(2), 2)]);
    add(&mut t, 20, 1, 2, t0);
    add(&mut t, 21, 2, 2, t0);
    assert!(t.missing(t0).is_empty());
    assert!(t.replaced().is_empty(), "new ones still starting");
    ready(&mut t, 20, t0);
    assert_eq!(t.replaced(), vec![10]);
    assert!(t.retire(10, t0, Duration::from_secs(1)));
    assert!(!t.retire(10, t0, Duration::from_secs(1)), "retired once");
    assert!(!t.complete(2));
    ready(&mut t, 21, t0);
    assert_eq!(t.replaced(), vec![11]);
    t.retire(11, t0, Duration::from_secs(1));
    t.on_exit(10, "exited 0", t0, false);
    assert!(!t.complete(2), "worker 11 still drains");
    let (_, exit) = t.on_exit(11, "exited 0", t0, false).unwrap();
    assert!(matches!(exit, Exit::Retired(_)));
    assert!(t.complete(2));
}

#[test]
fn slots_beyond_the_count_are_retired() {
    let t0 = Instant::now();
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 11, 2, 1, t0);
    t.resize(1, 1);
    assert_eq!(t.replaced(), vec![11]);
    // Grown again before it exited: worker 11 holds slot 2 again, slot 3 needs one.
    t.resize(3, 1);
    assert!(t.replaced().is_empty());
    assert_eq!(t.missing(t0), vec![(id(3), 1)]);
}

#[test]
fn deadlines_fire_once_and_are_not_offered_again() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(60);
    let mercy = Duration::from_secs(2);
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 11, 2, 1, t0);
    ready(&mut t, 11, t0);
    t.retire(11, t0, mercy);
    assert_eq!(t.next_deadline(t0, None, timeout), Some(t0 + mercy));
    assert_eq!(
        t.expire(t0 + mercy, None, timeout),
        vec![Expired::Mercy(11)]
    );
    assert_eq!(
        t.next_deadline(t0 + mercy, None, timeout),
        Some(t0 + timeout)
    );
    let late = t0 + timeout;
    assert_eq!(
        t.expire(late, None, timeout),
        vec![Expired::StartTimeout(10)]
    );
    assert!(t.expire(late, None, timeout).is_empty(), "killed once");
    // Killed but not reaped yet: nothing left to wait for.
    assert_eq!(t.next_deadline(late, None, timeout), None);
    // Its exit still counts as a failed start.
    let (_, exit) = t.on_exit(10, "killed", late, false).unwrap();
    assert!(matches!(exit, Exit::FailedStart { failed: 1, .. }));
}

#[test]
fn exec_worker_without_ready_counts_ready_after_its_grace() {
    let t0 = Instant::now();
    let grace = Some(Duration::from_secs(1));
    let mut t = table(1);
    add(&mut t, 10, 1, 1, t0);
    assert_eq!(
        t.next_deadline(t0, grace, Duration::from_secs(60)),
        Some(t0 + Duration::from_secs(1))
    );
    assert_eq!(
        t.expire(t0 + Duration::from_secs(1), grace, Duration::from_secs(60)),
        vec![Expired::Grace(10)]
    );
    assert!(t.worker(10).unwrap().is_ready());
}

#[test]
fn unasked_stopping_drains_only_a_stable_worker() {
    let t0 = Instant::now();
    let mercy = Duration::from_secs(1);
    let mut t = table(1);
    add(&mut t, 10, 1, 1, t0);
    ready(&mut t, 10, t0);
    assert!(!t.says_stopping(10, t0 + Duration::from_secs(1), mercy));
    assert!(t.says_stopping(10, t0 + STABLE_AFTER, mercy));
    assert_eq!(t.missing(t0 + STABLE_AFTER), vec![(id(1), 1)]);
}

#[test]
fn pending_forks_time_out_and_stale_ones_are_dropped() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(5);
    let mut t = table(2);
    t.slots[0].pending = Some(Pending {
        generation: 1,
        since: t0,
        asked: Some(t0),
    });
    assert_eq!(t.missing(t0), vec![(id(2), 1)], "slot 1 waits for its fork");
    assert_eq!(t.next_deadline(t0, None, timeout), Some(t0 + timeout));
    assert_eq!(t.expire_pending(t0 + timeout, timeout), vec![(id(1), 1)]);
    t.slots[1].pending = Some(Pending {
        generation: 1,
        since: t0,
        asked: None,
    });
    t.retarget(id(2), 2);
    assert_eq!(t.missing(t0), vec![(id(1), 1), (id(2), 2)]);
    assert_eq!(t.slots[1].pending, None);
}

#[test]
fn kills_are_marked_once() {
    let t0 = Instant::now();
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 20, 2, 2, t0);
    assert_eq!(t.kill_where(|w| w.generation < 2), vec![10]);
    assert_eq!(t.kill_where(|_| true), vec![20]);
    assert!(t.kill_where(|_| true).is_empty());
}

/// A table with the given live workers `(pid, slot, generation, ready)` and slot targets.
fn with(workers: &[(i32, u32, u64, bool)], targets: &[u64]) -> Table {
    let t0 = Instant::now();
    let mut t = table(targets.len());
    for (s, &g) in t.slots.iter_mut().zip(targets) {
        s.target = g;
    }
    for &(pid, slot, g, is_ready) in workers {
        add(&mut t, pid, slot, g, t0);
        if is_ready {
            ready(&mut t, pid, t0);
        }
    }
    t
}

#[test]
fn a_starting_worker_of_an_old_target_is_retired_at_once() {
    // Slot 1: ready gen 1 serving, starting gen 2 (a reload), now targeting gen 3.
    let t = with(
        &[(10, 1, 1, true), (20, 1, 2, false), (30, 1, 3, false)],
        &[3],
    );
    assert_eq!(t.replaced(), vec![20]);
}

#[test]
fn reloads_faster_than_readiness_leave_one_old_and_one_new_per_slot() {
    let t0 = Instant::now();
    let mut t = with(&[(10, 1, 1, true), (11, 2, 1, true)], &[1, 1]);
    let mut pid = 100;
    for g in 2..200u64 {
        t.retarget_all(g);
        for (id, g) in t.missing(t0) {
            pid += 1;
            add(&mut t, pid, id.get(), g, t0);
        }
        for p in t.replaced() {
            t.retire(p, t0, Duration::from_secs(60));
        }
        // The retired ones drain (and exit); only two live workers per slot remain.
        let live = t.workers.iter().filter(|w| w.alive_for_slot()).count();
        assert_eq!(live, 4, "generation {g}");
        let drained: Vec<i32> = t
            .workers
            .iter()
            .filter(|w| !w.alive_for_slot())
            .map(|w| w.pid)
            .collect();
        for p in drained {
            t.on_exit(p, "exited 0", t0, false);
        }
    }
    let mut left: Vec<(u32, u64, bool)> = t
        .workers
        .iter()
        .map(|w| (w.slot.get(), w.generation, w.is_ready()))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![(1, 1, true), (1, 199, false), (2, 1, true), (2, 199, false)]
    );
}

#[test]
fn the_old_worker_keeps_serving_until_the_new_one_is_ready() {
    assert!(with(&[(10, 1, 1, true), (20, 1, 2, false)], &[2])
        .replaced()
        .is_empty());
    assert_eq!(
        with(&[(10, 1, 1, true), (20, 1, 2, true)], &[2]).replaced(),
        vec![10]
    );
}

#[test]
fn only_the_newest_ready_worker_of_a_slot_serves_until_its_target_is_ready() {
    // Gen 2 got ready after the slot already targeted gen 3: it replaces gen 1.
    let t = with(
        &[
            (10, 1, 1, true),
            (20, 1, 2, true),
            (30, 1, 3, false),
            (31, 2, 3, true),
        ],
        &[3, 3],
    );
    assert_eq!(t.replaced(), vec![10]);
}

#[test]
fn workers_of_removed_slots_and_a_chain_in_progress() {
    // Slot 3 is gone; slot 2 still targets gen 1 (the chain has not reached it).
    let mut t = with(
        &[
            (10, 1, 1, true),
            (20, 1, 2, false),
            (11, 2, 1, true),
            (12, 3, 1, true),
        ],
        &[2, 1, 1],
    );
    t.resize(2, 2);
    assert_eq!(t.replaced(), vec![12]);
}

/// Two slots: generation 1 (pids 10, 11) replaced by a ready generation 2 (pids 20, 21).
fn replaced_pair(t0: Instant) -> Table {
    let mut t = table(2);
    for (pid, slot) in [(10, 1), (11, 2)] {
        add(&mut t, pid, slot, 1, t0);
        ready(&mut t, pid, t0);
    }
    for s in [1, 2] {
        t.retarget(id(s), 2);
    }
    for (pid, slot) in [(20, 1), (21, 2)] {
        add(&mut t, pid, slot, 2, t0);
        ready(&mut t, pid, t0);
    }
    t
}

#[test]
fn replaced_ready_workers_park_and_parked_ones_do_not_hold_a_reload() {
    let t0 = Instant::now();
    let mut t = replaced_pair(t0);
    let mut replaced = t.replaced();
    replaced.sort();
    assert_eq!(replaced, vec![10, 11]);
    for pid in [10, 11] {
        assert!(t.parkable(pid));
        assert!(t.park(pid, t0, Duration::from_secs(10)));
    }
    // Parking: the reload waits for their requests; parked: it is complete.
    assert!(!t.complete(2));
    assert_eq!(t.snapshot_generation(), Some(1));
    assert!(t.set_parked(10).is_some());
    assert!(t.set_parked(11).is_some());
    assert!(t.complete(2));
    assert!(t.replaced().is_empty(), "parked workers are not retired");
    assert!(t.missing(t0).is_empty());
    // A parking deadline is offered like a drain; a parked worker has none.
    assert_eq!(t.next_deadline(t0, None, Duration::from_secs(60)), None);
    assert_eq!(t.snapshot_since(), Some(t0));
}

#[test]
fn a_rollback_restores_parked_workers_and_replaces_the_current_ones() {
    let t0 = Instant::now();
    let mut t = replaced_pair(t0);
    for pid in [10, 11] {
        t.park(pid, t0, Duration::from_secs(10));
        t.set_parked(pid);
    }
    let restored = t.restore(1, t0);
    assert_eq!(restored, vec![(id(1), 10), (id(2), 11)]);
    assert_eq!(t.slots[0].target, 1);
    assert!(t.snapshot_generation().is_none());
    // Resuming: the current workers serve on until the restored ones say they accept.
    assert!(t.replaced().is_empty());
    assert!(t.missing(t0).is_empty());
    assert_eq!(
        t.next_deadline(t0, None, Duration::from_secs(60)),
        Some(t0 + RESUME_GRACE)
    );
    assert!(t.set_ready(10, t0).is_some());
    assert_eq!(t.replaced(), vec![20]);
    // One that never says so counts as serving after the grace.
    assert!(matches!(
        t.expire(t0 + RESUME_GRACE, None, Duration::from_secs(60))[..],
        [Expired::Resumed(11)]
    ));
    let mut replaced = t.replaced();
    replaced.sort();
    assert_eq!(replaced, vec![20, 21]);
    assert!(!t.settled());
    for pid in [20, 21] {
        t.retire(pid, t0, Duration::from_secs(10));
        t.on_exit(pid, "exited 0", t0, false);
    }
    assert!(t.settled());
}

#[test]
fn only_the_newest_snapshot_is_kept_and_a_stand_in_older_than_it_is_not_parked() {
    let t0 = Instant::now();
    let mut t = replaced_pair(t0);
    t.park(10, t0, Duration::from_secs(10));
    t.set_parked(10);
    // Slot 1 has a parked worker of generation 1 already: the slot's next one of the same
    // generation could not be parked too.
    assert_eq!(t.snapshot_except(1), Vec::<i32>::new());
    assert_eq!(t.snapshot_except(2), vec![10]);
    // A parked generation 2 worker makes generation 1 the one to drop.
    t.retarget(id(2), 3);
    add(&mut t, 31, 2, 3, t0);
    ready(&mut t, 31, t0);
    assert!(t.parkable(21));
    t.park(21, t0, Duration::from_secs(10));
    assert_eq!(t.snapshot_generation(), Some(2));
    assert_eq!(t.snapshot_except(2), vec![10]);
    // Slot 2's generation 1 worker (a stand-in older than the snapshot) is not parked.
    assert!(!t.parkable(11));
}

#[test]
fn an_aborted_reload_unparks_the_old_worker_of_a_slot_already_replaced() {
    let t0 = Instant::now();
    let mut t = replaced_pair(t0);
    t.park(10, t0, Duration::from_secs(10));
    t.set_parked(10);
    // Slot 2 still has its ready old worker: only slot 1 needs its parked one back.
    assert_eq!(t.unpark_older(2, None, t0), vec![10]);
    let back = t.abort_to_older(2);
    assert_eq!(back, vec![(id(1), 1), (id(2), 1)]);
    let mut replaced = t.replaced();
    replaced.sort();
    assert_eq!(replaced, vec![20, 21]);
}

#[test]
fn a_parked_worker_of_a_removed_slot_is_let_go() {
    let t0 = Instant::now();
    let mut t = replaced_pair(t0);
    t.park(11, t0, Duration::from_secs(10));
    t.set_parked(11);
    assert!(t.snapshot_without_slot().is_empty());
    t.resize(1, 2);
    assert_eq!(t.snapshot_without_slot(), vec![11]);
    assert!(t.retire(11, t0, Duration::from_secs(10)));
    assert!(t.snapshot_generation().is_none());
}
