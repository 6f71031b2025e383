//! `uwsgid --reload PIDFILE` and the other pidfile conveniences (issue 13, item 5): the same
//! validation and exit codes as uwsgictl (`common::exit`), signals only through a pidfd on a
//! validated master, FIFO bytes only to a FIFO that master holds, never the caller's process
//! group; `--wait` blocks until the action is done.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::exit::Exit;
use uwsgi_tests::*;

fn manage(dir: &TestDir, args: &[&str]) -> Output {
    Command::new(bin("uwsgid"))
        .args(args)
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .expect("run uwsgid")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(dir: &TestDir, args: &[&str]) -> String {
    let out = manage(dir, args);
    assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    text(&out)
}

fn paused(d: &Daemon) -> bool {
    d.stats()["uwsgid"]["paused"].as_bool().unwrap()
}

#[test]
fn reload_kinds_by_pidfile_and_wait() {
    let dir = TestDir::new("manage-reload");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let pf = d.pidfile.to_str().unwrap();
    let said = ok(&dir, &["--reload", pf]);
    assert!(
        said.contains("graceful reload") && said.contains("SIGHUP"),
        "{said}"
    );
    d.wait_generation(2);
    // --wait returns once the reload is complete: the stats already show it.
    let said = ok(&dir, &["--brutal-reload", pf, "--wait"]);
    assert!(said.contains("complete"), "{said}");
    assert!(d.generation() >= 3);
    ok(&dir, &["--chain-reload", pf, "--wait"]);
    assert!(d.generation() >= 4);
    ok(&dir, &["--reload", pf, "--wait"]);
    assert!(d.generation() >= 5);
    d.assert_alive();
    assert_eq!(d.log_count("master pid"), 1, "the same master throughout");
}

#[test]
fn pause_and_resume_are_idempotent() {
    let dir = TestDir::new("manage-pause");
    let d = Daemon::start(&dir, &[]);
    let pf = d.pidfile.to_str().unwrap();
    ok(&dir, &["--pause", pf, "--wait"]);
    assert!(paused(&d));
    // A second pause (and --suspend, its alias) leaves it paused: no toggle.
    ok(&dir, &["--pause", pf, "--wait"]);
    ok(&dir, &["--suspend", pf, "--wait"]);
    assert!(paused(&d));
    ok(&dir, &["--resume", pf, "--wait"]);
    assert!(!paused(&d));
    ok(&dir, &["--resume", pf, "--wait"]);
    assert!(!paused(&d));
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn graceful_stop_and_stop_end_the_instance() {
    let dir = TestDir::new("manage-stop");
    let mut d = Daemon::start(&dir, &[]);
    let said = ok(
        &dir,
        &["--graceful-stop", d.pidfile.to_str().unwrap(), "--wait"],
    );
    assert!(said.contains("exited"), "{said}");
    // --wait returned after the master exited: it is our child, not reaped yet, so a zombie
    // (state Z; a live master would be S or R).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid)).unwrap();
    let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
    assert_eq!(
        state,
        Some('Z'),
        "--wait returned with the master alive: {stat}"
    );
    assert!(d.wait_exit(Duration::from_secs(5)).success());

    let dir = TestDir::new("manage-stop-brutal");
    let mut d = Daemon::start(&dir, &[]);
    ok(&dir, &["--stop", d.pidfile.to_str().unwrap(), "--wait"]);
    d.wait_exit(Duration::from_secs(5));
}

#[test]
fn bad_pidfiles_send_nothing_with_uwsgictls_exit_codes() {
    let dir = TestDir::new("manage-bad");
    let sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let cases: Vec<(String, Option<&str>, Exit)> = vec![
        ("missing.pid".into(), None, Exit::NotRunning),
        ("empty.pid".into(), Some(""), Exit::PidfileEmpty),
        ("words.pid".into(), Some("abc\n"), Exit::PidfileNotANumber),
        ("one.pid".into(), Some("1\n"), Exit::PidfileReserved),
        ("neg.pid".into(), Some("-5\n"), Exit::PidfileOutOfRange),
        ("stale.pid".into(), Some("4194000\n"), Exit::Stale),
        (
            "other.pid".into(),
            Some(Box::leak(format!("{}\n", sleeper.id()).into_boxed_str())),
            Exit::NotAMaster,
        ),
    ];
    for (name, content, exit) in &cases {
        let path = dir.join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        for option in [
            "--reload",
            "--stop",
            "--graceful-stop",
            "--pause",
            "--resume",
        ] {
            let out = manage(&dir, &[option, path.to_str().unwrap()]);
            assert_eq!(code(&out), exit.code(), "{option} {name}: {}", text(&out));
            assert!(text(&out).contains("uwsgid: error:"), "{}", text(&out));
        }
    }
    assert!(alive(sleeper.id() as i32), "the non-master got nothing");
    let mut sleeper = sleeper;
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // Two at once is a usage error.
    let out = manage(&dir, &["--reload", "a.pid", "--stop", "b.pid"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("one management option at a time"));
}

/// uWSGI's `--reload` on an empty pidfile signals its own process group (`kill(0, SIGHUP)`).
/// Here the caller's group is left alone: a sibling in the same group survives, and the
/// command exits with its own code instead of dying of SIGHUP.
#[test]
fn an_empty_pidfile_never_signals_the_callers_group() {
    let dir = TestDir::new("manage-group");
    let empty = dir.join("empty.pid");
    std::fs::write(&empty, "").unwrap();
    for option in ["--reload", "--stop"] {
        let script = format!(
            "sleep 30 & s=$!; {} {option} {} ; rc=$?; kill -0 $s && echo sibling-alive; kill $s; exit $rc",
            bin("uwsgid").display(),
            empty.display()
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            Exit::PidfileEmpty.code(),
            "{option}: {}",
            text(&out)
        );
        assert!(text(&out).contains("sibling-alive"), "{}", text(&out));
    }
}

#[test]
fn fifo_actions_need_a_fifo_and_wait_needs_stats() {
    let dir = TestDir::new("manage-nofifo");
    let pidfile = dir.join("uwsgid.pid");
    let d = Daemon::spawn_bare(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            pidfile.to_str().unwrap(),
        ],
    );
    let pf = pidfile.to_str().unwrap();
    for option in [
        "--graceful-stop",
        "--brutal-reload",
        "--chain-reload",
        "--pause",
    ] {
        let out = manage(&dir, &[option, pf]);
        assert_eq!(code(&out), Exit::Usage.code(), "{option}: {}", text(&out));
        assert!(text(&out).contains("--master-fifo"), "{}", text(&out));
    }
    let out = manage(&dir, &["--reload", pf, "--wait"]);
    assert_eq!(code(&out), Exit::Usage.code(), "{}", text(&out));
    assert!(text(&out).contains("--stats"), "{}", text(&out));
    // Nothing was sent: still generation 1 and alive; a plain --reload works by signal.
    d.assert_alive();
    ok(&dir, &["--reload", pf]);
    wait_for("the reload", Duration::from_secs(20), || {
        d.log_text().contains("generation 2").then_some(())
    });
}
