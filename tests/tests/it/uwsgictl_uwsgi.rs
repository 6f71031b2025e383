//! uwsgictl against a real uWSGI 2.0 master (`/usr/bin/uwsgi --plugin python3`): status,
//! stats, reload --wait (graceful, chain, via FIFO), idempotent pause and resume over uWSGI's
//! toggle, and graceful and brutal stop, all given its pidfile, stats socket and FIFO, or its
//! ini file. Skips with a message when uWSGI is not installed, except under CI=true.

use uwsgi_tests::ctl;

use std::time::Duration;

use ctl::{ctl, eventually, http_get, TempDir, Uwsgi};

fn with_target(u: &Uwsgi, args: &[&str]) -> Vec<String> {
    let mut v = u.target();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

#[test]
fn uwsgi_status_stats_reload_pause_resume_stop() {
    if !ctl::uwsgi_available() {
        return;
    }
    let dir = TempDir::new("uwsgi");
    let mut u = Uwsgi::start(&dir, 2);

    // status: one line, exit 0, JSON parses.
    let out = ctl(with_target(&u, &["status"])).run();
    out.code(0)
        .stdout_has(&format!("running: uwsgi pid {}", u.pid));
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    let doc = ctl(with_target(&u, &["status", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["master"], "uwsgi");
    assert_eq!(doc["pid"], u.pid);

    // The ini alone is enough.
    ctl(["--ini", u.ini.to_str().unwrap(), "status"])
        .run()
        .code(0)
        .stdout_has("running: uwsgi");

    // stats: table and JSON.
    let out = ctl(with_target(&u, &["stats"])).env("COLUMNS", "120").run();
    out.code(0).stdout_has("uWSGI 2.").stdout_has("idle");
    let doc = ctl(with_target(&u, &["stats", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["pid"], u.pid);
    assert_eq!(doc["workers"].as_array().unwrap().len(), 2);

    // reload --wait (SIGHUP): returns once every worker pid is new and accepting.
    for (args, label) in [
        (vec!["reload", "--wait"], "graceful"),
        (
            vec!["reload", "--wait", "--via", "fifo"],
            "graceful via fifo",
        ),
        (vec!["reload", "--wait", "--chain"], "chain"),
        (vec!["reload", "--wait", "--brutal"], "brutal"),
    ] {
        let before = u.worker_pids();
        let out = ctl(with_target(&u, &args)).run();
        out.code(0).stdout_has("complete: 2/2 workers ready");
        let after = u.worker_pids();
        assert_eq!(after.len(), 2, "{label}");
        for pid in &after {
            assert!(
                *pid > 0 && !before.contains(pid),
                "{label}: {before:?} -> {after:?}"
            );
        }
        let (code, _) = http_get(u.port, "/").unwrap();
        assert_eq!(code, 200, "{label}: serving right after reload --wait");
    }
    let doc = ctl(with_target(&u, &["reload", "--wait", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["state"]["phase"], "complete");
    assert_eq!(doc["pid"], u.pid, "same master pid across the reload");

    // pause and resume are idempotent although uWSGI only has a toggle.
    ctl(with_target(&u, &["pause"]))
        .run()
        .code(0)
        .stdout_has("paused");
    ctl(with_target(&u, &["pause"]))
        .run()
        .code(0)
        .stdout_has("already paused; nothing sent");
    ctl(with_target(&u, &["status"]))
        .run()
        .code(0)
        .stdout_has("paused");
    let doc = ctl(with_target(&u, &["resume", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["changed"], true);
    let doc = ctl(with_target(&u, &["resume", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["changed"], false);
    // Pausing through the signal works too, and resume undoes it.
    ctl(with_target(&u, &["pause", "--via", "signal"]))
        .run()
        .code(0)
        .stdout_has("SIGTSTP");
    ctl(with_target(&u, &["resume", "--via", "signal"]))
        .run()
        .code(0);
    assert_eq!(http_get(u.port, "/").unwrap().0, 200);
    let log = u.log_text();
    assert_eq!(
        log.matches("*** PAUSE").count(),
        2,
        "exactly two pauses:\n{log}"
    );

    // A uWSGI worker's pid is refused: it is not the master.
    let workers = u.worker_pids();
    let fake = dir.join("worker.pid");
    std::fs::write(&fake, format!("{}\n", workers[0])).unwrap();
    ctl(["--pidfile", fake.to_str().unwrap(), "reload"])
        .run()
        .code(16)
        .stderr_has("uwsgi worker");
    assert_eq!(u.worker_pids(), workers, "no worker was touched");

    // uWSGI has no snapshots, and SIGUSR2 would kill it: both refused.
    ctl(with_target(&u, &["rollback"]))
        .run()
        .code(1)
        .stderr_has("no snapshots");
    ctl(with_target(&u, &["signal", "USR2"]))
        .run()
        .code(1)
        .stderr_has("would die");

    // Graceful stop with a slow request in flight: the request completes, then the master exits.
    let port = u.port;
    let slow = std::thread::spawn(move || http_get(port, "/sleep?ms=700"));
    eventually("the slow request to start", Duration::from_secs(5), || {
        u.stats_doc()
            .filter(|d| {
                d["workers"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().any(|w| w["status"] == "busy"))
            })
            .map(|_| ())
    });
    let out = ctl(with_target(&u, &["stop", "--wait", "--timeout", "20"])).run();
    out.code(0).stdout_has("stopped");
    assert!(u.exited(), "the master is gone once stop --wait returns");
    let (code, body) = slow.join().unwrap().unwrap();
    assert_eq!((code, body.as_str()), (200, "Hello World"));
    ctl(with_target(&u, &["status"])).run().code(1);
}

#[test]
fn uwsgi_brutal_stop_via_sigint() {
    if !ctl::uwsgi_available() {
        return;
    }
    let dir = TempDir::new("uwsgi-brutal");
    let mut u = Uwsgi::start(&dir, 1);
    let doc = ctl(with_target(&u, &["stop", "--brutal", "--wait", "--json"]))
        .run()
        .code(0)
        .json();
    assert_eq!(doc["signal"], "INT");
    assert!(u.exited());
    assert!(u.log_text().contains("goodbye to uWSGI"));
}
