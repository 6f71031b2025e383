//! The master log: `--log-format json` (one object per line, every line parsed through a start,
//! a re-exec reload, a workers reload, a killed worker and a stop, a recycle and a refused
//! reload; the management events carry their generation), `--log-format` keeping its uWSGI meaning (a request-log format) for any
//! other value, the generation in text lines, `--log-maxsize` rotation while serving (no request
//! line lost or split across files), `--log-reopen` after the file was moved, and the refusal
//! of both without `--logto`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use uwsgi_tests::*;

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Every line of `text` as a JSON object with the fields every line has.
fn parse_json_log(text: &str) -> Vec<Value> {
    assert!(text.ends_with('\n'), "the log ends inside a line: {text}");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}\nlog:\n{text}"));
            for key in ["time", "level", "event", "message", "role"] {
                assert!(v[key].is_string(), "{key} missing: {line}");
            }
            assert!(v["pid"].is_u64(), "pid: {line}");
            assert!(v["fields"]["generation"].is_u64(), "generation: {line}");
            assert!(
                ["info", "warning", "error"].contains(&v["level"].as_str().unwrap()),
                "{line}"
            );
            assert!(v["time"].as_str().unwrap().ends_with('Z'), "{line}");
            v
        })
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

fn generation_of(v: &Value) -> u64 {
    v["fields"]["generation"].as_u64().unwrap()
}

#[test]
fn json_log_is_one_object_per_line_through_reloads_a_kill_and_a_stop() {
    let dir = TestDir::new("log-json");
    let mut d = Daemon::start(&dir, &["--log-format", "json", "--processes", "2"]);
    assert_eq!(d.get("/").unwrap().0, 200);
    d.signal(libc::SIGHUP); // graceful: a re-exec, generation 2
    assert!(all_ready(&d.wait_generation(2)));
    d.fifo_write(b"w"); // workers reload: generation 3, no re-exec
    assert!(all_ready(&d.wait_generation(3)));
    let victim = d.worker_pids()[0] as i32;
    // A worker of the daemon this test started.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_log(&format!("(pid {victim}) died"));
    d.wait_stats("the killed worker replaced", |s| {
        (all_ready(s) && !d.worker_pids().contains(&(victim as i64))).then_some(())
    });
    assert_eq!(d.get("/").unwrap().0, 200);
    d.fifo_write(b"q");
    assert!(d.wait_exit(Duration::from_secs(20)).success());

    let text = d.log_text();
    let lines = parse_json_log(&text);
    let master = d.pid as u64;
    // Reloads: begun and complete for generations 2 and 3, each line carrying its generation.
    let begun: Vec<u64> = events(&lines, "reload_begun")
        .iter()
        .map(|v| generation_of(v))
        .collect();
    assert_eq!(begun, vec![2, 3], "{text}");
    let complete: Vec<u64> = events(&lines, "reload_complete")
        .iter()
        .map(|v| generation_of(v))
        .collect();
    assert_eq!(complete, vec![2, 3], "{text}");
    for v in events(&lines, "reload_begun") {
        assert!(
            v["fields"]["kind"].is_string() && v["fields"]["cause"].is_string(),
            "{v}"
        );
    }
    // Workers ready: 2 per generation and the replacement, with slot and pid.
    let ready = events(&lines, "worker_ready");
    for g in 1..=3 {
        assert!(
            ready.iter().filter(|v| generation_of(v) == g).count() >= 2,
            "generation {g}: {text}"
        );
    }
    assert_eq!(ready.len(), 7, "{text}");
    for v in &ready {
        assert!(
            v["fields"]["worker"].is_u64() && v["fields"]["pid"].is_u64(),
            "{v}"
        );
        assert_eq!(v["pid"], master, "{v}");
    }
    // Older generations retire with their own generation, not the newest.
    let retired = events(&lines, "worker_retired");
    assert!(retired.iter().any(|v| generation_of(v) == 1), "{text}");
    assert!(retired.iter().any(|v| generation_of(v) == 2), "{text}");
    // Died while serving, or "soon after start" (a failed start) on a fast machine.
    let died: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "worker_died" || v["event"] == "worker_failed_start")
        .collect();
    assert_eq!(died.len(), 1, "{text}");
    assert_eq!(died[0]["fields"]["pid"], victim as u64);
    assert_eq!(generation_of(died[0]), 3);
    let stop = events(&lines, "stop");
    assert_eq!(stop.len(), 1, "{text}");
    assert_eq!(
        (generation_of(stop[0]), &stop[0]["fields"]["brutal"]),
        (3, &0.into())
    );
    let exit = events(&lines, "exit");
    assert_eq!(exit.len(), 1, "{text}");
    assert_eq!(exit[0]["fields"]["code"], 0);
    // Request lines are objects too, written by the workers.
    let requests = events(&lines, "request");
    assert_eq!(requests.len(), 2, "{text}");
    for r in requests {
        assert_eq!(
            (&r["role"], &r["fields"]["status"]),
            (&"worker".into(), &200.into())
        );
        assert_eq!(r["fields"]["uri"], "/");
        assert_ne!(r["pid"], master);
    }
}

#[test]
fn json_log_recycles_and_refused_reloads_are_events_with_their_generation() {
    let dir = TestDir::new("log-json-fail");
    let ini = dir.write("app.ini", "[uwsgi]\nprocesses = 1\nmax-requests = 2\n");
    let d = Daemon::start(
        &dir,
        &["--log-format", "json", "--ini", ini.to_str().unwrap()],
    );
    let first = d.worker_pids()[0];
    for _ in 0..2 {
        assert_eq!(d.get("/").unwrap().0, 200);
    }
    d.wait_log("\"event\":\"worker_recycled\"");
    d.wait_stats("the recycled worker replaced", |s| {
        (all_ready(s) && !d.worker_pids().contains(&first)).then_some(())
    });
    // A configuration that no longer loads: the graceful reload is refused, the instance
    // keeps serving generation 1.
    std::fs::write(&ini, "[uwsgi]\nprocesses = many\n").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("\"event\":\"reload_failed\"");
    assert_eq!(d.get("/").unwrap().0, 200);
    let text = d.log_text();
    let lines = parse_json_log(&text);
    let recycled = events(&lines, "worker_recycled");
    assert_eq!(recycled.len(), 1, "{text}");
    let r = recycled[0];
    assert_eq!(
        (
            generation_of(r),
            &r["fields"]["pid"],
            &r["fields"]["worker"]
        ),
        (1, &first.into(), &1.into()),
        "{r}"
    );
    assert_eq!(r["fields"]["cause"], "max-requests");
    let failed = events(&lines, "reload_failed");
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(
        (generation_of(failed[0]), &failed[0]["level"]),
        (1, &"error".into())
    );
    assert!(
        failed[0]["message"].as_str().unwrap().contains("many"),
        "{text}"
    );
}

#[test]
fn json_startup_failures_and_daemonize_lines_are_objects_too() {
    let dir = TestDir::new("log-json-start");
    // A port someone else holds: startup stops with a JSON line, exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(bin("uwsgid"))
        .args(["--log-format", "json", "--http-socket", &addr])
        .args(["--safe-pidfile", "x.pid"])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = parse_json_log(&text);
    let failed = events(&lines, "startup_failed");
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(failed[0]["level"], "error");
    assert!(
        failed[0]["message"].as_str().unwrap().contains(&addr),
        "{text}"
    );

    // --daemonize LOG: the launcher's line and the daemon's lines, all objects.
    let log = dir.join("daemon.log");
    let pidfile = dir.join("d.pid");
    let fifo = dir.join("d.fifo");
    let status = Command::new(bin("uwsgid"))
        .args([
            "--log-format",
            "json",
            "--http-socket",
            "127.0.0.1:0",
            "--processes",
            "1",
        ])
        .args(["--daemonize", log.to_str().unwrap()])
        .args(["--safe-pidfile", pidfile.to_str().unwrap()])
        .args(["--master-fifo", fifo.to_str().unwrap()])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let pid = wait_for("the daemon's pidfile", Duration::from_secs(20), || {
        common::pidfile::read(&pidfile).ok().map(|c| c.pid)
    });
    // Whatever happens below, the daemon this test started does not outlive it.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if alive(self.0) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.0),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _guard = KillOnDrop(pid);
    std::fs::write(&fifo, b"q").unwrap();
    wait_for("the daemon's exit", Duration::from_secs(20), || {
        (!alive(pid)).then_some(())
    });
    let text = read(&log);
    let lines = parse_json_log(&text);
    assert_eq!(events(&lines, "daemonize").len(), 1, "{text}");
    assert_eq!(events(&lines, "exit").len(), 1, "{text}");
}

#[test]
fn text_lines_name_the_generation_and_other_log_formats_stay_request_formats() {
    let dir = TestDir::new("log-text");
    let mut d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--log-format",
            "%(method) %(uri) -> %(status)",
        ],
    );
    assert_eq!(d.get("/abc").unwrap().0, 404);
    d.wait_log("GET /abc -> 404\n");
    d.fifo_write(b"w");
    d.wait_generation(2);
    let log = d.wait_log("reload to generation 2 complete");
    let complete = log
        .lines()
        .find(|l| l.contains("reload to generation 2 complete"))
        .unwrap();
    assert!(complete.contains(" gen 2 master: "), "{complete}");
    assert!(
        log.lines()
            .any(|l| l.contains(" gen 1 master: ") && l.contains("ready in")),
        "{log}"
    );
    assert!(!log.contains("{\"time\""), "{log}");
    d.fifo_write(b"q");
    d.wait_exit(Duration::from_secs(20));

    // `text` is the master log's encoding, not a request format naming the word "text".
    let dir = TestDir::new("log-text-word");
    let d = Daemon::start(&dir, &["--processes", "1", "--log-format", "text"]);
    assert_eq!(d.get("/").unwrap().0, 200);
    let log = d.wait_log("GET / => generated");
    assert!(
        !log.lines().any(|l| l == "text"),
        "the word was used as a request line: {log}"
    );
}

/// The rotated files of `log` (`LOG.EPOCH`, `LOG.EPOCH.N`).
fn rotated(log: &Path) -> Vec<PathBuf> {
    let name = log.file_name().unwrap().to_str().unwrap().to_string();
    let mut v: Vec<PathBuf> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.strip_prefix(&format!("{name}."))
                .is_some_and(|rest| rest.split('.').all(|x| x.parse::<u64>().is_ok()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn log_maxsize_rotates_while_serving_without_losing_or_splitting_a_line() {
    let dir = TestDir::new("log-maxsize");
    let logto = dir.join("app.log");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--logto",
            logto.to_str().unwrap(),
            "--log-maxsize",
            "4000",
        ],
    );
    // Serve until the log has been rotated twice (the master looks once a second).
    let started = Instant::now();
    let mut made = 0u64;
    while rotated(&logto).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30) && made < 100_000,
            "not rotated twice after {made} requests: {:?}",
            rotated(&logto)
        );
        assert_eq!(d.get(&format!("/?n={made}")).unwrap().0, 200);
        made += 1;
    }
    // Every request's line is somewhere, whole, exactly once.
    let all = || {
        let mut files = rotated(&logto);
        files.push(logto.clone());
        files.iter().map(|p| read(p)).collect::<Vec<_>>()
    };
    let count = |texts: &[String]| {
        texts
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| l.starts_with("[pid: "))
            .count() as u64
    };
    wait_for(
        "every request line flushed",
        Duration::from_secs(10),
        || (count(&all()) >= made).then_some(()),
    );
    let texts = all();
    assert_eq!(count(&texts), made);
    let mut seen = std::collections::BTreeSet::new();
    for t in &texts {
        assert!(
            t.is_empty() || t.ends_with('\n'),
            "a file ends inside a line"
        );
        for l in t.lines() {
            if l.starts_with("[pid: ") {
                assert!(l.ends_with("(1 switches on core 0)"), "split line: {l}");
                let n = l.split("GET /?n=").nth(1).and_then(|r| r.split(' ').next());
                assert!(seen.insert(n.unwrap().to_string()), "twice: {l}");
            } else {
                assert!(l.contains(" uwsgid["), "not a log line: {l:?}");
            }
        }
    }
    // The rotated files are about the size asked (each passed 4000 bytes, then moved aside).
    for p in rotated(&logto) {
        assert!(
            std::fs::metadata(&p).unwrap().len() > 4000,
            "{}",
            p.display()
        );
    }
    assert!(read(&logto).contains("log rotated to "), "{}", read(&logto));
}

#[test]
fn log_reopen_follows_a_moved_file_at_reload() {
    for reopen in [true, false] {
        let dir = TestDir::new(if reopen { "log-reopen" } else { "log-noreopen" });
        let logto = dir.join("app.log");
        let moved = dir.join("app.log.1");
        let mut args = vec!["--processes", "2", "--logto", logto.to_str().unwrap()];
        if reopen {
            args.push("--log-reopen");
        }
        let d = Daemon::start(&dir, &args);
        std::fs::rename(&logto, &moved).unwrap();
        d.signal(libc::SIGHUP);
        d.wait_generation(2);
        assert_eq!(d.get("/after").unwrap().0, 404);
        let (into, away) = if reopen {
            (&logto, &moved)
        } else {
            (&moved, &logto)
        };
        // The request line of a new-generation worker lands in the file the log is now. The
        // master reopens the file right after it forked the new workers (the reload's first
        // turn): they follow it whether the reopen came before or after they started (the
        // epoch they compare with is the one of the fd they inherited).
        let landed = poll(Duration::from_secs(10), || {
            read(into).contains("GET /after =>").then_some(())
        });
        assert!(
            landed.is_some() && !read(away).contains("GET /after =>"),
            "the request line is not (only) in {}:\n--- {}:\n{}\n--- {}:\n{}",
            into.display(),
            logto.display(),
            read(&logto),
            moved.display(),
            read(&moved)
        );
        if reopen {
            let text = read(&logto);
            assert!(text.contains("log reopened"), "{text}");
            assert!(text.contains("reload to generation 2 complete"), "{text}");
        } else {
            assert!(!logto.exists(), "reopened without --log-reopen");
        }
    }
}

#[test]
fn log_reopen_and_maxsize_need_a_log_file() {
    let dir = TestDir::new("log-options");
    for (args, needle) in [
        (vec!["--log-reopen"], "--log-reopen: there is no log file"),
        (
            vec!["--log-maxsize", "1000"],
            "--log-maxsize: there is no log file",
        ),
        (
            vec!["--logto", "x.log", "--log-maxsize", "0"],
            "--log-maxsize 0",
        ),
    ] {
        let addr = format!("127.0.0.1:{}", free_port());
        let out = Command::new(bin("uwsgid"))
            .args(["--http-socket", &addr, "--safe-pidfile", "x.pid"])
            .args(&args)
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!dir.join("x.pid").exists() && !listening(&addr), "{args:?}");
    }
}
