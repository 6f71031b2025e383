//! The stats server (BEHAVIOUR 1.9): the document parses into `common`'s types and carries every
//! key of uWSGI 2.0's with the same JSON types, its values are real, HTTP mode answers HTTP, and
//! no client (silent, never reading, or 200 at once) delays signals or reloads. uwsgitop shows a
//! uwsgid instance.

use crate::chan;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chan::*;
use serde_json::Value;
use uwsgi_tests::*;

const SAMPLE: &str = include_str!("../../fixtures/uwsgi-2.0.31/busy-sleep.raw.json");
const KEYS: &str = include_str!("../../fixtures/uwsgi-2.0.31/keys.txt");

/// The JSON type of a value, integers told apart from other numbers.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `keys` present in `ours` with the type it has in `theirs`.
fn same_keys_and_types(what: &str, keys: &Value, ours: &Value, theirs: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    for k in keys.as_array().unwrap() {
        let k = k.as_str().unwrap();
        match ours.get(k) {
            None => wrong.push(format!("{what}.{k} missing")),
            Some(v) if kind(v) != kind(&theirs[k]) => wrong.push(format!(
                "{what}.{k} is {} ({v}) where uWSGI has {} ({})",
                kind(v),
                kind(&theirs[k]),
                theirs[k]
            )),
            Some(_) => {}
        }
    }
    wrong
}

#[test]
fn document_has_every_uwsgi_key_with_uwsgi_types_and_parses_into_common() {
    // A directory name that needs escaping in JSON: the cwd is reported in it.
    let dir = TestDir::new("stats-\"q\\");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let raw = fetch_raw(
        &StatsAt::Unix(d.stats.clone()),
        false,
        Duration::from_secs(5),
    )
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let doc = common::stats::parse(&text).expect("parses into StatsDocument");
    assert_eq!(doc.workers.len(), 2);
    assert_eq!(doc.pid, d.pid as i64);
    assert_eq!(PathBuf::from(&doc.cwd), dir.path);
    assert!(doc.uwsgid.is_some() && doc.workers.iter().all(|w| w.uwsgid.is_some()));

    let ours: Value = serde_json::from_str(&text).unwrap();
    let theirs: Value = serde_json::from_str(SAMPLE).unwrap();
    let keys: Value = serde_json::from_str(KEYS).unwrap();
    let mut wrong = same_keys_and_types("top", &keys["top"], &ours, &theirs);
    let (w, tw) = (&ours["workers"][0], &theirs["workers"][0]);
    wrong.extend(same_keys_and_types("worker", &keys["worker"], w, tw));
    wrong.extend(same_keys_and_types(
        "core",
        &keys["core"],
        &w["cores"][0],
        &tw["cores"][0],
    ));
    wrong.extend(same_keys_and_types(
        "app",
        &keys["app"],
        &w["apps"][0],
        &tw["apps"][0],
    ));
    wrong.extend(same_keys_and_types(
        "socket",
        &keys["socket"],
        &ours["sockets"][0],
        &theirs["sockets"][0],
    ));
    for lock in ours["locks"].as_array().unwrap() {
        let lock = lock.as_object().unwrap();
        if lock.len() != 1 || !lock.values().all(|v| kind(v) == "integer") {
            wrong.push(format!("lock {lock:?} is not one name with an integer"));
        }
    }
    assert!(
        ours["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_object().unwrap().contains_key("user 0")),
        "{}",
        ours["locks"]
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn values_are_real_rss_vsz_requests_and_respawns() {
    let dir = TestDir::new("stats-values");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    for _ in 0..5 {
        assert_eq!(d.get("/").unwrap().0, 200);
    }
    // The worker counts a request (requests, then tx, then times) and only then goes idle,
    // a moment after the client has its answer: wait for both, not for the count alone.
    let s = d.wait_stats("5 requests counted and the workers idle", |s| {
        let total: u64 = workers(s)
            .iter()
            .map(|w| w["requests"].as_u64().unwrap())
            .sum();
        (total == 5 && workers(s).iter().all(|w| w["status"] == "idle")).then(|| s.clone())
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for w in workers(&s) {
        assert!(w["rss"].as_u64() > Some(0), "{w}");
        assert!(w["vsz"].as_u64() >= w["rss"].as_u64(), "{w}");
        assert_eq!(w["respawn_count"], 1, "{w}");
        assert!(w["last_spawn"].as_u64().unwrap().abs_diff(now) < 120, "{w}");
        assert_eq!(w["apps"][0]["requests"], w["requests"], "{w}");
        assert_eq!(w["cores"][0]["requests"], w["delta_requests"], "{w}");
        if w["requests"].as_u64() > Some(0) {
            assert!(w["tx"].as_u64() > Some(0), "{w}");
        }
        assert_eq!(w["status"], "idle");
        assert_eq!(w["accepting"], 1);
    }
    // Counters survive a workers reload (uWSGI keeps them per slot); respawns count up.
    d.fifo_write(b"w");
    let s = d.wait_generation(2);
    let total: u64 = workers(&s)
        .iter()
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5, "{s}");
    assert!(workers(&s).iter().all(|w| w["respawn_count"] == 2));
    assert!(workers(&s).iter().all(|w| w["delta_requests"] == 0));
}

#[test]
fn a_worker_in_a_request_is_busy_with_its_request_shown() {
    let dir = TestDir::new("stats-busy");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let slow = std::thread::spawn({
        let addr = d.addr.clone();
        move || http_get(&addr, "/sleep?ms=800&x=1")
    });
    // The worker marks itself busy, then (a moment later, once the head is parsed) shows the
    // request: wait for the request shown, not for busy alone.
    let w = d.wait_stats("the worker busy with its request shown", |s| {
        let w = s["workers"][0].clone();
        let shown = w["cores"][0]["vars"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "PATH_INFO=/sleep"));
        (w["status"] == "busy" && shown).then_some(w)
    });
    let core = &w["cores"][0];
    assert_eq!(core["in_request"], 1, "{w}");
    assert!(core["req_info"]["request_start"].as_u64() > Some(0), "{w}");
    let vars: Vec<&str> = core["vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(vars.contains(&"PATH_INFO=/sleep"), "{vars:?}");
    assert!(vars.contains(&"QUERY_STRING=ms=800&x=1"), "{vars:?}");
    assert_eq!(
        vars.last(),
        Some(&""),
        "uWSGI ends vars with an empty string"
    );
    assert_eq!(slow.join().unwrap().unwrap().0, 200);
    let w = d.wait_stats("the worker idle again", |s| {
        let w = s["workers"][0].clone();
        (w["status"] == "idle").then_some(w)
    });
    assert_eq!(w["cores"][0]["in_request"], 0);
    assert_eq!(w["cores"][0]["vars"], serde_json::json!([]));
    assert!(w["running_time"].as_u64() >= Some(800_000), "{w}");
    assert!(w["avg_rt"].as_u64() > Some(0), "{w}");
}

#[test]
fn dead_and_backoff_slots_are_never_reported_idle() {
    let dir = TestDir::new("stats-dead");
    let d = Daemon::spawn(&dir, &["--processes", "2", "--worker-exec", "false"]);
    let mut seen = std::collections::BTreeSet::new();
    let s = d.wait_stats("a slot in backoff after failed starts", |s| {
        for w in workers(s) {
            seen.insert(w["status"].as_str().unwrap().to_string());
            assert_ne!(
                w["status"], "idle",
                "a slot without a ready worker shown idle: {w}"
            );
            assert_ne!(w["accepting"], 1, "{w}");
        }
        let w = s["workers"][0].clone();
        (w["status"] == "backoff" && w["uwsgid"]["failed_starts"].as_u64() >= Some(2))
            .then(|| s.clone())
    });
    let w = &s["workers"][0];
    assert_eq!(w["pid"], 0, "{w}");
    assert_eq!(w["uwsgid"]["state"], "backoff");
    assert!(w["uwsgid"]["next_spawn_unix_ms"].as_u64().is_some(), "{w}");
    assert!(
        w["uwsgid"]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains('1')),
        "{w}"
    );
    assert_eq!(s["uwsgid"]["state"], "starting");
    assert!(seen.iter().all(|st| st != "idle"), "{seen:?}");
}

#[test]
fn http_mode_answers_an_http_response() {
    let dir = TestDir::new("stats-http");
    let d = Daemon::spawn(&dir, &["--processes", "1", "--stats-http"]);
    let at = StatsAt::Unix(d.stats.clone());
    wait_stats_at(&d, &at, true, "a ready worker", |s| {
        all_ready(s).then_some(())
    });
    let raw = fetch_raw(&at, true, Duration::from_secs(5)).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let doc = common::stats::parse(body).unwrap();
    assert_eq!(doc.pid, d.pid as i64);
}

/// Whether the peer has closed a connection we never read from: true once EOF is all that is
/// left, false while it is open (data waiting or not).
fn peer_closed(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    // SAFETY: a non-blocking peek into our buffer.
    let n = unsafe {
        libc::recv(
            std::os::fd::AsRawFd::as_raw_fd(s),
            buf.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

/// Now on the wall clock, in ms since the epoch (the clock the master dates reloads with).
fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// How long after `sent_ms` the master took the request of the reload that `s` reports as its
/// last one (it dates a reload from the loop turn that read the request).
fn taken_after(s: &serde_json::Value, sent_ms: f64) -> Duration {
    let last = &s["uwsgid"]["last_reload"];
    let asked_ms =
        last["finished_unix_ms"].as_f64().unwrap() - last["duration_ms"].as_f64().unwrap();
    Duration::from_secs_f64(((asked_ms - sent_ms) / 1e3).max(0.0))
}

/// The bound for "delays nothing", from a fetch of the stats document measured in the test
/// before any difficult client: a master that waited on such a client would wait up to its
/// CLIENT_DEADLINE, and the bound stays below half of that whatever the machine's load.
fn delay_bound(baseline: Duration) -> Duration {
    (baseline * 4 + Duration::from_millis(500)).min(uwsgid::stats_server::CLIENT_DEADLINE / 2)
}

#[test]
fn a_silent_http_client_never_delays_signals_or_reloads() {
    let dir = TestDir::new("stats-silent");
    let d = Daemon::spawn(&dir, &["--processes", "2", "--stats-http"]);
    let at = StatsAt::Unix(d.stats.clone());
    wait_stats_at(&d, &at, true, "ready workers", |s| {
        all_ready(s).then_some(())
    });
    let t = Instant::now();
    assert!(fetch_stats(&at, true).is_some());
    let bound = delay_bound(t.elapsed());
    // Connects and never sends its request (HTTP mode waits for one).
    let silent = UnixStream::connect(&d.stats).unwrap();

    let t = Instant::now();
    assert!(fetch_stats(&at, true).is_some());
    assert!(t.elapsed() < bound, "{:?} (bound {bound:?})", t.elapsed());
    d.signal(libc::SIGUSR1);
    d.wait_log("statistics: generation 1");
    let sent = unix_ms_now();
    d.fifo_write(b"w");
    let s = wait_stats_at(&d, &at, true, "the workers reload", |s| {
        (s["uwsgid"]["generation"] == 2 && s["uwsgid"]["reload"].is_null() && all_ready(s))
            .then(|| s.clone())
    });
    let taken = taken_after(&s, sent);
    assert!(taken < bound, "w taken after {taken:?} (bound {bound:?})");
    assert!(
        !peer_closed(&silent),
        "the silent client was dropped before the workers reload finished"
    );
    let sent = unix_ms_now();
    d.signal(libc::SIGHUP);
    let s = wait_stats_at(&d, &at, true, "the graceful reload", |s| {
        (s["uwsgid"]["generation"] == 3
            && s["uwsgid"]["reload"].is_null()
            && s["uwsgid"]["draining"]
                .as_array()
                .is_some_and(|v| v.is_empty())
            && all_ready(s))
        .then(|| s.clone())
    });
    // Each request was taken at once: nobody waited for the silent client.
    let taken = taken_after(&s, sent);
    assert!(
        taken < bound,
        "SIGHUP taken after {taken:?} (bound {bound:?})"
    );
    drop(silent);
}

#[test]
fn two_hundred_clients_at_once_never_delay_a_reload() {
    let dir = TestDir::new("stats-200");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let t = Instant::now();
    d.stats();
    let bound = delay_bound(t.elapsed());
    let clients: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&d.stats).unwrap())
        .collect();
    let sent = unix_ms_now();
    d.fifo_write(b"w");
    let s = d.wait_generation(2);
    let taken = taken_after(&s, sent);
    assert!(taken < bound, "w taken after {taken:?} (bound {bound:?})");
    for mut c in clients {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        common::stats::parse(&text).expect("every client got a whole document");
    }
}

/// Wait until the server has sent `sock` something; how many bytes wait to be read.
fn first_bytes(sock: &impl std::os::fd::AsRawFd) -> usize {
    wait_for("the first bytes", Duration::from_secs(5), || {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD into an int we own, on our socket.
        unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut waiting) };
        (waiting > 0).then_some(waiting as usize)
    })
}

#[test]
fn a_client_that_never_reads_a_256_worker_document_delays_nothing() {
    // 256 workers make a document larger than what a Unix socket holds for its reader: a
    // client that never reads leaves the rest in the master's hands. (Over TCP the kernel's
    // send buffer took a 64-worker document whole, even for a one-byte receive window: the
    // master was done with the client at once and the test proved nothing.)
    let dir = TestDir::new("stats-stuck");
    let d = Daemon::start(&dir, &["--processes", "256"]);
    let at = StatsAt::Unix(d.stats.clone());
    let size = serde_json::to_vec_pretty(&d.stats()).unwrap().len();
    // What "delays nothing" is measured against: a fetch of the same document, here, now.
    let t = Instant::now();
    assert!(fetch_stats(&at, false).is_some());
    let baseline = t.elapsed();
    let bound = delay_bound(baseline);
    let stuck = UnixStream::connect(&d.stats).unwrap();
    // Everything the master sent is queued at the reader (a Unix socket has no send queue of
    // its own): less than the document, so the master still holds the rest.
    let queued = first_bytes(&stuck);
    assert!(
        queued + 4096 < size,
        "{queued} of {size} bytes queued at once: the test proves nothing"
    );

    let t = Instant::now();
    assert!(fetch_stats(&at, false).is_some());
    assert!(
        t.elapsed() < bound,
        "a fetch took {:?} with the stuck client held (baseline {baseline:?})",
        t.elapsed()
    );
    d.signal(libc::SIGUSR1);
    d.wait_log("statistics: generation 1");
    // The signal is taken at once: the master dates the reload from the turn that read it,
    // which must come within the same bound of sending it (the reload of 256 workers itself
    // takes what the machine gives it; only a hang is bounded there).
    let sent = unix_ms_now();
    d.signal(libc::SIGHUP);
    let s = wait_stats_at(&d, &at, false, "the graceful reload of 256 workers", |s| {
        (s["uwsgid"]["generation"] == 2
            && s["uwsgid"]["reload"].is_null()
            && s["uwsgid"]["draining"]
                .as_array()
                .is_some_and(|v| v.is_empty())
            && all_ready(s))
        .then(|| s.clone())
    });
    let taken = taken_after(&s, sent);
    assert!(
        taken < bound,
        "the SIGHUP was taken {taken:?} after it was sent (baseline {baseline:?}): did the \
         master wait for the stuck client? {}",
        s["uwsgid"]["last_reload"]
    );
    drop(stuck);
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_full_stats_server_leaves_the_master_idle_and_serving() {
    let max = uwsgid::stats_server::MAX_CLIENTS;
    let dir = TestDir::new("stats-full");
    let d = Daemon::spawn(&dir, &["--processes", "1", "--stats-http"]);
    let at = StatsAt::Unix(d.stats.clone());
    let addr = wait_stats_at(&d, &at, true, "a ready worker", |s| {
        all_ready(s).then(|| s["sockets"][0]["name"].as_str().unwrap().to_string())
    });
    // More silent clients than the server takes: the rest wait in the backlog.
    let clients: Vec<UnixStream> = (0..max + 20)
        .map(|_| UnixStream::connect(&d.stats).unwrap())
        .collect();
    // The master's own fds are at least its stdio, signalfd, notify socket, listeners, FIFO
    // ends, scoreboard and pidfile lock: `max` clients more than 8 means the server is full.
    wait_for("the server to be full", Duration::from_secs(10), || {
        let n = std::fs::read_dir(format!("/proc/{}/fd", d.pid))
            .unwrap()
            .count();
        (n >= max + 8).then_some(())
    });
    // While a worker sleeps 600 ms, the master should sleep too, not spin on its listener.
    let before = cpu_ticks(d.pid);
    let t = Instant::now();
    assert_eq!(http_get(&addr, "/sleep?ms=600").unwrap().0, 200);
    let (used, wall) = (cpu_ticks(d.pid) - before, t.elapsed());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // A quarter of the wall time measured here (a spinning master takes all of it).
    assert!(
        (used as f64 / hz) < wall.as_secs_f64() * 0.25,
        "the master used {used} ticks of CPU in {wall:?} while full"
    );
    d.signal(libc::SIGUSR1);
    d.wait_log("statistics: generation 1");
    drop(clients);
    assert!(fetch_stats(&at, true).is_some());
}

/// Run `tmux` on a private server socket (never the user's own server).
fn tmux(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .env("TERM", "xterm-256color")
        .output()
        .expect("run tmux")
}

/// Our private tmux server, ended (through its own socket) when the test ends.
struct TmuxServer(PathBuf);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = tmux(&self.0, &["kill-server"]);
    }
}

#[test]
fn uwsgitop_shows_a_uwsgid_instance() {
    if !require_program("uwsgitop", "uwsgitop (python3 -m pip install uwsgitop)")
        || !require_program("tmux", "tmux (apt-get install tmux)")
    {
        return;
    }
    let dir = TestDir::new("stats-uwsgitop");
    let d = Daemon::start(&dir, &["--processes", "3"]);
    for _ in 0..4 {
        d.get("/").unwrap();
    }
    let pids = d.worker_pids();
    let sock = dir.join("tmux.sock");
    let _server = TmuxServer(sock.clone());
    let cmd = format!("uwsgitop {}", d.stats.display());
    let out = tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "200",
            "-y",
            "40",
            &cmd,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let _ = tmux(&sock, &["set-option", "-t", "top", "remain-on-exit", "on"]);
    let screen = wait_for(
        "uwsgitop to show the workers",
        Duration::from_secs(20),
        || {
            let out = tmux(&sock, &["capture-pane", "-p", "-t", "top"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                !text.contains("Traceback"),
                "uwsgitop failed on our document:\n{text}"
            );
            (text.contains(&format!("masterpid: {}", d.pid))
                && pids.iter().all(|p| text.contains(&p.to_string())))
            .then_some(text)
        },
    );
    eprintln!("uwsgitop showed:\n{screen}");
    assert!(screen.contains("uwsgi-2.0.31-uwsgid"), "{screen}");
    assert!(screen.contains("WID"), "{screen}");
    let rows = screen
        .lines()
        .filter(|l| pids.iter().any(|p| l.contains(&p.to_string())))
        .count();
    assert_eq!(rows, 3, "{screen}");
    assert!(screen.contains("idle"), "{screen}");
}

#[test]
fn a_re_exec_does_not_cut_a_document_still_being_sent() {
    // 256 workers make a document larger than a Unix socket's send buffer, so a client that
    // does not read yet leaves the rest in the master's hands when it re-executes.
    let dir = TestDir::new("stats-across-exec");
    let d = Daemon::start(&dir, &["--processes", "256"]);
    let at = StatsAt::Unix(d.stats.clone());
    let size = serde_json::to_vec_pretty(&d.stats()).unwrap().len();
    let mut slow = UnixStream::connect(&d.stats).unwrap();
    let queued = first_bytes(&slow);
    assert!(
        queued < size,
        "the whole document ({size} bytes) fit in the socket: the test proves nothing"
    );

    d.signal(libc::SIGHUP);
    // Read as soon as the new image runs (the rest of the document is then the forked
    // helper's to send, within the client's deadline from its connect): waiting for 256 new
    // workers first would spend that deadline on the machine's speed.
    d.wait_log("re-executed in place (pid");
    slow.set_read_timeout(Some(
        uwsgid::stats_server::CLIENT_DEADLINE + Duration::from_secs(5),
    ))
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut slow, &mut text).unwrap();
    let doc = common::stats::parse(&text)
        .unwrap_or_else(|e| panic!("the client got {} bytes of about {size}: {e}", text.len()));
    assert_eq!(doc.workers.len(), 256);
    wait_stats_at(&d, &at, false, "the re-exec reload", |s| {
        (s["uwsgid"]["generation"] == 2 && s["uwsgid"]["reload"].is_null()).then_some(())
    });
}
