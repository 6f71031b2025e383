//! RFC 9112 rules the built-in workers follow, against a real worker: absolute-form targets
//! are served by their path; an HTTP/1.1 request without `Host`, or any request with two, gets
//! 400 (HTTP/1.0 may omit it); an HTTP/0.9 request line is answered at once, not at the 10 s
//! head timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

fn answer(d: &Daemon, raw: &[u8]) -> (u16, String) {
    parse_response(&http_raw(&d.addr, raw))
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(raw)))
}

#[test]
fn absolute_form_targets_are_answered_like_origin_form() {
    let dir = TestDir::new("absolute-form");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let pid = d.get("/pid").unwrap();
    assert_eq!(pid.0, 200);
    for raw in [
        &b"GET http://x/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"GET HTTP://localhost:8000/pid HTTP/1.1\r\nHost: localhost:8000\r\nConnection: close\r\n\r\n",
        b"GET http://x/pid HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(answer(&d, raw), pid, "{:?}", String::from_utf8_lossy(raw));
    }
    let slept = answer(
        &d,
        b"GET http://x/sleep?ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(slept, (200, "slept 1 ms\n".to_string()));
    let hello = answer(
        &d,
        b"GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(hello, (200, "Hello World".to_string()));
    // Not http(s), or no host: refused, not routed.
    for raw in [
        &b"GET ftp://x/pid HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET http:///pid HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET pid HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(answer(&d, raw).0, 400, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn host_is_required_exactly_once_on_http_1_1() {
    let dir = TestDir::new("host-header");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let before = d.worker_pids();
    for raw in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    ] {
        let (status, body) = answer(&d, raw);
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(body.contains("Host"), "{body:?}");
    }
    // HTTP/1.0 may omit it; one Host (with a port) on 1.1 is fine.
    assert_eq!(
        answer(&d, b"GET / HTTP/1.0\r\n\r\n"),
        (200, "Hello World".to_string())
    );
    assert_eq!(
        answer(
            &d,
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n"
        )
        .0,
        200
    );
    // The refusal closes the connection: a request pipelined after it is not answered.
    let raw = answer(
        &d,
        b"GET / HTTP/1.1\r\n\r\nGET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(raw.0, 400);
    assert!(!raw.1.contains("HTTP/1.1 200"), "{raw:?}");
    assert_eq!(d.worker_pids(), before, "a worker was replaced");
}

#[test]
fn an_http_0_9_request_is_answered_at_once_and_closed() {
    let dir = TestDir::new("http09");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    for raw in [&b"GET /\r\n"[..], b"GET /pid\n", b"GARBAGE\r\n"] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let t0 = Instant::now();
        s.write_all(raw).unwrap();
        // Nothing more is sent, and the connection stays open on our side.
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let took = t0.elapsed();
        // Answered, not left to the head timeout: half of it tells the two apart on a loaded
        // machine.
        assert!(
            took < uwsgid::worker::HEAD_TIMEOUT / 2,
            "{raw:?} answered after {took:?}"
        );
        let (status, _) = parse_response(&answer).unwrap();
        let want = if raw.starts_with(b"GET") { 505 } else { 400 };
        assert_eq!(
            status,
            want,
            "{raw:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(d.get("/").unwrap().0, 200);
}
