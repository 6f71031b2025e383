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

/// uwsgid as PID 1 of a new PID namespace (a container's init), started by
/// `unshare --pid --fork --mount-proc`: it serves, and a SIGTERM under `--die-on-term` drains
/// the request in flight and exits 0.
#[test]
fn as_pid_1_a_sigterm_under_die_on_term_drains() {
    if !can_unshare() {
        return;
    }
    let dir = TestDir::new("pid1-term");
    let mut d = start_as_pid_1(&dir, &["--demo-routes", "--http-socket", "127.0.0.1:0"]);
    let master = master_host_pid(&d);
    let slow = d.request_in_flight("/sleep?ms=1000");
    // SAFETY: signalling the master we started (unshare's child), by its pid.
    assert_eq!(unsafe { libc::kill(master, libc::SIGTERM) }, 0);
    let (status, _) = slow.join().unwrap().expect("the request in flight was cut");
    assert_eq!(status, 200);
    let exit = d.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}\n{}", d.log_text());
}

/// As PID 1, the orphan an exec worker leaves behind (its child whose parent exited) is handed
/// to uwsgid, which reaps it when it exits: no zombie stays.
#[test]
fn as_pid_1_it_reaps_the_orphans_it_is_handed() {
    if !can_unshare() {
        return;
    }
    let dir = TestDir::new("pid1-reap");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = start_as_pid_1(
        &dir,
        &[
            "--http-socket",
            &addr,
            "--worker-exec",
            "sh -c '(sleep 0.7 &); exec sleep 600'",
            "--worker-ready-timeout",
            "0.1",
        ],
    );
    let master = master_host_pid(&d);
    let children = || -> Vec<(i32, String, bool)> {
        let list = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        list.split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (p, cmd.trim().to_string(), is_zombie(p))
            })
            .collect()
    };
    let orphan = wait_for(
        "the orphan handed to uwsgid",
        Duration::from_secs(10),
        || {
            children()
                .into_iter()
                .find(|(_, cmd, _)| cmd == "sleep 0.7")
                .map(|(p, _, _)| p)
        },
    );
    wait_for("the orphan reaped", Duration::from_secs(10), || {
        (!children().iter().any(|(p, _, _)| *p == orphan)).then_some(())
    });
    // Each worker leaves an orphan; the other one may be exiting at this instant (a zombie
    // for the moment before uwsgid reaps it): no zombie may *stay*.
    wait_for("no zombie child left", Duration::from_secs(10), || {
        children()
            .iter()
            .all(|(_, _, zombie)| !zombie)
            .then_some(())
    });
    drop(d);
}

fn can_unshare() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/usr/bin/unshare").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs root and util-linux's unshare"
        );
        eprintln!("skipped: needs root and /usr/bin/unshare");
        return false;
    }
    true
}

/// The master's pid as seen from here: unshare's only child.
fn master_host_pid(d: &Daemon) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", d.pid)).unwrap();
    children.split_whitespace().next().unwrap().parse().unwrap()
}

/// uwsgid as PID 1 of a new PID namespace, with `--die-on-term`, 2 workers and `extra`.
fn start_as_pid_1(dir: &TestDir, extra: &[&str]) -> Daemon {
    let uwsgid = bin("uwsgid");
    let (pidfile, fifo, stats) = (
        dir.join("uwsgid.pid"),
        dir.join("master.fifo"),
        dir.join("stats.sock"),
    );
    let mut args = vec![
        "--pid",
        "--fork",
        "--mount-proc",
        uwsgid.to_str().unwrap(),
        "--safe-pidfile",
        pidfile.to_str().unwrap(),
        "--master-fifo",
        fifo.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
        "--die-on-term",
        "--processes",
        "2",
    ];
    args.extend_from_slice(extra);
    let mut d = Daemon::spawn_command(
        dir,
        &args,
        std::path::Path::new("/usr/bin/unshare"),
        false,
        &mut |_| {},
    );
    let record = wait_for("the instance record", Duration::from_secs(20), || {
        d.assert_alive();
        common::discovery::read_record(&d.pidfile).ok()
    });
    assert_eq!(record.pid, 1, "not PID 1 in its namespace");
    d.addr = record.listeners[0].clone();
    d.wait_stats("every worker ready", |s| all_ready(s).then_some(()));
    d
}
