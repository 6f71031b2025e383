//! Python apps served as PEP 3333 says, by the native worker (`uwsgid-python`, the default) or
//! the stdlib runner (`UWSGID_PYTHON_WORKER=stdlib`, which tests/run.sh also runs): the app
//! wrapped in `wsgiref.validate.validator` for every kind of request, request bodies with
//! Content-Length and chunked framing from 1 byte to 64 MiB, `Expect: 100-continue`,
//! pipelining and keep-alive, streaming, `write()`, `wsgi.file_wrapper`, a CR/LF injection
//! attempt, silent and slow clients against `--threads 2`, exceptions before and after
//! `start_response`, a segfault in a C extension, and Flask and Django apps reloaded under load.

use crate::exec_support::python;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

const APP: &str = r#"
import ctypes, hashlib, os, sys, time
from wsgiref.validate import validator

HERE = os.path.dirname(os.path.abspath(__file__))

def hold(tag):
    # Say which worker holds the request (written whole: a reader never sees it empty), then
    # answer only once the test releases it (bounded: a test that forgets fails on the body).
    held = os.path.join(HERE, "held-" + tag)
    with open(held + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(held + ".tmp", held)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(HERE, "release-" + tag)):
        if time.monotonic() > deadline:
            return b"never released"
        time.sleep(0.005)
    return ("released %s in %d" % (tag, os.getpid())).encode()

def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hold":
        body = hold(environ["QUERY_STRING"].split("=", 1)[1])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo":
        h = hashlib.sha256()
        n = 0
        size = int(environ.get("QUERY_STRING") or "65536")
        while True:
            block = environ["wsgi.input"].read(size)
            if not block:
                break
            h.update(block)
            n += len(block)
        body = ("%d %s" % (n, h.hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/lines":
        lines = environ["wsgi.input"].readlines()
        body = b"|".join(l.rstrip(b"\n") for l in lines)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        def gen():
            for i in range(3):
                yield b"part%d;" % i
                time.sleep(0.01)
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/file":
        f = open(os.path.join(HERE, "static.bin"), "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/inject":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-A", "a\r\nX-Injected: 1")])
        return [b"should not be sent"]
    if path == "/raise-before":
        raise RuntimeError("raised before start_response by the test")
    if path == "/raise-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        def gen():
            yield b"first"
            raise RuntimeError("raised after the head by the test")
        return gen()
    if path == "/segfault":
        ctypes.string_at(0)
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/sleep":
        time.sleep(int(environ.get("QUERY_STRING") or "0") / 1000)
    if path.startswith("/env"):
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_LENGTH", "HTTP_X_TWO")
        body = "\n".join("%s=%s" % (k, environ.get(k)) for k in keys).encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]

def application(environ, start_response):
    if environ["PATH_INFO"] in ("/segfault", "/inject", "/raise-before", "/raise-after"):
        return raw_app(environ, start_response)
    return validator(raw_app)(environ, start_response)
"#;

fn serve(dir: &TestDir, extra: &[&str]) -> Daemon {
    let app = dir.write("app.py", APP);
    std::fs::write(dir.join("static.bin"), static_bytes()).unwrap();
    let py = python();
    let mut args = vec!["--wsgi-file", app.to_str().unwrap(), "--python", &py];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

fn static_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Status, fields (names lowercased) and the body of one response.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One response read from `s`: (status, headers lowercased, body), following its framing.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Response, String> {
    read_response_to(s, buf, false)
}

/// [`read_response`] for the answer to a HEAD request (`is_head`): no body, whatever it says.
fn read_response_to(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    is_head: bool,
) -> Result<Response, String> {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed before a full head: {:?}",
                String::from_utf8_lossy(buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut fill = |buf: &mut Vec<u8>, s: &mut TcpStream| -> Result<bool, String> {
        let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let mut body = Vec::new();
    if is_head || status == 100 || status == 204 || status == 304 {
        return Ok((status, headers, body));
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length".to_string())?;
        while buf.len() < len {
            if !fill(buf, s)? {
                return Err(format!("closed after {} of {len} body bytes", buf.len()));
            }
        }
        body = buf.drain(..len).collect();
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(buf, s)? {
                    return Err("closed inside a chunked body".into());
                }
            };
            let size = usize::from_str_radix(&String::from_utf8_lossy(&buf[..line_end]), 16)
                .map_err(|e| format!("bad chunk size: {e}"))?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !fill(buf, s)? {
                    return Err("closed inside a chunk".into());
                }
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                break;
            }
        }
    } else {
        while fill(buf, s)? {}
        body = std::mem::take(buf);
    }
    Ok((status, headers, body))
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Send `req` on a new connection and read one response.
fn exchange(addr: &str, req: &[u8]) -> Response {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    read_response(&mut s, &mut Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// GET `path` on a new connection: (status, body), the body decoded from its framing.
fn get(d: &Daemon, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let (st, _, body) = exchange(&d.addr, req.as_bytes());
    (st, String::from_utf8_lossy(&body).into_owned())
}

/// A request the app holds in `/hold?tag=T` until [`release`]: the worker that holds it (read
/// from the file the app writes once the request is in it) and the thread waiting for the answer.
fn hold_request(d: &Daemon, tag: &str) -> (i64, std::thread::JoinHandle<(u16, String)>) {
    let addr = d.addr.clone();
    let req = format!("GET /hold?tag={tag} HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = std::thread::spawn(move || {
        let (st, _, body) = exchange(&addr, req.as_bytes());
        (st, String::from_utf8_lossy(&body).into_owned())
    });
    let file = d.dir.join(format!("held-{tag}"));
    let pid = wait_for(
        &format!("request {tag} held in the app"),
        Duration::from_secs(20),
        || std::fs::read_to_string(&file).ok()?.trim().parse().ok(),
    );
    (pid, answer)
}

/// Let the app answer the request held under `tag`.
fn release(d: &Daemon, tag: &str) {
    std::fs::write(d.dir.join(format!("release-{tag}")), "").unwrap();
}

fn assert_no_app_error(d: &Daemon) {
    let log = d.log_text();
    assert!(
        !log.contains("AssertionError"),
        "the validator objected:\n{log}"
    );
    assert!(!log.contains("application error"), "{log}");
}

#[test]
fn a_validated_app_serves_every_request_kind() {
    let dir = TestDir::new("py-validated");
    let d = serve(&dir, &["--processes", "1", "--threads", "2"]);
    let a = &d.addr;
    let (st, _, body) = exchange(a, b"GET /?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((st, body.as_slice()), (200, &b"hello"[..]));
    // HEAD: the head of the GET, no body.
    let mut s = connect(a);
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let (st, _, _) = read_response_to(&mut s, &mut buf, true).unwrap();
    assert_eq!(st, 200);
    let (st, _, body) = read_response(&mut s, &mut buf).unwrap();
    assert_eq!((st, body.as_slice()), (200, &b"hello"[..]));
    // The environ.
    let (_, _, body) = exchange(
        a,
        b"POST /env/p%20q?a=b HTTP/1.0\r\nContent-Length: 0\r\nX-Two: 1\r\nX-Two: 2\r\n\r\n",
    );
    let env = String::from_utf8_lossy(&body).to_string();
    for want in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/env/p q",
        "QUERY_STRING=a=b",
        "SERVER_PROTOCOL=HTTP/1.0",
        "CONTENT_LENGTH=0",
        "HTTP_X_TWO=1,2",
    ] {
        assert!(env.contains(want), "{want} not in {env}");
    }
    // Bodies: Content-Length, chunked, readlines.
    let (st, _, body) = exchange(
        a,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(st, 200);
    assert!(body.starts_with(b"3 "), "{body:?}");
    let (_, _, body) = exchange(
        a,
        b"POST /lines HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na\nbc\r\n3\r\n\nd\n\r\n0\r\n\r\n",
    );
    assert_eq!(body, b"a|bc|d");
    // Streaming (chunked on 1.1, close-delimited on 1.0), write(), file_wrapper.
    let (_, h, body) = exchange(a, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(body, b"part0;part1;part2;");
    assert!(
        h.iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked"),
        "{h:?}"
    );
    let (_, _, body) = exchange(a, b"GET /stream HTTP/1.0\r\n\r\n");
    assert_eq!(body, b"part0;part1;part2;");
    let (_, _, body) = exchange(a, b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(body, b"written;returned");
    let (st, _, body) = exchange(a, b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(st, 200);
    assert!(
        body == static_bytes(),
        "file_wrapper sent {} bytes",
        body.len()
    );
    // Keep-alive and pipelining: three requests in one write, answered in order.
    let mut s = connect(a);
    s.write_all(
        b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxyGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let (_, _, pid) = read_response(&mut s, &mut buf).unwrap();
    assert!(String::from_utf8_lossy(&pid).parse::<u32>().is_ok());
    let (_, _, echo) = read_response(&mut s, &mut buf).unwrap();
    assert!(echo.starts_with(b"2 "), "{echo:?}");
    let (_, _, hello) = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(hello, b"hello");
    // The same connection goes on serving.
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf).unwrap().2, b"hello");
    assert_no_app_error(&d);
}

/// A body of `n` bytes, sha256 as Python's hexdigest, computed by the system's sha256sum.
fn digest(data: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("uwsgid-py-digest-{}", std::process::id()));
    std::fs::write(&dir, data).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&dir);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn request_bodies_from_one_byte_to_64_mib() {
    let dir = TestDir::new("py-bodies");
    let d = serve(&dir, &["--processes", "1", "--threads", "2"]);
    for n in [1usize, 1000, 65_543, 1 << 20, 64 << 20] {
        let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        let want = format!("{n} {}", digest(&data));
        // Content-Length
        let mut s = connect(&d.addr);
        let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&data).unwrap();
        let (st, _, body) = read_response(&mut s, &mut Vec::new()).unwrap();
        assert_eq!(
            (st, String::from_utf8_lossy(&body).to_string()),
            (200, want.clone()),
            "Content-Length {n}"
        );
        // Chunked, in chunks of varying sizes, on the same connection.
        s.write_all(b"POST /echo?1000 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        let mut pos = 0;
        let mut k = 0;
        while pos < n {
            let size = [1usize, 7, 4096, 100_000, 1 << 20][k % 5].min(n - pos);
            s.write_all(format!("{size:x}\r\n").as_bytes()).unwrap();
            s.write_all(&data[pos..pos + size]).unwrap();
            s.write_all(b"\r\n").unwrap();
            pos += size;
            k += 1;
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        let (st, _, body) = read_response(&mut s, &mut Vec::new()).unwrap();
        assert_eq!(
            (st, String::from_utf8_lossy(&body).to_string()),
            (200, want),
            "chunked {n}"
        );
    }
}

#[test]
fn expect_100_continue_only_before_the_response() {
    let dir = TestDir::new("py-expect");
    let d = serve(&dir, &["--processes", "1"]);
    let mut s = connect(&d.addr);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let (st, _, _) = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(st, 100);
    s.write_all(b"hello").unwrap();
    let (st, _, body) = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(st, 200);
    assert!(body.starts_with(b"5 "), "{body:?}");
    // An app that answers without reading: no 100 before (or inside) the response.
    let mut s = connect(&d.addr);
    s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let (st, _, body) = read_response(&mut s, &mut raw).unwrap();
    assert_eq!((st, body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn header_injection_is_a_500_and_a_log_line() {
    let dir = TestDir::new("py-inject");
    let d = serve(&dir, &["--processes", "1"]);
    let raw = http_raw(
        &d.addr,
        b"GET /inject HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("x-injected"), "{text}");
    d.wait_log("GET /inject: application error");
    assert_eq!(get(&d, "/"), (200, "hello".into()));
}

#[test]
fn exceptions_before_and_after_start_response() {
    let dir = TestDir::new("py-raise");
    let d = serve(&dir, &["--processes", "1"]);
    let (st, _, _) = exchange(&d.addr, b"GET /raise-before HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(st, 500);
    d.wait_log("raised before start_response by the test");
    // After the head: the response is cut (no terminating chunk) and logged.
    let mut s = connect(&d.addr);
    s.write_all(b"GET /raise-after HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new());
    assert!(r.is_err(), "a cut response must not look complete: {r:?}");
    d.wait_log("raised after the head by the test");
    assert_eq!(get(&d, "/"), (200, "hello".into()));
}

#[test]
fn silent_and_slow_clients_do_not_hold_the_threads() {
    let dir = TestDir::new("py-silent");
    let d = serve(&dir, &["--processes", "1", "--threads", "2"]);
    let worker = d.worker_pids()[0];
    let before = socket_inodes(worker as i32);
    let mut idle = Vec::new();
    for i in 0..6 {
        let mut s = connect(&d.addr);
        if i % 2 == 1 {
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap(); // a head that never ends
        }
        idle.push(s);
    }
    let slow = {
        let addr = d.addr.clone();
        std::thread::spawn(move || {
            let mut s = connect(&addr);
            for b in b"GET /?slow HTTP/1.1\r\nHost: t\r\n" {
                if s.write_all(&[*b]).is_err() {
                    break;
                }
                // The pace is what makes this client slow (3 s for its head), not a wait.
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // The GETs below count only once the worker holds all 7 connections (accepted, in its
    // fds): before that, they would just be served first.
    wait_for(
        "the 6 idle and the slow connection accepted by the worker",
        Duration::from_secs(20),
        || {
            let now = socket_inodes(worker as i32);
            (now.iter().filter(|i| !before.contains(i)).count() >= 7).then_some(())
        },
    );
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(get(&d, "/"), (200, "hello".into()));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a GET waited {:?}",
            t.elapsed()
        );
    }
    drop(idle);
    slow.join().unwrap();
}

#[test]
fn a_segfault_in_a_c_extension_is_logged_and_the_worker_respawned() {
    let dir = TestDir::new("py-segv");
    let d = serve(&dir, &["--processes", "1"]);
    let before = d.worker_pids();
    let raw = http_raw(&d.addr, b"GET /segfault HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(raw.is_empty() || !String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    d.wait_log("SIGSEGV");
    d.wait_stats("a new worker", |s| {
        let pids: Vec<i64> = workers(s)
            .iter()
            .filter(|w| w["uwsgid"]["ready"] == true)
            .filter_map(|w| w["pid"].as_i64())
            .collect();
        (!pids.is_empty() && pids.iter().all(|p| !before.contains(p))).then_some(())
    });
    assert_eq!(get(&d, "/"), (200, "hello".into()));
}

fn workers(s: &serde_json::Value) -> Vec<serde_json::Value> {
    s["workers"].as_array().cloned().unwrap_or_default()
}

/// Requests the HTTP parsers must refuse (400 and the like), on every worker.
#[test]
fn malformed_requests_are_refused() {
    let dir = TestDir::new("py-refuse");
    let d = serve(&dir, &["--processes", "1"]);
    let chunked = |size: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n")
    };
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("chunk size 0x5".into(), chunked("0x5").into_bytes(), 400),
        ("chunk size +5".into(), chunked("+5").into_bytes(), 400),
        ("chunk size ' 5'".into(), chunked(" 5").into_bytes(), 400),
        ("chunk size 1_0".into(), chunked("1_0").into_bytes(), 400),
        (
            "two Host".into(),
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        ("no Host".into(), b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "NUL".into(),
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad UTF-8".into(),
            b"GET / HTTP/1.1\r\nHost: t\r\nX: \xff\xfe\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Content-Length: \u{b2}".into(),
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \u{b2}\r\n\r\n"
                .as_bytes()
                .to_vec(),
            400,
        ),
        ("70 KB head".into(), big.into_bytes(), 431),
    ];
    for (what, req, status) in cases {
        let raw = http_raw(&d.addr, &req);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: answered {:?}",
            text.get(..80.min(text.len()))
        );
    }
    assert_eq!(get(&d, "/"), (200, "hello".into()));
}

/// True if the interpreter the Python workers run (`python()`) imports `module`.
fn have_module(module: &str) -> bool {
    std::process::Command::new(python())
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Graceful reloads (SIGHUP, and the workers-only `r` kind) of `d` under a load of GETs on
/// `paths`: no request fails, and every reload completes.
fn reload_twice_under_load(d: &Daemon, paths: &[&str]) {
    let load = uwsgi_tests::Load::start(&d.addr, 4, paths);
    load.wait_more(50);
    for how in ["HUP", "r"] {
        let before = d.generation();
        if how == "HUP" {
            d.signal(libc::SIGHUP);
        } else {
            d.fifo_write(b"r");
        }
        d.wait_generation(before + 1);
        load.wait_more(50);
    }
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {:?}",
        errors.len(),
        ok + errors.len() as u64,
        &errors[..errors.len().min(5)]
    );
}

#[test]
fn a_flask_app_is_served_and_reloaded_under_load() {
    if !require(
        have_module("flask"),
        "Flask for /usr/bin/python3",
        "run tests/run.sh (pip install flask)",
    ) {
        return;
    }
    let dir = TestDir::new("py-flask");
    let app = dir.write(
        "flaskapp.py",
        r#"
from flask import Flask, request
app = Flask(__name__)

@app.route("/")
def index():
    return "flask ok"

@app.route("/echo", methods=["POST"])
def echo():
    return "got %d bytes" % len(request.get_data())
"#,
    );
    let py = python();
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--callable",
            "app",
            "--python",
            &py,
            "-p",
            "2",
        ],
    );
    assert_eq!(get(&d, "/"), (200, "flask ok".into()));
    let (st, _, body) = exchange(
        &d.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(
        (st, String::from_utf8_lossy(&body).as_ref()),
        (200, "got 3 bytes")
    );
    reload_twice_under_load(&d, &["/"]);
}

#[test]
fn a_django_project_is_served_and_reloaded_under_load() {
    if !require(
        have_module("django"),
        "Django for /usr/bin/python3",
        "run tests/run.sh (pip install django)",
    ) {
        return;
    }
    let dir = TestDir::new("py-django");
    let out = std::process::Command::new(python())
        .args(["-m", "django", "startproject", "mysite"])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "startproject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings = dir.join("mysite/mysite/settings.py");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str("\nDEBUG = False\nALLOWED_HOSTS = ['*']\nROOT_URLCONF = 'mysite.hello'\n");
    std::fs::write(&settings, text).unwrap();
    dir.write(
        "mysite/mysite/hello.py",
        r#"
from django.http import HttpResponse
from django.urls import path

def index(request):
    return HttpResponse("django ok, %s" % request.method)

urlpatterns = [path("", index)]
"#,
    );
    let project = dir.join("mysite");
    let py = python();
    let d = Daemon::start(
        &dir,
        &[
            "--module",
            "mysite.wsgi:application",
            "--chdir",
            project.to_str().unwrap(),
            "--python",
            &py,
            "-p",
            "2",
        ],
    );
    assert_eq!(get(&d, "/"), (200, "django ok, GET".into()));
    reload_twice_under_load(&d, &["/"]);
}

#[test]
fn sigusr2_dumps_every_thread_stack_to_the_log() {
    let dir = TestDir::new("py-stacks");
    let d = serve(&dir, &["--processes", "1", "--threads", "2"]);
    let pid = d.worker_pids()[0];
    let (holder, held) = hold_request(&d, "stacks");
    assert_eq!(holder, pid);
    // SAFETY: SIGUSR2 to a worker of the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGUSR2) };
    let log = d.wait_log("in raw_app");
    assert!(log.contains("app.py"), "{log}");
    // The thread serving the held request is in the dump, inside the app's `hold`.
    assert!(log.contains("in hold"), "{log}");
    release(&d, "stacks");
    assert_eq!(
        held.join().unwrap(),
        (200, format!("released stacks in {pid}"))
    );
    assert_eq!(
        get(&d, "/"),
        (200, "hello".into()),
        "the worker goes on serving"
    );
}

#[test]
fn home_runs_the_app_in_a_virtualenv() {
    let dir = TestDir::new("py-venv");
    let venv = dir.join("venv");
    let out = std::process::Command::new(python())
        .args(["-m", "venv", "--without-pip", venv.to_str().unwrap()])
        .output()
        .unwrap();
    if !require(
        out.status.success(),
        "python3 -m venv",
        "install python3-venv",
    ) {
        return;
    }
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    std::fs::write(site.join("only_in_venv.py"), "WHERE = 'venv module'\n").unwrap();
    let app = dir.write(
        "app.py",
        "import sys, only_in_venv\ndef application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [('%s %s' % (only_in_venv.WHERE, sys.prefix)).encode()]\n",
    );
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "-H",
            venv.to_str().unwrap(),
        ],
    );
    let (st, body) = get(&d, "/");
    assert_eq!(st, 200, "{body}");
    assert!(body.starts_with("venv module "), "{body}");
    assert!(
        body.ends_with("/venv"),
        "sys.prefix is not the venv: {body}"
    );
}

/// True when the tests run Python apps on the stdlib runner (tests/run.sh's second pass).
fn stdlib_runner() -> bool {
    std::env::var("UWSGID_PYTHON_WORKER").is_ok_and(|v| v == "stdlib")
}

/// Both Python programs write their scoreboard cell (the native worker in Rust, the stdlib
/// runner from Python): requests, tx, busy with the request in flight, counters `known`.
#[test]
fn stats_count_the_requests_of_python_workers() {
    let dir = TestDir::new("py-stats");
    let d = serve(&dir, &["--processes", "2"]);
    for _ in 0..10 {
        assert_eq!(get(&d, "/").0, 200);
    }
    let (holder, held) = hold_request(&d, "stats");
    // A worker counts a request once its answer is sent, a moment after the client has it:
    // wait for all 10, and for the held one shown in flight by the worker that holds it.
    let s = d.wait_stats("the 10 requests counted and the held one in flight", |s| {
        let ws = workers(s);
        let total: u64 = ws.iter().map(|w| w["requests"].as_u64().unwrap_or(0)).sum();
        let shown = ws.iter().any(|w| {
            w["pid"].as_i64() == Some(holder)
                && w["status"] == "busy"
                && w.to_string().contains("PATH_INFO=/hold")
        });
        (total >= 10 && shown).then_some(s.clone())
    });
    let ws = workers(&s);
    assert!(ws.iter().any(|w| w["tx"].as_u64() > Some(0)), "{s}");
    assert!(ws.iter().all(|w| w["uwsgid"]["counters"] == "known"), "{s}");
    release(&d, "stats");
    assert_eq!(
        held.join().unwrap(),
        (200, format!("released stats in {holder}"))
    );
    let s = d.wait_stats("the slow request counted", |s| {
        let ws = workers(s);
        let total: u64 = ws.iter().map(|w| w["requests"].as_u64().unwrap_or(0)).sum();
        (total >= 11 && ws.iter().all(|w| w["status"] == "idle")).then_some(s.clone())
    });
    let avg: u64 = workers(&s)
        .iter()
        .map(|w| w["avg_rt"].as_u64().unwrap_or(0))
        .max()
        .unwrap();
    assert!(avg > 0, "avg_rt: {s}");
}

#[test]
fn without_the_native_worker_beside_it_uwsgid_falls_back_to_the_stdlib_runner() {
    let dir = TestDir::new("py-fallback");
    let alone = dir.join("bin");
    std::fs::create_dir_all(&alone).unwrap();
    let exe = alone.join("uwsgid");
    std::fs::copy(bin("uwsgid"), &exe).unwrap();
    let app = dir.write("app.py", APP);
    std::fs::write(dir.join("static.bin"), static_bytes()).unwrap();
    let mut d = Daemon::spawn_with(&dir, &["--wsgi-file", app.to_str().unwrap()], &exe, true);
    d.wait_running();
    assert_eq!(get(&d, "/"), (200, "hello".into()));
    let log = d.log_text();
    if !stdlib_runner() {
        assert_eq!(
            log.matches("uwsgid-python is not beside the uwsgid executable")
                .count(),
            1,
            "one warning line: {log}"
        );
    }
    assert!(
        log.contains("uwsgid-wsgi["),
        "the stdlib runner serves: {log}"
    );
    assert!(!log.contains("uwsgid-python["), "{log}");
}

#[test]
fn thread_local_data_lives_as_long_as_the_thread() {
    let dir = TestDir::new("py-tls");
    let app = dir.write(
        "app.py",
        r#"
import threading, time
local = threading.local()
def application(environ, start_response):
    local.n = getattr(local, "n", 0) + 1
    time.sleep(0.005)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d %d" % (threading.get_ident(), local.n)]
"#,
    );
    let py = python();
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--python",
            &py,
            "-p",
            "1",
            "--threads",
            "2",
        ],
    );
    // Two clients at once, so both threads serve; a thread's count must keep growing.
    let addr = d.addr.clone();
    let other = std::thread::spawn(move || {
        (0..20)
            .map(|_| exchange(&addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").2)
            .collect::<Vec<_>>()
    });
    let mine: Vec<Vec<u8>> = (0..20)
        .map(|_| exchange(&d.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").2)
        .collect();
    let mut all = other.join().unwrap();
    all.extend(mine);
    // For each thread: its count reaches the number of requests it served.
    let mut per: std::collections::HashMap<String, (u32, u32)> = Default::default();
    for b in &all {
        let text = String::from_utf8_lossy(b).to_string();
        let (ident, n) = text.split_once(' ').expect("ident count");
        let e = per.entry(ident.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(n.parse().unwrap());
    }
    assert!(!per.is_empty());
    for (ident, (served, max)) in &per {
        assert_eq!(
            served, max,
            "thread {ident}: threading.local was reset ({per:?})"
        );
    }
}

/// A uwsgi request on a fresh connection to the Unix socket `sock`: `packet`, then `body`,
/// then a half-close; the raw answer.
fn uwsgi_exchange(sock: &std::path::Path, vars: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = uwsgid::uwsgi_proto::encode(vars).unwrap();
    raw.extend_from_slice(body);
    let _ = s.write_all(&raw);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn status_of(raw: &[u8]) -> u16 {
    parse_response(raw).unwrap_or_else(|e| panic!("{e}")).0
}

/// `--buffer-size` bounds HTTP heads and uwsgi vars blocks of Python workers, `--limit-post`
/// their request bodies (`Content-Length` at once, chunked as it is read), on both protocols;
/// without them HTTP heads keep their 64 KiB and uwsgi vars uWSGI's 4096 bytes.
#[test]
fn buffer_size_and_limit_post_bound_python_workers_on_both_protocols() {
    let dir = TestDir::new("py-limits");
    let sock = dir.join("u.sock");
    let d = serve(
        &dir,
        &[
            "--processes",
            "1",
            "--buffer-size",
            "2048",
            "--limit-post",
            "100000",
            "--socket",
            sock.to_str().unwrap(),
        ],
    );
    let head = |pad: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(pad)
        )
    };
    assert_eq!(exchange(&d.addr, head(1500).as_bytes()).0, 200);
    assert_eq!(exchange(&d.addr, head(2100).as_bytes()).0, 431);
    let get = |pad: &str| {
        uwsgi_exchange(
            &sock,
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("HTTP_X_PAD", pad),
            ],
            b"",
        )
    };
    assert_eq!(status_of(&get(&"b".repeat(1500))), 200);
    assert_eq!(status_of(&get(&"b".repeat(2100))), 431);

    // Bodies: at the limit served, one byte over refused (the whole body sent at once: the
    // answer must still reach the client).
    let body: Vec<u8> = (0..100_001u32).map(|i| (i % 251) as u8).collect();
    let post = |n: usize| {
        let mut r = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(&body[..n]);
        r
    };
    let (st, _, b) = exchange(&d.addr, &post(100_000));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).starts_with("100000 "));
    assert_eq!(exchange(&d.addr, &post(100_001)).0, 413);
    let chunked = |n: usize| {
        let mut r = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for part in body[..n].chunks(30_000) {
            r.extend(format!("{:x}\r\n", part.len()).bytes());
            r.extend_from_slice(part);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    assert_eq!(exchange(&d.addr, &chunked(100_000)).0, 200);
    assert_eq!(exchange(&d.addr, &chunked(100_001)).0, 413);
    let upost = |n: usize| {
        let len = n.to_string();
        uwsgi_exchange(
            &sock,
            &[
                ("REQUEST_METHOD", "POST"),
                ("REQUEST_URI", "/echo"),
                ("PATH_INFO", "/echo"),
                ("CONTENT_LENGTH", &len),
            ],
            &body[..n],
        )
    };
    let ok = upost(100_000);
    assert_eq!(status_of(&ok), 200, "{}", String::from_utf8_lossy(&ok));
    assert_eq!(status_of(&upost(100_001)), 413);
    d.wait_log("refused (413)");
    d.wait_log("larger than --limit-post 100000");
    d.wait_log("uwsgi packet refused (431)");
    assert_eq!(d.worker_pids().len(), 1);

    // The defaults: HTTP heads up to 64 KiB, uwsgi vars up to 4096 bytes, bodies unbounded.
    let dir = TestDir::new("py-limits-default");
    let sock = dir.join("u.sock");
    let d = serve(
        &dir,
        &["--processes", "1", "--socket", sock.to_str().unwrap()],
    );
    assert_eq!(exchange(&d.addr, head(30_000).as_bytes()).0, 200);
    assert_eq!(exchange(&d.addr, head(70_000).as_bytes()).0, 431);
    let get = |pad: &str| {
        uwsgi_exchange(
            &sock,
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("HTTP_X_PAD", pad),
            ],
            b"",
        )
    };
    assert_eq!(status_of(&get(&"b".repeat(3500))), 200);
    assert_eq!(status_of(&get(&"b".repeat(4100))), 431);
    assert_eq!(exchange(&d.addr, &post(100_001)).0, 200);
}

#[test]
fn keep_alive_clients_are_shared_between_native_workers() {
    if stdlib_runner() {
        return; // the stdlib runner's own accept policy
    }
    // 16 keep-alive connections opened at once, 3 rounds: without the accept pause of a
    // worker that holds some, the worker woken first took most of each burst (it finds the
    // listener still readable each time round): 13/3, 15/1, 1/15 here, 5 of 48 for the
    // smaller side. With it the smaller side got 15 and 22 of 48 on a loaded machine.
    let dir = TestDir::new("py-share");
    let d = serve(&dir, &["--processes", "2", "--threads", "1"]);
    d.wait_stats("two ready workers", |s| {
        (workers(s).iter().filter(|w| w["status"] == "idle").count() == 2).then_some(())
    });
    let mut rounds = Vec::new();
    let mut smaller = 0;
    for _ in 0..3 {
        let mut per_pid = std::collections::BTreeMap::<String, usize>::new();
        let mut held: Vec<TcpStream> = (0..16).map(|_| connect(&d.addr)).collect();
        for s in &mut held {
            s.write_all(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let (status, _, body) = read_response(s, &mut Vec::new()).unwrap();
            assert_eq!(status, 200);
            *per_pid
                .entry(String::from_utf8_lossy(&body).into_owned())
                .or_default() += 1;
        }
        smaller += if per_pid.len() == 2 {
            per_pid.values().copied().min().unwrap_or(0)
        } else {
            0
        };
        rounds.push(per_pid);
        drop(held);
    }
    assert!(
        smaller >= 12,
        "connections unevenly shared between 2 workers: {rounds:?}"
    );
}
