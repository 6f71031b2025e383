//! Harakiri and recycling decisions: the deadline, jittered limits, lifetime, and the table's
//! replace-before-retire for a recycled worker.
use super::*;
use crate::master::table::tests::{add, id, ready, table};

fn limits() -> Recycle {
    Recycle {
        min_lifetime: Duration::from_secs(10),
        ..Recycle::default()
    }
}

fn seen(lived_s: u64, requests: u64) -> Seen {
    Seen {
        lived: Duration::from_secs(lived_s),
        requests,
        ..Seen::default()
    }
}

#[test]
fn harakiri_fires_at_the_limit_from_the_request_start() {
    let limit = Duration::from_secs(2);
    let start_us = 1_000_000_000_000;
    let now_ms = |after_ms: u64| start_us / 1000 + after_ms;
    assert_eq!(
        harakiri_due(limit, 0, now_ms(99_000)),
        None,
        "no request in flight"
    );
    assert_eq!(harakiri_due(limit, start_us, now_ms(1_999)), None);
    assert_eq!(
        harakiri_due(limit, start_us, now_ms(2_000)),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        harakiri_due(limit, start_us, now_ms(5_500)),
        Some(Duration::from_millis(5_500))
    );
    // A start in the future (clock step) is not due.
    assert_eq!(harakiri_due(limit, start_us, now_ms(0) - 10), None);
}

#[test]
fn max_requests_is_jittered_per_slot() {
    let r = Recycle {
        max_requests: Some(100),
        max_requests_delta: 7,
        ..limits()
    };
    let each: Vec<u64> = (1..=4)
        .map(|n| max_requests_of(&r, id(n)).unwrap())
        .collect();
    assert_eq!(each, [107, 114, 121, 128]);
    assert_eq!(recycle_due(&r, id(2), &seen(60, 113)), None);
    assert_eq!(
        recycle_due(&r, id(2), &seen(60, 114)),
        Some(Cause::MaxRequests)
    );
    assert_eq!(max_requests_of(&limits(), id(1)), None);
}

#[test]
fn min_lifetime_holds_back_requests_and_memory_but_not_max_lifetime() {
    let r = Recycle {
        max_requests: Some(5),
        reload_on_rss: Some(1),
        max_lifetime: Some(Duration::from_secs(3)),
        min_lifetime: Duration::from_secs(10),
        ..Recycle::default()
    };
    let young = Seen {
        rss: Some(500 << 20),
        ..seen(2, 1000)
    };
    assert_eq!(recycle_due(&r, id(1), &young), None);
    let r = Recycle {
        max_lifetime: Some(Duration::from_secs(1)),
        ..r
    };
    assert_eq!(recycle_due(&r, id(1), &young), Some(Cause::Lifetime));
}

#[test]
fn lifetime_is_jittered_per_slot() {
    let r = Recycle {
        max_lifetime: Some(Duration::from_secs(60)),
        max_lifetime_delta: Duration::from_secs(5),
        ..limits()
    };
    assert_eq!(max_lifetime_of(&r, id(1)), Some(Duration::from_secs(65)));
    assert_eq!(max_lifetime_of(&r, id(3)), Some(Duration::from_secs(75)));
    assert_eq!(recycle_due(&r, id(3), &seen(74, 0)), None);
    assert_eq!(recycle_due(&r, id(3), &seen(75, 0)), Some(Cause::Lifetime));
}

#[test]
fn memory_limits_are_megabytes_and_need_a_reading() {
    let r = Recycle {
        reload_on_rss: Some(100),
        reload_on_pss: Some(50),
        ..limits()
    };
    let at = |rss: Option<u64>, pss: Option<u64>| Seen {
        rss,
        pss,
        ..seen(60, 0)
    };
    assert_eq!(
        recycle_due(&r, id(1), &at(None, None)),
        None,
        "not read this tick"
    );
    assert_eq!(recycle_due(&r, id(1), &at(Some(100 << 20), None)), None);
    assert_eq!(
        recycle_due(&r, id(1), &at(Some((100 << 20) + 1), None)),
        Some(Cause::Rss)
    );
    assert_eq!(
        recycle_due(&r, id(1), &at(Some(10 << 20), Some(51 << 20))),
        Some(Cause::Pss)
    );
}

#[test]
fn a_recycled_worker_serves_until_its_replacement_is_ready() {
    let t0 = Instant::now();
    let mut t = table(2);
    add(&mut t, 10, 1, 1, t0);
    add(&mut t, 20, 2, 1, t0);
    ready(&mut t, 10, t0);
    ready(&mut t, 20, t0);
    assert!(t.missing(t0).is_empty());
    t.worker_mut(10).unwrap().recycle = Some(Cause::MaxRequests);
    // Its slot wants a worker; the recycled one is not retired yet.
    assert_eq!(t.missing(t0), vec![(id(1), 1)]);
    assert!(t.replaced().is_empty());
    add(&mut t, 11, 1, 1, t0);
    assert!(
        t.missing(t0).is_empty(),
        "one replacement, not one per turn"
    );
    assert!(t.replaced().is_empty(), "the replacement is still starting");
    ready(&mut t, 11, t0);
    assert_eq!(t.replaced(), vec![10]);
    assert!(t.retire(10, t0, Duration::from_secs(5)));
    assert!(t.replaced().is_empty(), "retired once");
    t.on_exit(10, "exited 0", t0, false).unwrap();
    assert!(t.complete(1));
    assert_eq!(t.workers.len(), 2);
}

#[test]
fn a_harakiri_kill_leaves_the_slot_to_refill() {
    let t0 = Instant::now();
    let mut t = table(1);
    add(&mut t, 10, 1, 1, t0);
    ready(&mut t, 10, t0);
    assert_eq!(t.kill_where(|w| w.pid == 10), vec![10]);
    assert_eq!(t.missing(t0), vec![(id(1), 1)]);
    let (_, exit) = t.on_exit(10, "killed by signal 9", t0, false).unwrap();
    assert_eq!(exit, Exit::Killed, "no failed start, no backoff");
    assert_eq!(t.slot(id(1)).unwrap().next_spawn, None);
}

#[test]
fn the_tick_is_offered_only_with_a_limit() {
    let now = Instant::now();
    let tick = Ticker::default();
    assert_eq!(tick.next_deadline(&limits(), now), None);
    let r = Recycle {
        harakiri: Some(Duration::from_secs(1)),
        ..limits()
    };
    assert_eq!(tick.next_deadline(&r, now), Some(now));
    let mut tick = Ticker {
        next: Some(now + TICK),
        ..Ticker::default()
    };
    assert_eq!(tick.next_deadline(&r, now), Some(now + TICK));
    // A stack dump ending before the tick is the deadline.
    let soon = now + Duration::from_millis(100);
    tick.dumping.push(Dumping {
        pid: 10,
        slot: id(1),
        at: soon,
        graceful: None,
    });
    assert_eq!(tick.next_deadline(&r, now), Some(soon));
}

#[test]
fn stack_dumps_are_done_once_their_wait_is_over() {
    let t0 = Instant::now();
    let d = |pid, ms| Dumping {
        pid,
        slot: id(1),
        at: t0 + Duration::from_millis(ms),
        graceful: None,
    };
    let mut list = vec![d(1, 100), d(2, 500)];
    assert!(dumps_done(&mut list, t0).is_empty());
    assert_eq!(list.len(), 2);
    assert_eq!(
        dumps_done(&mut list, t0 + Duration::from_millis(100)),
        vec![d(1, 100)]
    );
    assert_eq!(list, vec![d(2, 500)]);
    assert_eq!(dumps_done(&mut list, t0 + DUMP_WAIT), vec![d(2, 500)]);
    assert!(list.is_empty());
}

#[test]
fn counts_sum_by_cause() {
    let mut a = Counts::default();
    a.add(Cause::Harakiri);
    a.add(Cause::MaxRequests);
    a.add(Cause::MaxRequests);
    let mut b = Counts::default();
    b.add(Cause::Pss);
    let s = a.sum(&b);
    assert_eq!((s.harakiri, s.max_requests, s.pss, s.rss), (1, 2, 1, 0));
    assert_eq!(s.wire().reload_on_pss, 1);
}
