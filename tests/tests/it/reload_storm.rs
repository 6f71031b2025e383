//! Reload kinds compose: a storm of mixed master re-execs (`r`, `R`, SIGHUP), workers reloads
//! (`w`, `W`) and chain reloads (`c`) ends with exactly the configured workers, all of the
//! newest generation, no old worker left and the master's children back to the workers (plus,
//! for a preloaded Python app, the current zygote and the next generation's standby); and a
//! re-exec does not renew a draining worker's mercy.
//!
//! Before the fix a starting worker was kept until its slot's newest generation was ready, and
//! after a re-exec the leftover FIFO bytes run before any READY=1 is heard: each reload added a
//! worker per slot, up to a full scoreboard and a handoff too large for `execve`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

use crate::exec_support::python;

/// Live (non-zombie) children of `pid`, with their command lines.
fn children(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.first() != Some(&"Z") && rest.get(1).and_then(|p| p.parse().ok()) == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// A small deterministic generator, so that a failing storm can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The storm: first one write of `rwc` x `burst` (the master runs it all from one read, so
/// after each re-exec the bytes left over run before any READY=1 is heard), then `writes`
/// writes of 1-4 random bytes of `r R w W c`, 10 at a time without a pause, with a SIGHUP
/// every 25th write, for 2 s at most. Bounded in re-execs rather than in time: on a loaded
/// machine one re-exec of the debug binary can take a few hundred ms. Fails at once if the
/// master has more than `peak` children meanwhile.
fn storm(d: &Daemon, burst: usize, writes: usize, peak: usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("storm seed {seed}");
    let mut rng = Rng(seed);
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&d.fifo)
        .expect("open master FIFO");
    fifo.write_all(&b"rwc".repeat(burst))
        .expect("write the burst");
    let started = Instant::now();
    for i in 0..writes {
        if started.elapsed() >= Duration::from_secs(2) {
            break;
        }
        let n = 1 + rng.next() % 4;
        let bytes: Vec<u8> = (0..n)
            .map(|_| b"rRwWc"[(rng.next() % 5) as usize])
            .collect();
        // A full pipe (the master busy re-executing) drops this write; the storm goes on.
        let _ = fifo.write(&bytes);
        if i % 25 == 24 {
            d.signal(libc::SIGHUP);
        }
        if i % 10 == 9 {
            assert_peak(d, peak);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The master's children, which must be `peak` at most.
fn assert_peak(d: &Daemon, peak: usize) -> Vec<(i32, String)> {
    let kids = children(d.pid);
    assert!(
        kids.len() <= peak,
        "{} children of the master (bound {peak}): old workers pile up",
        kids.len()
    );
    kids
}

/// Wait until the master's children are exactly the configured workers of the newest
/// generation plus `helpers` (which must all be zygotes), with no reload under way and no old
/// worker draining. Fails at once if the master ever has more than `peak` children meanwhile.
/// Returns the stats document.
fn wait_settled(
    d: &Daemon,
    processes: usize,
    helpers: usize,
    peak: usize,
    timeout: Duration,
) -> serde_json::Value {
    let mut last = String::new();
    let deadline = Instant::now() + timeout;
    loop {
        d.assert_alive();
        let kids = assert_peak(d, peak);
        if let Some(s) = d.try_stats() {
            let u = &s["uwsgid"];
            let g = u["generation"].as_u64().unwrap_or(0);
            let workers = s["workers"].as_array().cloned().unwrap_or_default();
            let worker_pids: Vec<i64> = workers.iter().filter_map(|w| w["pid"].as_i64()).collect();
            let newest = workers.len() == processes
                && workers.iter().all(|w| {
                    w["uwsgid"]["generation"].as_u64() == Some(g)
                        && w["uwsgid"]["ready"].as_bool() == Some(true)
                });
            let quiet =
                u["reload"].is_null() && u["draining"].as_array().is_some_and(|a| a.is_empty());
            let others: Vec<&(i32, String)> = kids
                .iter()
                .filter(|(p, _)| !worker_pids.contains(&(*p as i64)))
                .collect();
            let helpers_ok =
                others.len() == helpers && others.iter().all(|(_, cmd)| cmd.contains("--zygote"));
            if newest && quiet && kids.len() == processes + helpers && helpers_ok {
                return s;
            }
            last = format!(
                "generation {g}, workers {workers:?}, reload {}, draining {}, children {kids:?}",
                u["reload"], u["draining"]
            );
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {timeout:?}: {last}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `uwsgictl reload --wait` succeeds and leaves the instance settled again.
fn reload_wait_succeeds(d: &Daemon) {
    let out = uwsgi_tests::ctl::ctl([
        "--pidfile",
        d.pidfile.to_str().unwrap(),
        "reload",
        "--wait",
        "--timeout",
        "30",
    ])
    .run();
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log_text());
    assert!(out.stdout.contains("complete"), "{out:?}");
}

#[test]
fn a_mixed_reload_storm_ends_with_the_configured_workers_of_the_newest_generation() {
    let dir = TestDir::new("reload-storm");
    let mercy = 2.0;
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--worker-reload-mercy",
            &mercy.to_string(),
        ],
    );
    storm(&d, 30, 150, 32);
    // Running what the storm queued takes a while (about a hundred re-execs); then old
    // workers go within the mercy. Before the fix the children grew by about five with every
    // `rwc` (150 from the burst alone).
    let settle = Duration::from_secs(60) + Duration::from_secs_f64(mercy);
    let s = wait_settled(&d, 2, 0, 32, settle);
    assert!(s["uwsgid"]["generation"].as_u64() > Some(10), "{s}");
    assert!(d.log_count("Argument list too long") == 0 && d.log_count("scoreboard full") == 0);
    reload_wait_succeeds(&d);
    wait_settled(&d, 2, 0, 32, Duration::from_secs(10));
    let (status, _) = d.get("/").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn a_mixed_reload_storm_on_a_preloaded_python_app_leaves_one_zygote_and_its_standby() {
    let dir = TestDir::new("reload-storm-py");
    dir.write(
        "app.py",
        "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n",
    );
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--wsgi-file",
            "app.py",
            "--python",
            &python(),
            "--worker-reload-mercy",
            "2",
        ],
    );
    storm(&d, 15, 80, 32);
    // The helpers that belong: the current generation's zygote and the next one's standby.
    let s = wait_settled(
        &d,
        2,
        2,
        32,
        Duration::from_secs(60) + Duration::from_secs(2),
    );
    let g = s["uwsgid"]["generation"].as_u64().unwrap();
    let zygotes: Vec<(u64, String)> = s["uwsgid"]["zygotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["generation"].as_u64().unwrap(),
                z["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        zygotes,
        vec![(g, "ready".to_string()), (g + 1, "standby".to_string())],
        "{s}"
    );
    reload_wait_succeeds(&d);
    wait_settled(&d, 2, 2, 32, Duration::from_secs(30));
}

#[test]
fn re_executing_faster_than_the_mercy_does_not_renew_a_draining_workers_deadline() {
    let dir = TestDir::new("reload-storm-mercy");
    let d = Daemon::start(&dir, &["--processes", "1", "--worker-reload-mercy", "1.5"]);
    let slow = d.request_in_flight("/sleep?ms=30000");
    let first = Instant::now();
    // A re-exec every 200 ms for 4 s: the busy worker's mercy (1.5 s) runs out meanwhile.
    let mut ended = None;
    while first.elapsed() < Duration::from_secs(4) {
        d.fifo_write(b"r");
        std::thread::sleep(Duration::from_millis(200));
        if ended.is_none() && slow.is_finished() {
            ended = Some(first.elapsed());
        }
    }
    let ended = ended.unwrap_or_else(|| {
        panic!(
            "the draining worker was still serving 4 s after a reload with a 1.5 s mercy\n{}",
            d.log_text()
        )
    });
    assert!(slow.join().unwrap().is_err(), "the busy request was cut");
    assert!(ended < Duration::from_millis(3500), "{ended:?}");
    d.wait_log("still busy after the 1.5s mercy: SIGKILL");
    wait_settled(&d, 1, 0, 16, Duration::from_secs(20));
}
