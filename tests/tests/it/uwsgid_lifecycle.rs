//! Startup, pidfile and death: bad input binds nothing, a second instance leaves the first
//! alone, the pidfile is safe, workers never outlive the master, crashed workers come back.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// Run uwsgid to completion with `args` in `dir`; (exit code, stderr).
fn run_to_exit(dir: &TestDir, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("uwsgid"))
        .args(args)
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .output()
        .expect("run uwsgid");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_options_are_refused_before_anything_is_bound() {
    let dir = TestDir::new("bad-options");
    // The port is held by the test for the whole run: a uwsgid that tried to bind before
    // refusing its options would meet "address in use" (exit 1, a message about the address)
    // instead of the option's own refusal (exit 2, naming the option) checked below. A check
    // after the refused process exited ("nothing listens") would be true either way.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let good = [
        "--http-socket",
        addr.as_str(),
        "--safe-pidfile",
        "x.pid",
        "--master-fifo",
        "x.fifo",
        "--stats",
        "x.sock",
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["--processes", "0"], "--processes 0"),
        (&["--processes", "many"], "many"),
        (&["--bogus-option"], "--bogus-option"),
        (&["--worker-reload-mercy", "-3"], "--worker-reload-mercy"),
        (&["--http-socket", "127.0.0.1:99999"], "not a port"),
        (&["--http-socket", "fd://3x"], "not an fd number"),
        (&["--listen", "0"], "--listen 0"),
        (
            &["--check-static", "no-such-dir"],
            "--check-static no-such-dir",
        ),
        (&["--logto", "/no/such/dir/x.log"], "/no/such/dir"),
        (&["--pidfile", "/no/such/dir/x.pid"], "does not exist"),
        (&["--ini", "missing.ini"], "missing.ini"),
        (&["--name", "../evil"], "--name"),
    ];
    for (extra, needle) in cases {
        let mut args: Vec<&str> = good.to_vec();
        args.extend_from_slice(extra);
        let started = Instant::now();
        let (code, err) = run_to_exit(&dir, &args);
        assert_eq!(code, 2, "{extra:?}: exit code; stderr: {err}");
        assert!(
            err.contains(needle),
            "{extra:?}: the message does not name {needle:?}: {err}"
        );
        assert!(err.starts_with("uwsgid: error: "), "{extra:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        for f in ["x.pid", "x.fifo", "x.sock"] {
            assert!(!dir.join(f).exists(), "{extra:?}: {f} was created");
        }
        assert!(
            !err.contains("another process is listening") && !err.contains("in use"),
            "{extra:?}: it tried to bind before refusing: {err}"
        );
    }
    drop(held);
}

#[test]
fn a_bad_ini_file_is_refused_with_its_name_and_line() {
    let dir = TestDir::new("bad-ini");
    let cases = [
        (
            "[uwsgi]\nstrict = true\nprocesses = 2\nno-such-thing = 1\n",
            "no-such-thing",
        ),
        ("processes = 2\n", "no [uwsgi] section"),
        ("[uwsgi\nprocesses = 2\n", "line 1"),
        ("[uwsgi]\nprocesses = zero\n", "zero"),
        ("[uwsgi]\nhttp-socket = 127.0.0.1:70000\n", "not a port"),
    ];
    for (text, needle) in cases {
        let ini = dir.write("bad.ini", text);
        let (code, err) = run_to_exit(
            &dir,
            &["--ini", ini.to_str().unwrap(), "--safe-pidfile", "y.pid"],
        );
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(err.contains(needle), "{text:?}: {err}");
        assert!(
            err.contains("bad.ini"),
            "{text:?}: the file is not named: {err}"
        );
        assert!(!dir.join("y.pid").exists());
    }
}

#[test]
fn an_address_in_use_stops_startup_with_a_clear_error() {
    let dir = TestDir::new("addr-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_to_exit(&dir, &["--http-socket", &addr, "--safe-pidfile", "z.pid"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&addr) && err.contains("another process is listening"),
        "{err}"
    );
    assert!(!dir.join("z.pid").exists());
}

#[test]
fn a_second_instance_on_the_same_pidfile_refuses_and_leaves_the_file_intact() {
    let dir = TestDir::new("second");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let before = std::fs::metadata(&d.pidfile).unwrap();
    let text = std::fs::read_to_string(&d.pidfile).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let pidfile = d.pidfile.to_str().unwrap().to_string();
    let (code, err) = run_to_exit(
        &dir,
        &[
            "--http-socket",
            &addr,
            "--safe-pidfile",
            &pidfile,
            "--vacuum",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("pid {}", d.pid)) && err.contains("another uwsgid"),
        "{err}"
    );
    assert!(!listening(&addr), "the refused instance bound its port");
    let after = std::fs::metadata(&d.pidfile).unwrap();
    assert_eq!(std::fs::read_to_string(&d.pidfile).unwrap(), text);
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    d.assert_alive();
}

#[test]
fn the_pidfile_is_atomic_0644_and_never_follows_a_symlink() {
    let dir = TestDir::new("pidfile");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    assert_eq!(
        std::fs::read_to_string(&d.pidfile).unwrap(),
        format!("{}\n", d.pid)
    );
    assert_eq!(
        std::fs::metadata(&d.pidfile).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    drop(d);
    let target = dir.write("target.txt", "do not touch\n");
    let link = dir.join("link.pid");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, err) = run_to_exit(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            link.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "do not touch\n");
}

#[test]
fn sigkill_of_the_master_leaves_no_worker_alive() {
    let dir = TestDir::new("sigkill-master");
    let mut d = Daemon::start(&dir, &["--processes", "4"]);
    let workers = d.worker_pids();
    assert_eq!(workers.len(), 4);
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    for w in workers {
        wait_for(
            "the worker to die with its master",
            Duration::from_secs(5),
            || (!alive(w as i32)).then_some(()),
        );
    }
}

#[test]
fn a_killed_worker_is_respawned_and_logged() {
    let dir = TestDir::new("respawn");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let victim = d.worker_pids()[0];
    // SAFETY: killing a worker of the daemon this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let s = d.wait_stats("a new worker in slot 1", |s| {
        let w = &s["workers"][0];
        (w["pid"] != victim && w["uwsgid"]["ready"] == true).then(|| s.clone())
    });
    assert_eq!(s["workers"][0]["respawn_count"], 2);
    assert!(s["workers"][0]["uwsgid"]["last_exit"]
        .as_str()
        .unwrap()
        .contains("signal 9"));
    d.wait_log(&format!("(pid {victim}) died"));
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn a_crash_looping_worker_is_backed_off_and_costs_no_busy_cpu() {
    let dir = TestDir::new("crash-loop");
    let script = dir.write("crash.sh", "#!/bin/sh\nexit 3\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::spawn(
        &dir,
        &[
            "--processes",
            "2",
            "--worker-exec",
            script.to_str().unwrap(),
        ],
    );
    wait_for("the pidfile", Duration::from_secs(10), || {
        common::pidfile::read(&d.pidfile).ok()
    });
    let ticks = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let start = ticks(d.pid);
    let t0 = Instant::now();
    wait_for(
        "backoff to grow past a second",
        Duration::from_secs(20),
        || (d.log_count("failed start 5 in a row") >= 1).then_some(()),
    );
    let used = ticks(d.pid) - start;
    let wall = t0.elapsed();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = used as f64 / hz;
    assert!(
        cpu < wall.as_secs_f64() * 0.2,
        "master used {cpu:.2}s CPU in {wall:?} of crash loop"
    );
    // Signals and stats still work, and the slots say why they are empty: in backoff (the
    // slot is in it 1.6 s of every turn now), with the next start due.
    let s = d.wait_stats("slot 1 in backoff", |s| {
        (s["workers"][0]["status"] == "backoff").then(|| s.clone())
    });
    let w = &s["workers"][0];
    assert!(w["uwsgid"]["next_spawn_unix_ms"].as_u64() > Some(0), "{w}");
    assert!(w["uwsgid"]["failed_starts"].as_u64() >= Some(3), "{w}");
    assert!(
        w["uwsgid"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("status 3"),
        "{w}"
    );
    d.signal(libc::SIGINT);
    let status = d.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_embedded_default_serves_on_port_8000_with_files_in_the_runtime_dir() {
    if listening("127.0.0.1:8000") {
        skip("something else listens on 127.0.0.1:8000, the embedded default's port");
        return;
    }
    let dir = TestDir::new("default");
    let runtime = dir.join("runtime");
    let mut cmd = Command::new(bin("uwsgid"));
    cmd.current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd.stderr(std::fs::File::create(dir.join("default.log")).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let guard = KillGroup(pid);
    let pidfile = runtime.join("default").join("uwsgid.pid");
    wait_for(
        "the default instance's pidfile",
        Duration::from_secs(10),
        || {
            common::pidfile::read(&pidfile)
                .ok()
                .filter(|c| c.pid == pid)
        },
    );
    let (status, body) = wait_for("the default page", Duration::from_secs(10), || {
        http_get("127.0.0.1:8000", "/").ok()
    });
    assert_eq!(status, 200);
    assert!(
        body.contains("uwsgid is serving") && body.contains("generation 1"),
        "{body}"
    );
    for f in ["master.fifo", "stats.sock"] {
        assert!(runtime.join("default").join(f).exists(), "{f} missing");
    }
    // The master announces where its files are once it has started; it may serve first.
    let where_ = runtime.join("default").display().to_string();
    let said = poll(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(dir.join("default.log")).unwrap_or_default();
        log.contains(&where_).then_some(())
    });
    assert!(
        said.is_some(),
        "the log does not say where: {}",
        std::fs::read_to_string(dir.join("default.log")).unwrap_or_default()
    );
    // SAFETY: stopping the instance this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    child.wait().unwrap();
    drop(guard);
    assert!(!pidfile.exists(), "the default instance left its pidfile");
}

struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: the process (and process group, where it leads one) this test started;
        // its workers die with it.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn daemonize_returns_once_serving_and_reports_a_failed_start() {
    let dir = TestDir::new("daemonize");
    let (code, _) = run_to_exit(
        &dir,
        &[
            "--daemonize",
            "d.log",
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            "d.pid",
            "--demo-routes",
        ],
    );
    assert_eq!(code, 0);
    let pid = common::pidfile::read(&dir.join("d.pid"))
        .expect("pidfile written before the launcher returned")
        .pid;
    let guard = KillGroup(pid);
    assert!(alive(pid));
    let record = common::discovery::read_record(&dir.join("d.pid")).unwrap();
    assert_eq!(http_get(&record.listeners[0], "/").unwrap().0, 200);
    // A second daemonized start on the same pidfile fails, and says so to the launcher.
    let (code, err) = run_to_exit(
        &dir,
        &[
            "--daemonize",
            "e.log",
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            "d.pid",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another uwsgid") && err.contains("e.log"),
        "{err}"
    );
    // SAFETY: stopping the daemon this test started, by its pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    });
    drop(guard);
}

#[test]
fn a_worker_that_never_becomes_ready_is_killed_at_the_start_timeout() {
    let dir = TestDir::new("start-timeout");
    // `sleep` never says READY=1 and there is no ready grace: only the start timeout ends it.
    let mut d = Daemon::spawn(
        &dir,
        &[
            "--processes",
            "1",
            "--worker-exec",
            "sleep 600",
            "--worker-start-timeout",
            "0.3",
        ],
    );
    wait_for("the pidfile", Duration::from_secs(10), || {
        common::pidfile::read(&d.pidfile).ok()
    });
    d.wait_log("not ready after 0.3s: SIGKILL");
    let s = d.wait_stats("a failed start", |s| {
        (s["workers"][0]["uwsgid"]["failed_starts"].as_u64() >= Some(1)).then(|| s.clone())
    });
    assert!(
        s["workers"][0]["uwsgid"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{s}"
    );
    d.signal(libc::SIGINT);
    d.wait_exit(Duration::from_secs(5));
}
