//! Cheaper mode against the real daemon (built-in workers, `--demo-routes`): a burst of slow
//! requests grows the workers from `--cheaper` up to `--processes` and never beyond, idle
//! workers are removed one at a time back to `--cheaper`, with zero failed requests; the
//! `backlog` algorithm grows on the kernel's listen queue; stats and `uwsgictl stats` show the
//! counts; `--check-config` refuses what uWSGI refuses.

use std::process::{Command, Stdio};
use std::time::Duration;

use uwsgi_tests::*;

fn cheaper(d: &Daemon) -> (u64, u64) {
    let s = d.stats();
    let c = &s["uwsgid"]["cheaper"];
    (
        c["active"].as_u64().unwrap_or(0),
        s["workers"].as_array().map_or(0, |w| w.len() as u64),
    )
}

/// Grow under `load` until `want` workers are active, checking the bound at every look.
fn grow_to(d: &Daemon, want: u64, max: u64) {
    wait_for(
        &format!("{want} active workers"),
        Duration::from_secs(30),
        || {
            let (active, listed) = cheaper(d);
            assert!(
                active <= max && listed <= max,
                "{active} active, {listed} listed (max {max})"
            );
            (active == want && d.stats()["uwsgid"]["cheaper"]["ready"] == want).then_some(())
        },
    );
}

#[test]
fn spare_grows_under_a_burst_and_shrinks_when_idle() {
    let dir = TestDir::new("cheaper-spare");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "3",
            "--cheaper",
            "1",
            "--cheaper-overload",
            "1",
        ],
    );
    let s = d.stats();
    assert_eq!(s["uwsgid"]["cheaper"]["algo"], "spare");
    assert_eq!(s["uwsgid"]["cheaper"]["min"], 1);
    assert_eq!(s["uwsgid"]["cheaper"]["max"], 3);
    assert_eq!(cheaper(&d), (1, 1));
    let load = Load::start(&d.addr, 6, "/sleep?ms=200");
    grow_to(&d, 3, 3);
    // Held at the maximum while the burst lasts.
    load.wait_more(20);
    assert_eq!(cheaper(&d).0, 3);
    let pidfile = d.pidfile.display().to_string();
    uwsgi_tests::ctl::ctl(["--pidfile", pidfile.as_str(), "stats"])
        .env("COLUMNS", "120")
        .run()
        .code(0)
        .stdout_has("cheaper (spare): 3 active (3 ready), 1 to 3, step 1");
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} failed of {ok}: {errors:?}",
        errors.len()
    );
    // Idle: back to the minimum, one at a time.
    wait_for("back to 1 worker", Duration::from_secs(30), || {
        let s = d.stats();
        (s["uwsgid"]["cheaper"]["active"] == 1
            && s["workers"].as_array()?.len() == 1
            && s["uwsgid"]["draining"].as_array()?.is_empty())
        .then_some(())
    });
    let log = d.log_text();
    assert!(
        log.contains("cheaper (spare): 1 -> 2 workers (all busy for 1s)"),
        "{log}"
    );
    assert!(log.contains("cheaper (spare): 3 -> 2 workers"), "{log}");
    assert!(log.contains("cheaper (spare): 2 -> 1 workers"), "{log}");
    assert_eq!(d.get("/").unwrap().0, 200);
    // Never below the minimum.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(cheaper(&d), (1, 1));
}

const SLOW_APP: &str = r#"
import time

def application(environ, start_response):
    time.sleep(0.3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept"]
"#;

#[test]
fn backlog_grows_on_the_listen_queue_by_step() {
    // A Python worker with one thread accepts nothing while it sleeps, so the burst waits in
    // the kernel's listen queue (the built-in worker's /sleep is a timer: it keeps accepting).
    let dir = TestDir::new("cheaper-backlog");
    let app = dir.write("app.py", SLOW_APP);
    let py = crate::exec_support::python();
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--python",
            &py,
            "--threads",
            "1",
            "--processes",
            "4",
            "--cheaper",
            "1",
            "--cheaper-algo",
            "backlog",
            "--cheaper-step",
            "3",
            "--cheaper-overload",
            "0",
        ],
    );
    assert_eq!(cheaper(&d), (1, 1));
    let load = Load::start(&d.addr, 6, "/");
    grow_to(&d, 4, 4);
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} failed of {ok}: {errors:?}",
        errors.len()
    );
    let log = d.log_text();
    assert!(log.contains("cheaper (backlog): 1 -> 4 workers ("), "{log}");
    assert!(log.contains("connection(s) waiting)"), "{log}");
    wait_for("back to 1 worker", Duration::from_secs(30), || {
        (d.stats()["uwsgid"]["cheaper"]["active"] == 1).then_some(())
    });
}

#[test]
fn reloads_keep_the_active_count_and_fifo_changes_the_maximum() {
    let dir = TestDir::new("cheaper-reload");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "3",
            "--cheaper",
            "1",
            "--cheaper-initial",
            "2",
            "--cheaper-overload",
            "600",
        ],
    );
    assert_eq!(cheaper(&d), (2, 2));
    // A re-exec keeps the active count (within the new configuration's bounds).
    d.fifo_write(b"r");
    let s = d.wait_generation(2);
    assert_eq!(s["uwsgid"]["cheaper"]["active"], 2, "{s}");
    assert_eq!(s["workers"].as_array().unwrap().len(), 2, "{s}");
    // A workers reload too.
    d.fifo_write(b"w");
    let s = d.wait_generation(3);
    assert_eq!(s["uwsgid"]["cheaper"]["active"], 2, "{s}");
    // `+` raises the maximum only; `-` lowers it, never to --cheaper or below, and cuts
    // the active count when it is above.
    d.fifo_write(b"+");
    wait_for("max 4", Duration::from_secs(10), || {
        (d.stats()["uwsgid"]["cheaper"]["max"] == 4).then_some(())
    });
    assert_eq!(cheaper(&d).0, 2);
    d.fifo_write(b"---");
    let s = d.wait_stats("max 2", |s| {
        (s["uwsgid"]["cheaper"]["max"] == 2 && s["uwsgid"]["draining"].as_array()?.is_empty())
            .then(|| s.clone())
    });
    assert_eq!(s["uwsgid"]["cheaper"]["active"], 2, "{s}");
    d.fifo_write(b"-");
    wait_for("still max 2", Duration::from_secs(10), || {
        d.log_text()
            .contains("worker count stays at 2")
            .then_some(())
    });
    assert_eq!(cheaper(&d), (2, 2));
}

#[test]
fn check_config_refuses_what_uwsgi_refuses() {
    let dir = TestDir::new("cheaper-check");
    let run = |args: &[&str]| {
        let out = Command::new(bin("uwsgid"))
            .args(["--check-config", "--http-socket", "127.0.0.1:0"])
            .args(args)
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .output()
            .expect("run uwsgid");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--processes", "2", "--cheaper", "2"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--cheaper 2: must be lower than --processes (2)"),
        "{err}"
    );
    let (code, err) = run(&[
        "--processes",
        "4",
        "--cheaper",
        "1",
        "--cheaper-algo",
        "busyness",
    ]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--cheaper-algo busyness: not an algorithm of uwsgid"),
        "{err}"
    );
    let (code, err) = run(&["--processes", "4", "--cheaper-step", "2"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--cheaper-step applies to cheaper mode only"),
        "{err}"
    );
    let (code, err) = run(&[
        "--processes",
        "4",
        "--cheaper",
        "1",
        "--cheaper-initial",
        "2",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // The same from a uWSGI ini.
    dir.write(
        "app.ini",
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nworkers = 8\ncheaper-algo = spare\ncheaper = 2\ncheaper-initial = 4\ncheaper-step = 2\ncheaper-overload = 5\n",
    );
    let out = Command::new(bin("uwsgid"))
        .args(["--check-config", "--ini", "app.ini"])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in [
        "cheaper",
        "cheaper-initial",
        "cheaper-step",
        "cheaper-algo",
        "cheaper-overload",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!(": {key} = ")) && l.contains(": supported")),
            "{key}: {stdout}"
        );
    }
}
