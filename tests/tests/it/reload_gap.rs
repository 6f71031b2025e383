//! The reload gap made visible: probes that time every request, on new connections and on
//! keep-alive connections, across 20 reloads of each kind (graceful `SIGHUP`, chain `c`,
//! workers `w`). A stall in which nobody accepts (the kernel queues connections on the
//! inherited listener, so nothing is refused) shows up as one slow request: the test fails when
//! any request waits longer than a bound derived from the steady-state latency measured in the
//! same test (`max(20 x steady p99, GAP_FLOOR)`), less the time the machine kept things from
//! running meanwhile (a canary thread of the test that only sleeps, and the daemon's processes'
//! run-queue waits from /proc). Every `/pid` answer is tied to the generation that served it: a
//! slow request in flight across a reload is answered by an old-generation worker, and after
//! each reload a new-generation worker answers.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// The floor of the gap bound: what a loaded 2-core machine meets between two requests while
/// a reload forks and readies new workers. A real stall (seconds without an accepting worker)
/// is far above it.
const GAP_FLOOR: Duration = Duration::from_millis(250);

/// One keep-alive HTTP/1.1 connection that reads responses by their Content-Length.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn, String> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.set_nodelay(true).ok();
        Ok(Conn { s, buf: Vec::new() })
    }

    fn send(&mut self, path: &str, close: bool) -> Result<(), String> {
        let c = if close { "Connection: close\r\n" } else { "" };
        write!(self.s, "GET {path} HTTP/1.1\r\nHost: t\r\n{c}\r\n")
            .map_err(|e| format!("send: {e}"))
    }

    /// The next response: `(status, body, the server will close)`; `Err("eof")` when the
    /// connection ended before any byte of it.
    fn recv(&mut self) -> Result<(u16, String, bool), String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| format!("no content-length in {head:?}"))?;
                if self.buf.len() >= end + 4 + len {
                    let raw: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    let (status, body) = parse_response(&raw)?;
                    return Ok((status, body, head.contains("connection: close")));
                }
            }
            match self.s.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err("eof".into()),
                Ok(0) => return Err(format!("eof inside a response: {:?}", self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if self.buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return Err("eof".into())
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// What every probe records: when a request started, how long it waited, who answered.
#[derive(Default)]
struct Record {
    /// `(start, wait, answering pid, kind, how long the probe thread itself was kept from a
    /// CPU meanwhile)`.
    samples: Vec<(Instant, Duration, i64, &'static str, Duration)>,
    errors: Vec<String>,
    /// When, and how long, a thread of this test that only sleeps 1 ms at a time was kept
    /// from running (over 5 ms): what the machine itself did to every process then, this
    /// test's timing threads and the daemon's workers alike.
    stalls: Vec<(Instant, Duration)>,
    /// Every 5 ms: the run-queue wait so far (`/proc/PID/schedstat`) of the master and each of
    /// its children, the time each was ready to run but kept from a CPU.
    waits: Vec<(Instant, Vec<(i32, u64)>)>,
}

/// How long the calling thread has waited for a CPU so far (its run-queue wait).
fn own_run_queue_wait() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

/// The master and its children (`/proc/PID/task/PID/children`) with their run-queue waits so
/// far, in ns.
fn run_queue_waits(master: i32) -> Vec<(i32, u64)> {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default();
    std::iter::once(master)
        .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
            Some((pid, s.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect()
}

/// Probing threads: `fresh` ones open a connection per request, `keep` ones reuse one (and
/// open the next when the server closes it; a request the server closed under, before any
/// byte of its answer, is retried once on a new connection, as HTTP clients do, and the wait
/// counts from the first try).
struct Probes {
    stop: Arc<AtomicBool>,
    rec: Arc<Mutex<Record>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Probes {
    fn start(addr: &str, master: i32, fresh: usize, keep: usize) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let rec = Arc::new(Mutex::new(Record::default()));
        let mut threads = Vec::new();
        for n in 0..fresh + keep {
            let (addr, stop, rec) = (addr.to_string(), stop.clone(), rec.clone());
            let keepalive = n >= fresh;
            threads.push(std::thread::spawn(move || {
                let kind = if keepalive { "keep-alive" } else { "new" };
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::Relaxed) {
                    let waited0 = own_run_queue_wait();
                    let t0 = Instant::now();
                    let mut result = Err(String::new());
                    for attempt in 0..2 {
                        if conn.is_none() {
                            conn = match Conn::open(&addr) {
                                Ok(c) => Some(c),
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            };
                        }
                        let c = conn.as_mut().unwrap();
                        result = c.send("/pid", !keepalive).and_then(|_| c.recv());
                        let retry = keepalive
                            && attempt == 0
                            && result
                                .as_ref()
                                .err()
                                .is_some_and(|e| e == "eof" || e.starts_with("send"));
                        if retry {
                            conn = None;
                            continue;
                        }
                        break;
                    }
                    let took = t0.elapsed();
                    let waited = own_run_queue_wait().saturating_sub(waited0);
                    let mut r = rec.lock().unwrap();
                    match result {
                        Ok((200, body, closing)) => {
                            let pid = body.trim().parse().unwrap_or(-1);
                            r.samples.push((t0, took, pid, kind, waited));
                            if closing || !keepalive {
                                conn = None;
                            }
                        }
                        other => {
                            r.errors.push(format!("{kind}: {other:?} after {took:?}"));
                            conn = None;
                        }
                    }
                }
            }));
        }
        // The daemon's processes' waits for a CPU, sampled beside the probes.
        threads.push(std::thread::spawn({
            let (stop, rec) = (stop.clone(), rec.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let w = run_queue_waits(master);
                    rec.lock().unwrap().waits.push((Instant::now(), w));
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }));
        // The canary: the machine's own stalls, measured beside the probes.
        threads.push(std::thread::spawn({
            let (stop, rec) = (stop.clone(), rec.clone());
            move || {
                let tick = Duration::from_millis(1);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    std::thread::sleep(tick);
                    let late = t.elapsed().saturating_sub(tick);
                    if late > Duration::from_millis(5) {
                        rec.lock().unwrap().stalls.push((t + tick, late));
                    }
                }
            }
        }));
        Probes { stop, rec, threads }
    }

    fn count(&self) -> usize {
        self.rec.lock().unwrap().samples.len()
    }

    /// The p99 of the samples so far.
    fn p99(&self) -> Duration {
        let mut v: Vec<Duration> = self
            .rec
            .lock()
            .unwrap()
            .samples
            .iter()
            .map(|s| s.1)
            .collect();
        v.sort();
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    }

    /// A sample started after `t` and answered by one of `pids`.
    fn answered_by(&self, t: Instant, pids: &HashSet<i64>) -> bool {
        let r = self.rec.lock().unwrap();
        r.samples.iter().any(|s| s.0 >= t && pids.contains(&s.2))
    }

    fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.rec)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// `GET /pid` then `GET /sleep?ms=N` on one keep-alive connection, the sleep left in flight:
/// a connection belongs to the worker that accepted it, so the sleep's answer comes from the
/// pid the first answer named.
fn slow_on_known_worker(addr: &str, ms: u64) -> (i64, Conn) {
    let mut c = Conn::open(addr).unwrap();
    c.send("/pid", false).unwrap();
    let (status, body, _) = c.recv().unwrap();
    assert_eq!(status, 200);
    c.send(&format!("/sleep?ms={ms}"), false).unwrap();
    (body.trim().parse().unwrap(), c)
}

fn pid_set(d: &Daemon) -> HashSet<i64> {
    d.worker_pids().into_iter().collect()
}

/// 20 reloads triggered by `reload` under probes; every check of the module.
fn gap_across_reloads(name: &str, processes: &str, reload: impl Fn(&Daemon)) {
    let dir = TestDir::new(name);
    let d = Daemon::start(
        &dir,
        &["--processes", processes, "--worker-reload-mercy", "30"],
    );
    let probes = Probes::start(&d.addr, d.pid, 2, 2);
    // Steady state: enough samples for a p99 before the first reload.
    wait_for("steady-state samples", Duration::from_secs(30), || {
        (probes.count() >= 400).then_some(())
    });
    let steady = probes.p99();
    let bound = (steady * 20).max(GAP_FLOOR);
    let first = d.generation();
    let mut slow_checked = 0;
    for g in first + 1..=first + 20 {
        let old = pid_set(&d);
        // Every 5th reload: a slow request in flight on a known old worker.
        let slow = (g % 5 == 0).then(|| {
            let (pid, c) = slow_on_known_worker(&d.addr, 400);
            assert!(old.contains(&pid), "{pid} is not a worker of {old:?}");
            d.wait_stats("the sleep in flight", |s| {
                s["workers"]
                    .as_array()?
                    .iter()
                    .any(|w| w["pid"] == pid && w["status"] == "busy")
                    .then_some(())
            });
            (pid, c)
        });
        reload(&d);
        let s = d.wait_generation(g);
        let new: HashSet<i64> = s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_i64().unwrap())
            .collect();
        assert!(
            old.is_disjoint(&new),
            "reload to {g}: old {old:?} new {new:?}"
        );
        // Traffic reaches the new generation: a /pid answer from a new pid, asked after the
        // generation was complete.
        let done = Instant::now();
        wait_for(
            &format!("an answer from generation {g} ({new:?})"),
            Duration::from_secs(10),
            || probes.answered_by(done, &new).then_some(()),
        );
        if let Some((pid, mut c)) = slow {
            let (status, body, _) = c.recv().expect("the slow request's answer");
            assert_eq!((status, body.as_str()), (200, "slept 400 ms\n"));
            assert!(
                !new.contains(&pid),
                "the slow request moved to a new worker"
            );
            // Same connection, so answered by `pid`, an old-generation worker.
            slow_checked += 1;
        }
    }
    let rec = probes.finish();
    assert!(
        rec.errors.is_empty(),
        "{} failed requests: {:?}",
        rec.errors.len(),
        &rec.errors[..rec.errors.len().min(5)]
    );
    let worst = rec.samples.iter().max_by_key(|s| s.1).unwrap();
    // A request's wait, less the time the machine kept things from running meanwhile: on the
    // test's side its probe thread's own run-queue wait (or the canary's stalls, if longer),
    // plus on the daemon's side the longest run-queue wait of one of its processes between
    // the samples around the request. Load is no gap of the daemon's; a real gap (nobody
    // accepting, the workers asleep or gone) keeps all of its length.
    let stalled = |from: Instant, took: Duration, own: Duration| -> Duration {
        let to = from + took;
        let canary: Duration = rec
            .stalls
            .iter()
            .map(|&(s, d)| {
                let (a, b) = (s.max(from), (s + d).min(to));
                b.saturating_duration_since(a)
            })
            .sum();
        let before = rec.waits.iter().rev().find(|w| w.0 <= from);
        let after = rec.waits.iter().find(|w| w.0 >= to);
        let daemon = match (before, after) {
            (Some((_, a)), Some((_, b))) => b
                .iter()
                .filter_map(|(pid, late)| {
                    let early = a.iter().find(|(p, _)| p == pid)?.1;
                    Some(Duration::from_nanos(late.saturating_sub(early)))
                })
                .max()
                .unwrap_or_default(),
            _ => Duration::ZERO,
        };
        canary.max(own) + daemon
    };
    let over: Vec<_> = rec
        .samples
        .iter()
        .filter(|s| s.1 > bound)
        .map(|s| (s.1, stalled(s.0, s.1, s.4), s.3))
        .filter(|(took, stalled, _)| took.saturating_sub(*stalled) > bound)
        .collect();
    let stall_max = rec.stalls.iter().map(|s| s.1).max().unwrap_or_default();
    eprintln!(
        "{name}: {} requests, steady p99 {steady:?}, machine stall {stall_max:?}, bound {bound:?}, worst {:?} ({}), {slow_checked} slow requests on old pids",
        rec.samples.len(),
        worst.1,
        worst.3
    );
    assert!(
        over.is_empty(),
        "{} requests waited longer than {bound:?} beyond the machine's stalls (steady p99 \
         {steady:?}; wait, stalled, kind): {:?}",
        over.len(),
        &over[..over.len().min(10)]
    );
    for kind in ["new", "keep-alive"] {
        assert!(
            rec.samples.iter().filter(|s| s.3 == kind).count() >= 100,
            "too few {kind} samples"
        );
    }
    assert_eq!(slow_checked, 4);
}

#[test]
fn graceful_reloads_leave_no_gap() {
    gap_across_reloads("gap-hup", "4", |d| d.signal(libc::SIGHUP));
}

#[test]
fn fifo_reloads_leave_no_gap() {
    gap_across_reloads("gap-fifo-r", "2", |d| d.fifo_write(b"r"));
}

#[test]
fn chain_reloads_leave_no_gap() {
    gap_across_reloads("gap-chain", "2", |d| d.fifo_write(b"c"));
}

#[test]
fn workers_reloads_leave_no_gap() {
    gap_across_reloads("gap-workers", "4", |d| d.fifo_write(b"w"));
}
