//! The master's signal table (BEHAVIOUR §1.3), one test per row, against the real daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use uwsgi_tests::*;

/// The inode of the TCP listener on `port`, from /proc/net/tcp.
fn listener_inode(port: u16) -> String {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let needle = format!(":{port:04X} ");
    table
        .lines()
        .skip(1)
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1).is_some_and(|a| a.ends_with(needle.trim_end())) && f.get(3) == Some(&"0A")
        })
        .map(|l| l.split_whitespace().nth(9).unwrap().to_string())
        .expect("listener in /proc/net/tcp")
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn sighup_reloads_in_place_keeping_pid_and_listener() {
    let dir = TestDir::new("sighup");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let inode = listener_inode(port_of(&d.addr));
    let before = d.worker_pids();
    d.signal(libc::SIGHUP);
    let s = d.wait_generation(2);
    assert_eq!(s["pid"].as_i64(), Some(d.pid as i64), "master pid changed");
    assert_eq!(common::pidfile::read(&d.pidfile).unwrap().pid, d.pid);
    let inode_after = listener_inode(port_of(&d.addr));
    assert_eq!(inode, inode_after, "the listener was re-bound");
    assert!(
        socket_inodes(d.pid).contains(&format!("socket:[{inode}]")),
        "master lost its listener fd"
    );
    let after = d.worker_pids();
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "old workers still in service: {before:?} {after:?}"
    );
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete");
    assert_eq!(d.get("/").unwrap().0, 200);
    d.wait_log("re-executing");
}

#[test]
fn sigterm_is_a_brutal_reload_that_cuts_requests_in_flight() {
    let dir = TestDir::new("sigterm");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let slow = d.request_in_flight("/sleep?ms=5000");
    let old = d.worker_pids()[0];
    d.signal(libc::SIGTERM);
    d.wait_generation(2);
    assert!(
        slow.join().unwrap().is_err(),
        "a brutal reload let the request finish"
    );
    assert!(!alive(old as i32), "old worker survived a brutal reload");
    assert_eq!(d.stats()["pid"].as_i64(), Some(d.pid as i64));
}

#[test]
fn sigterm_with_die_on_term_stops_gracefully_after_requests_finish() {
    let dir = TestDir::new("die-on-term");
    let mut d = Daemon::start(&dir, &["--processes", "2", "--die-on-term"]);
    let slow = d.request_in_flight("/sleep?ms=400");
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "graceful stop exit status");
    assert_eq!(
        slow.join().unwrap().unwrap(),
        (200, "slept 400 ms\n".to_string())
    );
    wait_for("workers gone", Duration::from_secs(5), || {
        group_members(d.pid).is_empty().then_some(())
    });
}

fn assert_brutal_stop(sig: i32, name: &str) {
    let dir = TestDir::new(name);
    let mut d = Daemon::start(&dir, &["--processes", "2"]);
    let workers = d.worker_pids();
    let slow = d.request_in_flight("/sleep?ms=5000");
    d.signal(sig);
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        slow.join().unwrap().is_err(),
        "{name}: the request in flight was not cut"
    );
    for w in workers {
        wait_for("worker gone", Duration::from_secs(5), || {
            (!alive(w as i32)).then_some(())
        });
    }
}

#[test]
fn sigint_kills_the_stack_at_once() {
    assert_brutal_stop(libc::SIGINT, "sigint");
}

#[test]
fn sigquit_kills_the_stack_at_once() {
    assert_brutal_stop(libc::SIGQUIT, "sigquit");
}

#[test]
fn sigusr1_logs_statistics() {
    let dir = TestDir::new("sigusr1");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    for _ in 0..3 {
        d.get("/").unwrap();
    }
    d.signal(libc::SIGUSR1);
    let log = d.wait_log("statistics: generation 1");
    assert!(
        log.contains("worker 1 pid") && log.contains("worker 2 pid"),
        "{log}"
    );
    d.assert_alive();
}

#[test]
fn sigusr2_logs_what_each_worker_is_doing_and_never_kills() {
    let dir = TestDir::new("sigusr2");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let slow = d.request_in_flight("/sleep?ms=1500");
    d.signal(libc::SIGUSR2);
    let log = d.wait_log("serving \"GET /sleep?ms=1500\"");
    assert!(
        log.contains(": idle"),
        "the idle worker is not reported: {log}"
    );
    assert_eq!(slow.join().unwrap().unwrap().0, 200);
    d.assert_alive();
}

#[test]
fn sigurg_without_snapshot_changes_nothing() {
    let dir = TestDir::new("sigurg");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let pids = d.worker_pids();
    d.signal(libc::SIGURG);
    d.wait_log("no snapshot is available");
    assert_eq!(d.worker_pids(), pids);
    assert_eq!(d.generation(), 1);
}

#[test]
fn sigtstp_pauses_with_connections_waiting_in_the_backlog_then_resumes() {
    let dir = TestDir::new("sigtstp");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    d.signal(libc::SIGTSTP);
    d.wait_stats("paused", |s| {
        (s["uwsgid"]["paused"] == true
            && s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["status"] == "pause"))
        .then_some(())
    });
    d.wait_log("worker 1: paused");
    d.wait_log("worker 2: paused");
    // The kernel accepts the connection into the backlog; nobody answers while paused.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = s.read(&mut buf);
    assert!(early.is_err(), "a paused instance answered: {early:?}");
    d.signal(libc::SIGTSTP);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(
        parse_response(&answer).unwrap(),
        (200, "Hello World".to_string())
    );
    d.wait_stats("resumed", |s| {
        (s["uwsgid"]["paused"] == false).then_some(())
    });
}

#[test]
fn sigwinch_is_forwarded_to_every_worker() {
    let dir = TestDir::new("sigwinch");
    let d = Daemon::start(&dir, &["--processes", "3"]);
    d.signal(libc::SIGWINCH);
    wait_for("three workers woken", Duration::from_secs(10), || {
        (d.log_count("SIGWINCH: woken up") == 3).then_some(())
    });
    assert_eq!(d.get("/").unwrap().0, 200);
}

fn assert_fatal(sig: i32, name: &str, text: &str) {
    let dir = TestDir::new(name);
    let mut d = Daemon::start(&dir, &["--processes", "2"]);
    let workers = d.worker_pids();
    d.signal(sig);
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.signal(),
        Some(sig),
        "{name}: the master must die by the signal"
    );
    let log = d.log_text();
    assert!(
        log.contains(text) && log.contains("*** backtrace of"),
        "{name}: {log}"
    );
    for w in workers {
        wait_for(
            "worker gone with its master",
            Duration::from_secs(5),
            || (!alive(w as i32)).then_some(()),
        );
    }
}

#[test]
fn sigsegv_logs_a_backtrace_and_dies_by_the_signal() {
    assert_fatal(libc::SIGSEGV, "sigsegv", "got Segmentation Fault");
}

#[test]
fn sigfpe_logs_a_backtrace_and_dies_by_the_signal() {
    assert_fatal(libc::SIGFPE, "sigfpe", "got Floating Point Exception");
}

#[test]
fn sigpipe_is_ignored() {
    let dir = TestDir::new("sigpipe");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    d.signal(libc::SIGPIPE);
    d.signal(libc::SIGUSR1);
    d.wait_log("statistics:");
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn signals_during_startup_and_reexec_are_delivered_not_lost_or_fatal() {
    let dir = TestDir::new("early-signals");
    // Right after spawn: the master has not parsed its options yet. (Before its first
    // instruction no process can defer a signal, so wait for the mask it sets first.)
    let mut d = Daemon::spawn(&dir, &["--processes", "2"]);
    wait_for("the signal mask", Duration::from_secs(5), || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).ok()?;
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))?
            .trim()
            .to_string();
        let mask = u64::from_str_radix(&blocked, 16).ok()?;
        (mask & (1 << (libc::SIGUSR1 - 1)) != 0).then_some(())
    });
    d.signal(libc::SIGUSR1);
    d.signal(libc::SIGHUP);
    d.wait_log("statistics:");
    wait_for("the early SIGHUP's reload", Duration::from_secs(20), || {
        d.try_stats()
            .filter(|s| s["uwsgid"]["generation"].as_u64() >= Some(2))
            .map(|_| ())
    });
    d.wait_running();
    // Now during a re-exec: a reload immediately followed by signals uWSGI dies of.
    d.signal(libc::SIGHUP);
    d.signal(libc::SIGUSR1);
    d.signal(libc::SIGUSR2);
    d.signal(libc::SIGTSTP);
    let s = d.wait_generation(3);
    // The pause taken during the reload carries over to the new generation.
    assert_eq!(s["uwsgid"]["paused"], true);
    d.wait_log("SIGUSR2 from");
    // (A second identical signal sent while the first is pending merges with it in the
    // kernel, so resume only once the pause is visible.)
    d.signal(libc::SIGTSTP);
    d.wait_stats("resumed", |s| {
        (s["uwsgid"]["paused"] == false).then_some(())
    });
    assert_eq!(d.get("/").unwrap().0, 200);
}
