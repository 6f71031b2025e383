//! Shared pieces of the control-channel tests (FIFO, stats, touch files, chain reloads,
//! vacuum): stats fetched over any address and in HTTP mode, a concurrent request loop that
//! counts every failure, a stats sampler that counts workers out of service, FIFO writes to any
//! slot, and file touching. Everything polls against a deadline; nothing sleeps a fixed time.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use uwsgi_tests::*;

/// Where a stats server listens, and whether it speaks HTTP.
#[derive(Clone, Debug)]
pub enum StatsAt {
    Unix(PathBuf),
    Tcp(String),
}

/// Read one stats document; `http` sends a request first and strips the response head.
pub fn fetch_stats(at: &StatsAt, http: bool) -> Option<Value> {
    let raw = fetch_raw(at, http, Duration::from_secs(5))?;
    let body = if http {
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.split_once("\r\n\r\n")?.1.to_string()
    } else {
        String::from_utf8(raw).ok()?
    };
    serde_json::from_str(&body).ok()
}

/// The raw bytes a stats server sends for one connection.
pub fn fetch_raw(at: &StatsAt, http: bool, timeout: Duration) -> Option<Vec<u8>> {
    fn talk(mut s: impl Read + Write, http: bool) -> Option<Vec<u8>> {
        if http {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        Some(raw)
    }
    match at {
        StatsAt::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            talk(s, http)
        }
        StatsAt::Tcp(a) => {
            let s = std::net::TcpStream::connect(a).ok()?;
            s.set_read_timeout(Some(timeout)).ok()?;
            talk(s, http)
        }
    }
}

/// Wait until the stats document satisfies `f` (the daemon must stay alive meanwhile).
pub fn wait_stats_at<T>(
    d: &Daemon,
    at: &StatsAt,
    http: bool,
    what: &str,
    mut f: impl FnMut(&Value) -> Option<T>,
) -> T {
    wait_for(what, Duration::from_secs(20), || {
        d.assert_alive();
        fetch_stats(at, http).and_then(|s| f(&s))
    })
}

/// The workers array of a stats document.
pub fn workers(s: &Value) -> Vec<Value> {
    s["workers"].as_array().cloned().unwrap_or_default()
}

/// Pids of the workers a document shows.
pub fn pids(s: &Value) -> Vec<i64> {
    workers(s)
        .iter()
        .map(|w| w["pid"].as_i64().unwrap_or(0))
        .collect()
}

/// Workers a document shows as not in service: not ready, not accepting, or without a pid.
pub fn out_of_service(s: &Value) -> usize {
    workers(s)
        .iter()
        .filter(|w| {
            !(w["uwsgid"]["ready"] == true && w["accepting"] == 1 && w["pid"].as_i64() > Some(0))
        })
        .count()
}

/// Write bytes to a FIFO path (non-blocking open: fails with ENXIO if nobody reads).
pub fn fifo_write_to(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    f.write_all(bytes)
}

/// Wait until `needle` occurs at least `n` times in the daemon's log.
pub fn wait_log_count(d: &Daemon, needle: &str, n: usize) {
    wait_for(
        &format!("{n} log line(s) {needle:?}"),
        Duration::from_secs(20),
        || (d.log_count(needle) >= n).then_some(()),
    );
}

/// Wait until the file at `path` contains `needle`; returns its text.
pub fn wait_file_contains(path: &Path, needle: &str) -> String {
    wait_for(
        &format!("{} to contain {needle:?}", path.display()),
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|t| t.contains(needle))
        },
    )
}

/// `touch FILE`: create it if missing, set its mtime to now.
pub fn touch(path: &Path) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open touch file");
    f.set_modified(SystemTime::now()).expect("set mtime");
}

/// A full barrier through the master loop: two FIFO `s` commands in two separate loop
/// iterations, so everything queued before the call has been handled when it returns.
pub fn barrier(d: &Daemon) {
    for _ in 0..2 {
        let n = d.log_count("statistics: generation");
        d.fifo_write(b"s");
        wait_log_count(d, "statistics: generation", n + 1);
    }
}

/// The request loop (now in the harness): re-exported for the tests that name it here.
#[allow(unused_imports)]
pub use uwsgi_tests::Load;

/// Samples the stats document as fast as it answers, recording what `probe` says of each.
pub struct Sampler<T: Send + 'static> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<T>>>,
}

impl<T: Send + 'static> Sampler<T> {
    pub fn start(at: StatsAt, probe: impl Fn(&Value) -> T + Send + 'static) -> Sampler<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(s) = fetch_stats(&at, false) {
                    seen.push(probe(&s));
                }
            }
            seen
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// The Python interpreter itself (not a version-manager shim that adds its own startup). When
/// there is none, [`require`] says so (a failure under CI, a visible skip elsewhere) and the
/// caller returns.
pub fn python() -> Option<String> {
    let found = interpreter();
    require(found.is_some(), "python3", "apt-get install python3").then_some(())?;
    found
}

fn interpreter() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

/// Start a daemon whose harness arguments are given explicitly (`--stats` on TCP, say): returns
/// it once the pidfile record names it, without the harness's Unix-socket stats wait.
pub fn spawn_custom(dir: &TestDir, args: &[&str]) -> Daemon {
    Daemon::spawn_bare(dir, args)
}

/// The usual harness files, for [`spawn_custom`]: pidfile and FIFO in `dir`.
pub fn harness_args(dir: &TestDir) -> Vec<String> {
    vec![
        "--safe-pidfile".into(),
        dir.join("uwsgid.pid").to_string_lossy().into_owned(),
        "--master-fifo".into(),
        dir.join("master.fifo").to_string_lossy().into_owned(),
        "--demo-routes".into(),
        "--http-socket".into(),
        "127.0.0.1:0".into(),
    ]
}
