//! Helpers for the uwsgictl integration tests: run the real binary, own temp dirs, decoy
//! processes that record every signal they receive, and guards for real uWSGI and uwsgid
//! instances that are killed by pid when the test ends.
//!
//! Nothing here uses fixed ports or fixed sleeps: ports come from binding port 0, readiness
//! is polled against a deadline, and every process started is stopped in `Drop` by its pid
//! (its own process group, which it leads).
//!
//! The test binary reaches it as `uwsgi_tests::ctl`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The directory holding the workspace binaries: the test executable lives in `deps/` below it.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn ctl_bin() -> PathBuf {
    let p = bin_dir().join("uwsgictl");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (with the same CARGO_TARGET_DIR) first",
        p.display()
    );
    p
}

pub fn uwsgid_bin() -> PathBuf {
    bin_dir().join("uwsgid")
}

/// The workspace root (for generated files).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("uwsgictl-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
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

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
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

/// A free loopback TCP port (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// Is real uWSGI with the python3 plugin here? Without it: skip with a message, except in CI
/// (`CI=true`), where its absence is a failure.
pub fn uwsgi_available() -> bool {
    let ok = Path::new("/usr/bin/uwsgi").exists()
        && (Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists()
            || Command::new("/usr/bin/uwsgi")
                .args(["--plugin", "python3", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()));
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but /usr/bin/uwsgi with the python3 plugin is missing: install \
                 uwsgi-core and uwsgi-plugin-python3 in .ci/run"
            );
        }
        eprintln!(
            "SKIPPED: /usr/bin/uwsgi with the python3 plugin is not installed (apt-get install \
             uwsgi-core uwsgi-plugin-python3); the real-uWSGI interop test did not run"
        );
    }
    ok
}

const WSGI_APP: &str = r#"
import os, time
def application(env, start_response):
    path = env.get('PATH_INFO', '')
    if path == '/sleep':
        q = env.get('QUERY_STRING', '')
        ms = int(q.split('=', 1)[1]) if '=' in q else 1000
        time.sleep(ms / 1000.0)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    if path == '/pid':
        return [str(os.getpid()).encode()]
    return [b'Hello World']
"#;

/// A real uWSGI 2.0 master on loopback, stopped (SIGINT, then SIGKILL to its group) on drop.
pub struct Uwsgi {
    child: Child,
    pub pid: i32,
    pub port: u16,
    pub pidfile: PathBuf,
    pub stats: PathBuf,
    pub fifo: PathBuf,
    pub ini: PathBuf,
    pub log: PathBuf,
}

impl Uwsgi {
    pub fn start(dir: &TempDir, processes: u32) -> Uwsgi {
        let app = dir.join("app.py");
        fs::write(&app, WSGI_APP).unwrap();
        let port = free_port();
        let pidfile = dir.join("uwsgi.pid");
        let stats = dir.join("stats.sock");
        let fifo = dir.join("master.fifo");
        let log = dir.join("uwsgi.log");
        let ini = dir.join("app.ini");
        fs::write(
            &ini,
            format!(
                "[uwsgi]\nmaster = true\nplugin = python3\nhttp-socket = 127.0.0.1:{port}\n\
                 wsgi-file = %dapp.py\nprocesses = {processes}\nsafe-pidfile = {}\n\
                 stats = {}\nmaster-fifo = {}\nlogto = {}\nworker-reload-mercy = 10\n",
                pidfile.display(),
                stats.display(),
                fifo.display(),
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/uwsgi")
            .arg("--ini")
            .arg(&ini)
            .current_dir(&dir.path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uwsgi");
        let pid = child.id() as i32;
        let mut u = Uwsgi {
            child,
            pid,
            port,
            pidfile,
            stats,
            fifo,
            ini,
            log,
        };
        u.wait_ready();
        u
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "uwsgi exited during startup ({status}); log:\n{}",
                    self.log_text()
                );
            }
            let pidfile_ok =
                fs::read_to_string(&self.pidfile).is_ok_and(|t| t.trim() == self.pid.to_string());
            if pidfile_ok
                && self.stats_doc().is_some_and(|d| {
                    d["workers"]
                        .as_array()
                        .is_some_and(|ws| ws.iter().all(|w| w["accepting"] == 1 && w["pid"] != 0))
                })
                && http_get(self.port, "/").is_ok_and(|(c, _)| c == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "uwsgi did not become ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The stats document, read directly (not through uwsgictl).
    pub fn stats_doc(&self) -> Option<serde_json::Value> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.stats).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok()
    }

    pub fn worker_pids(&self) -> Vec<i64> {
        self.stats_doc()
            .map(|d| {
                d["workers"]
                    .as_array()
                    .map(|ws| ws.iter().filter_map(|w| w["pid"].as_i64()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The target options for uwsgictl: pidfile, stats, FIFO.
    pub fn target(&self) -> Vec<String> {
        vec![
            "--pidfile".into(),
            self.pidfile.display().to_string(),
            "--stats".into(),
            self.stats.display().to_string(),
            "--fifo".into(),
            self.fifo.display().to_string(),
        ]
    }

    /// True once the master process has exited (reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Uwsgi {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        // SAFETY: signals to our own child (and the group it leads); no memory effects.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.exited() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above.
        unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- uwsgi log ---\n{}", self.log_text());
        }
    }
}

/// A uwsgid instance on loopback started from an ini file in `dir`, with its files in `dir`;
/// stopped (SIGINT, then SIGKILL to its group) on drop.
pub struct Uwsgid {
    child: Child,
    pub pid: i32,
    pub port: u16,
    pub pidfile: PathBuf,
    pub stats: PathBuf,
    pub fifo: PathBuf,
    pub ini: PathBuf,
    pub log: PathBuf,
}

impl Uwsgid {
    /// Is the uwsgid binary built?
    pub fn available() -> bool {
        let ok = uwsgid_bin().exists();
        if !ok {
            eprintln!(
                "SKIPPED: {} is not built (cargo build --workspace)",
                uwsgid_bin().display()
            );
        }
        ok
    }

    /// The ini text for this instance plus `extra` lines.
    pub fn ini_text(&self, extra: &str) -> String {
        format!(
            "[uwsgi]\nhttp-socket = 127.0.0.1:{}\nprocesses = 2\nsafe-pidfile = {}\n\
             master-fifo = {}\nstats = {}\ndemo-routes = true\nvacuum = true\nlogto = {}\n\
             worker-reload-mercy = 10\n{extra}",
            self.port,
            self.pidfile.display(),
            self.fifo.display(),
            self.stats.display(),
            self.log.display()
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

    fn launch(dir: &TempDir, name: Option<&str>) -> Uwsgid {
        let port = free_port();
        let child = Command::new("true").spawn().unwrap();
        let mut d = Uwsgid {
            child,
            pid: 0,
            port,
            pidfile: dir.join("uwsgid.pid"),
            stats: dir.join("stats.sock"),
            fifo: dir.join("master.fifo"),
            ini: dir.join("uwsgid.ini"),
            log: dir.join("uwsgid.log"),
        };
        let _ = d.child.wait();
        let mut cmd = Command::new(uwsgid_bin());
        match name {
            None => {
                fs::write(&d.ini, d.ini_text("")).unwrap();
                cmd.arg("--ini").arg(&d.ini);
            }
            Some(name) => {
                let inst = dir.join("runtime").join(name);
                d.pidfile = inst.join("uwsgid.pid");
                d.stats = inst.join("stats.sock");
                d.fifo = inst.join("master.fifo");
                cmd.args([
                    "--name",
                    name,
                    "--processes",
                    "1",
                    "--demo-routes",
                    "--logto",
                ])
                .arg(&d.log)
                .arg("--http-socket")
                .arg(format!("127.0.0.1:{port}"));
            }
        }
        d.child = cmd
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uwsgid");
        d.pid = d.child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "uwsgid exited during startup ({status}); log:\n{}",
                    d.log_text()
                );
            }
            let ready = fs::read_to_string(&d.pidfile).is_ok_and(|t| t.trim() == d.pid.to_string())
                && d.stats_doc().is_some_and(|s| {
                    s["workers"].as_array().is_some_and(|ws| {
                        !ws.is_empty() && ws.iter().all(|w| w["uwsgid"]["ready"] == true)
                    })
                });
            if ready {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "uwsgid did not become ready; log:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stats_doc(&self) -> Option<serde_json::Value> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.stats).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Reap the master (after a stop), returning its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Uwsgid {
    fn drop(&mut self) {
        if !self.exited() {
            // SAFETY: signals to our own child and the group it leads; no memory effects.
            unsafe { libc::kill(self.pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !self.exited() {
                std::thread::sleep(Duration::from_millis(5));
            }
            // SAFETY: as above.
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- uwsgid log ---\n{}", self.log_text());
        }
    }
}
