//! The default worker count (issue 15): without `--processes` it is capped by the CPUs uwsgid
//! may use (cgroup v2 quota, then affinity), and the log says where the number came from. The
//! cgroup reader itself is tested on fixture trees (`tests/fixtures/cgroup/`, uwsgid's
//! `sizing` unit tests); here the affinity is set with `taskset` (util-linux).

use std::path::Path;
use std::time::Duration;

use crate::chan::*;
use uwsgi_tests::*;

/// Start a named instance (documented default: 4 workers) under `taskset -c CPUS`.
fn named_under_taskset(dir: &TestDir, cpus: &str) -> Daemon {
    let uwsgid = bin("uwsgid");
    let args = [
        "-c",
        cpus,
        uwsgid.to_str().unwrap(),
        "--name",
        "sizing",
        "--http-socket",
        "127.0.0.1:0",
    ];
    let mut d = Daemon::spawn_with(dir, &args, Path::new("/usr/bin/taskset"), false);
    let inst = dir.join("runtime/sizing");
    d.pidfile = inst.join("uwsgid.pid");
    d.stats = inst.join("stats.sock");
    d.fifo = inst.join("master.fifo");
    d
}

fn ready_workers(d: &Daemon, n: usize) -> serde_json::Value {
    wait_for(
        &format!("{n} ready workers"),
        Duration::from_secs(20),
        || {
            d.assert_alive();
            let s = fetch_stats(&StatsAt::Unix(d.stats.clone()), false)?;
            (workers(&s).len() == n && all_ready(&s)).then_some(s)
        },
    )
}

fn have_taskset() -> bool {
    let ok = std::process::Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "taskset (util-linux) is missing"
        );
        eprintln!("skipping: taskset (util-linux) is not installed");
    }
    ok
}

#[test]
fn one_allowed_cpu_means_one_worker_for_the_default_four_and_the_log_says_why() {
    if !have_taskset() {
        return;
    }
    let dir = TestDir::new("sizing-1cpu");
    let d = named_under_taskset(&dir, "0");
    let s = ready_workers(&d, 1);
    assert_eq!(s["uwsgid"]["processes"], 1);
    let log = d.wait_log("worker count: ");
    assert!(
        log.contains("worker count: 1 worker(s) from the CPUs uwsgid may run on (affinity: 1 CPU(s)), fewer than the default 4"),
        "{log}"
    );
    assert!(log.contains("with 1 built-in worker(s)"), "{log}");
}

#[test]
fn an_explicit_processes_is_never_capped_and_logs_no_sizing() {
    if !have_taskset() {
        return;
    }
    let dir = TestDir::new("sizing-explicit");
    let uwsgid = bin("uwsgid");
    let pidfile = dir.join("uwsgid.pid");
    let stats = dir.join("stats.sock");
    let args = [
        "-c",
        "0",
        uwsgid.to_str().unwrap(),
        "--http-socket",
        "127.0.0.1:0",
        "--processes",
        "3",
        "--safe-pidfile",
        pidfile.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ];
    let d = Daemon::spawn_with(&dir, &args, Path::new("/usr/bin/taskset"), false);
    ready_workers(&d, 3);
    d.wait_log("with 3 built-in worker(s)");
    assert_eq!(d.log_count("worker count: "), 0, "{}", d.log_text());
}

#[test]
fn uwsgi_style_options_default_to_one_worker_and_say_so() {
    let dir = TestDir::new("sizing-uwsgi");
    let d = Daemon::start(&dir, &[]);
    assert_eq!(workers(&d.stats()).len(), 1);
    let log = d.wait_log("worker count: 1 worker(s), the default without --processes (");
    assert!(log.contains("CPU(s) from "), "{log}");
}
