//! `--vacuum` (BEHAVIOUR 1.5): on exit the master removes the pidfile if it still holds its
//! pid, and the FIFOs and Unix sockets it created; nothing else, and nothing without `--vacuum`.

use crate::chan;

use std::path::PathBuf;
use std::time::Duration;

use chan::*;
use uwsgi_tests::*;

struct Files {
    pidfile: PathBuf,
    fifo: PathBuf,
    second_fifo: PathBuf,
    stats: PathBuf,
    http: PathBuf,
}

fn run(dir: &TestDir, vacuum: bool, before_exit: impl FnOnce(&Daemon)) -> Files {
    let second = dir.join("second.fifo");
    let http = dir.join("http.sock");
    let mut args = vec![
        "--processes",
        "1",
        "--master-fifo",
        second.to_str().unwrap(),
        "--http-socket",
        http.to_str().unwrap(),
        "--http-socket",
        "127.0.0.1:0",
    ];
    if vacuum {
        args.push("--vacuum");
    }
    let mut d = Daemon::start(dir, &args);
    // Create slot 1's FIFO too, then come back to slot 0.
    d.fifo_write(b"1");
    d.wait_log("active master FIFO is now slot 1");
    fifo_write_to(&second, b"0").unwrap();
    d.wait_log("active master FIFO is now slot 0");
    before_exit(&d);
    d.fifo_write(b"q");
    assert!(d.wait_exit(Duration::from_secs(20)).success());
    Files {
        pidfile: d.pidfile.clone(),
        fifo: d.fifo.clone(),
        second_fifo: second,
        stats: d.stats.clone(),
        http,
    }
}

#[test]
fn vacuum_removes_what_we_created_even_after_a_re_exec() {
    let dir = TestDir::new("vacuum");
    // The new image learns from the handoff which files the first one made.
    let f = run(&dir, true, |d| {
        d.fifo_write(b"r");
        d.wait_generation(2);
    });
    for p in [&f.pidfile, &f.fifo, &f.second_fifo, &f.stats, &f.http] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn vacuum_keeps_a_pidfile_that_names_another_process() {
    let dir = TestDir::new("vacuum-other");
    let f = run(&dir, true, |d| {
        std::fs::write(&d.pidfile, "1\n").unwrap();
    });
    assert_eq!(std::fs::read_to_string(&f.pidfile).unwrap(), "1\n");
    for p in [&f.fifo, &f.second_fifo, &f.stats, &f.http] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn vacuum_keeps_a_fifo_it_did_not_create() {
    let dir = TestDir::new("vacuum-fifo");
    let fifo = dir.join("master.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let f = run(&dir, true, |_| {});
    assert!(f.fifo.exists(), "a FIFO made by someone else was removed");
    assert!(!f.second_fifo.exists());
    assert!(!f.pidfile.exists());
}

#[test]
fn without_vacuum_files_stay() {
    let dir = TestDir::new("no-vacuum");
    let f = run(&dir, false, |_| {});
    for p in [&f.pidfile, &f.fifo, &f.second_fifo, &f.stats, &f.http] {
        assert!(p.exists(), "{} removed without --vacuum", p.display());
    }
}

#[test]
fn vacuum_also_cleans_up_after_a_brutal_stop() {
    let dir = TestDir::new("vacuum-int");
    let mut d = Daemon::start(&dir, &["--processes", "2", "--vacuum"]);
    d.signal(libc::SIGINT);
    d.wait_exit(Duration::from_secs(10));
    for p in [&d.pidfile, &d.fifo, &d.stats] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}
