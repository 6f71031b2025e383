//! Cheaper decisions: validation as uWSGI validates, growth on busyness or backlog, bounded by
//! the maximum, one removal at a time after the idle wait, never below the minimum.
use super::*;

fn spare(min: u32, step: u32, overload: u64) -> Cheaper {
    Cheaper {
        min,
        initial: min,
        step,
        algo: Algo::Spare,
        overload,
    }
}

fn seen(active: usize, ready: usize, idle: usize) -> Observed {
    Observed {
        active,
        ready,
        idle,
        ..Observed::default()
    }
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

#[test]
fn validation_follows_uwsgi() {
    assert_eq!(validate(None, None, None, None, None, 4), Ok(None));
    assert_eq!(validate(Some(0), None, None, None, None, 4), Ok(None));
    let c = validate(Some(2), None, None, None, None, 4)
        .unwrap()
        .unwrap();
    assert_eq!(
        c,
        Cheaper {
            initial: 2,
            ..spare(2, 1, 3)
        }
    );
    let e = validate(Some(4), None, None, None, None, 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be lower than --processes (4)"), "{e}");
    // cheaper-initial is brought within cheaper..=processes.
    let c = validate(Some(2), Some(1), None, None, None, 4)
        .unwrap()
        .unwrap();
    assert_eq!(c.initial, 2);
    let c = validate(Some(2), Some(9), None, None, None, 4)
        .unwrap()
        .unwrap();
    assert_eq!(c.initial, 4);
    let c = validate(Some(1), None, Some(2), Some("backlog"), Some(5), 8)
        .unwrap()
        .unwrap();
    assert_eq!((c.step, c.algo, c.overload), (2, Algo::Backlog, 5));
    let e = validate(Some(1), None, None, Some("busyness"), None, 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--cheaper-algo busyness"), "{e}");
    let e = validate(None, None, Some(2), None, None, 4)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--cheaper-step applies to cheaper mode only"),
        "{e}"
    );
    assert!(validate(Some(1), None, Some(0), None, None, 4).is_err());
}

#[test]
fn spare_grows_by_step_once_all_were_busy_for_the_overload() {
    let c = spare(1, 2, 2);
    let t0 = Instant::now();
    let mut st = State::default();
    let busy = seen(1, 1, 0);
    assert_eq!(decide(&c, 4, &mut st, &busy, t0), Change::Stay);
    assert_eq!(decide(&c, 4, &mut st, &busy, secs(t0, 1.9)), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &busy, secs(t0, 2.0)),
        Change::Grow(2)
    );
    // The wait starts again.
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 0), secs(t0, 2.5)),
        Change::Stay
    );
    // Bounded by the maximum: 3 of 4 can add only 1.
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 0), secs(t0, 4.5)),
        Change::Grow(1)
    );
    // At the maximum nothing is added.
    let mut st = State::default();
    assert_eq!(decide(&c, 4, &mut st, &seen(4, 4, 0), t0), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(4, 4, 0), secs(t0, 9.0)),
        Change::Stay
    );
}

#[test]
fn an_idle_worker_breaks_the_busy_wait() {
    let c = spare(1, 1, 2);
    let t0 = Instant::now();
    let mut st = State::default();
    assert_eq!(decide(&c, 4, &mut st, &seen(2, 2, 0), t0), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 1), secs(t0, 1.0)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 0), secs(t0, 2.0)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 0), secs(t0, 3.9)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 0), secs(t0, 4.0)),
        Change::Grow(1)
    );
}

#[test]
fn nothing_is_decided_while_a_step_is_starting() {
    let c = spare(1, 1, 0);
    let t0 = Instant::now();
    let mut st = State::default();
    let starting = Observed {
        starting: 1,
        ..seen(2, 1, 0)
    };
    assert_eq!(decide(&c, 4, &mut st, &starting, t0), Change::Stay);
    assert_eq!(decide(&c, 4, &mut st, &seen(2, 2, 0), t0), Change::Grow(1));
}

#[test]
fn idle_workers_are_removed_one_at_a_time_never_below_the_minimum() {
    let c = spare(1, 1, 2);
    let t0 = Instant::now();
    let mut st = State::default();
    // One idle worker is the stable state: nothing removed.
    assert_eq!(decide(&c, 4, &mut st, &seen(3, 3, 1), t0), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 1), secs(t0, 10.0)),
        Change::Stay
    );
    let t1 = secs(t0, 10.0);
    assert_eq!(decide(&c, 4, &mut st, &seen(3, 3, 3), t1), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 3), secs(t1, 1.9)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 3), secs(t1, 2.0)),
        Change::Shrink
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 2), secs(t1, 3.0)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(2, 2, 2), secs(t1, 4.0)),
        Change::Shrink
    );
    // At the minimum: kept.
    assert_eq!(
        decide(&c, 4, &mut st, &seen(1, 1, 1), secs(t1, 9.0)),
        Change::Stay
    );
    // A busy spell in between restarts the idle wait.
    let mut st = State::default();
    assert_eq!(decide(&c, 4, &mut st, &seen(3, 3, 2), t0), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 1), secs(t0, 1.0)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 2), secs(t0, 2.0)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 2), secs(t0, 3.9)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 2), secs(t0, 4.0)),
        Change::Shrink
    );
}

#[test]
fn the_idle_wait_is_at_least_a_second() {
    let c = spare(1, 1, 0);
    let t0 = Instant::now();
    let mut st = State::default();
    assert_eq!(decide(&c, 4, &mut st, &seen(3, 3, 3), t0), Change::Stay);
    assert_eq!(
        decide(&c, 4, &mut st, &seen(3, 3, 3), secs(t0, 1.0)),
        Change::Shrink
    );
}

#[test]
fn backlog_grows_when_the_queue_is_over_the_overload() {
    let c = Cheaper {
        algo: Algo::Backlog,
        ..spare(1, 2, 3)
    };
    let t0 = Instant::now();
    let mut st = State::default();
    let q = |queue, idle| Observed {
        queue,
        ..seen(2, 2, idle)
    };
    assert_eq!(decide(&c, 8, &mut st, &q(3, 0), t0), Change::Stay);
    assert_eq!(decide(&c, 8, &mut st, &q(4, 0), t0), Change::Grow(2));
    // Queue over the threshold, even with idle workers (just freed): no removal.
    let mut st = State::default();
    assert_eq!(decide(&c, 8, &mut st, &q(0, 2), t0), Change::Stay);
    assert_eq!(
        decide(&c, 8, &mut st, &q(5, 2), secs(t0, 3.0)),
        Change::Grow(2)
    );
    assert_eq!(
        decide(&c, 8, &mut st, &q(0, 2), secs(t0, 5.9)),
        Change::Stay
    );
    assert_eq!(
        decide(&c, 8, &mut st, &q(0, 2), secs(t0, 9.0)),
        Change::Shrink
    );
}

#[test]
fn counts_across_reloads_and_fifo_changes() {
    let mut config = crate::cli::Config::load(&[
        "uwsgid".to_string(),
        "--processes".into(),
        "6".into(),
        "--cheaper".into(),
        "2".into(),
        "--cheaper-initial".into(),
        "3".into(),
    ])
    .map(|(_, c, _)| c)
    .unwrap();
    assert_eq!(initial_slots(&config), 3);
    assert_eq!(slots_after_reexec(&config, 5), 5);
    assert_eq!(slots_after_reexec(&config, 1), 2);
    assert_eq!(slots_after_reexec(&config, 9), 6);
    assert_eq!(bound_max(&config, 1), 3);
    assert_eq!(slots_for_max(&config, 5, 4), 4);
    assert_eq!(slots_for_max(&config, 3, 7), 3);
    config.recycle.cheaper = None;
    assert_eq!(initial_slots(&config), 6);
    assert_eq!(slots_after_reexec(&config, 2), 6);
    assert_eq!(slots_for_max(&config, 3, 7), 7);
}
