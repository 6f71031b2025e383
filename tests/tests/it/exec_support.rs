//! Shared pieces of the exec-worker tests: the Python programs they run as workers (a WSGI app
//! and a protocol probe), a concurrent request loop that counts every failure, and /proc
//! readers for worker fds, start times and master CPU time.
//!
//! Held requests ([`hold_every_worker`], [`release_when_draining`]) replace sleeping requests
//! wherever a test must know a request is in a worker: the app says which worker holds it and
//! answers only when the test releases it, so "in flight when the worker was told to stop" is
//! observed, not guessed from durations.
//!
//! The probe is a tiny systemd-socket-activation server written against the protocol only
//! (no uwsgid code): it checks nothing itself, it reports what it received, so the tests judge.

#![allow(dead_code)]

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// A WSGI app: `/` hello, `/sleep?ms=N`, `/pid`, `/env?NAME`, `/gen` (a module-level marker the
/// tests rewrite to tell old code from new), `/hold?tag=T` (see [`hold_every_worker`]).
pub const APP: &str = r#"
import os, time
MARK = "v1"
def hold(tag):
    # Say which worker holds the request (written whole: a reader never sees it empty), then
    # answer only once the test releases it (bounded: a test that forgets fails on the body).
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
    if path == "/hold":
        body = hold(query.split("=", 1)[1])
    elif path == "/sleep":
        ms = int(query.split("=", 1)[1]) if "=" in query else 0
        time.sleep(ms / 1000.0)
        body = "slept %d ms in %d" % (ms, os.getpid())
    elif path == "/pid":
        body = str(os.getpid())
    elif path == "/mark":
        body = MARK
    elif path == "/env":
        body = os.environ.get(query, "")
    else:
        body = "Hello from WSGI %s" % MARK
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

/// The protocol probe. Options: `notify` (send READY=1 and a STATUS= line), `exit=N` (exit N at
/// once), `exit-slot=ID` (exit 1 at once if this is worker ID), `hold-signal=NAME` (on that
/// signal, write a line to `signals.txt` and keep running), `recycle=SECS` (that long after
/// start, say STOPPING=1 unasked, serve one more second, exit 0). Answers every HTTP request with a
/// JSON document of what it received: pid, LISTEN_* variables, its fds at start, generation.
pub const PROBE: &str = r#"
import os, sys
fds_at_start = {}
for name in os.listdir("/proc/self/fd"):
    try:
        fds_at_start[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass  # the directory listing's own fd, closed by now
import json, selectors, signal, socket, threading

opts = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
if "exit" in opts:
    sys.exit(int(opts["exit"]))
if opts.get("exit-slot") == os.environ.get("UWSGID_WORKER_ID"):
    sys.stderr.write("probe: worker %s exits at start as told\n" % opts["exit-slot"])
    sys.exit(1)

received = {k: os.environ.get(k) for k in
            ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
             "UWSGID_WORKER_ID", "UWSGID_GENERATION", "PROBE_ENV")}
received["pid"] = os.getpid()
received["cwd"] = os.getcwd()
received["fds_at_start"] = fds_at_start

def stop(signum, frame):
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
if "hold-signal" in opts:
    held = getattr(signal, opts["hold-signal"])
    def hold(signum, frame):
        with open("signals.txt", "a") as f:
            f.write("%d got %s\n" % (os.getpid(), signal.Signals(signum).name))
    signal.signal(held, hold)

sel = selectors.DefaultSelector()
for i in range(int(os.environ["LISTEN_FDS"])):
    s = socket.socket(fileno=3 + i)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)

def send_notify(text):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(text.encode(), addr)
    n.close()

if "notify" in opts:
    send_notify("READY=1\nSTATUS=probe gen %s worker %s" % (
        received["UWSGID_GENERATION"], received["UWSGID_WORKER_ID"]))

body = json.dumps(received).encode()
leave_at = None
if "recycle" in opts:
    import time
    def recycle():
        global leave_at
        send_notify("STOPPING=1\nSTATUS=recycling")
        leave_at = time.monotonic() + 1.0
    t = threading.Timer(float(opts["recycle"]), recycle)
    t.daemon = True
    t.start()
while True:
    if leave_at is not None and time.monotonic() >= leave_at:
        sys.exit(0)
    for key, _ in sel.select(0.1):
        try:
            c, _ = key.fileobj.accept()
        except (BlockingIOError, InterruptedError):
            continue
        c.setblocking(True)
        c.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
        finally:
            c.close()
"#;

pub fn python() -> String {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    "python3".to_string()
}

/// Write the WSGI app into `dir` as `app.py` and return its path.
pub fn write_app(dir: &TestDir) -> PathBuf {
    dir.write("app.py", APP)
}

/// The `--worker-exec` command line running the probe with `opts`.
pub fn probe_cmd(dir: &TestDir, opts: &str) -> String {
    let p = dir.write("probe.py", PROBE);
    format!("{} {} {opts}", python(), p.display())
}

/// What the probe answered, parsed.
pub fn probe_get(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/").expect("probe answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("probe said {body:?}: {e}"))
}

/// The worker entries of a stats document.
pub fn workers(s: &serde_json::Value) -> Vec<serde_json::Value> {
    s["workers"].as_array().cloned().unwrap_or_default()
}

/// The request loop (now in the harness): re-exported for the tests that name it here.
#[allow(unused_imports)]
pub use uwsgi_tests::Load;

/// A request started now in its own thread; join for its answer.
/// A request's outcome and how long it took.
pub type Timed = (Result<(u16, String), String>, Duration);

pub fn in_flight(addr: &str, path: &str) -> JoinHandle<Timed> {
    let (addr, path) = (addr.to_string(), path.to_string());
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = http_get(&addr, &path);
        (r, t.elapsed())
    })
}

/// A request the app holds in its `/hold` route: its tag, the worker holding it, its thread.
pub struct Held {
    pub tag: String,
    pub pid: i64,
    pub answer: JoinHandle<Timed>,
}

/// Start `/hold` requests on `d`, one after another, until every worker of `pids` holds one,
/// and return them, one per worker, each naming the worker that holds it. A worker serving
/// several requests at once keeps taking the next one until its threads are all held (only
/// then does the next go elsewhere), so the extra ones are released once every worker holds
/// one: a native worker whose every thread stayed held could not even act on its stop signal,
/// and the test would wait for a drain that could not start.
pub fn hold_every_worker(d: &Daemon, prefix: &str, pids: &[i64]) -> Vec<Held> {
    let mut held: Vec<Held> = Vec::new();
    // Bounded: past 64 requests one worker would be taking them all.
    for i in 0..64 {
        if pids.iter().all(|p| held.iter().any(|h| h.pid == *p)) {
            let mut one_each: Vec<Held> = Vec::new();
            for h in held {
                if one_each.iter().any(|o| o.pid == h.pid) {
                    std::fs::write(d.dir.join(format!("release-{}", h.tag)), "").unwrap();
                    let (r, _) = h.answer.join().unwrap();
                    assert_eq!(
                        r.unwrap_or_else(|e| panic!("{}: {e}", h.tag)),
                        (200, format!("released {} in {}", h.tag, h.pid)),
                    );
                } else {
                    one_each.push(h);
                }
            }
            return one_each;
        }
        let tag = format!("{prefix}-{i}");
        let answer = in_flight(&d.addr, &format!("/hold?tag={tag}"));
        let file = d.dir.join(format!("held-{tag}"));
        let pid = wait_for(
            &format!("request {tag} held by a worker"),
            Duration::from_secs(20),
            || std::fs::read_to_string(&file).ok()?.trim().parse().ok(),
        );
        assert!(
            pids.contains(&pid),
            "{tag} held by {pid}, not one of {pids:?}"
        );
        held.push(Held { tag, pid, answer });
    }
    let by: Vec<i64> = held.iter().map(|h| h.pid).collect();
    panic!("64 held requests did not reach every worker of {pids:?}: {by:?}");
}

/// The count of requests in flight that worker `pid` (the bundled runner) logged when it
/// was told to stop and began to drain, if it did.
pub fn drained_with(log: &str, pid: i64) -> Option<u64> {
    let me = format!("[{pid}]: ");
    log.lines().find_map(|l| {
        let rest = l.split_once(&me)?.1;
        let n = rest.split_once(": draining, ")?.1;
        n.strip_suffix(" requests in flight")?.parse().ok()
    })
}

/// Release each held request once its worker logged that it drains with it in flight (so the
/// worker was told to stop while serving it; the bundled runner and the native worker log
/// alike), then check each was answered in full by the worker that held it. Releasing one at a time lets a chain reload go on to the next slot.
pub fn release_when_draining(d: &Daemon, held: Vec<Held>) {
    let mut waiting: Vec<&Held> = held.iter().collect();
    wait_for(
        "every holding worker told to stop with its request in flight",
        Duration::from_secs(30),
        || {
            let log = d.log_text();
            waiting.retain(|h| {
                let Some(n) = drained_with(&log, h.pid) else {
                    return true;
                };
                let mine = held.iter().filter(|o| o.pid == h.pid).count() as u64;
                assert!(
                    n >= mine,
                    "worker {} drained with {n} requests in flight, not its {mine} held ones",
                    h.pid
                );
                assert!(
                    !h.answer.is_finished(),
                    "held request {} (worker {}) ended before its release: the stop cut it",
                    h.tag,
                    h.pid
                );
                std::fs::write(d.dir.join(format!("release-{}", h.tag)), "").unwrap();
                false
            });
            waiting.is_empty().then_some(())
        },
    );
    for h in held {
        let (r, _) = h.answer.join().unwrap();
        let (status, body) = r.unwrap_or_else(|e| panic!("held request {} cut: {e}", h.tag));
        assert_eq!(
            (status, body.as_str()),
            (200, format!("released {} in {}", h.tag, h.pid).as_str()),
            "the held request was not finished by the worker that held it"
        );
    }
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields after the command: state is [0], utime is field 14 overall -> [11], stime [12].
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// When `pid` started, in seconds since boot (its /proc start time, to the clock tick: the
/// true start is at most one tick later).
pub fn start_boottime(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Field 22 overall (starttime) -> [19] after the command.
    let ticks: u64 = rest[19].parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Now, in seconds since boot (`CLOCK_BOOTTIME`, the clock of /proc start times).
pub fn boottime_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_BOOTTIME)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The fds open in `pid`: (number, link target).
pub fn fds_of(pid: i64) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let l = std::fs::read_link(e.path()).ok()?;
            Some((n, l.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// The process state letter of `pid` (R, S, T, Z…).
pub fn proc_state(pid: i64) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next()
        .unwrap_or('?')
}

/// Wait until the daemon's pidfile record names it and return its first listener address,
/// without waiting for workers to be ready (for instances that never get there).
pub fn wait_record(d: &Daemon) -> String {
    d.wait_record()
}
