//! uwsgictl acts only on the master it validated: a process that merely takes a master's name
//! (a Python that renamed itself `uwsgid` with `prctl(PR_SET_NAME)`, a shell script called
//! `uwsgid`) receives no signal; an instance record for A naming B's FIFO and stats socket
//! makes no command act on B; a stopped (SIGSTOP) master is reported as stopped, with the fix.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use uwsgi_tests::ctl::{ctl, Decoy};
use uwsgi_tests::*;

const COMMANDS: &[&[&str]] = &[
    &["reload"],
    &["stop", "--brutal"],
    &["signal", "TERM"],
    &["signal", "INT"],
    &["signal", "HUP"],
    &["pause", "--via", "signal"],
];

/// A Python process that renames itself `uwsgid` and logs every signal it receives.
struct PyDecoy {
    child: Child,
    pid: i32,
    log: PathBuf,
}

impl PyDecoy {
    fn spawn(dir: &TestDir) -> Option<PyDecoy> {
        let log = dir.join("py-decoy.signals");
        let script = dir.write(
            "decoy.py",
            "import ctypes, signal, sys, time\n\
             ctypes.CDLL(None).prctl(15, b'uwsgid', 0, 0, 0)\n\
             out = open(sys.argv[1], 'a')\n\
             def record(n, _):\n    out.write(signal.Signals(n).name + '\\n'); out.flush()\n\
             for s in ('SIGHUP','SIGINT','SIGTERM','SIGQUIT','SIGUSR1','SIGUSR2','SIGTSTP',\
             'SIGURG','SIGWINCH','SIGALRM'):\n    signal.signal(getattr(signal, s), record)\n\
             out.write('ready\\n'); out.flush()\n\
             while True: time.sleep(1)\n",
        );
        let child = match Command::new("python3")
            .arg(&script)
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_some() => panic!("python3: {e}"),
            Err(e) => {
                eprintln!("SKIPPED: python3 is not available: {e}");
                return None;
            }
        };
        let pid = child.id() as i32;
        let d = PyDecoy { child, pid, log };
        wait_for(
            "the decoy to rename itself",
            Duration::from_secs(10),
            || {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (comm.trim() == "uwsgid" && d.lines().iter().any(|l| l == "ready")).then_some(())
            },
        );
        Some(d)
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Signals received so far, after a SIGALRM sentinel has arrived (so nothing sent before
    /// is still in flight).
    fn received(&self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGALRM) };
        wait_for("the sentinel", Duration::from_secs(5), || {
            self.lines().iter().any(|l| l == "SIGALRM").then_some(())
        });
        self.lines()
            .into_iter()
            .filter(|l| l != "ready" && l != "SIGALRM")
            .collect()
    }
}

impl Drop for PyDecoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refuse_all(pidfile: &Path, pgid: Option<i32>, what: &str) {
    for cmd in COMMANDS {
        let mut args = vec!["--pidfile", pidfile.to_str().unwrap()];
        args.extend_from_slice(cmd);
        let mut c = ctl(&args);
        if let Some(g) = pgid {
            c = c.process_group(g);
        }
        let out = c.run();
        out.code(16).stderr_has(what);
    }
}

#[test]
fn a_python_renamed_uwsgid_receives_no_signal() {
    let dir = TestDir::new("py-decoy");
    let Some(decoy) = PyDecoy::spawn(&dir) else {
        return;
    };
    let pidfile = dir.write("decoy.pid", &format!("{}\n", decoy.pid));
    refuse_all(&pidfile, None, "its executable is");
    let got = decoy.received();
    assert!(got.is_empty(), "the decoy received {got:?}");
}

#[test]
fn a_script_named_uwsgid_receives_no_signal() {
    let dir = TestDir::new("sh-decoy");
    let decoy = Decoy::spawn(&dir.path, "uwsgid");
    let pidfile = dir.write("decoy.pid", &format!("{}\n", decoy.pid));
    refuse_all(&pidfile, Some(decoy.pid), "not a uwsgid or uWSGI master");
    decoy.assert_untouched("a script named uwsgid");
}

#[test]
fn a_record_naming_another_instances_fifo_and_stats_acts_on_neither() {
    let dir_a = TestDir::new("swap-a");
    let dir_b = TestDir::new("swap-b");
    let a = Daemon::start(&dir_a, &["--processes", "1"]);
    let b = Daemon::start(&dir_b, &["--processes", "1"]);
    // Instance A's record, rewritten to name B's channels (the pid stays A's).
    let mut record = common::discovery::read_record(&a.pidfile).unwrap();
    assert_eq!(record.pid, a.pid);
    record.fifo = vec![b.fifo.clone()];
    record.stats = Some(b.stats.to_str().unwrap().to_string());
    common::pidfile::write_file_atomic(
        &common::discovery::record_path(&a.pidfile),
        serde_json::to_string(&record).unwrap().as_bytes(),
        0o644,
    )
    .unwrap();
    let p = a.pidfile.to_str().unwrap();
    ctl(["--pidfile", p, "pause"])
        .run()
        .code(24)
        .stderr_has(&format!("is not open in uwsgid pid {}", a.pid));
    ctl(["--pidfile", p, "fifo", "p"])
        .run()
        .code(24)
        .stderr_has("belongs to another instance");
    ctl(["--pidfile", p, "stop", "--wait", "--timeout", "5"])
        .run()
        .code(24)
        .stderr_has("nothing was sent");
    ctl(["--pidfile", p, "stats"])
        .run()
        .code(23)
        .stderr_has(&format!("not for the master pid {}", a.pid));
    // The tie is real: A holds its own stats socket, not B's.
    let own = uwsgictl::target::StatsAddr::parse(a.stats.to_str().unwrap(), false).unwrap();
    let other = uwsgictl::target::StatsAddr::parse(b.stats.to_str().unwrap(), false).unwrap();
    assert_eq!(uwsgictl::master::listens_on(a.pid, &own), Some(true));
    assert_eq!(uwsgictl::master::listens_on(a.pid, &other), Some(false));
    // A forged stats server that answers with A's own document (A's pid) is not A's socket.
    let doc = a.stats().to_string();
    let fake = dir_a.join("fake-stats.sock");
    let listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = std::io::Write::write_all(&mut s, doc.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })
    };
    record.stats = Some(fake.to_str().unwrap().to_string());
    common::pidfile::write_file_atomic(
        &common::discovery::record_path(&a.pidfile),
        serde_json::to_string(&record).unwrap().as_bytes(),
        0o644,
    )
    .unwrap();
    ctl(["--pidfile", p, "stats"])
        .run()
        .code(23)
        .stderr_has(&format!("is not a socket the master pid {} that", a.pid));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    // B was neither paused nor stopped, A neither.
    for d in [&a, &b] {
        d.assert_alive();
        let s = d.stats();
        assert_eq!(s["uwsgid"]["state"], "running", "{s}");
    }
}

#[test]
fn a_stopped_master_is_reported_as_stopped() {
    let dir = TestDir::new("sigstop");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    d.signal(libc::SIGSTOP);
    wait_for("the master to stop", Duration::from_secs(5), || {
        let stat = fs::read_to_string(format!("/proc/{}/stat", d.pid)).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
        (state == Some('T')).then_some(())
    });
    let p = d.pidfile.to_str().unwrap();
    let cont = format!("kill -CONT {}", d.pid);
    for cmd in [&["stats"][..], &["reload"], &["pause"], &["signal", "HUP"]] {
        let mut args = vec!["--pidfile", p];
        args.extend_from_slice(cmd);
        let out = ctl(&args).run();
        out.code(1).stderr_has("is stopped").stderr_has(&cont);
        assert!(!out.stderr.contains("stats server"), "{out:?}");
    }
    ctl(["--pidfile", p, "status"])
        .run()
        .code(0)
        .stdout_has("stopped:")
        .stdout_has(&cont);
    d.signal(libc::SIGCONT);
    ctl(["--pidfile", p, "status"])
        .run()
        .code(0)
        .stdout_has("running:");
}

#[test]
fn another_users_master_is_judged_by_its_name_and_still_refuses_signals() {
    let dir = TestDir::new("foreign-user");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(uwsgi_tests::ctl::ctl_bin())
            .args(["--pidfile", d.pidfile.to_str().unwrap()])
            .args(args)
            .env(
                "UWSGID_RUNTIME_DIR",
                std::env::temp_dir().join("uwsgictl-no-runtime"),
            )
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // nobody may not read root's /proc/PID/exe: the master is still a running master...
    let (code, out, err) = as_nobody(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("running: uwsgid pid {}", d.pid)),
        "{out}"
    );
    // ...that nobody cannot signal.
    let (code, _, err) = as_nobody(&["signal", "HUP"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("belongs to another user"), "{err}");
    d.assert_alive();
    assert_eq!(d.generation(), 1);
}
