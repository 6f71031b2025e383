//! Signals to the whole process group (`kill -TERM -PGID`, a container runtime, a terminal):
//! the master alone acts on them. Built-in workers ignore stop signals that did not come from
//! the master; exec workers run in their own process group, so a group signal never reaches
//! them. A group SIGTERM under `--die-on-term` therefore drains the requests in flight.

use std::time::Duration;

use uwsgi_tests::*;

fn group_signal(d: &Daemon, sig: i32) {
    // SAFETY: signalling the process group the daemon leads (the harness starts it so).
    let ret = unsafe { libc::kill(-d.pid, sig) };
    assert_eq!(ret, 0, "kill(-{}, {sig})", d.pid);
}

#[test]
fn a_group_sigterm_under_die_on_term_drains_the_request_in_flight() {
    let dir = TestDir::new("pgrp-term");
    let mut d = Daemon::start(&dir, &["--processes", "2", "--die-on-term"]);
    let slow = d.request_in_flight("/sleep?ms=1000");
    group_signal(&d, libc::SIGTERM);
    let (status, _) = slow.join().unwrap().expect("the request in flight was cut");
    assert_eq!(status, 200);
    let exit = d.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}");
    d.wait_log("ignored: the master decides");
}

#[test]
fn a_group_sighup_is_one_reload_by_the_master() {
    let dir = TestDir::new("pgrp-hup");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let before = d.worker_pids();
    group_signal(&d, libc::SIGHUP);
    let s = d.wait_generation(2);
    assert!(all_ready(&s), "{s}");
    assert!(d.worker_pids().iter().all(|p| !before.contains(p)));
    d.wait_log("ignored: the master decides");
    // Nothing was lost: the workers of generation 1 were retired by the master, not by the
    // signal (no failed or unexpected exit is logged).
    let log = d.log_text();
    assert!(!log.contains("unexpected"), "{log}");
}
