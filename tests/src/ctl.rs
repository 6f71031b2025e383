//! Helpers for the uwsgictl integration tests (`uwsgi_tests::ctl`): run the real binary and
//! judge its exit code and output ([`ctl()`], [`Out`]), decoy processes that record every
//! signal they receive ([`Decoy`]), and [`Uwsgid`], a uwsgid started from an ini file (or as a
//! named instance) the way an operator would, a thin layer over the one daemon guard
//! [`Daemon`].
//!
//! The names of the shared harness are re-exported here for the tests written against this
//! module: [`TempDir`] is [`TestDir`], [`eventually`] is [`wait_for`], [`Uwsgi`] lives in
//! `uwsgi.rs`. Nothing here uses fixed ports or fixed sleeps; every process started is stopped
//! in `Drop` by its pid (the process group it leads).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::dir::TestDir as TempDir;
pub use crate::http::free_port;
pub use crate::poll::wait_for as eventually;
pub use crate::uwsgi::{uwsgi_available, Uwsgi};
pub use crate::workspace_root;
use crate::{bin, Daemon, TestDir};

/// The directory holding the workspace binaries (built fresh: see `bins.rs`).
pub fn bin_dir() -> PathBuf {
    bin("uwsgictl").parent().expect("profile dir").to_path_buf()
}

/// The uwsgictl binary, built fresh.
pub fn ctl_bin() -> PathBuf {
    bin("uwsgictl")
}

/// The uwsgid binary, built fresh.
pub fn uwsgid_bin() -> PathBuf {
    bin("uwsgid")
}

/// A finished uwsgictl run.
#[derive(Debug)]
pub struct Out {
    pub cmdline: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }

    /// Assert the exit code, printing the command and its output when it differs.
    pub fn code(&self, want: i32) -> &Out {
        assert_eq!(self.code, want, "unexpected exit code\n{}", self.describe());
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Out {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Out {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// stdout as exactly one JSON document.
    pub fn json(&self) -> serde_json::Value {
        let text = self.stdout.trim();
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        let doc = match stream.next() {
            Some(Ok(v)) => v,
            other => panic!("stdout is not JSON ({other:?})\n{}", self.describe()),
        };
        assert!(
            stream.next().is_none(),
            "stdout holds more than one JSON document\n{}",
            self.describe()
        );
        doc
    }
}

/// A uwsgictl invocation.
pub struct Ctl {
    cmd: Command,
    args: Vec<String>,
}

pub fn ctl<I, S>(args: I) -> Ctl
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut cmd = Command::new(ctl_bin());
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string()).collect();
    cmd.args(&args);
    cmd.env_remove("NO_COLOR");
    cmd.env(
        "UWSGID_RUNTIME_DIR",
        std::env::temp_dir().join("uwsgictl-no-runtime"),
    );
    Ctl { cmd, args }
}

impl Ctl {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Ctl {
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Ctl {
        self.cmd.current_dir(dir);
        self
    }

    /// Run inside process group `pgid` (so a signal to "our group" would reach its members).
    pub fn process_group(mut self, pgid: i32) -> Ctl {
        self.cmd.process_group(pgid);
        self
    }

    pub fn run(mut self) -> Out {
        let started = Instant::now();
        let output = self
            .cmd
            .stdin(Stdio::null())
            .output()
            .expect("run uwsgictl");
        Out {
            cmdline: format!("uwsgictl {}", self.args.join(" ")),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

/// A process that records every catchable signal it receives, one name per line, in its log.
/// It leads its own process group. Its comm name is the script's file name.
pub struct Decoy {
    child: Child,
    pub pid: i32,
    log: PathBuf,
}

const DECOY_SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "TERM", "USR1", "USR2", "URG", "TSTP", "WINCH", "CONT", "ALRM", "PIPE",
    "TTIN", "TTOU",
];

impl Decoy {
    /// Start a decoy whose comm is `name`, in `dir`.
    pub fn spawn(dir: &Path, name: &str) -> Decoy {
        let script = dir.join(name);
        let log = dir.join(format!("{name}.signals"));
        let mut text = String::from("#!/bin/sh\n");
        for s in DECOY_SIGNALS {
            text.push_str(&format!("trap 'echo {s} >> \"$1\"' {s}\n"));
        }
        text.push_str("echo ready >> \"$1\"\nwhile :; do sleep 1 & wait $!; done\n");
        fs::write(&script, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread may fork while this one holds the script open for writing, so
        // the exec can see ETXTBSY until that child has exec'd: retry it until a deadline.
        let child = eventually(
            "the decoy script to be executable",
            Duration::from_secs(5),
            || match Command::new(&script)
                .arg(&log)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => Some(child),
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => None,
                Err(e) => panic!("spawn decoy: {e}"),
            },
        );
        let pid = child.id() as i32;
        let decoy = Decoy { child, pid, log };
        eventually("the decoy to start", Duration::from_secs(5), || {
            decoy.lines().iter().any(|l| l == "ready").then_some(())
        });
        decoy
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every signal received so far. A sentinel SIGALRM is sent and awaited first (twice), so
    /// any signal sent before this call has been recorded.
    pub fn received(&self) -> Vec<String> {
        // Count from the sentinels earlier calls already recorded.
        let before = self.lines().iter().filter(|l| *l == "ALRM").count();
        for round in before + 1..=before + 2 {
            // SAFETY: kill has no memory effects; the pid is our live child.
            unsafe { libc::kill(self.pid, libc::SIGALRM) };
            eventually(
                "the decoy to record the sentinel",
                Duration::from_secs(5),
                || (self.lines().iter().filter(|l| *l == "ALRM").count() >= round).then_some(()),
            );
        }
        self.lines()
            .into_iter()
            .filter(|l| l != "ready" && l != "ALRM")
            .collect()
    }

    /// Assert the decoy received no signal at all.
    pub fn assert_untouched(&self, context: &str) {
        let got = self.received();
        assert!(got.is_empty(), "{context}: the decoy received {got:?}");
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        // SAFETY: killpg on the group our child leads; no memory effects.
        unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET on loopback; returns (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

/// A uwsgid instance on loopback started from an ini file in `dir` (or as a named instance),
/// with its files in `dir`; a thin layer over [`Daemon`], which stops it on drop (FIFO `Q`,
/// then `killpg(SIGKILL)`). The paths are copied out for the tests that read them.
pub struct Uwsgid {
    pub daemon: Daemon,
    pub pid: i32,
    pub port: u16,
    pub pidfile: PathBuf,
    pub stats: PathBuf,
    pub fifo: PathBuf,
    pub ini: PathBuf,
    pub log: PathBuf,
}

impl Uwsgid {
    /// The uwsgid binary is built by the harness itself: always true (kept for older callers).
    pub fn available() -> bool {
        uwsgid_bin().exists()
    }

    /// The ini text for this instance plus `extra` lines.
    pub fn ini_text(&self, extra: &str) -> String {
        ini_text(
            self.port,
            &self.pidfile,
            &self.fifo,
            &self.stats,
            &self.log,
            extra,
        )
    }

    /// Start from `uwsgid.ini` in `dir` (pidfile, FIFO, stats socket and log in `dir`).
    pub fn start(dir: &TempDir) -> Uwsgid {
        Uwsgid::launch(dir, None)
    }

    /// Start as the named instance `name`, files in `dir/runtime/name/`, no ini.
    pub fn start_named(dir: &TempDir, name: &str) -> Uwsgid {
        Uwsgid::launch(dir, Some(name))
    }

    fn launch(dir: &TestDir, name: Option<&str>) -> Uwsgid {
        let port = free_port();
        let ini = dir.join("uwsgid.ini");
        let log = dir.join("uwsgid.log");
        let (pidfile, stats, fifo, args) = match name {
            None => {
                let (pidfile, stats, fifo) = (
                    dir.join("uwsgid.pid"),
                    dir.join("stats.sock"),
                    dir.join("master.fifo"),
                );
                fs::write(&ini, ini_text(port, &pidfile, &fifo, &stats, &log, "")).unwrap();
                let args = vec!["--ini".to_string(), ini.display().to_string()];
                (pidfile, stats, fifo, args)
            }
            Some(name) => {
                let inst = dir.join("runtime").join(name);
                let args = [
                    "--name",
                    name,
                    "--processes",
                    "1",
                    "--demo-routes",
                    "--logto",
                    &log.display().to_string(),
                    "--http-socket",
                    &format!("127.0.0.1:{port}"),
                ]
                .map(String::from)
                .to_vec();
                (
                    inst.join("uwsgid.pid"),
                    inst.join("stats.sock"),
                    inst.join("master.fifo"),
                    args,
                )
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut daemon = Daemon::spawn_with(dir, &args, &uwsgid_bin(), false);
        daemon.pidfile = pidfile.clone();
        daemon.stats = stats.clone();
        daemon.fifo = fifo.clone();
        daemon.wait_running();
        Uwsgid {
            pid: daemon.pid,
            daemon,
            port,
            pidfile,
            stats,
            fifo,
            ini,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    pub fn stats_doc(&self) -> Option<serde_json::Value> {
        self.daemon.try_stats()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.daemon.child.try_wait(), Ok(Some(_)))
    }

    /// Reap the master (after a stop), returning its exit code (None on a timeout or a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.daemon.child;
        crate::poll(timeout, || child.try_wait().ok().flatten())?.code()
    }
}

fn ini_text(
    port: u16,
    pidfile: &Path,
    fifo: &Path,
    stats: &Path,
    log: &Path,
    extra: &str,
) -> String {
    format!(
        "[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nprocesses = 2\nsafe-pidfile = {}\n\
         master-fifo = {}\nstats = {}\ndemo-routes = true\nvacuum = true\nlogto = {}\n\
         worker-reload-mercy = 10\n{extra}",
        pidfile.display(),
        fifo.display(),
        stats.display(),
        log.display()
    )
}
