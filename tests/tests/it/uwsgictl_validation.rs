//! uwsgictl refuses every bad pidfile before anything is sent, each with its own exit code and
//! a message naming what was found and what to do, and a decoy process that records signals
//! proves that nothing reached it: neither the pid in the pidfile nor the caller's process
//! group (uWSGI's own `--reload` signals the caller's group when the pidfile is empty).
//! Also: FIFO, stats and ini target errors, and `--json` error documents.

use uwsgi_tests::ctl;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ctl::{ctl, Decoy, TempDir};

/// Run `args` inside the decoy's process group and check the exit code and message; then
/// prove the decoy received nothing.
fn refused(decoy: &Decoy, pidfile: &Path, code: i32, message: &str) {
    for cmd in [
        vec!["reload"],
        vec!["stop", "--brutal"],
        vec!["signal", "HUP"],
        vec!["pause", "--via", "signal"],
    ] {
        let mut args = vec!["--pidfile".to_string(), pidfile.display().to_string()];
        args.extend(cmd.iter().map(|s| s.to_string()));
        let out = ctl(&args).process_group(decoy.pid).run();
        out.code(code).stderr_has(message);
        assert!(out.stdout.is_empty(), "stdout must stay empty: {out:?}");
        let mut json_args = args.clone();
        json_args.push("--json".into());
        let out = ctl(&json_args).process_group(decoy.pid).run();
        out.code(code);
        let doc = out.json();
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["exit_code"], code);
        assert!(doc["error"]["message"].as_str().unwrap().contains(message));
    }
    decoy.assert_untouched(&format!("pidfile refused with {code}"));
}

fn pidfile_with(dir: &TempDir, name: &str, content: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, content).unwrap();
    p
}

#[test]
fn every_bad_pidfile_is_refused_with_its_own_code_and_nothing_is_sent() {
    let dir = TempDir::new("validation");
    let decoy = Decoy::spawn(&dir.path, "decoy");
    let cases: Vec<(String, i32, &str)> = vec![
        ("".into(), 10, "is empty"),
        ("  \n".into(), 10, "is empty"),
        ("12a\n".into(), 11, "\"12a\" is not a pid"),
        ("0\n".into(), 12, "pid 0 is reserved"),
        ("1\n".into(), 12, "pid 1 is reserved"),
        ("-1\n".into(), 13, "out of the range of pids"),
        (format!("-{}\n", decoy.pid), 13, "out of the range of pids"),
        ("99999999999\n".into(), 13, "out of the range of pids"),
        (
            format!("{}\n", decoy.pid),
            16,
            "not a uwsgid or uWSGI master",
        ),
    ];
    for (i, (content, code, message)) in cases.iter().enumerate() {
        let p = pidfile_with(&dir, &format!("case{i}.pid"), content);
        refused(&decoy, &p, *code, message);
    }
    // Missing.
    refused(&decoy, &dir.join("missing.pid"), 3, "no such file");
    // Not a regular file.
    let sub = dir.join("adir.pid");
    fs::create_dir(&sub).unwrap();
    refused(&decoy, &sub, 14, "is a directory");
    // A dead pid (stale pidfile).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let p = pidfile_with(&dir, "dead.pid", &format!("{dead}\n"));
    refused(&decoy, &p, 15, "is not running (stale pidfile)");
}

#[test]
fn a_pid_younger_than_its_pidfile_is_refused() {
    let dir = TempDir::new("younger");
    // A copy of sleep(1) named uwsgid: its name and its executable pass, so only the
    // start-time check can refuse it. It dies on any signal, so "alive" means "untouched".
    let exe = dir.join("uwsgid");
    fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = ctl::eventually("the copy to run", Duration::from_secs(5), || {
        match std::process::Command::new(&exe).arg("60").spawn() {
            Ok(c) => Some(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => None,
            Err(e) => panic!("spawn {}: {e}", exe.display()),
        }
    });
    let pid = child.id() as i32;
    let p = pidfile_with(&dir, "old.pid", &format!("{pid}\n"));
    let file = fs::OpenOptions::new().write(true).open(&p).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);
    for cmd in [
        vec!["reload"],
        vec!["stop", "--brutal"],
        vec!["signal", "HUP"],
    ] {
        let mut args = vec!["--pidfile", p.to_str().unwrap()];
        args.extend(cmd);
        ctl(&args)
            .run()
            .code(17)
            .stderr_has("after the pidfile was written (pid reused)");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process received a signal"
    );
    // The same process with a fresh pidfile passes validation: the check is the start time.
    let fresh = pidfile_with(&dir, "fresh.pid", &format!("{pid}\n"));
    ctl(["--pidfile", fresh.to_str().unwrap(), "status"])
        .run()
        .code(0)
        .stdout_has(&format!("running: uwsgid pid {pid}"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn status_uses_lsb_codes() {
    let dir = TempDir::new("status");
    let decoy = Decoy::spawn(&dir.path, "decoy");
    let run = |pidfile: &Path| {
        ctl(["--pidfile", pidfile.to_str().unwrap(), "status"])
            .process_group(decoy.pid)
            .run()
    };
    run(&dir.join("none.pid"))
        .code(3)
        .stdout_has("not-running:");
    run(&pidfile_with(&dir, "e.pid", ""))
        .code(4)
        .stdout_has("unknown:");
    run(&pidfile_with(&dir, "d.pid", &format!("{}\n", decoy.pid)))
        .code(1)
        .stdout_has("dead:");
    let out = ctl([
        "--pidfile",
        dir.join("none.pid").to_str().unwrap(),
        "status",
        "--json",
    ])
    .run();
    out.code(3);
    let doc = out.json();
    assert_eq!(doc["status"], "not-running");
    assert_eq!(doc["exit_code"], 3);
    decoy.assert_untouched("status");
}

#[test]
fn fifo_targets_are_checked() {
    let dir = TempDir::new("fifo");
    let regular = pidfile_with(&dir, "notafifo", "");
    ctl(["--fifo", regular.to_str().unwrap(), "fifo", "r"])
        .run()
        .code(24)
        .stderr_has("is a regular file, not a FIFO");
    ctl(["--fifo", dir.join("nofifo").to_str().unwrap(), "stop"])
        .run()
        .code(24)
        .stderr_has("no such file");
    let fifo = dir.join("lonely.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    ctl(["--fifo", fifo.to_str().unwrap(), "reload"])
        .run()
        .code(24)
        .stderr_has("no master is reading it");
    ctl(["--fifo", fifo.to_str().unwrap(), "status"])
        .run()
        .code(3);
    ctl(["--fifo", fifo.to_str().unwrap(), "fifo", "x"])
        .run()
        .code(2)
        .stderr_has("not a command");
    ctl([
        "--fifo",
        fifo.to_str().unwrap(),
        "reload",
        "--chain",
        "--via",
        "signal",
    ])
    .run()
    .code(2)
    .stderr_has("use --via fifo");
    ctl(["--fifo", fifo.to_str().unwrap(), "stop", "--via", "signal"])
        .run()
        .code(2)
        .stderr_has("graceful stop has no signal");
}

/// A stats server that answers every connection with `reply`, on a thread.
fn fake_stats(path: &Path, reply: &'static [u8]) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(reply);
        }
    });
}

#[test]
fn malformed_stats_are_clear_errors() {
    let dir = TempDir::new("stats");
    let cases: [(&str, &'static [u8], &str); 4] = [
        (
            "trunc.sock",
            b"{\"version\":\"2.0.31\",\"workers\":[{\"id\":1,",
            "truncated",
        ),
        ("html.sock", b"<html>nope</html>", "malformed"),
        ("empty.sock", b"", "empty document"),
        ("types.sock", b"{\"workers\":{\"id\":1}}", "malformed"),
    ];
    for (name, reply, needle) in cases {
        let sock = dir.join(name);
        fake_stats(&sock, reply);
        for extra in [&[][..], &["--json"][..], &["--watch", "--count", "1"][..]] {
            let mut args = vec!["--stats", sock.to_str().unwrap(), "stats"];
            args.extend_from_slice(extra);
            let out = ctl(&args).run();
            if extra.first() == Some(&"--watch") {
                out.code(0).stdout_has(needle);
            } else {
                out.code(23).stderr_has(needle);
                assert!(!out.stderr.contains("panicked"), "{out:?}");
            }
        }
    }
    ctl([
        "--stats",
        dir.join("absent.sock").to_str().unwrap(),
        "stats",
    ])
    .run()
    .code(23)
    .stderr_has("the instance is not running");
    ctl([
        "--stats",
        dir.join("absent.sock").to_str().unwrap(),
        "status",
    ])
    .run()
    .code(3);
}

#[test]
fn stats_renders_a_uwsgi_document_and_json_passes_it_through() {
    let dir = TempDir::new("stats-ok");
    let sock = dir.join("ok.sock");
    let sample: &'static [u8] = include_bytes!("../../fixtures/uwsgi-2.0.31/busy-sleep.raw.json");
    fake_stats(&sock, sample);
    let out = ctl(["--stats", sock.to_str().unwrap(), "stats"])
        .env("COLUMNS", "200")
        .run();
    out.code(0).stdout_has("uWSGI 2.0.31").stdout_has("busy");
    assert!(
        !out.stdout.contains('\x1b'),
        "no colour when piped: {out:?}"
    );
    let out = ctl(["--stats", sock.to_str().unwrap(), "stats", "--json"]).run();
    let doc = out.code(0).json();
    let want: serde_json::Value = serde_json::from_slice(sample).unwrap();
    assert_eq!(doc, want);
    let narrow = ctl(["--stats", sock.to_str().unwrap(), "stats"])
        .env("COLUMNS", "40")
        .run();
    for line in narrow.stdout.lines().skip(2) {
        assert!(
            line.chars().count() <= 40,
            "too wide for 40 columns: {line:?}"
        );
    }
    let out = ctl([
        "--stats",
        sock.to_str().unwrap(),
        "stats",
        "--watch",
        "--json",
        "--count",
        "2",
        "--interval",
        "0.01",
    ])
    .run();
    out.code(0);
    assert_eq!(
        out.stdout.lines().count(),
        2,
        "one document per frame: {out:?}"
    );
}

#[test]
fn ini_targets() {
    let dir = TempDir::new("ini");
    let ini = dir.join("app.ini");
    fs::write(
        &ini,
        "[uwsgi]\nsafe-pidfile = %dgone.pid\nmaster-fifo = %dm.fifo\n",
    )
    .unwrap();
    ctl(["--ini", ini.to_str().unwrap(), "status"])
        .run()
        .code(3)
        .stdout_has(&format!("{}/gone.pid", dir.path.display()));
    fs::write(&ini, "[app]\npidfile = x\n").unwrap();
    ctl(["--ini", ini.to_str().unwrap(), "status"])
        .run()
        .code(2)
        .stderr_has("no [uwsgi] section");
    ctl(["--ini", dir.join("nope.ini").to_str().unwrap(), "reload"])
        .run()
        .code(2)
        .stderr_has("no such file");
}

#[test]
fn usage_errors_and_listing() {
    ctl(["reload", "--timeout", "soon"]).run().code(2);
    ctl(["reload", "--brutal", "--chain"]).run().code(2);
    ctl(["--stats", "127.0.0.1:9", "signal", "FOO"])
        .run()
        .code(2)
        .stderr_has("not in the master's signal table");
    ctl(["--name", "../etc", "status"])
        .run()
        .code(2)
        .stderr_has("is not valid");
    let dir = TempDir::new("list");
    let out = ctl(["list", "--json"])
        .env("UWSGID_RUNTIME_DIR", &dir.path)
        .run();
    assert_eq!(out.code(0).json()["instances"], serde_json::json!([]));
    // With no target at all the default instance is meant.
    let out = ctl(["status", "--json"])
        .env("UWSGID_RUNTIME_DIR", &dir.path)
        .run();
    let doc = out.code(3).json();
    assert_eq!(doc["name"], "default");
    for shell in ["bash", "zsh", "fish"] {
        let out = ctl(["completions", shell]).run();
        out.code(0).stdout_has("uwsgictl");
        ctl(["completions", shell, "--json"]).run().code(0).json();
    }
}
