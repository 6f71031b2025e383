//! Harakiri and worker recycling against the real daemon (built-in workers, `--demo-routes`):
//! a `/sleep` request stuck past `--harakiri` is killed within 1 s of its deadline while other
//! workers keep serving, its slot refilled before the kill; `--max-requests` with
//! `--max-requests-delta` recycles under a request loop with zero failed requests, each slot at
//! its own jittered limit; `--reload-on-rss`/`--reload-on-pss` recycle a worker that grew
//! (`/alloc?mb=N`); a Python worker stuck past `--harakiri` has its thread stacks in the log
//! before the kill.

use std::time::{Duration, Instant};

use uwsgi_tests::*;
use uwsgid::master::recycle;

fn recycles(d: &Daemon, cause: &str) -> u64 {
    d.stats()["uwsgid"]["recycles"][cause].as_u64().unwrap_or(0)
}

#[test]
fn harakiri_kills_a_stuck_request_within_a_second_and_refills_first() {
    let dir = TestDir::new("harakiri");
    let d = Daemon::start(&dir, &["--processes", "2", "--harakiri", "1"]);
    let before = d.worker_pids();
    let t0 = Instant::now();
    let stuck = d.request_in_flight("/sleep?ms=20000");
    // The other worker keeps serving while one is stuck.
    let mut served = 0;
    let mut probes = 0;
    while !d.log_text().contains("harakiri: worker") && probes < 200 {
        probes += 1;
        if let Ok((200, _)) = d.get("/") {
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let answer = stuck.join().unwrap();
    let elapsed = t0.elapsed();
    assert!(
        answer.is_err(),
        "the stuck request was answered: {answer:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "harakiri took {elapsed:?} (limit 1 s, within 1 s of it)"
    );
    assert!(served > 0, "no other request was served meanwhile");
    let log = d.wait_log(") killed: ");
    let line = log
        .lines()
        .find(|l| l.contains("harakiri: worker") && l.contains("stuck"))
        .unwrap();
    assert!(line.contains("GET /sleep?ms=20000"), "{line}");
    assert!(line.contains("limit 1s"), "{line}");
    // The replacement was forked before the kill, and it serves.
    let refill = log.find("replacement pid ").expect("a replacement line");
    let killed = log.find(") killed: ").unwrap();
    assert!(refill < killed, "{log}");
    let new_pid: i64 = log[refill + "replacement pid ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!before.contains(&new_pid));
    let s = d.wait_stats("the replacement ready", |s| {
        (all_ready(s)
            && s["workers"]
                .as_array()?
                .iter()
                .any(|w| w["pid"].as_i64() == Some(new_pid)))
        .then(|| s.clone())
    });
    assert_eq!(s["uwsgid"]["recycles"]["harakiri"], 1);
    let counts: u64 = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["harakiri_count"].as_u64().unwrap())
        .sum();
    assert_eq!(counts, 1);
    assert_eq!(d.get("/").unwrap().0, 200);
    // uwsgictl stats shows it.
    let pidfile = d.pidfile.display().to_string();
    uwsgi_tests::ctl::ctl(["--pidfile", pidfile.as_str(), "stats"])
        .env("COLUMNS", "120")
        .run()
        .code(0)
        .stdout_has("recycled: harakiri 1 (worker ");
}

#[test]
fn max_requests_recycles_under_load_with_no_failure_at_jittered_limits() {
    let dir = TestDir::new("max-requests");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--max-requests",
            "100",
            "--max-requests-delta",
            "100",
            "--min-worker-lifetime",
            "0",
        ],
    );
    let load = Load::start(&d.addr, 2, "/");
    wait_for("four recycles", Duration::from_secs(60), || {
        (recycles(&d, "max_requests") >= 4).then_some(())
    });
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} failed of {ok}: {errors:?}",
        errors.len()
    );
    let log = d.log_text();
    let mut seen = [false; 2];
    for line in log.lines().filter(|l| l.contains("(max-requests: served ")) {
        let slot: usize = line
            .split("worker ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let served: u64 = line
            .split("served ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        // Slot K recycles at 100 + K * 100 requests.
        assert!(served >= 100 + 100 * slot as u64, "{line}");
        seen[slot - 1] = true;
    }
    assert!(seen.iter().any(|&s| s), "{log}");
    let s = d.wait_stats("all ready again", |s| all_ready(s).then(|| s.clone()));
    assert!(s["uwsgid"]["recycles"]["max_requests"].as_u64() >= Some(4));
}

fn memory_recycle(option: &str, cause: &str, name: &str) {
    let dir = TestDir::new(name);
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            option,
            "40",
            "--min-worker-lifetime",
            "0",
        ],
    );
    let pid = d.worker_pids()[0];
    assert_eq!(d.get("/alloc?mb=80").unwrap().0, 200);
    let grown = Instant::now();
    d.wait_log(&format!("recycled ({}", &option[2..]));
    // How long the master took to see the grown worker: at most one memory period and a tick,
    // plus whatever this machine adds now.
    let noticed = grown.elapsed();
    let s = d.wait_stats("the worker replaced", |s| {
        let w = &s["workers"][0];
        (all_ready(s) && w["pid"].as_i64() != Some(pid)).then(|| s.clone())
    });
    assert_eq!(s["uwsgid"]["recycles"][cause], 1);
    assert_eq!(d.get("/").unwrap().0, 200);
    // The fresh worker is small again: no second recycle. Nothing shows a memory check that
    // found nothing, so this is a window without a recycle: one full memory period and tick
    // (every check of a ready worker is at most that far apart), plus the delay measured
    // above, so a fresh worker still over the limit would have been recycled within it.
    let window = recycle::MEMORY_EVERY + recycle::TICK + noticed;
    let second = poll(window, || (recycles(&d, cause) != 1).then(|| d.log_text()));
    assert!(
        second.is_none(),
        "a second recycle within {window:?}: {second:?}"
    );
}

#[test]
fn reload_on_rss_recycles_a_worker_that_grew() {
    memory_recycle("--reload-on-rss", "reload_on_rss", "rss");
}

#[test]
fn reload_on_pss_recycles_a_worker_that_grew() {
    memory_recycle("--reload-on-pss", "reload_on_pss", "pss");
}

#[test]
fn overlapping_short_requests_never_look_stuck() {
    // Each /sleep lasts 400 ms, but with 6 clients on 1 worker some request is always in
    // flight: the scoreboard must show the oldest one, not the first of the chain.
    let dir = TestDir::new("harakiri-overlap");
    let d = Daemon::start(&dir, &["--processes", "1", "--harakiri", "1"]);
    let load = Load::start(&d.addr, 6, "/sleep?ms=400");
    overlap_until_proven(&d, load, 6, Duration::from_millis(400));
}

/// Let `load` (`clients` clients of requests lasting `each`, on one worker with `--harakiri
/// 1`) run until it has kept a request in flight for twice the harakiri limit and tick, and
/// fail at once on a harakiri or a failed request. The span is counted in requests, not
/// waited for: a client's requests follow one another, so once `clients * k` have been
/// answered some client has made k in a row, `k * each` at least.
fn overlap_until_proven(d: &Daemon, load: Load, clients: u64, each: Duration) {
    let span = (Duration::from_secs(1) + recycle::TICK) * 2;
    let k = span.as_millis().div_ceil(each.as_millis()) as u64;
    let needed = clients * k;
    wait_for(
        &format!("{needed} overlapping requests"),
        Duration::from_secs(120),
        || {
            d.assert_alive();
            assert!(load.errors.lock().unwrap().is_empty(), "{:?}", load.errors);
            assert_eq!(recycles(d, "harakiri"), 0, "{}", d.log_text());
            (load.ok() >= needed).then_some(())
        },
    );
    let (ok, errors) = load.finish();
    assert!(ok >= needed, "only {ok} requests");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(recycles(d, "harakiri"), 0, "{}", d.log_text());
}

const STUCK_APP: &str = r#"
import time

def stuck_in_the_app_for_harakiri():
    time.sleep(30)

def application(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        stuck_in_the_app_for_harakiri()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

#[test]
fn harakiri_dumps_a_python_workers_stacks_before_the_kill() {
    let dir = TestDir::new("harakiri-python");
    let app = dir.write("app.py", STUCK_APP);
    let py = crate::exec_support::python();
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--python",
            &py,
            "--processes",
            "2",
            "--harakiri",
            "1",
            "--threads",
            "1",
        ],
    );
    let t0 = Instant::now();
    let stuck = d.request_in_flight("/stuck");
    let mut served = 0;
    let mut probes = 0;
    while !d.log_text().contains(") killed: ") && probes < 400 {
        probes += 1;
        if let Ok((200, _)) = d.get("/") {
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let answer = stuck.join().unwrap();
    let elapsed = t0.elapsed();
    assert!(
        answer.is_err(),
        "the stuck request was answered: {answer:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "harakiri with its stack dump took {elapsed:?} (limit 1 s)"
    );
    assert!(served > 0, "no other request was served meanwhile");
    let log = d.wait_log(") killed: ");
    let asked = log.find("its Python thread stacks follow").expect(&log);
    let frame = log
        .find("in stuck_in_the_app_for_harakiri")
        .unwrap_or_else(|| panic!("no stack of the app in the log:\n{log}"));
    let kill = log.find("stacks dumped; SIGKILL").expect(&log);
    let killed = log.find(") killed: ").unwrap();
    assert!(asked < frame && frame < kill && kill < killed, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("harakiri: worker") && l.contains("stuck"))
        .unwrap();
    assert!(line.contains("GET /stuck"), "{line}");
    // Preloaded: the replacement is asked of the zygote before the kill.
    let refill = log
        .lines()
        .find(|l| l.contains("harakiri: worker ") && l.contains(": replacement "))
        .and_then(|l| log.find(l))
        .expect(&log);
    assert!(refill < kill, "{log}");
    d.wait_stats("the replacement ready", |s| all_ready(s).then_some(()));
    assert_eq!(recycles(&d, "harakiri"), 1);
    assert_eq!(d.get("/").unwrap().0, 200);
}

const OVERLAP_APP: &str = r#"
import time

def application(environ, start_response):
    time.sleep(0.4)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

#[test]
fn overlapping_python_requests_on_threads_never_look_stuck() {
    // One native Python worker with 4 threads, 6 clients of 400 ms requests: some request is
    // always in flight, each far below --harakiri 1; none may be taken for a stuck one.
    let dir = TestDir::new("harakiri-py-overlap");
    let app = dir.write("app.py", OVERLAP_APP);
    let py = crate::exec_support::python();
    let d = Daemon::start(
        &dir,
        &[
            "--wsgi-file",
            app.to_str().unwrap(),
            "--python",
            &py,
            "--processes",
            "1",
            "--threads",
            "4",
            "--harakiri",
            "1",
        ],
    );
    let load = Load::start(&d.addr, 6, "/");
    overlap_until_proven(&d, load, 6, Duration::from_millis(400));
}
