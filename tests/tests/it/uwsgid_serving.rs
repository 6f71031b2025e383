//! Built-in workers serve HTTP: demo routes, the default page, static files, bad requests.

use uwsgi_tests::*;

#[test]
fn demo_routes_default_page_and_static_files() {
    let dir = TestDir::new("serving");
    std::fs::create_dir_all(dir.join("static")).unwrap();
    dir.write("static/hello.txt", "static hello");
    let d = Daemon::start(&dir, &["--processes", "2", "--check-static", "static"]);
    assert_eq!(d.get("/").unwrap(), (200, "Hello World".to_string()));
    let (status, body) = d.get("/pid").unwrap();
    assert_eq!(status, 200);
    let pid: i64 = body.parse().unwrap();
    assert!(
        d.worker_pids().contains(&pid),
        "/pid answered {pid}, not one of our workers"
    );
    let (status, body) = d.get("/sleep?ms=30").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        d.get("/hello.txt").unwrap(),
        (200, "static hello".to_string())
    );
    // A traversal attempt is refused (options_static_map has the full catalogue).
    assert_eq!(d.get("/../uwsgid.pid").unwrap().0, 403);
    assert_eq!(d.get("/nope").unwrap().0, 404);
}

#[test]
fn default_page_names_worker_and_generation() {
    let dir = TestDir::new("default-page");
    let pidfile = dir.join("uwsgid.pid");
    let fifo = dir.join("master.fifo");
    let stats = dir.join("stats.sock");
    let mut d = Daemon::spawn_with(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            pidfile.to_str().unwrap(),
            "--master-fifo",
            fifo.to_str().unwrap(),
            "--stats",
            stats.to_str().unwrap(),
        ],
        &bin("uwsgid"),
        false,
    );
    d.wait_running();
    let (status, body) = d.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("worker 1") && body.contains("generation 1"),
        "{body}"
    );
}

#[test]
fn malformed_requests_get_400_and_never_crash_a_worker() {
    let dir = TestDir::new("malformed");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let before = d.worker_pids();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    ] {
        let answer = http_raw(&d.addr, raw);
        let (status, _) = parse_response(&answer).unwrap();
        assert!((400..=505).contains(&status), "{raw:?} got {status}");
    }
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_response(&http_raw(&d.addr, &huge)).unwrap().0, 431);
    assert_eq!(d.get("/").unwrap().0, 200);
    assert_eq!(d.worker_pids(), before, "a worker was replaced");
}

#[test]
fn keep_alive_and_pipelined_requests_answer_in_order() {
    use std::io::{Read, Write};
    let dir = TestDir::new("pipeline");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /sleep?ms=50 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let first = all.find("slept 50 ms").expect(&all);
    let second = all.find("Hello World").expect(&all);
    assert!(first < second, "responses out of order: {all}");
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 3, "{all}");
}
