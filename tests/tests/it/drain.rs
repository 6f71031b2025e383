//! A draining worker loses no client that is about to send: across a graceful reload, with one
//! worker (`--processes 1`, so which worker holds a connection is known), a connection the old
//! worker accepted (seen in its fds) that sends its first request 400 ms into the drain, and a
//! keep-alive connection that made one request and sends the next 400 ms into the drain, are
//! both answered in full by the old worker, with `Connection: close`. A keep-alive client that
//! stays silent is still closed, after the drain's grace (2 s) and not long after it, and the
//! old worker then exits. For the built-in worker, the native Python worker and the stdlib
//! runner alike (each chosen with `UWSGID_PYTHON_WORKER`).
//!
//! The 400 ms wait is the scenario itself (a client that sends late), not a wait for a
//! condition: everything else is polled.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

use crate::exec_support::python;

/// When the clients send, counted from the moment the stats show the old worker draining:
/// far past the old 150 ms rule, well inside the grace (`uwsgid::worker::DRAIN_GRACE`, 2 s).
const SEND_AFTER: Duration = Duration::from_millis(400);
/// `uwsgid::worker::DRAIN_GRACE`.
const GRACE: Duration = Duration::from_secs(2);

const APP: &str = "\
import os

def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
";

/// One HTTP/1.1 connection that reads responses by their Content-Length.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn open(addr: &str) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    /// `GET /pid` and its answer: `(status, body, the server closes after it)`.
    fn get_pid(&mut self) -> Result<(u16, String, bool), String> {
        self.s
            .write_all(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
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
                Ok(0) => return Err(format!("closed, after {:?}", self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}, after {:?}", self.buf)),
            }
        }
    }

    /// Wait for the server to close the connection; Err if it sent bytes instead.
    fn wait_closed(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 64];
        match self.s.read(&mut chunk) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Ok(n) => Err(format!("unexpected bytes {:?}", &chunk[..n])),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// Reload gracefully and return once the stats show `old` draining (the master signalled it),
/// or `old` is gone already (a worker that closed its clients at once and exited).
fn reload_until_draining(d: &Daemon, old: i32) -> Instant {
    d.signal(libc::SIGHUP);
    d.wait_stats("the old worker draining", |s| {
        let listed = s["uwsgid"]["draining"]
            .as_array()?
            .iter()
            .any(|w| w["pid"] == old);
        (listed || !alive(old)).then_some(())
    });
    Instant::now()
}

/// The scenario, on a daemon with one worker of the kind under test (`kind`, for messages).
fn late_clients_are_answered(d: &Daemon, kind: &str) {
    let old = d.only_worker();
    // (b) A keep-alive client with one answer behind it.
    let mut keep = Client::open(&d.addr);
    let (status, body, closing) = keep.get_pid().unwrap();
    assert_eq!(
        (status, body.as_str(), closing),
        (200, &*old.to_string(), false)
    );
    // (a) A connection the old worker accepted, with no request yet.
    let before = socket_inodes(old).len();
    let mut fresh = Client::open(&d.addr);
    wait_for(
        "the old worker to accept the new connection",
        Duration::from_secs(10),
        || (socket_inodes(old).len() > before).then_some(()),
    );
    let draining = reload_until_draining(d, old);
    std::thread::sleep(SEND_AFTER.saturating_sub(draining.elapsed()));
    let mut failed = Vec::new();
    for (what, client) in [
        ("a connection accepted before the drain", &mut fresh),
        ("a keep-alive connection", &mut keep),
    ] {
        let answer = client.get_pid();
        let late = draining.elapsed();
        if answer != Ok((200, old.to_string(), true)) {
            failed.push(format!(
                "{what}, sending {late:?} after the drain started, got {answer:?}, not the old \
                 worker's ({old}) answer with Connection: close"
            ));
        } else if let Err(e) = client.wait_closed() {
            failed.push(format!("{what}: not closed after its answer: {e}"));
        }
    }
    assert!(failed.is_empty(), "{kind}:\n{}", failed.join("\n"));
    d.wait_generation(2);
    assert!(!alive(old), "{kind}: the old worker exits");

    // A silent keep-alive client is closed after the grace, and not long after it.
    let old = d.only_worker();
    let mut silent = Client::open(&d.addr);
    let (status, body, _) = silent.get_pid().unwrap();
    assert_eq!((status, body), (200, old.to_string()));
    let draining = reload_until_draining(d, old);
    silent
        .wait_closed()
        .unwrap_or_else(|e| panic!("{kind}: a silent keep-alive client: {e}"));
    let after = draining.elapsed();
    assert!(
        after >= GRACE / 2 && after < GRACE + Duration::from_secs(5),
        "{kind}: a silent keep-alive client is closed about {GRACE:?} into the drain, not \
         after {after:?}"
    );
    d.wait_generation(3);
    wait_for("the old worker to exit", Duration::from_secs(10), || {
        (!alive(old)).then_some(())
    });
}

#[test]
fn built_in_worker_answers_clients_that_send_late_in_a_drain() {
    let dir = TestDir::new("drain-builtin");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    late_clients_are_answered(&d, "built-in worker");
}

/// A daemon serving [`APP`] with one Python worker of `kind` (`native` or `stdlib`).
fn python_daemon(dir: &TestDir, kind: &str) -> Daemon {
    let app = dir.write("app.py", APP);
    let py = python();
    let mut d = Daemon::spawn_env(
        dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--python",
            &py,
            "--processes",
            "1",
        ],
        &bin("uwsgid"),
        true,
        &[("UWSGID_PYTHON_WORKER", kind)],
    );
    d.wait_running();
    let log = d.wait_log("ready: serving");
    assert_eq!(
        log.contains("threads (native)"),
        kind == "native",
        "UWSGID_PYTHON_WORKER={kind} chose the program:\n{log}"
    );
    d
}

#[test]
fn native_python_worker_answers_clients_that_send_late_in_a_drain() {
    let dir = TestDir::new("drain-native");
    let d = python_daemon(&dir, "native");
    late_clients_are_answered(&d, "native Python worker");
}

#[test]
fn stdlib_runner_answers_clients_that_send_late_in_a_drain() {
    let dir = TestDir::new("drain-stdlib");
    let d = python_daemon(&dir, "stdlib");
    late_clients_are_answered(&d, "stdlib runner");
}
