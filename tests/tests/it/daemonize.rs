//! `--daemonize LOG` with a log it cannot use: each case ends by itself, fast, with the cause
//! on the terminal and nothing bound. A FIFO with no reader used to hang the launcher forever
//! (and it ignored SIGTERM); an unwritable path said only "exited during startup"; `/dev/full`
//! started and lost every line. `--logto` with a FIFO that has no reader is refused at once too
//! (it hung in `open()` as well).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// How long a refusal may take: it happens before anything is forked or bound.
const BOUND: Duration = Duration::from_secs(5);

/// Kills the daemon a case left running (by the pid in its pidfile), and the launcher.
struct Cleanup<'a> {
    dir: &'a TestDir,
    launcher: Option<i32>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.launcher {
            // SAFETY: the launcher this test spawned, by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(p) = common::pidfile::read(&self.dir.join("d.pid")) {
            // SAFETY: the daemon this test started, by the pid it wrote.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn launch(dir: &TestDir, log: &Path) -> Child {
    let addr = format!("127.0.0.1:{}", free_port());
    Command::new(bin("uwsgid"))
        .args(["--daemonize"])
        .arg(log)
        .args([
            "--http-socket",
            &addr,
            "--safe-pidfile",
            "d.pid",
            "--demo-routes",
        ])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uwsgid --daemonize")
}

/// Wait (bounded) for the launcher (or a foreground uwsgid) to exit by itself; (exit code, stderr, time taken).
fn finish(dir: &TestDir, mut child: Child) -> (i32, String, Duration) {
    let mut cleanup = Cleanup {
        dir,
        launcher: Some(child.id() as i32),
    };
    let t0 = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    let Some(status) = exited else {
        drop(cleanup);
        let _ = child.wait();
        panic!("uwsgid still running after {took:?}: it hangs");
    };
    cleanup.launcher = None;
    let out = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

fn assert_refused(dir: &TestDir, log: &Path, needles: &[&str]) {
    let (code, err, took) = finish(dir, launch(dir, log));
    assert_eq!(code, 1, "{}: stderr: {err}", log.display());
    assert!(took < BOUND, "{}: took {took:?}", log.display());
    assert!(err.starts_with("uwsgid: error: --daemonize"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{}: no {n:?} in: {err}", log.display());
    }
    assert!(!dir.join("d.pid").exists(), "a pidfile was written");
}

#[test]
fn a_fifo_log_with_no_reader_is_refused_at_once() {
    let dir = TestDir::new("daemonize-fifo");
    let fifo = dir.join("log.fifo");
    mkfifo(&fifo);
    let _release = ReleaseFifo(&dir);
    let (code, err, took) = finish(&dir, launch(&dir, &fifo));
    assert_eq!(code, 1, "stderr: {err}");
    assert!(took < BOUND, "took {took:?}");
    assert!(
        err.contains("log.fifo") && err.contains("FIFO with no reader"),
        "{err}"
    );
    assert!(!dir.join("d.pid").exists());
}

/// Should a daemon block in `open()` of `log.fifo` again, open it for reading on drop so that
/// it goes on, then kill it by its pidfile (bounded: a failing test must not leave it behind).
struct ReleaseFifo<'a>(&'a TestDir);

impl Drop for ReleaseFifo<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.0.join("log.fifo"));
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline && !self.0.join("d.pid").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(Cleanup {
            dir: self.0,
            launcher: None,
        });
    }
}

#[test]
fn an_unusable_log_is_refused_with_its_cause() {
    let dir = TestDir::new("daemonize-unwritable");
    // Refused even to root: sysfs lets nobody create a file (EACCES).
    let sys = Path::new("/sys/kernel");
    if sys.is_dir() {
        assert_refused(
            &dir,
            &sys.join("uwsgid-test.log"),
            &["/sys/kernel/uwsgid-test.log", "Permission denied"],
        );
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "{} is missing in CI",
            sys.display()
        );
        eprintln!("skipped the sysfs case: {} is missing", sys.display());
    }
    // Opens, but takes no line: it used to start and lose every line.
    assert_refused(
        &dir,
        Path::new("/dev/full"),
        &["/dev/full", "cannot write", "No space left on device"],
    );
}

#[test]
fn a_fifo_log_with_a_reader_gets_the_lines() {
    use std::io::Read;
    let dir = TestDir::new("daemonize-fifo-ok");
    let fifo = dir.join("log.fifo");
    mkfifo(&fifo);
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let (code, err, _) = finish(&dir, launch(&dir, &fifo));
    let _cleanup = Cleanup {
        dir: &dir,
        launcher: None,
    };
    assert_eq!(code, 0, "{err}");
    let pid = common::pidfile::read(&dir.join("d.pid")).unwrap().pid;
    let mut text = String::new();
    let mut buf = vec![0u8; 65536];
    wait_for("the master's line in the FIFO", BOUND, || {
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text.contains(&format!("master pid {pid}")).then_some(())
    });
    assert!(text.contains("starting in the background"), "{text}");
    // SAFETY: stopping the daemon this test started, by its pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn a_logto_fifo_with_no_reader_is_refused_at_once_in_the_foreground() {
    let dir = TestDir::new("logto-fifo");
    let fifo = dir.join("log.fifo");
    mkfifo(&fifo);
    let _release = ReleaseFifo(&dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin("uwsgid"))
        .arg("--logto")
        .arg(&fifo)
        .args(["--http-socket", &addr, "--safe-pidfile", "d.pid"])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uwsgid --logto");
    let (code, err, took) = finish(&dir, child);
    assert_eq!(code, 1, "stderr: {err}");
    assert!(took < BOUND, "took {took:?}");
    assert!(
        err.contains("--logto") && err.contains("FIFO with no reader"),
        "{err}"
    );
    assert!(!listening(&addr), "the port is bound");
}
