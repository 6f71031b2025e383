//! Python apps in preload mode (the default for `--wsgi-file`/`--module`): one zygote per
//! generation imports the app and forks the workers, which are the master's children. The app
//! is imported once per generation, workers share its module state, every reload kind under a
//! request loop drops nothing, a broken release fails the reload with the old workers serving,
//! a killed worker is re-forked from the live zygote, `--lazy-apps` keeps one interpreter per
//! worker, and nothing outlives a SIGKILLed master. The next generation's zygote waits in
//! standby and imports the code that is on disk at the reload; a standby whose interpreter
//! changed on disk, or that died, is replaced by a fresh zygote.

use crate::exec_support as uwsgid_exec_support;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use uwsgi_tests::*;
use uwsgid_exec_support::*;

/// An app that appends its pid to `imports.txt` when imported, and answers
/// `/who` with `PID PPID IMPORTED_BY MARK` (and `/hold?tag=T` as `exec_support`'s app does).
const COUNTING_APP: &str = r#"
import os, time
IMPORTED_BY = os.getpid()
MARK = "v1"
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.txt"), "a") as f:
    f.write("%d\n" % IMPORTED_BY)
def hold(tag):
    with open("held-%s.tmp" % tag, "w") as f:
        f.write(str(os.getpid()))
    os.rename("held-%s.tmp" % tag, "held-" + tag)
    deadline = time.monotonic() + 60
    while not os.path.exists("release-" + tag):
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.005)
    return "released %s in %d" % (tag, os.getpid())
def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(int(query.split("=", 1)[1]) / 1000.0)
    body = "%d %d %d %s" % (os.getpid(), os.getppid(), IMPORTED_BY, MARK)
    if path == "/hold":
        body = hold(query.split("=", 1)[1])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

fn start(dir: &TestDir, processes: &str, extra: &[&str]) -> Daemon {
    dir.write("app.py", COUNTING_APP);
    serve_app(dir, processes, &python(), extra)
}

/// Serve the `app.py` already in `dir` on interpreter `python`.
fn serve_app(dir: &TestDir, processes: &str, python: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--wsgi-file",
        "app.py",
        "--processes",
        processes,
        "--python",
        python,
    ];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

fn imports(dir: &TestDir) -> Vec<i64> {
    std::fs::read_to_string(dir.join("imports.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn zygotes(s: &serde_json::Value) -> Vec<(i64, u64, String)> {
    s["uwsgid"]["zygotes"]
        .as_array()
        .map(|zs| {
            zs.iter()
                .map(|z| {
                    (
                        z["pid"].as_i64().unwrap(),
                        z["generation"].as_u64().unwrap(),
                        z["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(pid, ppid, imported_by, mark)` of whichever worker answers.
fn who(d: &Daemon) -> (i64, i64, i64, String) {
    let (status, body) = d.get("/who").unwrap();
    assert_eq!(status, 200, "{body}");
    let w: Vec<&str> = body.split_whitespace().collect();
    (
        w[0].parse().unwrap(),
        w[1].parse().unwrap(),
        w[2].parse().unwrap(),
        w[3].to_string(),
    )
}

/// The ready zygote of the current generation, once the old ones are gone (the standby of
/// the next generation aside).
fn current_zygote(d: &Daemon) -> i64 {
    d.wait_stats("one ready zygote of the current generation", |s| {
        let g = s["uwsgid"]["generation"].as_u64()?;
        let others: Vec<_> = zygotes(s)
            .into_iter()
            .filter(|(_, zg, state)| !(*zg == g + 1 && state == "standby"))
            .collect();
        match others.as_slice() {
            [(pid, zg, state)] if *zg == g && state == "ready" => Some(*pid),
            _ => None,
        }
    })
}

/// SIGHUP, and wait until that reload is complete.
fn graceful_reload(d: &Daemon) {
    let g = d.generation();
    d.signal(libc::SIGHUP);
    let s = d.wait_generation(g + 1);
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete");
}

/// The standby zygote of the next generation.
fn standby_zygote(d: &Daemon) -> i64 {
    d.wait_stats("a standby zygote for the next generation", |s| {
        let g = s["uwsgid"]["generation"].as_u64()?;
        zygotes(s)
            .into_iter()
            .find(|(_, zg, state)| *zg == g + 1 && state == "standby")
            .map(|(pid, _, _)| pid)
    })
}

#[test]
fn the_app_is_imported_once_per_generation_and_workers_are_forks() {
    let dir = TestDir::new("preload-once");
    let d = start(&dir, "4", &[]);
    let zygote = current_zygote(&d);
    assert_eq!(imports(&dir), vec![zygote], "imported once, by the zygote");
    let pids = d.worker_pids();
    assert_eq!(pids.len(), 4);
    assert!(!pids.contains(&zygote), "the zygote is listed as a worker");
    for _ in 0..12 {
        let (pid, ppid, imported_by, _) = who(&d);
        assert!(pids.contains(&pid), "{pid} is not a worker");
        assert_eq!(ppid, d.pid as i64, "worker {pid} is not the master's child");
        assert_eq!(
            imported_by, zygote,
            "module state not inherited from the zygote"
        );
    }

    // A workers reload and a re-exec reload: one more import each, by a new zygote.
    for (how, n) in [(&b"w"[..], 2), (&b"r"[..], 3)] {
        let g = d.generation();
        d.fifo_write(how);
        let s = d.wait_generation(g + 1);
        assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete");
        let z = current_zygote(&d);
        let seen = imports(&dir);
        assert_eq!(seen.len(), n, "{seen:?}");
        assert_eq!(seen.last(), Some(&z));
        assert!(!alive(zygote as i32), "the old zygote {zygote} still runs");
        assert_eq!(who(&d).2, z);
    }
}

/// One reload under a request loop: a request held in each old worker is still in flight
/// when that worker is told to stop and is answered in full by it; nothing fails.
fn reload_under_load(d: &Daemon, how: &[u8]) {
    let before = d.generation();
    let old_pids = d.worker_pids();
    let load = Load::start(&d.addr, 4, &["/", "/sleep?ms=20", "/who"]);
    wait_for("some load", Duration::from_secs(10), || {
        (load.ok.load(Relaxed) > 20).then_some(())
    });
    let held = hold_every_worker(d, &format!("g{before}"), &old_pids);
    d.fifo_write(how);
    release_when_draining(d, held);
    let s = d.wait_generation(before + 1);
    let settled = load.ok.load(Relaxed);
    wait_for("load after the reload", Duration::from_secs(10), || {
        (load.ok.load(Relaxed) > settled + 20).then_some(())
    });
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} errors in {ok}: {errors:?}",
        errors.len()
    );
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete");
}

#[test]
fn reloads_under_load_drop_nothing() {
    let dir = TestDir::new("preload-load");
    let d = start(&dir, "2", &[]);
    reload_under_load(&d, b"r");
    reload_under_load(&d, b"w");
    reload_under_load(&d, b"c");
    // New code is picked up by the next generation's zygote.
    dir.write("app.py", &COUNTING_APP.replace("\"v1\"", "\"v2\""));
    let g = d.generation();
    d.fifo_write(b"w");
    d.wait_generation(g + 1);
    assert_eq!(who(&d).3, "v2");
    assert_eq!(imports(&dir).len(), 5);
}

#[test]
fn a_broken_app_fails_the_reload_and_the_old_workers_keep_serving() {
    let dir = TestDir::new("preload-broken");
    let d = start(&dir, "2", &[]);
    let old = d.worker_pids();
    dir.write("app.py", "raise RuntimeError('broken release')\n");

    let g = d.generation();
    d.fifo_write(b"w");
    let last = d.wait_stats("the workers reload to fail", |s| {
        let l = &s["uwsgid"]["last_reload"];
        (l["generation"].as_u64() == Some(g + 1) && l["result"] == "failed").then(|| l.clone())
    });
    assert!(
        last["reason"]
            .as_str()
            .unwrap_or("")
            .contains("failed to start"),
        "{last}"
    );
    assert!(d.log_text().contains("broken release"));
    d.fifo_write(b"c");
    let last = d.wait_stats("the chain reload to fail", |s| {
        let l = &s["uwsgid"]["last_reload"];
        (l["kind"] == "chain" && l["result"] == "failed").then(|| l.clone())
    });
    assert!(last["reason"].as_str().unwrap().contains("chain stopped"));
    assert_eq!(d.get("/who").unwrap().0, 200);
    for p in &old {
        assert!(
            alive(*p as i32),
            "old worker {p} stopped by a failed reload"
        );
    }

    dir.write("app.py", COUNTING_APP);
    let g = d.generation();
    d.fifo_write(b"w");
    let s = d.wait_generation(g + 1);
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete");
    assert_eq!(current_zygote(&d), who(&d).2);
}

#[test]
fn a_killed_worker_is_re_forked_quickly_by_the_same_zygote() {
    let dir = TestDir::new("preload-respawn");
    let d = start(&dir, "2", &[]);
    let zygote = current_zygote(&d);
    let victim = d.worker_pids()[0];
    // SAFETY: SIGKILL to a worker of the daemon this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let s = d.wait_stats("a replacement", |s| {
        let pids: Vec<i64> = workers(s)
            .iter()
            .filter_map(|w| w["pid"].as_i64())
            .collect();
        (all_ready(s) && !pids.contains(&victim) && pids.len() == 2).then(|| s.clone())
    });
    // Quick because forked, not started: the same zygote and no new import (below). A
    // wall-clock bound would add nothing to that but load sensitivity.
    assert_eq!(
        s["uwsgid"]["respawns_by_cause"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        Some(1),
        "one respawn: {s}"
    );
    assert_eq!(current_zygote(&d), zygote, "a new zygote was started");
    assert_eq!(imports(&dir), vec![zygote], "the app was imported again");
    let (_, ppid, imported_by, _) = who(&d);
    assert_eq!((ppid, imported_by), (d.pid as i64, zygote));
}

#[test]
fn lazy_apps_keeps_one_interpreter_per_worker() {
    let dir = TestDir::new("preload-lazy");
    let d = start(&dir, "2", &["--lazy-apps"]);
    let pids = d.worker_pids();
    let mut seen = imports(&dir);
    seen.sort();
    let mut expected = pids.clone();
    expected.sort();
    assert_eq!(seen, expected, "each worker imports the app itself");
    assert!(zygotes(&d.stats()).is_empty());
    let (pid, _, imported_by, _) = who(&d);
    assert_eq!(pid, imported_by);
}

#[test]
fn no_zygote_or_worker_outlives_a_killed_master() {
    let dir = TestDir::new("preload-orphans");
    let mut d = start(&dir, "3", &[]);
    let mut pids: Vec<i64> = d.worker_pids();
    pids.push(current_zygote(&d));
    pids.push(standby_zygote(&d));
    // SAFETY: SIGKILL to the master this test started.
    unsafe { libc::kill(d.pid, libc::SIGKILL) };
    d.wait_exit(Duration::from_secs(5));
    for p in pids {
        wait_for(
            &format!("process {p} to die with the master"),
            Duration::from_secs(5),
            || (!alive(p as i32)).then_some(()),
        );
    }
}

#[test]
fn a_re_exec_reload_with_new_worker_options_uses_a_zygote_started_with_them() {
    // The old image starts the next zygote before re-executing; when the new configuration
    // changes the worker options, the new image must not use it.
    let dir = TestDir::new("preload-new-options");
    dir.write(
        "app.py",
        r#"
import os
GREETING = os.environ.get("GREETING", "")
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [GREETING.encode()]
"#,
    );
    let ini = |greeting: &str| {
        format!(
            "[uwsgi]\nwsgi-file = app.py\nprocesses = 2\npython = {}\nenv = GREETING={greeting}\n",
            python()
        )
    };
    let path = dir.write("app.ini", &ini("one"));
    let d = Daemon::start(&dir, &["--ini", path.to_str().unwrap()]);
    assert_eq!(d.get("/").unwrap(), (200, "one".into()));
    dir.write("app.ini", &ini("two"));
    graceful_reload(&d);
    for _ in 0..6 {
        assert_eq!(d.get("/").unwrap(), (200, "two".into()));
    }
    // Unchanged options: the zygote started before the re-exec is the one that serves.
    graceful_reload(&d);
    assert_eq!(d.get("/").unwrap(), (200, "two".into()));
    d.wait_log("zygote of generation");
}

#[test]
fn a_reload_imports_the_code_on_disk_into_the_standby_interpreter() {
    let dir = TestDir::new("preload-standby");
    let d = start(&dir, "2", &[]);
    let first = current_zygote(&d);
    let standby = standby_zygote(&d);
    assert!(alive(standby as i32));
    assert_eq!(
        imports(&dir),
        vec![first],
        "a standby imports nothing until a reload"
    );

    // A release written while the standby waits is the one the reload serves.
    dir.write("app.py", &COUNTING_APP.replace("\"v1\"", "\"v2\""));
    graceful_reload(&d);
    assert_eq!(
        current_zygote(&d),
        standby,
        "the reload did not use the standby"
    );
    d.wait_log("loading the application (from standby)");
    for _ in 0..6 {
        let (_, ppid, imported_by, mark) = who(&d);
        assert_eq!(
            (ppid, imported_by, mark.as_str()),
            (d.pid as i64, standby, "v2")
        );
    }
    assert_eq!(imports(&dir), vec![first, standby]);
    // And the following generation gets its own standby.
    let next = standby_zygote(&d);
    assert_ne!(next, standby);
    assert!(!alive(first as i32), "the first zygote {first} still runs");
}

#[test]
fn a_standby_whose_interpreter_changed_or_that_died_is_not_used() {
    let dir = TestDir::new("preload-stale-standby");
    // An interpreter of our own (a copy, as a venv with --copies makes), so that the test can
    // "upgrade" it by changing its modification time.
    let venv = dir.join("venv");
    let made = std::process::Command::new(python())
        .args(["-m", "venv", "--copies", "--without-pip"])
        .arg(&venv)
        .status()
        .expect("python -m venv");
    assert!(made.success(), "python -m venv --copies failed");
    let py = venv.join("bin/python3");
    dir.write("app.py", COUNTING_APP);
    let d = serve_app(&dir, "2", py.to_str().unwrap(), &[]);

    let stale = standby_zygote(&d);
    // (Opened read-only: a running executable cannot be opened for writing.)
    std::fs::File::open(&py)
        .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)))
        .expect("change the interpreter's mtime");
    graceful_reload(&d);
    d.wait_log("not used: the Python interpreter changed on disk");
    let fresh = current_zygote(&d);
    assert_ne!(fresh, stale);
    wait_for("the stale standby to stop", Duration::from_secs(10), || {
        (!alive(stale as i32)).then_some(())
    });
    assert_eq!(who(&d).2, fresh);

    // A standby killed from outside: the next reload starts a fresh zygote.
    let dead = standby_zygote(&d);
    // SAFETY: SIGKILL to the standby zygote of the daemon this test started.
    unsafe { libc::kill(dead as i32, libc::SIGKILL) };
    d.wait_log(&format!("(pid {dead}) exited: killed by signal 9"));
    graceful_reload(&d);
    let z = current_zygote(&d);
    assert!(z != dead && z != fresh, "zygote {z}");
    assert_eq!(who(&d).2, z);
}

#[test]
fn no_python_standby_starts_each_zygote_at_the_reload() {
    let dir = TestDir::new("preload-no-standby");
    let d = start(&dir, "2", &["--no-python-standby"]);
    current_zygote(&d);
    let g = d.generation();
    d.signal(libc::SIGHUP);
    // The standby is started in the same step that completes a reload, so a stats document
    // that shows the reload complete would show it.
    let s = d.wait_generation(g + 1);
    let zs = zygotes(&s);
    assert!(zs.iter().all(|(_, _, state)| state != "standby"), "{zs:?}");
    assert!(!d.log_text().contains("standby zygote"));
    assert_eq!(who(&d).3, "v1");
}

#[test]
fn a_forked_worker_that_dies_before_it_is_ready_is_a_failed_start_at_once() {
    // While `break` exists, every process forked from the zygote breaks the runner's server
    // class after the fork (the stdlib runner's and the native worker's alike: both are the
    // runner module's `Server`), so the worker dies after it announced itself, before READY=1.
    let dir = TestDir::new("preload-dies-starting");
    dir.write(
        "app.py",
        r#"
import os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
def broken(*args):
    raise OSError("broken after fork by the test")
def after_fork():
    if os.path.exists(os.path.join(HERE, "break")):
        for name, module in list(sys.modules.items()):
            if name.startswith("uwsgid_wsgi") and hasattr(module, "Server"):
                module.Server = broken
os.register_at_fork(after_in_child=after_fork)
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"#,
    );
    let d = serve_app(&dir, "2", &python(), &["--worker-start-timeout", "60"]);
    dir.write("break", "");
    let victim = d.worker_pids()[0];
    let t = Instant::now();
    // SAFETY: SIGKILL to a worker of the daemon this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    // (The killed worker itself may count as a failed start: it had not served for long.)
    let w = d.wait_stats("a failed start of the replacement", |s| {
        workers(s).into_iter().find(|w| {
            w["uwsgid"]["last_exit"]
                .as_str()
                .is_some_and(|e| e.contains("status 1"))
        })
    });
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the failed start was noticed after {took:?}, as if by the 60 s start timeout"
    );
    assert!(w["uwsgid"]["failed_starts"].as_u64() >= Some(1), "{w}");
    assert!(d.log_text().contains("broken after fork by the test"));
    assert_eq!(
        d.get("/").unwrap().0,
        200,
        "the other worker stopped serving"
    );

    // Fixed: the backed-off slot gets a worker that serves.
    std::fs::remove_file(dir.join("break")).unwrap();
    d.wait_stats("both slots ready again", |s| {
        (all_ready(s) && workers(s).len() == 2).then_some(())
    });
}

#[test]
fn a_re_exec_reload_that_adds_a_listener_serves_it_from_the_new_zygote() {
    // The next generation's zygote (standby, or started before the re-exec) holds the
    // listeners of its time: a reload that adds one must not use it.
    let dir = TestDir::new("preload-new-listener");
    dir.write("app.py", COUNTING_APP);
    let first = format!("127.0.0.1:{}", free_port());
    let second = format!("127.0.0.1:{}", free_port());
    let ini = |extra: &str| {
        format!(
            "[uwsgi]\nwsgi-file = app.py\nprocesses = 2\npython = {}\n{extra}",
            python()
        )
    };
    let path = dir.write("app.ini", &ini(""));
    let d = Daemon::start(
        &dir,
        &["--ini", path.to_str().unwrap(), "--http-socket", &first],
    );
    let stale = standby_zygote(&d);
    assert!(!listening(&second));
    dir.write("app.ini", &ini(&format!("http-socket = {second}\n")));
    graceful_reload(&d);
    assert_ne!(
        current_zygote(&d),
        stale,
        "the reload used a zygote without the new listener"
    );
    for addr in [&first, &second] {
        for _ in 0..4 {
            let (status, body) = http_get(addr, "/who").unwrap();
            assert_eq!(status, 200, "{addr}: {body}");
        }
    }
}
