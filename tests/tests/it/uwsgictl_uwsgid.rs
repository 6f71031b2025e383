//! uwsgictl against uwsgid: `reload --wait` returns only once the new generation serves (and
//! within a few ms of the daemon's own completion), fails with a reason and exit 22 when the
//! new configuration crash-loops, with 21 when the master dies and 20 on timeout; `stop --wait`
//! lets a slow request finish; pause/resume are idempotent; a pidfile alone or `--name` finds
//! the FIFO and stats.

use uwsgi_tests::ctl;

use std::fs;
use std::time::Duration;

use ctl::{ctl, eventually, http_get, TempDir, Uwsgid};

fn pidfile_args(d: &Uwsgid, args: &[&str]) -> Vec<String> {
    let mut v = vec!["--pidfile".to_string(), d.pidfile.display().to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn new_generation_serves(d: &Uwsgid, generation: u64) {
    let doc = d.stats_doc().expect("stats right after reload --wait");
    let ext = &doc["uwsgid"];
    assert_eq!(ext["generation"], generation, "{doc}");
    assert!(ext["reload"].is_null(), "no reload under way: {doc}");
    assert_eq!(ext["draining"], serde_json::json!([]), "{doc}");
    let pids: Vec<i64> = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["uwsgid"]["generation"], generation, "{w}");
            assert_eq!(w["uwsgid"]["ready"], true, "{w}");
            w["pid"].as_i64().unwrap()
        })
        .collect();
    for _ in 0..4 {
        let (code, body) = http_get(d.port, "/pid").unwrap();
        assert_eq!(code, 200);
        let pid: i64 = body.trim().parse().unwrap();
        assert!(pids.contains(&pid), "served by {pid}, not one of {pids:?}");
    }
}

#[test]
fn uwsgid_reload_wait_returns_once_the_new_generation_serves() {
    let dir = TempDir::new("uwsgid-reload");
    let d = Uwsgid::start(&dir);
    let mut generation = d.stats_doc().unwrap()["uwsgid"]["generation"]
        .as_u64()
        .unwrap();
    for args in [
        &["reload", "--wait", "--json"][..],
        &["reload", "--wait", "--json", "--via", "fifo"],
        &["reload", "--wait", "--json", "--brutal"],
        &["reload", "--wait", "--json", "--chain"],
        &["reload", "--wait", "--json", "--workers"],
        &["reload", "--wait", "--json", "--workers", "--brutal"],
    ] {
        // A slow request on an old worker keeps the reload from completing (the old worker
        // drains) for a second after the new workers are ready: a `--wait` that returned at
        // readiness instead of completion is caught by the stats read right after it returns.
        // (A brutal reload cuts it instead.)
        let brutal = args.contains(&"--brutal");
        let slow = (!brutal).then(|| {
            let port = d.port;
            let t = std::thread::spawn(move || http_get(port, "/sleep?ms=1000"));
            eventually(
                "the slow request in flight",
                Duration::from_secs(10),
                || {
                    d.stats_doc()?["workers"]
                        .as_array()?
                        .iter()
                        .any(|w| w["status"] == "busy")
                        .then_some(())
                },
            );
            t
        });
        let out = ctl(pidfile_args(&d, args)).run();
        let doc = out.code(0).json();
        generation += 1;
        assert_eq!(doc["state"]["phase"], "complete", "{args:?}: {doc}");
        assert_eq!(doc["state"]["generation"], generation, "{args:?}: {doc}");
        // First, before anything waits: at the moment it returned, nothing drains any more.
        new_generation_serves(&d, generation);
        if let Some(slow) = slow {
            // Its worker's draining was part of the reload.
            assert_eq!(slow.join().unwrap().unwrap().0, 200, "{args:?}");
        }
        // Reported soon after completion: what uwsgictl adds on top of the daemon's own reload
        // time (process start, one baseline read, polling) is bounded by what one plain
        // `uwsgictl stats` costs on this machine right now (measured here, so a loaded CI
        // machine does not fail it), a few times over plus the polling interval.
        let t = std::time::Instant::now();
        ctl(pidfile_args(&d, &["stats", "--json"])).run().code(0);
        let baseline = t.elapsed().as_secs_f64() * 1e3;
        let overhead =
            doc["elapsed_ms"].as_f64().unwrap() - doc["state"]["duration_ms"].as_f64().unwrap();
        let bound = 4.0 * baseline + 50.0;
        assert!(
            overhead < bound,
            "{args:?}: overhead {overhead} ms over a bound of {bound} ms: {doc}"
        );
    }
    // Human output.
    ctl(pidfile_args(&d, &["reload", "--wait"]))
        .run()
        .code(0)
        .stdout_has("graceful reload of uwsgid pid")
        .stdout_has("complete: 2/2 workers ready");
}

#[test]
fn uwsgid_reload_wait_fails_when_the_new_generation_crash_loops() {
    let dir = TempDir::new("uwsgid-crash");
    let d = Uwsgid::start(&dir);
    fs::write(&d.ini, d.ini_text("worker-exec = /bin/false\n")).unwrap();
    let out = ctl(pidfile_args(
        &d,
        &["reload", "--wait", "--timeout", "20", "--json"],
    ))
    .run();
    out.code(22);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "reload-failed");
    // uwsgictl reports whichever it sees first: a worker of generation 2 that failed to
    // start (its early "crash-loops" verdict), or the master's outcome once it aborted the
    // reload after its third failed start. /bin/false fails within microseconds and the
    // first backoffs are short, so either can come first (the test once required the former
    // and failed about 2 runs in 11): both name the generation and the worker's exit.
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the new generation 2 crash-loops")
            || message.contains("reload to generation 2 failed"),
        "{message}"
    );
    assert!(message.contains("exited with status 1"), "{message}");
    assert_eq!(doc["state"]["phase"], "failed", "{doc}");
    // The master aborts the reload: every slot goes back to generation 1, which still
    // serves, and generation 2 is not retried.
    let stats = eventually("the reload to be aborted", Duration::from_secs(10), || {
        d.stats_doc().filter(|s| {
            s["uwsgid"]["last_reload"]["result"] == "failed"
                && s["uwsgid"]["reload"].is_null()
                && s["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w["uwsgid"]["generation"] == 1 && w["uwsgid"]["ready"] == true)
        })
    });
    let reason = stats["uwsgid"]["last_reload"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("reload aborted") && reason.contains("stay with generation 1"),
        "{stats}"
    );
    assert_eq!(http_get(d.port, "/").unwrap().0, 200);
    // Nothing of generation 2 starts any more. A retry would come at most one backoff (the
    // master's own formula, after the failed start that aborted the reload) after that start,
    // which was before the abort was seen: every stats read for that long, and a margin, must
    // show the same workers with the same start counts. (A negative observation: no event
    // marks its end, so its window is derived from the backoff.)
    let window = uwsgid::master::table::backoff(uwsgid::master::reload::RELOAD_FAIL_AFTER)
        + Duration::from_millis(200);
    let starts = |doc: &serde_json::Value| -> Vec<(i64, u64)> {
        let workers = doc["workers"].as_array().unwrap().iter();
        workers
            .map(|w| {
                (
                    w["pid"].as_i64().unwrap(),
                    w["respawn_count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut reads = 0;
    uwsgi_tests::poll(window, || {
        let again = d.stats_doc().unwrap();
        assert_eq!(starts(&again), starts(&stats), "no new start: {again}");
        reads += 1;
        None::<()>
    });
    assert!(reads >= 2, "{reads} stats reads in {window:?}");
    // A good configuration reloads fine again.
    fs::write(&d.ini, d.ini_text("")).unwrap();
    let out = ctl(pidfile_args(&d, &["reload", "--wait", "--timeout", "20"])).run();
    out.code(0).stdout_has("complete");
}

#[test]
fn uwsgid_reload_wait_reports_timeout_and_master_death() {
    let dir = TempDir::new("uwsgid-timeout");
    let mut d = Uwsgid::start(&dir);
    let port = d.port;
    // A slow request keeps an old worker draining: the reload cannot complete within 0.2 s.
    let slow = std::thread::spawn(move || http_get(port, "/sleep?ms=1500"));
    wait_busy(&d);
    let out = ctl(pidfile_args(&d, &["reload", "--wait", "--timeout", "0.2"])).run();
    out.code(20)
        .stderr_has("timed out after")
        .stderr_has("last state:");
    let _ = slow.join();
    // That reload ends once the old worker that answered is reaped: wait for it, or its
    // draining entry (shown until then) would pass for the next reload being under way.
    let settled = eventually("the first reload to end", Duration::from_secs(10), || {
        d.stats_doc().filter(|s| {
            s["uwsgid"]["reload"].is_null()
                && s["uwsgid"]["draining"].as_array().unwrap().is_empty()
        })
    });
    let before = settled["uwsgid"]["generation"].as_u64().unwrap();

    // The master dies while uwsgictl waits: exit 21, promptly.
    let slow = std::thread::spawn(move || http_get(port, "/sleep?ms=3000"));
    wait_busy(&d);
    let args = pidfile_args(&d, &["reload", "--wait", "--timeout", "30"]);
    let waiter = std::thread::spawn(move || ctl(args).run());
    eventually("the reload to be under way", Duration::from_secs(5), || {
        d.stats_doc()
            .filter(|s| {
                s["uwsgid"]["generation"].as_u64() > Some(before)
                    && !s["uwsgid"]["draining"].as_array().unwrap().is_empty()
            })
            .map(|_| ())
    });
    // SAFETY: SIGKILL to the uwsgid master this test started.
    unsafe { libc::kill(d.pid, libc::SIGKILL) };
    let out = waiter.join().unwrap();
    out.code(21).stderr_has("exited during the reload");
    assert!(out.elapsed < Duration::from_secs(10), "{out:?}");
    d.wait_exit(Duration::from_secs(5));
    let _ = slow.join();
}

#[test]
fn uwsgid_stop_wait_lets_a_slow_request_finish() {
    let dir = TempDir::new("uwsgid-stop");
    let mut d = Uwsgid::start(&dir);
    let port = d.port;
    let slow = std::thread::spawn(move || http_get(port, "/sleep?ms=600"));
    wait_busy(&d);
    let out = ctl(pidfile_args(&d, &["stop", "--wait", "--json"])).run();
    let doc = out.code(0).json();
    assert_eq!(doc["byte"], "q");
    assert_eq!(doc["state"]["phase"], "stopped");
    assert_eq!(
        doc["state"]["pidfile"], "removed",
        "--vacuum removed it: {doc}"
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(1)),
        Some(0),
        "exited 0 before stop --wait returned"
    );
    let (code, body) = slow.join().unwrap().unwrap();
    assert_eq!((code, body.trim()), (200, "slept 600 ms"));
    ctl(pidfile_args(&d, &["status"])).run().code(3);
}

#[test]
fn uwsgid_pause_resume_signal_fifo_rollback_and_discovery() {
    let dir = TempDir::new("uwsgid-misc");
    let d = Uwsgid::start(&dir);
    // The pidfile alone finds the FIFO and stats through the instance record.
    ctl(pidfile_args(&d, &["status"]))
        .run()
        .code(0)
        .stdout_has("running: uwsgid pid")
        .stdout_has("2/2 workers ready");
    ctl(pidfile_args(&d, &["pause"]))
        .run()
        .code(0)
        .stdout_has("paused (FIFO 'h')");
    ctl(pidfile_args(&d, &["pause"]))
        .run()
        .code(0)
        .stdout_has("already paused; nothing sent");
    assert_eq!(d.stats_doc().unwrap()["uwsgid"]["paused"], true);
    let doc = ctl(pidfile_args(&d, &["status", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["state"], "paused");
    ctl(pidfile_args(&d, &["resume"]))
        .run()
        .code(0)
        .stdout_has("running (FIFO 'u')");
    ctl(pidfile_args(&d, &["resume"]))
        .run()
        .code(0)
        .stdout_has("already running; nothing sent");
    // Without a FIFO, pause falls back to the SIGTSTP toggle, still idempotent.
    let stats = d.stats.display().to_string();
    let pf = d.pidfile.display().to_string();
    let no_fifo = [
        "--pidfile",
        &pf,
        "--stats",
        &stats,
        "--fifo",
        "/nonexistent",
    ];
    let mut args = no_fifo.to_vec();
    args.extend(["pause", "--via", "signal"]);
    ctl(&args).run().code(0).stdout_has("SIGTSTP");
    ctl(&args).run().code(0).stdout_has("nothing sent");
    ctl(pidfile_args(&d, &["resume"])).run().code(0);
    assert_eq!(http_get(d.port, "/").unwrap().0, 200);

    // A worker's pid is not a master's: refused, and the worker is left alone.
    let workers_before: Vec<i64> = d.stats_doc().unwrap()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    let fake = dir.join("worker.pid");
    fs::write(&fake, format!("{}\n", workers_before[0])).unwrap();
    ctl(["--pidfile", fake.to_str().unwrap(), "signal", "INT"])
        .run()
        .code(16)
        .stderr_has("not a uwsgid or uWSGI master");
    let workers_after: Vec<i64> = d.stats_doc().unwrap()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(workers_before, workers_after);

    // No snapshot: a distinct exit code, nothing sent (the master logs nothing about it).
    let doc = ctl(pidfile_args(&d, &["rollback", "--json"]))
        .run()
        .code(25)
        .json();
    assert_eq!(doc["error"]["kind"], "no-snapshot", "{doc}");
    assert!(!d.log_text().contains("rollback requested"));
    let doc = ctl(pidfile_args(&d, &["signal", "usr1", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["signal"], "USR1");
    ctl(pidfile_args(&d, &["fifo", "s"]))
        .run()
        .code(0)
        .stdout_has("(stats)");
    ctl(pidfile_args(&d, &["fifo", "f"]))
        .run()
        .code(2)
        .stderr_has("not a command uwsgid knows");
    let out = ctl(pidfile_args(&d, &["stats"]))
        .env("COLUMNS", "100")
        .run();
    out.code(0)
        .stdout_has("uwsgid")
        .stdout_has("GEN")
        .stdout_has("idle");
    let doc = ctl(pidfile_args(&d, &["stats", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["pid"], d.pid);
    assert!(doc["uwsgid"]["generation"].as_u64().is_some());
}

#[test]
fn uwsgid_named_instances_and_list() {
    let dir = TempDir::new("uwsgid-named");
    let d = Uwsgid::start_named(&dir, "api");
    let runtime = dir.join("runtime");
    let named = |args: &[&str]| {
        let mut v = vec!["--name", "api"];
        v.extend_from_slice(args);
        ctl(&v).env("UWSGID_RUNTIME_DIR", &runtime).run()
    };
    named(&["status"])
        .code(0)
        .stdout_has(&format!("uwsgid pid {}", d.pid));
    named(&["reload", "--wait"])
        .code(0)
        .stdout_has("complete: 1/1 workers ready");
    let out = ctl(["list", "--json"])
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .run();
    let doc = out.code(0).json();
    assert_eq!(doc["instances"][0]["name"], "api");
    assert_eq!(doc["instances"][0]["pid"], d.pid);
    assert_eq!(doc["instances"][0]["workers"], "1/1");
    ctl(["list"])
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .run()
        .code(0)
        .stdout_has("api");
    named(&["stop", "--brutal", "--wait"])
        .code(0)
        .stdout_has("stopped");
    // Named instances vacuum their pidfile: not running (3), not stale (1).
    named(&["status"]).code(3);
}

/// Run `cmd` under a pseudo-terminal with `script(1)`; returns everything the terminal showed.
fn on_terminal(cmd: &str, env: &[(&str, &str)]) -> Option<String> {
    let script = std::path::Path::new("/usr/bin/script");
    if !uwsgi_tests::require(
        script.exists(),
        "script(1) at /usr/bin/script",
        "apt-get install bsdutils",
    ) {
        return None;
    }
    let dir = TempDir::new("pty");
    let typescript = dir.join("typescript");
    let mut c = std::process::Command::new(script);
    c.arg("-qec").arg(cmd).arg(&typescript);
    c.env_remove("NO_COLOR");
    for (k, v) in env {
        c.env(k, v);
    }
    let status = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd}: {status}");
    Some(String::from_utf8_lossy(&fs::read(&typescript).unwrap()).into_owned())
}

#[test]
fn uwsgid_terminal_output_progress_and_colour() {
    let dir = TempDir::new("uwsgid-tty");
    let d = Uwsgid::start(&dir);
    let ctl_bin = ctl::ctl_bin().display().to_string();
    let pf = d.pidfile.display().to_string();
    let port = d.port;
    // A slow request keeps the reload going long enough for the progress display to draw.
    let slow = std::thread::spawn(move || http_get(port, "/sleep?ms=400"));
    wait_busy(&d);
    let Some(shown) = on_terminal(&format!("{ctl_bin} --pidfile {pf} reload --wait"), &[]) else {
        return;
    };
    let _ = slow.join();
    assert!(
        shown.contains("old draining"),
        "no progress display on a terminal:\n{shown}"
    );
    assert!(shown.contains("complete: 2/2 workers ready"), "{shown}");
    // --json: never a progress display, even on a terminal.
    let shown = on_terminal(
        &format!("{ctl_bin} --pidfile {pf} reload --wait --json"),
        &[],
    )
    .unwrap();
    assert!(
        !shown.contains("draining,") && !shown.contains("[0s]"),
        "{shown}"
    );
    // Colour on a terminal, none with NO_COLOR.
    let cmd = format!("{ctl_bin} --pidfile {pf} stats");
    let coloured = on_terminal(&cmd, &[]).unwrap();
    assert!(coloured.contains("\x1b[38;5;"), "{coloured}");
    let plain = on_terminal(&cmd, &[("NO_COLOR", "1")]).unwrap();
    assert!(!plain.contains("\x1b[38;5;"), "{plain}");
    // --watch clears and redraws in place on a terminal.
    let watched = on_terminal(&format!("{cmd} --watch --count 2 --interval 0.05"), &[]).unwrap();
    assert_eq!(watched.matches("\x1b[H\x1b[2J").count(), 2, "{watched}");
}

/// Wait until some worker of `d` is serving a request.
fn wait_busy(d: &Uwsgid) {
    eventually("the slow request to start", Duration::from_secs(5), || {
        d.stats_doc()
            .filter(|s| {
                s["workers"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().any(|w| w["status"] == "busy"))
            })
            .map(|_| ())
    });
}
