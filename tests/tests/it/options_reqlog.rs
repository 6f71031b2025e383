//! Request logging of built-in workers: uWSGI's default line (one per request, field by
//! field), `--logformat` with uWSGI's variables, `--disable-logging` with `--log-4xx` and
//! `--log-5xx`.

use std::time::Duration;

use uwsgi_tests::*;

fn get(d: &Daemon, path: &str, extra: &str) -> u16 {
    let raw = http_raw(
        &d.addr,
        format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    parse_response(&raw).expect("a response").0
}

/// The first log line containing `needle`, waited for.
fn line_with(d: &Daemon, needle: &str) -> String {
    wait_for(
        &format!("a log line with {needle:?}"),
        Duration::from_secs(10),
        || {
            d.log_text()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        },
    )
}

#[test]
fn default_line_has_uwsgi_fields() {
    let dir = TestDir::new("reqlog-default");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let worker = d.worker_pids()[0];
    assert_eq!(get(&d, "/?a=1", "User-Agent: probe/1\r\n"), 200);
    assert_eq!(get(&d, "/nowhere", ""), 404);
    let line = line_with(&d, "GET /?a=1 =>");
    // [pid: P|app: 0|req: 1/1] 127.0.0.1 () {4 vars in N bytes} [ctime] GET /?a=1 =>
    // generated 11 bytes in M msecs (HTTP/1.1 200) 4 headers in K bytes (1 switches on core 0)
    let prefix = format!("[pid: {worker}|app: 0|req: 1/1] 127.0.0.1 () {{3 vars in ");
    assert!(line.starts_with(&prefix), "{line}");
    let (_, rest) = line
        .split_once("] GET /?a=1 => generated 11 bytes in ")
        .expect(&line);
    let (ms, rest) = rest.split_once(" msecs (HTTP/1.1 200) ").expect(&line);
    assert!(ms.parse::<u64>().is_ok(), "{line}");
    assert!(rest.ends_with("bytes (1 switches on core 0)"), "{line}");
    let ctime = line
        .split('[')
        .nth(2)
        .and_then(|s| s.split(']').next())
        .expect(&line);
    assert_eq!(ctime.split_whitespace().count(), 5, "ctime-like: {ctime}");
    let miss = line_with(&d, "GET /nowhere =>");
    assert!(
        miss.contains("|req: 2/2]") && miss.contains("(HTTP/1.1 404)"),
        "{miss}"
    );
    assert_eq!(d.log_count("GET /?a=1 =>"), 1, "one line per request");
}

#[test]
fn logformat_fills_uwsgi_variables() {
    let dir = TestDir::new("reqlog-format");
    let format = "REQ %(method)|%(uri)|%(status)|%(size)|%(rsize)|%(addr)|%(proto)|%(host)|\
                  %(uagent)|%(referer)|%(pid)|%(wid)|%(msecs)|%(time)|%(ltime)|%(unknown)|";
    let d = Daemon::start(&dir, &["--processes", "1", "--logformat", format]);
    let worker = d.worker_pids()[0];
    assert_eq!(
        get(
            &d,
            "/sleep?ms=120",
            "User-Agent: probe/2\r\nReferer: http://r.test/\r\n"
        ),
        200
    );
    let line = line_with(&d, "REQ ");
    let f: Vec<&str> = line.trim_start_matches("REQ ").split('|').collect();
    assert_eq!(f.len(), 17, "{line}");
    assert_eq!(&f[..3], ["GET", "/sleep?ms=120", "200"], "{line}");
    let size: u64 = f[3].parse().expect(&line);
    assert_eq!(f[4], "13", "body 'slept 120 ms\\n': {line}");
    assert!(size > 13 + 40, "size counts the head too: {line}");
    assert_eq!(
        &f[5..10],
        [
            "127.0.0.1",
            "HTTP/1.1",
            "example.test",
            "probe/2",
            "http://r.test/"
        ],
        "{line}"
    );
    assert_eq!(f[10], worker.to_string(), "{line}");
    assert_eq!(f[11], "1", "{line}");
    let ms: u64 = f[12].parse().expect(&line);
    assert!((120..5000).contains(&ms), "msecs {ms}: {line}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t: u64 = f[13].parse().expect(&line);
    assert!(t <= now && now - t < 60, "{line}");
    assert!(f[14].contains('/') && f[14].contains(':'), "ltime: {line}");
    assert_eq!(f[15], "", "unknown variables are empty: {line}");
}

#[test]
fn disable_logging_with_log_4xx() {
    let dir = TestDir::new("reqlog-disabled");
    let d = Daemon::start(
        &dir,
        &["--processes", "1", "--disable-logging", "--log-4xx"],
    );
    assert_eq!(get(&d, "/pid", ""), 200);
    assert_eq!(get(&d, "/missing-one", ""), 404);
    // Served in order by one worker: once the 404's line is there, the 200's would be too.
    line_with(&d, "GET /missing-one =>");
    assert_eq!(d.log_count("GET /pid"), 0, "{}", d.log_text());

    let dir = TestDir::new("reqlog-off");
    let d = Daemon::start(&dir, &["--processes", "1", "-L", "--log-5xx"]);
    assert_eq!(get(&d, "/missing-two", ""), 404);
    // A 405 is a 4xx too: neither is logged with only --log-5xx.
    let raw = http_raw(
        &d.addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_response(&raw).unwrap().0, 405);
    // One worker flushes a turn's lines before it serves the next connection: once this
    // later request is answered, lines of the earlier ones would be in the log.
    assert_eq!(get(&d, "/pid", ""), 200);
    assert_eq!(d.log_count("GET /missing-two"), 0, "{}", d.log_text());
    assert_eq!(d.log_count("POST /"), 0, "{}", d.log_text());
}
