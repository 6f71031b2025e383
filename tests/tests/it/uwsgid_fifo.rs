//! The master FIFO end to end (BEHAVIOUR 1.8): every command byte with an effect seen from
//! outside (stats, log, files), slot switching, the file's mode, refusal of a path that is not a
//! FIFO, ordered batches, unknown and garbage bytes, and writers that come and go.

use crate::chan;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use chan::*;
use uwsgi_tests::*;

fn instance(s: &serde_json::Value) -> &serde_json::Value {
    &s["uwsgid"]
}

#[test]
fn r_and_big_r_reload_in_place_with_new_workers() {
    let dir = TestDir::new("fifo-r");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let before = d.worker_pids();
    d.fifo_write(b"r");
    let s = d.wait_generation(2);
    assert_eq!(s["pid"], d.pid, "the master's pid changed");
    assert!(pids(&s).iter().all(|p| !before.contains(p)), "{s}");
    assert_eq!(instance(&s)["last_reload"]["kind"], "graceful");
    d.wait_log("FIFO 'r': reload");
    d.wait_log("re-executing");

    // A request in flight is cut by the brutal reload.
    let slow = std::thread::spawn({
        let addr = d.addr.clone();
        move || http_get(&addr, "/sleep?ms=20000")
    });
    d.wait_stats("a busy worker", |s| {
        workers(s)
            .iter()
            .any(|w| w["status"] == "busy")
            .then_some(())
    });
    d.fifo_write(b"R");
    let s = d.wait_generation(3);
    assert_eq!(s["pid"], d.pid);
    assert_eq!(instance(&s)["last_reload"]["kind"], "brutal");
    assert!(
        slow.join().unwrap().is_err(),
        "the brutal reload let a request finish"
    );
    d.wait_log("FIFO 'R': brutal-reload");
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn w_and_big_w_replace_the_workers_and_keep_the_master() {
    let dir = TestDir::new("fifo-w");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let before = d.worker_pids();
    d.fifo_write(b"w");
    let s = d.wait_generation(2);
    assert_eq!(s["pid"], d.pid);
    assert!(pids(&s).iter().all(|p| !before.contains(p)));
    assert_eq!(instance(&s)["last_reload"]["kind"], "workers");
    let before = pids(&s);
    d.fifo_write(b"W");
    let s = d.wait_generation(3);
    assert!(pids(&s).iter().all(|p| !before.contains(p)));
    assert_eq!(instance(&s)["last_reload"]["kind"], "brutal-workers");
    assert!(
        !d.log_text().contains("re-executing"),
        "a workers reload re-executed the master"
    );
}

#[test]
fn c_chain_reloads() {
    let dir = TestDir::new("fifo-c");
    let d = Daemon::start(&dir, &["--processes", "3"]);
    let before = d.worker_pids();
    d.fifo_write(b"c");
    let s = d.wait_generation(2);
    assert!(pids(&s).iter().all(|p| !before.contains(p)));
    assert_eq!(instance(&s)["last_reload"]["kind"], "chain");
    assert_eq!(instance(&s)["last_reload"]["result"], "complete");
    d.wait_log("chain reload: worker 1 replaced; next is worker 2");
    d.wait_log("chain reload: worker 2 replaced; next is worker 3");
}

#[test]
fn q_stops_after_the_request_in_flight() {
    let dir = TestDir::new("fifo-q");
    let mut d = Daemon::start(&dir, &["--processes", "1"]);
    let slow = std::thread::spawn({
        let addr = d.addr.clone();
        move || http_get(&addr, "/sleep?ms=400")
    });
    d.wait_stats("a busy worker", |s| {
        workers(s)
            .iter()
            .any(|w| w["status"] == "busy")
            .then_some(())
    });
    d.fifo_write(b"q");
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let (code, body) = slow
        .join()
        .unwrap()
        .expect("the request in flight finished");
    assert_eq!(code, 200, "{body}");
    assert!(d.log_text().contains("FIFO 'q': stop"));
}

#[test]
fn big_q_stops_at_once() {
    let dir = TestDir::new("fifo-bigq");
    let mut d = Daemon::start(&dir, &["--processes", "2"]);
    let workers = d.worker_pids();
    let slow = std::thread::spawn({
        let addr = d.addr.clone();
        move || http_get(&addr, "/sleep?ms=20000")
    });
    d.wait_stats("a busy worker", |s| {
        chan::workers(s)
            .iter()
            .any(|w| w["status"] == "busy")
            .then_some(())
    });
    d.fifo_write(b"Q");
    d.wait_exit(Duration::from_secs(10));
    assert!(slow.join().unwrap().is_err(), "Q let a request finish");
    for p in workers {
        wait_for("the workers to be gone", Duration::from_secs(5), || {
            (!alive(p as i32)).then_some(())
        });
    }
    assert!(d.log_text().contains("FIFO 'Q': brutal-stop"));
}

#[test]
fn p_toggles_pause_and_connections_wait_in_the_backlog() {
    let dir = TestDir::new("fifo-p");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    d.fifo_write(b"p");
    d.wait_stats("paused", |s| {
        (instance(s)["paused"] == true
            && instance(s)["state"] == "paused"
            && workers(s)
                .iter()
                .all(|w| w["status"] == "pause" && w["accepting"] == 0))
        .then_some(())
    });
    d.wait_log("worker 1: paused");
    d.wait_log("worker 2: paused");
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The connection waits in the kernel's accept queue: the stats say so.
    d.wait_stats("a connection queued in the backlog", |s| {
        (s["sockets"][0]["queue"].as_u64() >= Some(1)).then_some(())
    });
    d.fifo_write(b"p");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(parse_response(&answer).unwrap().0, 200);
    d.wait_stats("resumed", |s| {
        (instance(s)["paused"] == false && instance(s)["state"] == "running").then_some(())
    });
}

#[test]
fn h_and_u_pause_and_resume_idempotently() {
    let dir = TestDir::new("fifo-hu");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    d.fifo_write(b"h");
    d.wait_log("pause: paused");
    d.fifo_write(b"h");
    d.wait_log("pause: already paused; nothing to do");
    assert_eq!(d.stats()["uwsgid"]["paused"], true);
    d.fifo_write(b"u");
    d.wait_log("resume: resumed");
    d.fifo_write(b"u");
    d.wait_log("resume: already running; nothing to do");
    assert_eq!(d.stats()["uwsgid"]["paused"], false);
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn commands_in_one_write_run_in_order() {
    let dir = TestDir::new("fifo-order");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    d.fifo_write(b"++");
    let s = d.wait_stats("4 ready workers", |s| {
        (instance(s)["processes"] == 4 && workers(s).len() == 4 && all_ready(s)).then(|| s.clone())
    });
    assert!(d.log_text().contains("worker count 2 -> 3"));
    assert!(d.log_text().contains("worker count 3 -> 4"));
    drop(s);
    // Pause then toggle: running at the end. Toggle then pause: paused at the end.
    d.fifo_write(b"hp");
    wait_log_count(&d, "toggle: resumed", 1);
    barrier(&d);
    assert_eq!(
        d.stats()["uwsgid"]["paused"],
        false,
        "\"hp\" left it paused"
    );
    d.fifo_write(b"ph\n");
    wait_log_count(&d, "pause: already paused", 1);
    barrier(&d);
    assert_eq!(
        d.stats()["uwsgid"]["paused"],
        true,
        "\"ph\" left it running"
    );
    d.fifo_write(b"u");
    wait_log_count(&d, "resume: resumed", 1);
    // Two workers reloads in one write: two generations, in order.
    d.fifo_write(b"ww");
    let s = d.wait_generation(3);
    assert_eq!(instance(&s)["generation"], 3);
    // A re-exec in the middle of a write: what follows it runs in the next image.
    d.fifo_write(b"rws");
    let s = d.wait_generation(5);
    assert_eq!(instance(&s)["generation"], 5);
    d.wait_log("running 2 FIFO command(s) written before the re-exec");
    d.wait_log("statistics: generation 5");
}

#[test]
fn plus_and_minus_change_the_worker_count() {
    let dir = TestDir::new("fifo-plus");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    d.fifo_write(b"+");
    d.wait_stats("3 ready workers", |s| {
        (workers(s).len() == 3 && all_ready(s)).then_some(())
    });
    let third = d.stats()["workers"][2]["pid"].as_i64().unwrap();
    d.fifo_write(b"-");
    d.wait_stats("2 workers", |s| {
        (instance(s)["processes"] == 2 && workers(s).len() == 2 && all_ready(s)).then_some(())
    });
    wait_for(
        "the removed worker to exit",
        Duration::from_secs(10),
        || (!alive(third as i32)).then_some(()),
    );
    d.wait_log("worker count 3 -> 2");
    // Never below one worker.
    d.fifo_write(b"---");
    d.wait_log("worker count stays at 1");
    let s = d.wait_stats("1 worker", |s| (workers(s).len() == 1).then(|| s.clone()));
    assert_eq!(instance(&s)["processes"], 1);
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn s_logs_statistics() {
    let dir = TestDir::new("fifo-s");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    d.fifo_write(b"s");
    let log = d.wait_log("statistics: generation 1 state running workers 2");
    assert!(log.contains("worker 1 pid"), "{log}");
    assert!(log.contains("worker 2 pid"), "{log}");
}

#[test]
fn big_p_rewrites_a_deleted_pidfile() {
    let dir = TestDir::new("fifo-bigp");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    std::fs::remove_file(&d.pidfile).unwrap();
    d.fifo_write(b"P");
    let text = wait_for("the pidfile to come back", Duration::from_secs(10), || {
        std::fs::read_to_string(&d.pidfile).ok()
    });
    assert_eq!(text, format!("{}\n", d.pid));
    assert_eq!(
        std::fs::metadata(&d.pidfile).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn l_reopens_and_big_l_rotates_the_log_file() {
    let dir = TestDir::new("fifo-log");
    let logto = dir.join("app.log");
    let d = Daemon::start(
        &dir,
        &["--processes", "1", "--logto", logto.to_str().unwrap()],
    );
    wait_file_contains(&logto, "listening on");
    // logrotate's way: move the file, then ask for a reopen.
    let moved = dir.join("app.log.moved");
    std::fs::rename(&logto, &moved).unwrap();
    d.fifo_write(b"l");
    wait_file_contains(&logto, "log reopened");
    assert!(std::fs::read_to_string(&moved)
        .unwrap()
        .contains("FIFO 'l': reopen-log"));
    // uwsgid's own rotation: renamed to FILE.EPOCH, a fresh FILE started.
    d.fifo_write(b"L");
    wait_file_contains(&logto, "log rotated to");
    let backups: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("app.log.")
                .is_some_and(|e| e.parse::<u64>().is_ok())
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let old = std::fs::read_to_string(dir.join(&backups[0])).unwrap();
    assert!(old.contains("log reopened"), "{old}");
    assert!(!std::fs::read_to_string(&logto)
        .unwrap()
        .contains("log reopened"));
    d.fifo_write(b"s");
    wait_file_contains(&logto, "statistics: generation 1");
}

#[test]
fn two_rotations_in_one_second_keep_both_backups() {
    let dir = TestDir::new("fifo-log-twice");
    let logto = dir.join("app.log");
    let d = Daemon::start(
        &dir,
        &["--processes", "1", "--logto", logto.to_str().unwrap()],
    );
    let all_logs = || -> String {
        std::fs::read_dir(&dir.path)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("app.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    d.fifo_write(b"LL");
    wait_for("two rotations", Duration::from_secs(10), || {
        (all_logs().matches("log rotated to").count() == 2).then_some(())
    });
    assert!(
        all_logs().contains("listening on"),
        "the first backup was overwritten by the second"
    );
}

#[test]
fn workers_follow_the_master_to_a_reopened_log() {
    let dir = TestDir::new("fifo-log-workers");
    let logto = dir.join("app.log");
    let d = Daemon::start(
        &dir,
        &["--processes", "1", "--logto", logto.to_str().unwrap()],
    );
    d.fifo_write(b"L");
    wait_file_contains(&logto, "log rotated to");
    d.fifo_write(b"h");
    wait_file_contains(&logto, "worker 1: paused");
}

#[test]
fn b_without_a_snapshot_changes_nothing() {
    let dir = TestDir::new("fifo-b");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let before = d.worker_pids();
    d.fifo_write(b"b");
    d.wait_log("FIFO 'b': rollback");
    d.wait_log("no snapshot");
    barrier(&d);
    assert_eq!(d.worker_pids(), before);
    assert_eq!(d.generation(), 1);
}

#[test]
fn digits_switch_between_configured_slots() {
    let dir = TestDir::new("fifo-slots");
    let second = dir.join("second.fifo");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--master-fifo",
            second.to_str().unwrap(),
        ],
    );
    assert!(!second.exists(), "only the active slot exists");
    d.fifo_write(b"1");
    d.wait_log(&format!(
        "active master FIFO is now slot 1: {}",
        second.display()
    ));
    let meta = std::fs::metadata(&second).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(d.stats()["uwsgid"]["fifo_slot"], 1);
    // Slot 0 has no reader now: a writer learns it at once instead of hanging.
    let e = fifo_write_to(&d.fifo, b"s").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "{e}");
    // Unconfigured slots are refused; the active one stays.
    fifo_write_to(&second, b"23456789").unwrap();
    for n in 2..=9 {
        d.wait_log(&format!("FIFO slot {n} is not configured"));
    }
    fifo_write_to(&second, b"s").unwrap();
    wait_log_count(&d, "statistics: generation", 1);
    fifo_write_to(&second, b"0").unwrap();
    d.wait_log("active master FIFO is now slot 0");
    d.fifo_write(b"s");
    wait_log_count(&d, "statistics: generation", 2);
    assert_eq!(d.stats()["uwsgid"]["fifo_slot"], 0);
}

#[test]
fn fifo_is_created_mode_0600_and_a_non_fifo_path_is_refused() {
    let dir = TestDir::new("fifo-mode");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let meta = std::fs::metadata(&d.fifo).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(d);

    let dir = TestDir::new("fifo-notfifo");
    dir.write("master.fifo", "a regular file\n");
    let sock = dir.join("http.sock");
    let mut d = Daemon::spawn(&dir, &["--http-socket", sock.to_str().unwrap()]);
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "{status:?}");
    let log = d.log_text();
    assert!(log.contains("exists and is not a FIFO"), "{log}");
    assert!(!log.contains("listening on"), "{log}");
    assert!(!sock.exists(), "a listener was bound before the refusal");
    assert!(
        !d.stats.exists(),
        "the stats socket was bound before the refusal"
    );
    assert!(!d.pidfile.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("master.fifo")).unwrap(),
        "a regular file\n"
    );
}

#[test]
fn unknown_and_uwsgi_only_bytes_are_logged_and_ignored() {
    let dir = TestDir::new("fifo-unknown");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    let before = d.worker_pids();
    d.fifo_write(b"x");
    d.wait_log("byte 0x78 at offset 0 is not a command; nothing executed");
    for b in [b'f', b'C', b'B', b'E', b'S'] {
        d.fifo_write(&[b]);
        d.wait_log(&format!(
            "{:?} ({}",
            b as char,
            common::fifo::UWSGI_ONLY
                .iter()
                .find(|(x, _)| *x == b)
                .unwrap()
                .1
        ));
    }
    // Whitespace is silent and harmless.
    d.fifo_write(b" \n\t");
    barrier(&d);
    assert_eq!(d.worker_pids(), before);
    assert_eq!(d.generation(), 1);
    assert_eq!(d.get("/").unwrap().0, 200);
}

#[test]
fn writers_that_close_and_reopen_keep_working() {
    let dir = TestDir::new("fifo-writers");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    // One writer holds the FIFO open the whole time; others come and go around it.
    let mut held = std::fs::OpenOptions::new()
        .write(true)
        .open(&d.fifo)
        .unwrap();
    for n in 1..=3 {
        d.fifo_write(b"s");
        wait_log_count(&d, "statistics: generation", n);
    }
    held.write_all(b"s").unwrap();
    wait_log_count(&d, "statistics: generation", 4);
    drop(held);
    for n in 5..=6 {
        d.fifo_write(b"s");
        wait_log_count(&d, "statistics: generation", n);
    }
}

/// A small deterministic generator for the random-bytes test.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn garbage_and_a_mebibyte_of_random_bytes_leave_the_master_serving() {
    let dir = TestDir::new("fifo-garbage");
    let d = Daemon::start(&dir, &["--processes", "2"]);
    let before = d.worker_pids();
    // "hello world" holds command bytes (h, l) among unknown ones: nothing of it runs.
    d.fifo_write(b"hello world\x00\xff\x7f");
    d.wait_log("is not a command; nothing executed");
    let random = random_bytes(1 << 20, 0x9e37_79b9_7f4a_7c15);
    assert!(random.contains(&b'Q') && random.contains(&b'q') && random.contains(&b'r'));
    d.fifo_write(&random);
    barrier(&d);
    d.assert_alive();
    let s = d.stats();
    assert_eq!(s["uwsgid"]["generation"], 1, "a reload ran");
    assert_eq!(s["uwsgid"]["paused"], false, "a pause ran");
    assert_eq!(s["uwsgid"]["processes"], 2, "the worker count changed");
    assert_eq!(pids(&s), before, "workers were replaced");
    assert_eq!(d.get("/").unwrap().0, 200);
    assert!(!d.log_text().contains("log rotated"), "a rotation ran");
    assert!(d.log_count("nothing executed") >= 2);
}
