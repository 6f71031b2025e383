//! Static files (`--check-static`) cost a worker bounded memory whatever its clients do: a file
//! is streamed from the open file, never read whole, so clients that ask for a large file and
//! never read it cannot grow the worker (they used to: four such clients of a 32 MiB file took
//! one worker from 2 MB to 133 MB RSS). Streaming stays correct with keep-alive, pipelining
//! and HEAD.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use uwsgi_tests::*;

const BIG: usize = 32 << 20;
/// What four stalled 32 MiB responses may add to the worker's RSS: well under one file.
const RSS_BOUND_KB: u64 = 16 << 10;

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn vm_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("worker status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn static_requests(d: &Daemon) -> u64 {
    d.stats()["workers"][0]["cores"][0]["static_requests"]
        .as_u64()
        .unwrap_or(0)
}

/// Read one response (head, then exactly Content-Length bytes unless `head_only`).
fn read_response(s: &mut TcpStream, head_only: bool) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
        assert!(head.len() < 8192, "head too long");
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = parse_response(&head).expect("status line").0;
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {text}"));
    if head_only {
        return (status, len.to_le_bytes().to_vec());
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("response body");
    (status, body)
}

#[test]
fn clients_that_never_read_a_large_static_file_do_not_grow_the_worker() {
    let dir = TestDir::new("static-rss");
    std::fs::create_dir(dir.join("static")).unwrap();
    let big = pattern(BIG);
    std::fs::write(dir.join("static/big.bin"), &big).unwrap();
    dir.write("static/small.txt", "small");
    let d = Daemon::start(&dir, &["--processes", "1", "--check-static", "static"]);
    let worker = d.worker_pids()[0] as i32;
    assert_eq!(d.get("/small.txt").unwrap(), (200, "small".to_string()));
    let baseline = vm_rss_kb(worker);
    let before = static_requests(&d);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stalled.push(s);
    }
    wait_for(
        "the worker to take the four requests",
        Duration::from_secs(20),
        || (static_requests(&d) >= before + 4).then_some(()),
    );
    let stalled_rss = vm_rss_kb(worker);
    // A fifth client, which reads, gets the whole file, byte for byte, meanwhile.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, body) = read_response(&mut s, false);
    assert_eq!(status, 200);
    assert_eq!(body.len(), big.len());
    assert!(
        body == big,
        "the streamed file differs from the file on disk"
    );
    let after = vm_rss_kb(worker);
    for (when, rss) in [("with four stalled clients", stalled_rss), ("after", after)] {
        assert!(
            rss.saturating_sub(baseline) < RSS_BOUND_KB,
            "worker RSS {when}: {rss} kB, baseline {baseline} kB (bound: +{RSS_BOUND_KB} kB)"
        );
    }
    drop(stalled);
    assert_eq!(d.worker_pids()[0] as i32, worker, "the worker was replaced");
}

#[test]
fn streamed_files_keep_keep_alive_pipelining_and_head_correct() {
    let dir = TestDir::new("static-pipeline");
    std::fs::create_dir(dir.join("static")).unwrap();
    let file = pattern(3 << 20);
    std::fs::write(dir.join("static/f.bin"), &file).unwrap();
    dir.write("static/a.txt", "aaa");
    let d = Daemon::start(&dir, &["--processes", "1", "--check-static", "static"]);
    let pid = d.get("/pid").unwrap().1;
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Pipelined: a file larger than any socket buffer, then small answers queued behind it,
    // a HEAD (its length, no body), the file again, and a last request that closes.
    s.write_all(
        b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /pid HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false), (200, file.clone()));
    assert_eq!(read_response(&mut s, false), (200, pid.into_bytes()));
    let (status, len) = read_response(&mut s, true);
    assert_eq!(status, 200);
    assert_eq!(usize::from_le_bytes(len.try_into().unwrap()), file.len());
    assert_eq!(read_response(&mut s, false), (200, b"aaa".to_vec()));
    assert_eq!(read_response(&mut s, false), (200, file));
    assert_eq!(read_response(&mut s, false), (200, b"aaa".to_vec()));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "bytes after the last response: {}",
        rest.len()
    );
}
