//! The targets: one function per parser, each asserting what its parser promises.
//!
//! - `http`: `uwsgid::http::parse` with the workers' limit (8192) and a tiny one; a complete
//!   head fits the limit and the input, contains no NUL or bare CR, parses the same from its own
//!   bytes, is complete at no shorter prefix, and round-trips through a canonical rendering; an
//!   incomplete buffer is never longer than the limit (else a client could grow it forever).
//! - `fifo`: `common::fifo::decode` and `uwsgid::fifo::classify` agree byte by byte.
//! - `pidfile`: `common::pidfile::parse` accepts exactly one decimal pid >= 2; `read` of the
//!   same bytes in a file agrees with it and refuses anything over 64 bytes.
//! - `stats`: `common::stats::parse` and uwsgictl's `statsclient::parse` agree; a document
//!   round-trips through JSON and renders (table at several widths, header, `--wait` probes)
//!   without panicking.
//! - `ini`: uwsgid's `cli::ini_args`, `cli::parse_args` and `Config::from_args` on the file,
//!   and uwsgictl's `ini::parse`/`ini::read` on the same text.
//! - `exec`: `cli::split_command_line` round-trips through single-quoting;
//!   `notify::parse` sets a flag exactly when a line says `FLAG=1`.
//! - `addr`: `cli::parse_listen_addr` (TCP forms round-trip through `Display`) and uwsgictl's
//!   `StatsAddr::parse`; host names are never resolved (no DNS from a fuzzer).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use common::stats::{
    Core, Draining, Instance, ReloadOutcome, ReloadProgress, Socket, StatsDocument, Worker,
    WorkerExt,
};
use uwsgid::http::{self, Parse};

// ---------------------------------------------------------------------------------------------
// Scratch files (pidfile and ini targets read real files).

thread_local! {
    static SCRATCH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// A file path private to this thread, in a directory removed by the OS's tmp cleaning only;
/// the file itself is rewritten on every execution.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let id = format!("{:?}", std::thread::current().id())
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>();
                let dir =
                    std::env::temp_dir().join(format!("uwsgi-fuzz-{}-{id}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
                dir
            })
            .clone()
    });
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a scratch file");
    path
}

// ---------------------------------------------------------------------------------------------
// http

pub const HTTP_TOKENS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b" / ",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\n\n",
    b"Host: a\r\n",
    b"Content-Length: ",
    b"content-length:1\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, close\r\n",
    b": ",
    b"\x00",
    b" \t",
    b"/sleep?ms=",
];

pub fn http_seeds() -> Vec<Vec<u8>> {
    [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /x?y=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
        b"HEAD /sleep?ms=5 HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

fn check_head(buf: &[u8], max_head: usize) -> String {
    let parsed = http::parse(buf, max_head);
    assert_eq!(parsed, http::parse(buf, max_head), "parse is deterministic");
    match parsed {
        Parse::Incomplete => {
            assert!(
                buf.len() <= max_head,
                "Incomplete for {} bytes with max_head {max_head}: a client could grow the \
                 buffer without bound",
                buf.len()
            );
            "incomplete".into()
        }
        Parse::Invalid(status, why) => {
            assert!(
                matches!(status, 400 | 431 | 501 | 505),
                "unexpected status {status}"
            );
            assert!(!why.is_empty());
            assert_ne!(http::reason(status), "Unknown");
            format!("invalid {status} {why}")
        }
        Parse::Complete(req) => {
            let h = req.head_len;
            assert!(h <= buf.len(), "head_len {h} > input {}", buf.len());
            assert!(h <= max_head, "head_len {h} > max_head {max_head}");
            let head = &buf[..h];
            assert!(
                head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
                "a head ends with a blank line"
            );
            assert!(!head.contains(&0), "NUL accepted in a request head");
            // Blank lines before the request line are skipped, CR or LF alike.
            let skip = head
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            for (i, &b) in head.iter().enumerate().skip(skip) {
                if b == b'\r' {
                    assert_eq!(
                        head.get(i + 1),
                        Some(&b'\n'),
                        "bare CR accepted at byte {i}"
                    );
                }
            }
            assert!(!req.method.is_empty() && req.method.is_ascii());
            assert!(!req.target.is_empty());
            assert!(req.target.bytes().all(|b| b > b' ' && b != 0x7f));
            assert!(req.minor <= 1);
            // The head alone parses to the same request; no shorter prefix is complete.
            assert_eq!(http::parse(head, max_head), Parse::Complete(clone(&req)));
            assert!(!matches!(
                http::parse(&head[..h - 1], max_head),
                Parse::Complete(_)
            ));
            // Canonical rendering round-trips.
            let canonical = format!(
                "{} {} HTTP/1.{}\r\nHost: a\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
                req.method,
                req.target,
                req.minor,
                req.content_length,
                if req.keep_alive {
                    "keep-alive"
                } else {
                    "close"
                }
            );
            match http::parse(canonical.as_bytes(), usize::MAX) {
                Parse::Complete(again) => assert_eq!(
                    (
                        again.method,
                        again.target,
                        again.minor,
                        again.keep_alive,
                        again.content_length
                    ),
                    (
                        req.method,
                        req.target,
                        req.minor,
                        req.keep_alive,
                        req.content_length
                    ),
                    "canonical round trip"
                ),
                other => panic!("canonical form {canonical:?} does not parse: {other:?}"),
            }
            format!(
                "complete 1.{} ka={} body={}",
                req.minor,
                req.keep_alive,
                req.content_length > 0
            )
        }
    }
}

fn clone<'a>(r: &http::Request<'a>) -> http::Request<'a> {
    http::Request {
        method: r.method,
        target: r.target,
        minor: r.minor,
        keep_alive: r.keep_alive,
        content_length: r.content_length,
        head_len: r.head_len,
    }
}

pub fn http(data: &[u8]) -> String {
    let sig = check_head(data, 8192);
    check_head(data, 24);
    sig
}

// ---------------------------------------------------------------------------------------------
// fifo

pub const FIFO_TOKENS: &[&[u8]] = &[b"r", b"q", b"Q", b"f", b"\n", b" ", b"0", b"9", b"+-"];

pub fn fifo_seeds() -> Vec<Vec<u8>> {
    vec![
        b"r\n".to_vec(),
        b"+++s".to_vec(),
        b"r f".to_vec(),
        b"rq\x01Q".to_vec(),
        b"0123456789".to_vec(),
        b"hubwWcpPlLsRq-".to_vec(),
    ]
}

pub fn fifo(data: &[u8]) -> String {
    use common::fifo::{decode, Decoded, FifoCommand};
    use uwsgid::fifo::{classify, Batch};
    let decoded: Vec<Decoded> = data.iter().map(|&b| decode(b)).collect();
    for (&b, d) in data.iter().zip(&decoded) {
        match *d {
            Decoded::Command(c) => {
                assert_eq!(c.as_byte(), b);
                assert_eq!(FifoCommand::from_byte(b), Some(c));
                assert!(!c.name().is_empty() && !c.describe().is_empty());
            }
            // NUL is ignored silently like whitespace (writers that terminate strings).
            Decoded::Whitespace => assert!(b.is_ascii_whitespace() || b == 0),
            Decoded::UwsgiOnly(x) | Decoded::Unknown(x) => {
                assert_eq!(x, b);
                assert_eq!(FifoCommand::from_byte(b), None);
            }
        }
    }
    let commands: Vec<FifoCommand> = decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Command(c) => Some(*c),
            _ => None,
        })
        .collect();
    let refused: Vec<u8> = decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::UwsgiOnly(b) => Some(*b),
            _ => None,
        })
        .collect();
    let first_unknown = decoded
        .iter()
        .position(|d| matches!(d, Decoded::Unknown(_)));
    match classify(data) {
        Batch::Garbage {
            len,
            first_bad,
            offset,
        } => {
            assert_eq!(len, data.len());
            assert_eq!(
                Some(offset),
                first_unknown,
                "garbage is the first unknown byte"
            );
            assert_eq!(data[offset], first_bad);
            "garbage".into()
        }
        Batch::Commands(c) => {
            assert_eq!(first_unknown, None);
            assert!(refused.is_empty());
            assert_eq!(c, commands);
            format!("commands {}", c.len().min(3))
        }
        Batch::Refused {
            commands: c,
            uwsgi_only,
        } => {
            assert_eq!(first_unknown, None);
            assert_eq!(c, commands);
            assert_eq!(uwsgi_only, refused);
            "refused".into()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pidfile

pub const NUMBER_TOKENS: &[&[u8]] = &[
    b"\n",
    b" ",
    b"\t",
    b"-",
    b"+",
    b"0",
    b"1",
    b"2",
    b"4194304",
    b"\xef\xbb\xbf",
    b"\x00",
];

pub fn pidfile_seeds() -> Vec<Vec<u8>> {
    [
        &b"1234\n"[..],
        b"  77 ",
        b"0",
        b"-5",
        b"12a",
        b"",
        b"99999999999",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

fn pidfile_sig(r: &Result<i32, common::pidfile::PidfileError>) -> String {
    use common::pidfile::PidfileError as E;
    match r {
        Ok(_) => "ok".into(),
        Err(E::Empty(_)) => "empty".into(),
        Err(E::NotANumber { .. }) => "nan".into(),
        Err(E::Reserved { .. }) => "reserved".into(),
        Err(E::OutOfRange { .. }) => "range".into(),
        Err(E::TooLarge { .. }) => "large".into(),
        Err(E::NotRegular { .. }) => "irregular".into(),
        Err(E::Missing(_)) => "missing".into(),
        Err(E::Io { .. }) => "io".into(),
    }
}

pub fn pidfile(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/run/x.pid");
    let parsed = common::pidfile::parse(path, &text);
    match &parsed {
        Ok(pid) => {
            assert!(*pid >= 2);
            let t = text.trim();
            assert!(t.bytes().all(|b| b.is_ascii_digit()), "accepted {t:?}");
            assert_eq!(t.parse::<i64>().ok(), Some(i64::from(*pid)));
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.starts_with("pidfile /run/x.pid: "), "{m}");
            assert!(!m.ends_with('.'), "{m}");
        }
    }
    // The file reader agrees with the text parser, and refuses what could not be a pid.
    let file = scratch_file("fuzz.pid", data);
    let read = common::pidfile::read(&file).map(|c| c.pid);
    if data.len() > 64 {
        assert_eq!(pidfile_sig(&read), "large");
    } else {
        let again = common::pidfile::parse(&file, &text);
        assert_eq!(pidfile_sig(&read), pidfile_sig(&again));
        assert_eq!(read.as_ref().ok(), again.as_ref().ok());
    }
    pidfile_sig(&parsed)
}

// ---------------------------------------------------------------------------------------------
// stats

pub const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"true",
    b"\"\"",
    b",",
    b":",
    b"\"workers\":",
    b"\"uwsgid\":",
    b"\"pid\":",
    b"\"last_spawn\":",
    b"\"requests\":",
    b"\"status\":\"idle\"",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\x1b[2J\"",
    b"1e999",
    b"-1",
    b"18446744073709551615",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// A uwsgid document with every optional part present.
fn uwsgid_document() -> StatsDocument {
    let worker = |id: u32, pid: i64, status: &str, state: &str| Worker {
        id,
        pid,
        accepting: 1,
        requests: 10 * u64::from(id),
        status: status.into(),
        rss: 31 << 20,
        avg_rt: 1500,
        last_spawn: 1_700_000_000,
        cores: vec![Core {
            id: 0,
            in_request: 1,
            vars: vec!["REQUEST_URI=/sleep?ms=50".into()],
            ..Core::default()
        }],
        uwsgid: Some(WorkerExt {
            generation: 3,
            ready: state == "ready",
            state: state.into(),
            status_text: Some("serving".into()),
            counters: "known".into(),
            failed_starts: 1,
            next_spawn_unix_ms: Some(1_700_000_001_000),
            last_exit: Some("signal 9".into()),
            ..WorkerExt::default()
        }),
        ..Worker::default()
    };
    StatsDocument {
        version: "2.0.31".into(),
        pid: 4242,
        cwd: "/srv/app".into(),
        sockets: vec![Socket {
            name: "127.0.0.1:8000".into(),
            proto: "http".into(),
            max_queue: 100,
            ..Socket::default()
        }],
        workers: vec![
            worker(1, 4243, "idle", "ready"),
            worker(2, 0, "idle", "dead"),
            worker(3, 4245, "busy", "starting"),
        ],
        uwsgid: Some(Instance {
            version: "0.1.0".into(),
            state: "reloading".into(),
            generation: 3,
            processes: 3,
            worker_kind: "builtin".into(),
            reload: Some(ReloadProgress {
                kind: common::reload::ReloadKind::Chain,
                generation: 4,
                ready: 1,
                total: 3,
                old_alive: 2,
                ..ReloadProgress::default()
            }),
            last_reload: Some(ReloadOutcome {
                kind: common::reload::ReloadKind::Graceful,
                generation: 3,
                result: common::reload::ReloadResult::Failed,
                reason: Some("worker 2 exited".into()),
                duration_ms: 12.5,
                finished_unix_ms: 1_700_000_000_500,
            }),
            last_error: Some("bad reload configuration".into()),
            snapshot: Some(2),
            draining: vec![Draining {
                pid: 4000,
                generation: 2,
                id: 1,
                since_unix_ms: 1,
            }],
            fifo: vec!["/run/a.fifo".into()],
            ..Instance::default()
        }),
        ..StatsDocument::default()
    }
}

pub fn stats_seeds() -> Vec<Vec<u8>> {
    vec![
        serde_json::to_vec(&uwsgid_document()).unwrap(),
        serde_json::to_vec_pretty(&StatsDocument::default()).unwrap(),
        include_bytes!("../../../tests/fixtures/uwsgi-2.0.31/idle.raw.json").to_vec(),
        include_bytes!("../../../tests/fixtures/uwsgi-2.0.31/busy-sleep.raw.json").to_vec(),
        b"{\"workers\":[{\"id\":1,\"pid\":5}]}".to_vec(),
        b"{\"version\":\"2.0\",\"workers\":[{\"id\":1,".to_vec(),
        // Found by libFuzzer: a key given twice; common's typed parse refused it ("duplicate
        // field") while uwsgictl's reader (through a JSON value) took the last one.
        br#"{"version":"","pid":0,"locks":[],"sockets":[],"sockets":[]}"#.to_vec(),
    ]
}

/// JSON of a document with its floats zeroed (serde_json's float parsing may differ in the
/// last digit without its `float_roundtrip` feature; that is not what this checks).
fn canonical_json(doc: &StatsDocument) -> String {
    let mut doc = doc.clone();
    if let Some(o) = doc.uwsgid.as_mut().and_then(|u| u.last_reload.as_mut()) {
        o.duration_ms = 0.0;
    }
    serde_json::to_string(&doc).expect("a document serializes")
}

/// `json` with every control character inside its strings replaced by `?`, as uwsgictl's
/// reader does.
fn defused(json: &str) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                *s = s
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(json).expect("our own JSON");
    walk(&mut v);
    let doc: StatsDocument = serde_json::from_value(v).expect("still a document");
    canonical_json(&doc)
}

pub fn stats(data: &[u8]) -> String {
    use uwsgictl::render::{render_header, render_stats, Previous, RenderOptions};
    use uwsgictl::wait;
    let text = String::from_utf8_lossy(data);
    let common_doc = common::stats::parse(&text);
    let ctl_doc = uwsgictl::statsclient::parse(&"fuzz", data);
    match (&common_doc, &ctl_doc) {
        // uwsgictl shows control characters in strings as `?` (a stats server must not drive
        // the terminal): the same documents but for that.
        (Ok(a), Ok(b)) => assert_eq!(defused(&canonical_json(a)), canonical_json(b)),
        (Err(_), Err(e)) => {
            let m = e.message();
            assert!(m.starts_with("stats fuzz: "), "{m}");
            return if m.contains("truncated") {
                "truncated".into()
            } else if m.contains("empty") {
                "empty".into()
            } else {
                "malformed".into()
            };
        }
        (a, b) => panic!(
            "the two stats readers disagree: common {:?}, uwsgictl {:?}",
            a.as_ref().err(),
            b.as_ref().err().map(|e| e.message())
        ),
    }
    let doc = ctl_doc.expect("checked above");
    let json = canonical_json(&doc);
    let again = common::stats::parse(&json).expect("our own JSON parses");
    assert_eq!(canonical_json(&again), json, "JSON round trip");
    for width in [None, Some(0), Some(24), Some(80), Some(200)] {
        for color in [false, true] {
            let opts = RenderOptions {
                width,
                color,
                now_unix: 1_700_000_100,
            };
            let _ = render_stats(&doc, None, &opts);
            let prev = Previous {
                doc: &again,
                elapsed_secs: 0.5,
            };
            let _ = render_stats(&doc, Some(&prev), &opts);
        }
    }
    let _ = render_header(&doc);
    let base = wait::UwsgidBaseline::of(&doc);
    let _ = format!("{:?}", wait::uwsgid_reload(&doc, &base));
    let pids = wait::worker_pids(&doc);
    let _ = format!("{:?}", wait::uwsgi_reload(&doc, &pids));
    let _ = wait::is_paused(&doc);
    format!(
        "ok uwsgid={} workers={}",
        doc.uwsgid.is_some(),
        doc.workers.len().min(3)
    )
}

// ---------------------------------------------------------------------------------------------
// ini

pub const INI_TOKENS: &[&[u8]] = &[
    b"[uwsgi]\n",
    b"[uwsgi\n",
    b"[]\n",
    b"[other]\n",
    b"\n",
    b"=",
    b" = ",
    b";",
    b"#",
    b"\"",
    b"processes",
    b"processes = 2\n",
    b"workers",
    b"master = true\n",
    b"master = false\n",
    b"vacuum = maybe\n",
    b"http-socket = 127.0.0.1:0\n",
    b"http-socket = :99999\n",
    b"http-socket = fd://3\n",
    b"http-socket = unix:/tmp/s\n",
    b"stats = 127.0.0.1:9191\n",
    b"stats-http\n",
    b"master-fifo = /tmp/f\n",
    b"safe-pidfile = %d/x.pid\n",
    b"pidfile = $(HOME)/p\n",
    b"safe_pidfile = %n.pid\n",
    b"worker-exec = sh -c 'x'\n",
    b"worker-reload-mercy = 1e309\n",
    b"worker-stop-signal = 0\n",
    b"listen = 0\n",
    b"name = ../x\n",
    b"env = A=b\n",
    b"ini = x.ini\n",
    b"plugin = python3\n",
    b"%",
    b"$(",
    b")",
    b"\xff",
];

pub fn ini_seeds() -> Vec<Vec<u8>> {
    [
        &b"[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nmaster = true\n"[..],
        b"; comment\n[other]\npidfile = /nope\n[uwsgi]\nmaster = true\npidfile = /tmp/a.pid\n\
          safe_pidfile = %dsafe.pid\nmaster-fifo = /tmp/f1\nmaster-fifo = /tmp/f2\n\
          stats = 127.0.0.1:9191\nstats-http\nname = site\n",
        b"[uwsgi]\nworker-exec = /bin/true --port 1\nworker-ready-timeout = 5\nenv = A=1\n\
          http-socket = 127.0.0.1:0\n",
        b"[uwsgi]\nwsgi-file = app.py\ncallable = app\nthreads = 4\n",
        b"[uwsgi]\nprocesses = 1\nprocesses = 3\nvacuum = no\ndie-on-term = yes\n",
        b"",
        b"# only a comment\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// True if every address in `args` can be parsed without a DNS lookup.
fn resolves_locally(args: &uwsgid::cli::Args) -> bool {
    args.http_socket
        .iter()
        .chain(args.stats.iter())
        .all(|a| no_dns(a))
}

/// True if parsing `text` as an address never looks a host name up.
fn no_dns(text: &str) -> bool {
    let t = text.trim();
    if t.starts_with("fd://") || t.starts_with("unix:") || t.contains('/') || !t.contains(':') {
        return true;
    }
    let Some((host, _)) = t.rsplit_once(':') else {
        return true;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty() || host.parse::<std::net::IpAddr>().is_ok()
}

pub fn ini(data: &[u8]) -> String {
    let path = scratch_file("fuzz.ini", data);
    let p = path.to_str().expect("a UTF-8 scratch path").to_string();
    let argv: Vec<String> = ["uwsgid", "--ini", &p].map(String::from).to_vec();
    let words = uwsgid::config::expand(&argv).map(|e| e.words);
    let mut sig = match &words {
        Ok(words) => {
            assert!(
                words.get(1).map_or(true, |w| w.starts_with("--")),
                "the first word is an option: {words:?}"
            );
            match uwsgid::cli::parse_args(&argv) {
                Ok((args, _)) if resolves_locally(&args) => {
                    match uwsgid::cli::Config::from_args(&args, false) {
                        Ok(c) => {
                            assert!(c.processes >= 1 && !c.listeners.is_empty());
                            "config ok".to_string()
                        }
                        Err(e) => {
                            assert!(!e.to_string().is_empty());
                            "config refused".into()
                        }
                    }
                }
                Ok(_) => "args ok (not resolved)".into(),
                Err(e) => {
                    assert!(
                        e.to_string().contains("fuzz.ini"),
                        "the error names the file: {e}"
                    );
                    "args refused".into()
                }
            }
        }
        Err(e) => {
            assert!(
                e.to_string().contains("fuzz.ini"),
                "the error names the file: {e}"
            );
            "ini refused".into()
        }
    };
    let text = String::from_utf8_lossy(data);
    let ctl = uwsgictl::ini::parse(&path, &text);
    if std::str::from_utf8(data).is_ok() {
        let read = uwsgictl::ini::read(&path);
        match (&ctl, &read) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Ok(a), Err(e)) => assert!(
                *a == uwsgictl::ini::IniTarget::default() && e.contains("names no"),
                "{e}"
            ),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (Err(a), Ok(_)) => panic!("ini::read accepted what ini::parse refused: {a}"),
        }
    }
    sig.push_str(if ctl.is_ok() {
        " ctl ok"
    } else {
        " ctl refused"
    });
    sig
}

// ---------------------------------------------------------------------------------------------
// exec

pub const SHELL_TOKENS: &[&[u8]] = &[
    b"'",
    b"\"",
    b"\\",
    b"\\\n",
    b" ",
    b"\t",
    b"$",
    b"`",
    b"|",
    b";",
    b"#",
    b"A=b ",
    b"''",
    b"\"\\$\"",
    b"READY=1\n",
    b"STATUS=",
    b"STOPPING=1",
    b"RELOADING=1",
    b"=",
    b"\n",
];

pub fn exec_seeds() -> Vec<Vec<u8>> {
    [
        &b"python3 -m http.server --bind 127.0.0.1"[..],
        b"sh -c 'exec \"$0\" \"$@\"' app --x",
        b"a\\ b \"c d\" 'e f' ''",
        b"READY=1\nSTATUS=serving 3 requests\n",
        b"STOPPING=1\nMAINPID=5\nRELOADING=1",
        b"X=1 app",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// Quote a word so that `split_command_line` reads it back as is.
fn single_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

pub fn exec(data: &[u8]) -> String {
    use uwsgid::cli::split_command_line;
    use uwsgid::notify::parse as parse_notify;
    let text = String::from_utf8_lossy(data);
    let split = split_command_line(&text);
    assert_eq!(split, split_command_line(&text), "deterministic");
    let sig = match &split {
        Ok(words) => {
            assert!(!words.is_empty());
            let quoted: Vec<String> = words.iter().map(|w| single_quote(w)).collect();
            let line = quoted.join(" ");
            assert_eq!(
                split_command_line(&line).as_ref(),
                Ok(words),
                "round trip through {line:?}"
            );
            format!("split {}", words.len().min(3))
        }
        Err(e) => {
            let e = e.to_string();
            assert!(!e.is_empty());
            format!(
                "refused {}",
                e.split(':').nth(1).unwrap_or("").len().min(40)
            )
        }
    };
    let msg = parse_notify(1234, data);
    assert_eq!(msg.pid, 1234);
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    assert_eq!(msg.ready, lines.contains(&&b"READY=1"[..]));
    assert_eq!(msg.stopping, lines.contains(&&b"STOPPING=1"[..]));
    assert_eq!(msg.reloading, lines.contains(&&b"RELOADING=1"[..]));
    let status = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(b"STATUS="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(msg.status, status);
    sig
}

// ---------------------------------------------------------------------------------------------
// addr

pub const ADDR_TOKENS: &[&[u8]] = &[
    b"127.0.0.1",
    b"[::1]",
    b"::",
    b":",
    b"8000",
    b"65536",
    b"fd://",
    b"unix:",
    b"http://",
    b"@",
    b"/",
    b"[",
    b"]",
];

pub fn addr_seeds() -> Vec<Vec<u8>> {
    [
        &b"127.0.0.1:8000"[..],
        b":8000",
        b"[::1]:80",
        b"fd://3",
        b"unix:/tmp/s.sock",
        b"/tmp/a.sock",
        b"http://127.0.0.1:9191/",
        b"@abstract",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

pub fn addr(data: &[u8]) -> String {
    use uwsgid::cli::{parse_listen_addr, ListenAddr};
    let text = String::from_utf8_lossy(data);
    let mut sig = String::new();
    if no_dns(&text) {
        match parse_listen_addr(&text) {
            Ok(ListenAddr::Tcp(a)) => {
                let shown = a.to_string();
                assert_eq!(parse_listen_addr(&shown), Ok(ListenAddr::Tcp(a)), "{shown}");
                sig.push_str("tcp");
            }
            Ok(ListenAddr::Fd(n)) => {
                assert!(n >= 0);
                sig.push_str("fd");
            }
            Ok(ListenAddr::Named(name)) => {
                assert!(!name.is_empty() && name.len() <= 255 && !name.contains(':'));
                let shown = ListenAddr::Named(name.clone()).to_string();
                assert_eq!(parse_listen_addr(&shown), Ok(ListenAddr::Named(name)));
                sig.push_str("fd name");
            }
            Ok(ListenAddr::Unix(p)) => {
                assert!(!p.as_os_str().is_empty() && p.as_os_str().len() <= 107);
                sig.push_str("unix");
            }
            Err(e) => {
                assert!(e.to_string().starts_with("--http-socket"), "{e}");
                sig.push_str("refused");
            }
        }
    }
    match uwsgictl::target::StatsAddr::parse(&text, false) {
        Ok(a) => {
            // A TCP address is shown as it is dialled, and reads back the same.
            if let uwsgictl::target::Endpoint::Tcp(_) = &a.endpoint {
                let shown = a.to_string();
                let again =
                    uwsgictl::target::StatsAddr::parse(&shown, false).map(|b| b.to_string());
                assert_eq!(again.as_deref(), Ok(shown.as_str()));
            }
            sig.push_str(" stats ok");
        }
        Err(e) => {
            assert!(!e.is_empty());
            sig.push_str(" stats refused");
        }
    }
    sig
}

// ---------------------------------------------------------------------------------------------
// pipeline: the worker's request framing, bytes in, requests out.
//
// The worker's connection state (`uwsgid/src/worker.rs`) lives with its socket, its epoll
// registration and its timers, so it cannot be driven without sockets; what decides which
// requests a byte stream holds is pure, and is what this target drives, exactly as the worker
// does it: `http::parse` on the connection's input buffer, a `Content-Length` body (refused
// over 1 MiB), then the next pipelined head from what is left, until a request without
// keep-alive or an invalid head ends the connection. The stream is framed once whole and once
// fed in pieces (sizes from the input's first four bytes, as partial reads would deliver it):
// both must yield the same requests, answers and end; the buffer never holds more than a head
// limit plus one body while incomplete.

const WORKER_MAX_HEAD: usize = 8192;
const WORKER_MAX_BODY: usize = 1 << 20;

fn frame(stream: &[u8], pieces: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut piece = 0;
    loop {
        // One "read": the next piece of the stream (all of it when `pieces` is empty).
        if fed < stream.len() {
            let n = match pieces.get(piece % pieces.len().max(1)) {
                Some(&n) if !pieces.is_empty() => n,
                _ => stream.len() - fed,
            };
            let n = n.min(stream.len() - fed);
            inbuf.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            piece += 1;
        }
        // Everything the buffer holds now, as the worker loops after each read.
        loop {
            match http::parse(&inbuf, WORKER_MAX_HEAD) {
                Parse::Incomplete => {
                    assert!(
                        inbuf.len() <= WORKER_MAX_HEAD,
                        "incomplete head of {} bytes kept",
                        inbuf.len()
                    );
                    break;
                }
                Parse::Invalid(status, why) => {
                    out.push(format!("{status} {why}"));
                    return out;
                }
                Parse::Complete(req) => {
                    if req.content_length > WORKER_MAX_BODY {
                        out.push("413".into());
                        return out;
                    }
                    let consumed = req.head_len + req.content_length;
                    if inbuf.len() < consumed {
                        assert!(inbuf.len() <= WORKER_MAX_HEAD + WORKER_MAX_BODY);
                        break;
                    }
                    let body = &inbuf[req.head_len..consumed];
                    let sum: u64 = body.iter().map(|&b| b as u64).sum();
                    out.push(format!(
                        "{} {} 1.{} keep={} body={}/{sum}",
                        req.method,
                        req.target,
                        req.minor,
                        req.keep_alive,
                        body.len()
                    ));
                    let keep = req.keep_alive;
                    inbuf.drain(..consumed);
                    if !keep {
                        return out;
                    }
                }
            }
        }
        if fed == stream.len() {
            out.push(format!("end with {} bytes pending", inbuf.len()));
            return out;
        }
    }
}

pub fn pipeline_seeds() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"\x01\x02\x03\x04GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /pid HTTP/1.1\r\n\r\n".to_vec(),
        b"\x05\x01\x07\x02POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"\x00\x00\x00\x00GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n".to_vec(),
        b"\x03\x03\x03\x03\r\n\r\nGET /sleep?ms=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
    ];
    v.push(b"\x10\x20\x30\x40GET / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n".to_vec());
    // Found by this target: a bad request line is judged before the head is whole, and only
    // within the head limit, so the answer does not depend on how reads split the bytes.
    v.push(b"P/1.1\n\xd9\n\n".to_vec());
    let mut long = b"\x04\x04\x04\x04".to_vec();
    long.extend(b"HTT ".repeat(2100));
    long.extend(b"\x80\n\r\n\r\n");
    v.push(long);
    v
}

pub fn pipeline(data: &[u8]) -> String {
    let (sizes, stream) = data.split_at(data.len().min(4));
    // Each read re-parses the buffer from its start (as the worker does), so piecewise framing
    // is quadratic: bounded inputs keep one execution fast.
    let stream = &stream[..stream.len().min(16 * 1024)];
    let pieces: Vec<usize> = sizes.iter().map(|&b| (b as usize % 64) + 1).collect();
    let whole = frame(stream, &[]);
    let chunked = frame(stream, &pieces);
    assert_eq!(whole, chunked, "pieces {pieces:?} framed differently");
    if stream.len() <= 2048 {
        let bytewise = frame(stream, &[1]);
        assert_eq!(whole, bytewise, "byte-by-byte reads framed differently");
    }
    format!("{} events", whole.len())
}

// ---------------------------------------------------------------------------------------------
// handoff: what a re-executed master decodes from `UWSGID_HANDOFF`.
//
// `uwsgid::master::handoff::Handoff::take` is `serde_json::from_str::<Handoff>` on the variable's
// text; the target decodes the same way (through the public type, nothing else). Garbage is
// an error, never a panic; whatever decodes re-encodes to a document that decodes to the same
// encoding again.

pub fn handoff_seeds() -> Vec<Vec<u8>> {
    vec![
        b"{}".to_vec(),
        b"null".to_vec(),
        br#"{"generation":3,"listeners":[],"lock_fds":[["/tmp/x.pid",5]]}"#.to_vec(),
        br#"{"generation":18446744073709551615,"workers":[{"pid":-1}],"fifo_pending":"rq"}"#
            .to_vec(),
    ]
}

pub fn handoff(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    match serde_json::from_str::<uwsgid::master::handoff::Handoff>(text) {
        Err(e) => format!("refused: {}", e.classify() as u8),
        Ok(h) => {
            let once = serde_json::to_string(&h).expect("a decoded handoff encodes");
            let again: uwsgid::master::handoff::Handoff =
                serde_json::from_str(&once).expect("an encoded handoff decodes");
            let twice = serde_json::to_string(&again).unwrap();
            assert_eq!(once, twice, "the handoff does not round-trip");
            "decoded".into()
        }
    }
}

pub const HANDOFF_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"18446744073709551616",
    b"\"generation\"",
    b"\"listeners\"",
    b"\"lock_fds\"",
    b"\"workers\"",
    b"\"config\"",
    b"\"fifo_pending\"",
    b"\"pid\"",
    b"\\u0000",
];
