//! The pidfile is replaced atomically and its lock outlives a re-exec: across 20 rounds of a
//! graceful reload (a re-exec) and a rewrite (the FIFO's `P`, pidfile and instance record)
//! the pidfile's inode changes on every rewrite (a new file renamed over the old, never a
//! truncate-and-write), a reader polling both files in a tight loop never sees a missing,
//! empty or partial file, and after the reloads a second instance on the same pidfile still
//! refuses, saying another uwsgid is running.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uwsgi_tests::*;

#[test]
fn the_pidfile_is_replaced_atomically_on_every_reload() {
    let dir = TestDir::new("pidfile-atomic");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let expected = format!("{}\n", d.pid);
    let record = common::discovery::record_path(&d.pidfile);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (pidfile, record, expected) = (d.pidfile.clone(), record.clone(), expected.clone());
        let (stop, reads) = (stop.clone(), reads.clone());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) && bad.len() < 10 {
                match std::fs::read_to_string(&pidfile) {
                    Ok(t) if t == expected => {}
                    other => bad.push(format!("pidfile: {other:?}")),
                }
                match std::fs::read(&record) {
                    Ok(b) if serde_json::from_slice::<serde_json::Value>(&b).is_ok() => {}
                    other => bad.push(format!(
                        "record: {:?}",
                        other.map(|b| String::from_utf8_lossy(&b).into_owned())
                    )),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            bad
        })
    };
    // Each round: a graceful reload (re-exec, same pid: the pidfile stays as it is), then the
    // FIFO's `P`, which rewrites the pidfile and the record: a new inode each time.
    let mut ino = std::fs::metadata(&d.pidfile).unwrap().ino();
    for g in 2..=21 {
        d.signal(libc::SIGHUP);
        d.wait_generation(g);
        d.fifo_write(b"P");
        ino = poll(Duration::from_secs(5), || {
            let now = std::fs::metadata(&d.pidfile).unwrap().ino();
            (now != ino).then_some(now)
        })
        .unwrap_or_else(|| {
            panic!("round {g}: the rewrite kept the pidfile's inode {ino}: rewritten in place")
        });
    }
    stop.store(true, Ordering::Relaxed);
    let bad = reader.join().unwrap();
    let n = reads.load(Ordering::Relaxed);
    assert!(bad.is_empty(), "after {n} reads the reader saw: {bad:?}");
    assert!(n >= 1000, "only {n} reads during 20 reloads");
    eprintln!("20 reloads, {n} reads of pidfile and record, all whole");
}

#[test]
fn the_pidfile_lock_survives_a_reexec() {
    let dir = TestDir::new("pidfile-lock");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    d.signal(libc::SIGHUP);
    d.wait_generation(2);
    assert!(
        d.log_text().contains("re-executing"),
        "the reload did not re-execute"
    );
    let mut second = Command::new(bin("uwsgid"))
        .args([
            "--http-socket",
            "127.0.0.1:0",
            "--safe-pidfile",
            d.pidfile.to_str().unwrap(),
        ])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = poll(Duration::from_secs(15), || second.try_wait().ok().flatten());
    if exited.is_none() {
        // It runs: the lock was lost across the re-exec. End it (SIGINT stops the stack at once).
        // SAFETY: signalling the process this test started, by its pid.
        unsafe { libc::kill(second.id() as i32, libc::SIGINT) };
        let _ = second.wait();
        panic!("a second instance started on the pidfile after a re-exec: the lock was lost");
    }
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another uwsgid") && err.contains(&format!("pid {}", d.pid)),
        "{err}"
    );
    // The running instance is untouched.
    assert_eq!(
        std::fs::read_to_string(&d.pidfile).unwrap(),
        format!("{}\n", d.pid)
    );
    assert_eq!(d.get("/").unwrap().0, 200);
}
