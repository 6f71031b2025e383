//! Real faults, raised by the CPU rather than sent with `kill(2)`: a built-in worker that reads
//! through a null pointer or divides by zero dies by SIGSEGV / SIGFPE, its message reaches the
//! log, the master logs the death by that signal and respawns the worker; a master that faults
//! dies by SIGSEGV and leaves no worker behind. The trigger is test-only (`uwsgid/src/fault.rs`:
//! `UWSGID_TEST_FAULT`, and for a worker the `/fault` demo route).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use uwsgi_tests::*;

/// A uwsgid with the harness's usual arguments and `UWSGID_TEST_FAULT=mode`, through env(1)
/// (which execs uwsgid in place: the pid is uwsgid's).
fn start_armed(dir: &TestDir, mode: &str, processes: &str) -> Daemon {
    let uwsgid = bin("uwsgid");
    let (pidfile, fifo, stats) = (
        dir.join("uwsgid.pid"),
        dir.join("master.fifo"),
        dir.join("stats.sock"),
    );
    let var = format!("UWSGID_TEST_FAULT={mode}");
    let args = [
        var.as_str(),
        uwsgid.to_str().unwrap(),
        "--safe-pidfile",
        pidfile.to_str().unwrap(),
        "--master-fifo",
        fifo.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
        "--demo-routes",
        "--http-socket",
        "127.0.0.1:0",
        "--processes",
        processes,
    ];
    let mut d = Daemon::spawn_with(dir, &args, std::path::Path::new("/usr/bin/env"), false);
    d.wait_running();
    d
}

fn worker_fault(mode: &str, sig: i32, signame: &str, message: &str) {
    let dir = TestDir::new(mode);
    let d = start_armed(&dir, mode, "2");
    let before = d.worker_pids();
    // Which worker takes /fault is the kernel's choice: learn it from the log afterwards.
    let answer = d.get("/fault");
    assert!(answer.is_err(), "the faulting worker answered: {answer:?}");
    let log = d.wait_log(&format!("killed by signal {sig} ({signame})"));
    let victim = *before
        .iter()
        .find(|p| log.contains(&format!("process {p} got {message}")))
        .unwrap_or_else(|| panic!("no fault message from {before:?}: {log}"));
    assert!(
        log.contains(&format!("(pid {victim}) died")),
        "the master did not log the death of {victim}: {log}"
    );
    // Respawned: two ready workers again, the victim not among them, the others untouched.
    let s = d.wait_stats("a worker respawned", |s| {
        let pids: Vec<i64> = s["workers"]
            .as_array()?
            .iter()
            .map(|w| w["pid"].as_i64().unwrap_or(0))
            .collect();
        (all_ready(s) && pids.len() == 2 && !pids.contains(&victim)).then_some(pids)
    });
    for p in before.iter().filter(|p| **p != victim) {
        assert!(s.contains(p), "worker {p} was replaced too: {s:?}");
    }
    assert!(!alive(victim as i32));
    assert_eq!(d.get("/").unwrap().0, 200);
    // The master itself is untouched.
    assert_eq!(d.stats()["pid"].as_i64(), Some(d.pid as i64));
}

#[test]
fn a_worker_reading_a_null_pointer_dies_by_sigsegv_and_is_respawned() {
    worker_fault("worker-segv", 11, "SIGSEGV", "Segmentation Fault");
}

#[test]
fn a_worker_dividing_by_zero_dies_by_sigfpe_and_is_respawned() {
    worker_fault("worker-fpe", 8, "SIGFPE", "Floating Point Exception");
}

#[test]
fn without_the_variable_the_fault_route_is_an_ordinary_unknown_path() {
    let dir = TestDir::new("fault-unarmed");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let pid = d.worker_pids()[0];
    assert_eq!(d.get("/fault").unwrap().0, 404);
    assert_eq!(d.worker_pids(), vec![pid]);
}

#[test]
fn a_master_reading_a_null_pointer_dies_by_sigsegv_and_leaves_no_worker() {
    let dir = TestDir::new("master-segv");
    let mut d = start_armed(&dir, "master-segv", "3");
    let workers = d.worker_pids();
    assert_eq!(workers.len(), 3);
    d.fifo_write(b"fault");
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "!!! uwsgid process {} got Segmentation Fault !!!",
            d.pid
        )),
        "{log}"
    );
    // PR_SET_PDEATHSIG: every worker goes with its master.
    for w in workers {
        wait_for(
            &format!("worker {w} gone with its master"),
            Duration::from_secs(5),
            || (!alive(w as i32)).then_some(()),
        );
    }
}
