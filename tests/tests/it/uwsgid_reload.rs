//! Graceful reloads lose nothing: no request cut, no connection refused, across 20 reloads;
//! a rebuilt binary takes effect; a bad configuration or a failed execve keeps the old instance;
//! a channel the re-executed master cannot open is logged, not fatal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uwsgi_tests::*;

/// Copy the uwsgid binary with `cp`, in a process of its own: a copy written by this
/// multi-threaded test process could have its write fd inherited by a sibling test's fork,
/// making the exec fail with ETXTBSY.
fn copy_binary(to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg(bin("uwsgid"))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn twenty_graceful_reloads_under_load_lose_nothing() {
    let dir = TestDir::new("reload-loop");
    let d = Daemon::start(&dir, &["--processes", "4"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let slow_ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for n in 0..4 {
        let (addr, stop, ok, slow_ok, errors) = (
            d.addr.clone(),
            stop.clone(),
            ok.clone(),
            slow_ok.clone(),
            errors.clone(),
        );
        clients.push(std::thread::spawn(move || {
            let path = if n == 0 { "/sleep?ms=200" } else { "/" };
            while !stop.load(Ordering::Relaxed) {
                match http_get(&addr, path) {
                    Ok((200, _)) if n == 0 => slow_ok.fetch_add(1, Ordering::Relaxed),
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.lock().unwrap().push(format!("{path}: {other:?}"));
                        0
                    }
                };
            }
        }));
    }
    for g in 2..=21 {
        let served = ok.load(Ordering::Relaxed);
        d.signal(libc::SIGHUP);
        d.wait_generation(g);
        // Make sure traffic really flowed through this generation before the next reload.
        wait_for("requests after the reload", Duration::from_secs(10), || {
            (ok.load(Ordering::Relaxed) > served + 5).then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} failed requests: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        slow_ok.load(Ordering::Relaxed) >= 5,
        "too few slow requests completed"
    );
    eprintln!(
        "20 reloads: {} fast and {} slow requests, 0 errors",
        ok.load(Ordering::Relaxed),
        slow_ok.load(Ordering::Relaxed)
    );
    assert_eq!(d.stats()["pid"].as_i64(), Some(d.pid as i64));
}

#[test]
fn a_slow_request_in_flight_finishes_on_its_old_worker() {
    let dir = TestDir::new("reload-slow");
    let d = Daemon::start(&dir, &["--processes", "1", "--worker-reload-mercy", "30"]);
    let addr = d.addr.clone();
    let slow = std::thread::spawn(move || http_get(&addr, "/sleep?ms=1500"));
    d.wait_stats("busy", |s| {
        (s["workers"][0]["status"] == "busy").then_some(())
    });
    let old = d.worker_pids()[0];
    d.signal(libc::SIGHUP);
    // The new generation serves while the old worker drains.
    let s = d.wait_stats("new worker ready while the old one drains", |s| {
        let draining = s["uwsgid"]["draining"].as_array()?;
        (s["uwsgid"]["generation"] == 2 && all_ready(s) && draining.iter().any(|w| w["pid"] == old))
            .then(|| s.clone())
    });
    assert_ne!(s["workers"][0]["pid"].as_i64(), Some(old));
    assert_eq!(d.get("/").unwrap().0, 200);
    assert_eq!(
        slow.join().unwrap().unwrap(),
        (200, "slept 1500 ms\n".to_string())
    );
    d.wait_generation(2);
}

#[test]
fn the_mercy_bounds_a_draining_worker() {
    let dir = TestDir::new("mercy");
    let d = Daemon::start(&dir, &["--processes", "1", "--worker-reload-mercy", "0.3"]);
    let addr = d.addr.clone();
    let slow = std::thread::spawn(move || http_get(&addr, "/sleep?ms=20000"));
    d.wait_stats("busy", |s| {
        (s["workers"][0]["status"] == "busy").then_some(())
    });
    d.signal(libc::SIGHUP);
    d.wait_generation(2);
    assert!(slow.join().unwrap().is_err());
    d.wait_log("still busy after the 0.3s mercy: SIGKILL");
}

#[test]
fn a_rebuilt_binary_takes_effect_on_reload() {
    let dir = TestDir::new("rebuilt");
    let exe = dir.join("uwsgid");
    copy_binary(&exe);
    let mut d = Daemon::spawn_with(&dir, &[], &exe, true);
    d.wait_running();
    // "Rebuild": a new file renamed over the old one, as cargo and package managers do.
    let tmp = dir.join("uwsgid.new");
    copy_binary(&tmp);
    std::fs::rename(&tmp, &exe).unwrap();
    let before = std::fs::read_link(format!("/proc/{}/exe", d.pid)).unwrap();
    assert!(
        before.to_string_lossy().ends_with("(deleted)"),
        "{before:?}"
    );
    d.signal(libc::SIGHUP);
    d.wait_generation(2);
    let after = std::fs::read_link(format!("/proc/{}/exe", d.pid)).unwrap();
    assert_eq!(after, exe, "the master still runs the old binary");
}

#[test]
fn a_reload_with_a_bad_configuration_keeps_the_instance_serving() {
    let dir = TestDir::new("bad-reload");
    let ini = dir.write("app.ini", "[uwsgi]\nprocesses = 2\n");
    let d = Daemon::start(&dir, &["--ini", ini.to_str().unwrap()]);
    let pids = d.worker_pids();
    // Under strict, a key that is no option is an error (otherwise it is a placeholder).
    dir.write(
        "app.ini",
        "[uwsgi]\nstrict = true\nprocesses = 2\nno-such-option = 1\n",
    );
    d.signal(libc::SIGHUP);
    let s = d.wait_stats("the refused reload", |s| {
        (s["uwsgid"]["last_reload"]["result"] == "failed").then(|| s.clone())
    });
    let reason = s["uwsgid"]["last_error"].as_str().unwrap().to_string();
    assert!(reason.contains("no-such-option"), "{reason}");
    assert_eq!(s["uwsgid"]["generation"], 1);
    assert_eq!(d.worker_pids(), pids);
    assert_eq!(d.get("/").unwrap().0, 200);
    d.wait_log("refused, the instance keeps serving");
    // Fixed: the next reload goes through and picks up the new option values.
    dir.write("app.ini", "[uwsgi]\nprocesses = 3\n");
    d.signal(libc::SIGHUP);
    let s = d.wait_generation(2);
    assert_eq!(s["workers"].as_array().unwrap().len(), 3);
}

/// A channel the new configuration names but the re-executed master cannot open (here a
/// `--stats` path that holds a regular file: the options check passes, the bind fails) is
/// logged and shown; the instance keeps serving without it instead of exiting.
#[test]
fn a_reload_whose_stats_socket_cannot_be_bound_keeps_the_instance_serving() {
    let dir = TestDir::new("reload-stats-busy");
    let ini = dir.write("app.ini", "[uwsgi]\nprocesses = 2\n");
    let d = Daemon::start(&dir, &["--ini", ini.to_str().unwrap()]);
    let blocker = dir.write("not-a-socket", "a regular file\n");
    dir.write(
        "app.ini",
        &format!("[uwsgi]\nprocesses = 2\nstats = {}\n", blocker.display()),
    );
    d.signal(libc::SIGHUP);
    let log = d.wait_log("the instance keeps serving without it");
    let line = log
        .lines()
        .find(|l| l.contains("the instance keeps serving without it"))
        .unwrap();
    assert!(
        line.contains("--stats") && line.contains("exists and is not a socket"),
        "{line}"
    );
    d.assert_alive();
    assert_eq!(d.get("/").unwrap().0, 200);
    // Fixed: the next reload binds the stats socket again and shows what went wrong.
    dir.write("app.ini", "[uwsgi]\nprocesses = 2\n");
    d.signal(libc::SIGHUP);
    let s = d.wait_generation(3);
    let error = s["uwsgid"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("keeps serving without it"), "{s}");
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn a_reload_whose_binary_is_gone_keeps_the_instance_serving() {
    let dir = TestDir::new("exec-fails");
    let exe = dir.join("uwsgid");
    copy_binary(&exe);
    let mut d = Daemon::spawn_with(&dir, &[], &exe, true);
    d.wait_running();
    std::fs::remove_file(&exe).unwrap();
    d.signal(libc::SIGHUP);
    let s = d.wait_stats("the failed reload", |s| {
        (s["uwsgid"]["last_reload"]["result"] == "failed").then(|| s.clone())
    });
    assert!(
        s["uwsgid"]["last_error"]
            .as_str()
            .unwrap()
            .contains("keeps serving"),
        "{s}"
    );
    assert_eq!(d.get("/").unwrap().0, 200);
    assert_eq!(d.generation(), 1);
}

#[test]
fn brutal_workers_reload_and_graceful_workers_reload_keep_the_master() {
    let dir = TestDir::new("workers-reload");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let first = d.worker_pids();
    d.fifo_write(b"w");
    d.wait_generation(2);
    let second = d.worker_pids();
    assert!(first.iter().all(|p| !second.contains(p)));
    d.fifo_write(b"W");
    d.wait_generation(3);
    assert!(second.iter().all(|p| !d.worker_pids().contains(p)));
    assert_eq!(d.stats()["pid"].as_i64(), Some(d.pid as i64));
    assert!(
        !d.log_text().contains("re-executing"),
        "a workers reload re-executed the master"
    );
}
