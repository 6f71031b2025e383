//! A reload whose new generation cannot serve never takes the service down: its workers crash
//! at start, never become ready within `--worker-start-timeout`, or the app raises at import;
//! after three failed starts the master aborts the reload, every slot goes back to the
//! generation that served, `uwsgictl reload --wait` exits 22 with the reason, and a request
//! loop running throughout sees no failure. A rollback (`uwsgictl rollback`, SIGURG, FIFO `b`)
//! during a reload aborts it the same way.
//!
//! Snapshots (`--auto-snapshot`): after a graceful, workers or chain reload the previous
//! generation's built-in or native Python workers are parked (stopped, state `T`, using no
//! CPU); a rollback (`uwsgictl rollback --wait`, SIGURG, FIFO `b`) brings them back in every
//! slot, answering as before the reload, under a request loop that sees no failure; the
//! snapshot survives a master re-exec; a newer reload replaces it, `--snapshot-max-age` drops
//! it; exec workers are never parked (`rollback --wait` exits 25 and says why).

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use uwsgi_tests::ctl::{ctl, eventually, http_get, TempDir, Uwsgid};
use uwsgi_tests::poll::wait_for;
use uwsgi_tests::{Daemon, TestDir};

/// Requests on fresh connections, one after the other, until stopped: (answered, failures).
struct Loop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    handle: JoinHandle<Vec<String>>,
}

impl Loop {
    fn start(port: u16) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ok.clone());
        let handle = std::thread::spawn(move || {
            let mut failures = Vec::new();
            // Bounded: 60 s of requests at most, whatever the test does.
            let end = std::time::Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                match http_get(port, "/") {
                    Ok((200, _)) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((code, body)) => failures.push(format!("{code}: {body}")),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        });
        Loop { stop, ok, handle }
    }

    /// Stop it and assert that every request was answered 200 (and some were made).
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.handle.join().unwrap();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} failed requests: {failures:?}",
            failures.len()
        );
        assert!(ok > 10, "only {ok} requests were answered");
    }
}

fn pidfile_args(d: &Uwsgid, args: &[&str]) -> Vec<String> {
    let mut v = vec!["--pidfile".to_string(), d.pidfile.display().to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Reload `d` to `extra` (which cannot serve) under a request loop: the reload fails, is
/// aborted back to generation 1, and no request fails.
fn aborted_reload(name: &str, extra: &str, reason: &str) {
    let dir = TempDir::new(name);
    let d = Uwsgid::start(&dir);
    let requests = Loop::start(d.port);
    fs::write(&d.ini, d.ini_text(extra)).unwrap();
    let out = ctl(pidfile_args(
        &d,
        &["reload", "--wait", "--timeout", "30", "--json"],
    ))
    .run();
    out.code(22);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "reload-failed", "{doc}");
    let stats = eventually("the reload to be aborted", Duration::from_secs(15), || {
        d.stats_doc().filter(|s| {
            s["uwsgid"]["last_reload"]["result"] == "failed"
                && s["uwsgid"]["reload"].is_null()
                && s["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w["uwsgid"]["generation"] == 1 && w["uwsgid"]["ready"] == true)
        })
    });
    let why = stats["uwsgid"]["last_reload"]["reason"].as_str().unwrap();
    assert!(why.contains("failed to start 3 times"), "{why}");
    assert!(why.contains(reason), "{why}");
    assert!(
        why.contains("reload aborted: 2 of 2 slot(s) stay with generation 1"),
        "{why}"
    );
    // Requests keep being answered for a while after the abort, by generation 1 alone.
    let before = requests.ok.load(Ordering::Relaxed);
    eventually("requests after the abort", Duration::from_secs(10), || {
        (requests.ok.load(Ordering::Relaxed) > before + 20).then_some(())
    });
    requests.finish();
    let log = d.log_text();
    assert!(log.contains("reload aborted"), "{log}");
}

#[test]
fn a_reload_to_workers_that_crash_at_start_is_aborted_without_a_failed_request() {
    aborted_reload(
        "abort-crash",
        "worker-exec = /bin/false\n",
        "exited with status 1",
    );
}

#[test]
fn a_reload_to_workers_that_never_become_ready_is_aborted_without_a_failed_request() {
    aborted_reload(
        "abort-never-ready",
        "worker-exec = /bin/sleep 600\nworker-start-timeout = 0.3\n",
        "killed by signal",
    );
}

#[test]
fn a_reload_to_an_app_that_raises_at_import_is_aborted_without_a_failed_request() {
    let dir = TempDir::new("abort-import-app");
    let app = dir.write("app.py", "raise RuntimeError('broken release')\n");
    let python = crate::exec_support::python();
    aborted_reload(
        "abort-import",
        &format!("wsgi-file = {}\npython = {python}\n", app.display()),
        "zygote",
    );
}

/// A reload to workers that never become ready (a 60 s start timeout) is under way; `rollback`
/// aborts it: `reload --wait` exits 22 with the reason, generation 1 serves every slot, and
/// no request fails.
fn rollback_aborts_a_reload(name: &str, rollback: impl Fn(&Uwsgid)) {
    let dir = TempDir::new(name);
    let d = Uwsgid::start(&dir);
    let requests = Loop::start(d.port);
    let extra = "worker-exec = /bin/sleep 600\nworker-start-timeout = 60\n";
    fs::write(&d.ini, d.ini_text(extra)).unwrap();
    let args = pidfile_args(&d, &["reload", "--wait", "--timeout", "30", "--json"]);
    let waiter = std::thread::spawn(move || ctl(args).run());
    eventually(
        "the reload to be under way",
        Duration::from_secs(10),
        || {
            d.stats_doc()
                .filter(|s| s["uwsgid"]["reload"]["generation"] == 2)
        },
    );
    rollback(&d);
    let out = waiter.join().unwrap();
    out.code(22);
    let doc = out.json();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("aborted by a rollback request"), "{doc}");
    let stats = eventually("generation 1 alone", Duration::from_secs(15), || {
        d.stats_doc().filter(|s| {
            s["uwsgid"]["reload"].is_null()
                && s["uwsgid"]["draining"].as_array().unwrap().is_empty()
                && s["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w["uwsgid"]["generation"] == 1 && w["uwsgid"]["ready"] == true)
        })
    });
    assert_eq!(
        stats["uwsgid"]["last_reload"]["result"], "failed",
        "{stats}"
    );
    let before = requests.ok.load(Ordering::Relaxed);
    eventually(
        "requests after the rollback",
        Duration::from_secs(10),
        || (requests.ok.load(Ordering::Relaxed) > before + 20).then_some(()),
    );
    requests.finish();
}

#[test]
fn uwsgictl_rollback_aborts_a_reload_under_way() {
    rollback_aborts_a_reload("rollback-ctl", |d| {
        ctl(pidfile_args(d, &["rollback"])).run().code(0);
    });
}

#[test]
fn sigurg_aborts_a_reload_under_way() {
    rollback_aborts_a_reload("rollback-urg", |d| {
        // kill(1) on the master this test started, by its pid.
        let st = std::process::Command::new("kill")
            .args(["-URG", &d.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    });
}

// ---- snapshots -------------------------------------------------------------------------

/// Requests from `threads` threads at once, each on a fresh connection, until stopped; each
/// answer must be 200 with one of the bodies a test expects (any other answer, or an error,
/// is a failure).
struct Concurrent {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    handles: Vec<JoinHandle<Vec<String>>>,
}

impl Concurrent {
    fn start(addr: &str, path: &str, bodies: &[&str], threads: usize) -> Concurrent {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let handles = (0..threads)
            .map(|_| {
                let (s, o) = (stop.clone(), ok.clone());
                let (addr, path) = (addr.to_string(), path.to_string());
                let bodies: Vec<String> = bodies.iter().map(|b| b.to_string()).collect();
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    // Bounded: 90 s of requests at most, whatever the test does.
                    let end = std::time::Instant::now() + Duration::from_secs(90);
                    while !s.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                        match uwsgi_tests::http_get(&addr, &path) {
                            Ok((200, body)) if bodies.iter().any(|b| body.trim() == b) => {
                                o.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((code, body)) => failures.push(format!("{code}: {body}")),
                            Err(e) => failures.push(e),
                        }
                    }
                    failures
                })
            })
            .collect();
        Concurrent { stop, ok, handles }
    }

    /// Wait for `n` more answers (bounded), so the loop ran across what the test just did.
    fn more(&self, n: u64) {
        let before = self.ok.load(Ordering::Relaxed);
        eventually("more answers", Duration::from_secs(20), || {
            (self.ok.load(Ordering::Relaxed) >= before + n).then_some(())
        });
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for h in self.handles {
            failures.extend(h.join().unwrap());
        }
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} failed requests: {:?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        );
        assert!(ok > 20, "only {ok} requests were answered");
    }
}

/// The ini of a snapshot test: the harness's options come on the command line.
fn snapshot_ini(dir: &TestDir, extra: &str) -> std::path::PathBuf {
    dir.write(
        "snap.ini",
        &format!("[uwsgi]\nprocesses = 4\nauto-snapshot = true\nworker-reload-mercy = 10\n{extra}"),
    )
}

fn start_snapshot(dir: &TestDir, extra: &str) -> Daemon {
    let ini = snapshot_ini(dir, extra);
    Daemon::start(dir, &["--ini", ini.to_str().unwrap()])
}

/// The workers' pids by generation, from stats.
fn pids_of(s: &serde_json::Value, generation: u64) -> Vec<i64> {
    let mut v: Vec<i64> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["uwsgid"]["generation"] == generation)
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    v.sort();
    v
}

/// The snapshot's workers, once every one is parked: their pids.
fn wait_parked(d: &Daemon, generation: u64, n: usize) -> Vec<i64> {
    d.wait_stats(
        &format!("{n} parked workers of generation {generation}"),
        |s| {
            let snap = &s["uwsgid"]["snapshot_detail"];
            let workers = snap["workers"].as_array()?;
            (s["uwsgid"]["snapshot"] == generation
                && snap["generation"] == generation
                && s["uwsgid"]["reload"].is_null()
                && workers.len() == n
                && workers.iter().all(|w| w["state"] == "parked"))
            .then(|| {
                let mut v: Vec<i64> = workers.iter().map(|w| w["pid"].as_i64().unwrap()).collect();
                v.sort();
                v
            })
        },
    )
}

/// `/proc/PID/stat`: (state, utime + stime in ticks).
fn proc_state(pid: i64) -> (char, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f[0].chars().next().unwrap();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    (
        state,
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap(),
    )
}

fn ctl_args(d: &Daemon, args: &[&str]) -> Vec<String> {
    let mut v = vec!["--pidfile".to_string(), d.pidfile.display().to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// After a rollback: no reload, nothing draining, every slot served by a ready worker of
/// `generation` whose pid is one of `pids`; then `samples` answers from the instance are
/// all `body`.
fn assert_restored(d: &Daemon, generation: u64, pids: &[i64], path: &str, body: &str) {
    let s =
        d.wait_stats("the rollback complete", |s| {
            (s["uwsgid"]["reload"].is_null()
                && s["uwsgid"]["draining"].as_array().unwrap().is_empty()
                && s["workers"].as_array().unwrap().iter().all(|w| {
                    w["uwsgid"]["generation"] == generation && w["uwsgid"]["ready"] == true
                }))
            .then(|| s.clone())
        });
    assert_eq!(pids_of(&s, generation), pids, "{s}");
    assert_eq!(s["uwsgid"]["last_reload"]["kind"], "rollback", "{s}");
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete", "{s}");
    assert_eq!(s["uwsgid"]["last_reload"]["generation"], generation, "{s}");
    assert!(s["uwsgid"]["snapshot"].is_null(), "{s}");
    for _ in 0..40 {
        let (code, got) = d.get(path).unwrap();
        assert_eq!((code, got.trim()), (200, body));
    }
    for pid in pids {
        assert_ne!(
            proc_state(*pid).0,
            'T',
            "restored worker {pid} is still stopped"
        );
    }
}

#[test]
fn builtin_rollback_after_a_graceful_reload_to_another_static_dir_restores_every_slot() {
    let dir = TestDir::new("snap-builtin");
    let (a, b) = (dir.join("a"), dir.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("v.txt"), "A").unwrap();
    fs::write(b.join("v.txt"), "B").unwrap();
    let d = start_snapshot(&dir, &format!("check-static = {}\n", a.display()));
    let old = pids_of(&d.stats(), 1);
    assert_eq!(old.len(), 4);
    let requests = Concurrent::start(&d.addr, "/v.txt", &["A", "B"], 4);
    requests.more(20);
    // A graceful reload (a re-exec) to the other directory; the old workers park.
    snapshot_ini(&dir, &format!("check-static = {}\n", b.display()));
    ctl(ctl_args(&d, &["reload", "--wait", "--timeout", "30"]))
        .run()
        .code(0);
    assert_eq!(wait_parked(&d, 1, 4), old);
    assert_eq!(d.get("/v.txt").unwrap().1.trim(), "B");
    requests.more(20);
    let out = ctl(ctl_args(
        &d,
        &["rollback", "--wait", "--timeout", "30", "--json"],
    ))
    .run();
    out.code(0);
    let doc = out.json();
    assert_eq!(doc["state"]["phase"], "complete", "{doc}");
    assert_eq!(doc["state"]["generation"], 1, "{doc}");
    assert_restored(&d, 1, &old, "/v.txt", "A");
    requests.more(20);
    requests.finish();
    let log = d.log_text();
    assert!(log.contains("rollback to generation 1 complete"), "{log}");
    // Each restored worker said it accepts again (READY=1 after its SIGCONT) before its
    // slot's current worker retired.
    assert_eq!(d.log_count("accepts again"), 4, "{log}");
}

const APP_V: &str = "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'VERSION']\n";

#[test]
fn python_rollback_after_a_workers_reload_to_another_app_restores_every_slot() {
    let dir = TestDir::new("snap-python");
    let app = dir.write("app.py", &APP_V.replace("VERSION", "old"));
    let python = crate::exec_support::python();
    let d = start_snapshot(
        &dir,
        &format!("wsgi-file = {}\npython = {python}\n", app.display()),
    );
    let old = pids_of(&d.stats(), 1);
    assert_eq!(old.len(), 4);
    let requests = Concurrent::start(&d.addr, "/", &["old", "new"], 4);
    requests.more(20);
    fs::write(&app, APP_V.replace("VERSION", "new")).unwrap();
    ctl(ctl_args(
        &d,
        &["reload", "--workers", "--wait", "--timeout", "60"],
    ))
    .run()
    .code(0);
    assert_eq!(wait_parked(&d, 1, 4), old);
    assert_eq!(d.get("/").unwrap().1.trim(), "new");
    requests.more(20);
    let out = ctl(ctl_args(
        &d,
        &["rollback", "--wait", "--timeout", "30", "--json"],
    ))
    .run();
    out.code(0);
    assert_eq!(out.json()["state"]["phase"], "complete");
    assert_restored(&d, 1, &old, "/", "old");
    requests.more(20);
    requests.finish();
    assert_eq!(d.log_count("accepts again"), 4, "{}", d.log_text());
}

/// Whether `pid` sleeps in `epoll_wait` (`/proc/PID/wchan`); `None` where the kernel does not
/// say (wchan reads `0` without the privilege to see kernel symbols).
fn in_epoll_wait(pid: i64) -> Option<bool> {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    match wchan.trim() {
        "" | "0" if proc_state(pid).0 == 'S' => None,
        w => Some(w.contains("epoll_wait") && proc_state(pid).0 == 'S'),
    }
}

/// The restored workers are ahead of the generation they replace in the listeners' wait
/// queues (their standby registrations date from their start), so a new connection goes to
/// one of them whenever one waits, also in the moment (`ROLLBACK_OVERLAP`) before the current
/// workers retire. One client at a time, as the rollback bench probes, each probe sent once
/// every restored worker sleeps in `epoll_wait` (a busy machine may deschedule a restored
/// worker between two answers: the current workers, also waiting, then rightly take the
/// connection). `release(dir, r)` writes the configuration (`snap.ini`) and files of `r`.
fn restored_workers_answer_first(name: &str, path: &str, release: impl Fn(&TestDir, &str)) {
    let dir = TestDir::new(name);
    release(&dir, "old");
    let d = Daemon::start(&dir, &["--ini", dir.join("snap.ini").to_str().unwrap()]);
    let old = pids_of(&d.stats(), 1);
    if !uwsgi_tests::require::require(
        in_epoll_wait(old[0]).is_some(),
        "/proc/PID/wchan naming kernel functions",
        "run as root, or with kernel.kptr_restrict = 0",
    ) {
        return;
    }
    release(&dir, "new");
    d.fifo_write(b"r");
    assert_eq!(wait_parked(&d, 1, 4), old);
    assert_eq!(d.get(path).unwrap().1.trim(), "new");
    d.fifo_write(b"b");
    wait_for(
        "4 restored workers accepting",
        Duration::from_secs(20),
        || (d.log_count("accepts again") == 4).then_some(()),
    );
    let mut answers = Vec::new();
    for _ in 0..30 {
        wait_for(
            "the restored workers in epoll_wait",
            Duration::from_secs(20),
            || {
                old.iter()
                    .all(|&p| in_epoll_wait(p) == Some(true))
                    .then_some(())
            },
        );
        answers.push(d.get(path).unwrap().1.trim().to_string());
    }
    assert!(
        answers.iter().all(|a| a == "old"),
        "{answers:?}\n{}",
        d.log_text()
    );
    assert_restored(&d, 1, &old, path, "old");
}

#[test]
fn builtin_restored_workers_take_new_connections_before_the_replaced_generation() {
    restored_workers_answer_first("snap-first-builtin", "/v.txt", |dir, r| {
        let files = dir.join(r);
        fs::create_dir_all(&files).unwrap();
        fs::write(files.join("v.txt"), r).unwrap();
        snapshot_ini(dir, &format!("check-static = {}\n", files.display()));
    });
}

#[test]
fn exec_workers_are_not_snapshotted_and_rollback_wait_says_why() {
    let dir = TestDir::new("snap-exec");
    let probe = crate::exec_support::probe_cmd(&dir, "notify");
    let d = start_snapshot(&dir, &format!("worker-exec = {probe}\n"));
    ctl(ctl_args(
        &d,
        &["reload", "--workers", "--wait", "--timeout", "30"],
    ))
    .run()
    .code(0);
    let s = d.stats();
    assert!(s["uwsgid"]["snapshot"].is_null(), "{s}");
    assert!(s["uwsgid"]["snapshot_detail"].is_null(), "{s}");
    let out = ctl(ctl_args(&d, &["rollback", "--wait", "--json"])).run();
    out.code(25);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "no-snapshot", "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(msg.contains("exec workers are never parked"), "{msg}");
    // The master says why too, when asked directly.
    d.fifo_write(b"b");
    d.wait_log("exec workers are never parked");
    assert_eq!(pids_of(&d.stats(), 2).len(), 4);
}

#[test]
fn parked_workers_are_stopped_and_use_no_cpu() {
    let dir = TestDir::new("snap-cpu");
    let d = start_snapshot(&dir, "");
    d.fifo_write(b"w");
    let parked = wait_parked(&d, 1, 4);
    let before: Vec<(char, u64)> = parked.iter().map(|&p| proc_state(p)).collect();
    // Load on the serving generation meanwhile: parked workers take none of it.
    let requests = Concurrent::start(&d.addr, "/", &["Hello World"], 2);
    std::thread::sleep(Duration::from_secs(2));
    requests.finish();
    let after: Vec<(char, u64)> = parked.iter().map(|&p| proc_state(p)).collect();
    for ((pid, b), a) in parked.iter().zip(&before).zip(&after) {
        assert_eq!(b.0, 'T', "parked worker {pid} is not stopped: {b:?}");
        assert_eq!(a.0, 'T', "parked worker {pid} is not stopped: {a:?}");
        assert_eq!(a.1, b.1, "parked worker {pid} used CPU: {b:?} -> {a:?}");
    }
    let s = d.stats();
    let snap = &s["uwsgid"]["snapshot_detail"];
    assert!(snap["since_unix_ms"].as_u64().unwrap() > 0, "{s}");
    // uwsgictl shows it.
    ctl(ctl_args(&d, &["stats"]))
        .run()
        .code(0)
        .stdout_has("snapshot: generation 1 parked since");
}

#[test]
fn a_snapshot_survives_a_master_reexec_and_is_restorable_after_it() {
    let dir = TestDir::new("snap-reexec");
    let d = start_snapshot(&dir, "");
    let old = pids_of(&d.stats(), 1);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 1, 4), old);
    let master = d.pid;
    // A brutal reload re-executes the master and kills the serving generation: the snapshot
    // is handed over, still parked.
    ctl(ctl_args(
        &d,
        &["reload", "--brutal", "--wait", "--timeout", "30"],
    ))
    .run()
    .code(0);
    assert_eq!(d.generation(), 3);
    assert_eq!(wait_parked(&d, 1, 4), old);
    assert!(d.log_text().contains("re-executed in place"));
    for &p in &old {
        assert_eq!(proc_state(p).0, 'T');
    }
    let requests = Concurrent::start(&d.addr, "/", &["Hello World"], 4);
    requests.more(20);
    ctl(ctl_args(&d, &["rollback", "--wait", "--timeout", "30"]))
        .run()
        .code(0);
    assert_restored(&d, 1, &old, "/", "Hello World");
    requests.more(20);
    requests.finish();
    assert_eq!(d.pid, master);
}

#[test]
fn sigurg_restores_the_snapshot() {
    let dir = TestDir::new("snap-urg");
    let d = start_snapshot(&dir, "");
    let old = pids_of(&d.stats(), 1);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 1, 4), old);
    let requests = Concurrent::start(&d.addr, "/", &["Hello World"], 4);
    requests.more(20);
    d.signal(libc::SIGURG);
    assert_restored(&d, 1, &old, "/", "Hello World");
    requests.more(20);
    requests.finish();
    d.wait_log("rollback: generation 1 restored in 4 of 4 slot(s)");
}

#[test]
fn fifo_b_restores_the_snapshot() {
    let dir = TestDir::new("snap-fifo-b");
    let d = start_snapshot(&dir, "");
    let old = pids_of(&d.stats(), 1);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 1, 4), old);
    let requests = Concurrent::start(&d.addr, "/", &["Hello World"], 4);
    requests.more(20);
    d.fifo_write(b"b");
    assert_restored(&d, 1, &old, "/", "Hello World");
    requests.more(20);
    requests.finish();
    // A second `b`: the snapshot was used up, nothing changes.
    let serving = pids_of(&d.stats(), 1);
    d.fifo_write(b"b");
    d.wait_log("no snapshot is available");
    assert_eq!(pids_of(&d.stats(), 1), serving);
}

#[test]
fn a_newer_reload_replaces_the_snapshot_and_max_age_drops_it() {
    let dir = TestDir::new("snap-replace");
    let d = start_snapshot(&dir, "snapshot-max-age = 3\n");
    let first = pids_of(&d.stats(), 1);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 1, 4), first);
    let second = pids_of(&d.stats(), 2);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 2, 4), second);
    // The older snapshot's workers are gone (retired, reaped).
    d.wait_stats("generation 1 gone", |s| {
        s["uwsgid"]["draining"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    for p in &first {
        assert!(!std::path::Path::new(&format!("/proc/{p}")).exists() || proc_state(*p).0 == 'Z');
    }
    // --snapshot-max-age 3: dropped a while after it was taken.
    let s = d.stats();
    assert!(
        s["uwsgid"]["snapshot_detail"]["expires_unix_ms"]
            .as_u64()
            .is_some(),
        "{s}"
    );
    d.wait_stats("the snapshot dropped", |s| {
        (s["uwsgid"]["snapshot"].is_null()
            && s["uwsgid"]["draining"].as_array().unwrap().is_empty())
        .then_some(())
    });
    d.wait_log("dropped after --snapshot-max-age");
    ctl(ctl_args(&d, &["rollback"])).run().code(25);
}

#[test]
fn a_chain_reload_parks_each_replaced_worker_and_a_rollback_restores_them() {
    let dir = TestDir::new("snap-chain");
    let d = start_snapshot(&dir, "");
    let old = pids_of(&d.stats(), 1);
    let requests = Concurrent::start(&d.addr, "/", &["Hello World"], 4);
    ctl(ctl_args(
        &d,
        &["reload", "--chain", "--wait", "--timeout", "30"],
    ))
    .run()
    .code(0);
    assert_eq!(wait_parked(&d, 1, 4), old);
    requests.more(20);
    ctl(ctl_args(&d, &["rollback", "--wait", "--timeout", "30"]))
        .run()
        .code(0);
    assert_restored(&d, 1, &old, "/", "Hello World");
    requests.more(20);
    requests.finish();
}

/// A workers reload whose slots 1 and 2 are replaced (their old workers parked) while 3 and
/// 4 cannot be (their new workers hang at import): a rollback aborts it, and every slot, the
/// parked ones included, is back with generation 1.
#[test]
fn a_rollback_during_a_reload_gives_back_the_slots_already_parked() {
    let dir = TestDir::new("snap-abort");
    let flag = dir.join("hang");
    let app = dir.write(
        "app.py",
        &format!(
            "import os, time\nif int(os.environ.get('UWSGID_WORKER_ID', '0')) > 2 and os.path.exists({:?}):\n    time.sleep(600)\n{}",
            flag.display().to_string(),
            APP_V.replace("VERSION", "same")
        ),
    );
    let python = crate::exec_support::python();
    let d = start_snapshot(
        &dir,
        &format!(
            "wsgi-file = {}\npython = {python}\nlazy-apps = true\nworker-start-timeout = 60\n",
            app.display()
        ),
    );
    let old = pids_of(&d.stats(), 1);
    fs::write(&flag, "").unwrap();
    let args = ctl_args(
        &d,
        &["reload", "--workers", "--wait", "--timeout", "60", "--json"],
    );
    let waiter = std::thread::spawn(move || ctl(args).run());
    d.wait_stats("slots 1 and 2 replaced, their old workers parked", |s| {
        let snap = s["uwsgid"]["snapshot_detail"]["workers"].as_array()?;
        (snap.len() == 2 && snap.iter().all(|w| w["state"] == "parked")).then_some(())
    });
    let requests = Concurrent::start(&d.addr, "/", &["same"], 2);
    requests.more(10);
    d.signal(libc::SIGURG);
    let out = waiter.join().unwrap();
    out.code(22);
    let s = d.wait_stats("every slot back with generation 1", |s| {
        (s["uwsgid"]["reload"].is_null()
            && s["uwsgid"]["draining"].as_array().unwrap().is_empty()
            && s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["uwsgid"]["generation"] == 1 && w["uwsgid"]["ready"] == true))
        .then(|| s.clone())
    });
    assert_eq!(pids_of(&s, 1), old, "{s}");
    requests.more(20);
    requests.finish();
    d.wait_log("leaves the snapshot and serves again");
}

/// A rollback is reported like any reload: RELOADING=1 then READY=1 on the notify socket,
/// and counted by kind and result (the counts `/metrics` renders).
#[test]
fn a_rollback_is_announced_to_systemd_and_counted_like_a_reload() {
    use std::os::unix::net::UnixDatagram;
    let dir = TestDir::new("snap-notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Every datagram but STATUS= ones, until `want` (bounded).
    let until = |want: &str| {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while std::time::Instant::now() < end {
            let mut buf = [0u8; 4096];
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.starts_with(want) {
                    return seen;
                }
                if !m.starts_with("STATUS=") {
                    seen.push(m);
                }
            }
        }
        panic!("no {want:?} within 20 s; saw {seen:?}");
    };
    let ini = snapshot_ini(&dir, "");
    let mut d = Daemon::spawn_env(
        &dir,
        &["--ini", ini.to_str().unwrap()],
        &uwsgi_tests::bin("uwsgid"),
        true,
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    d.wait_running();
    until("READY=1");
    d.fifo_write(b"w");
    until("RELOADING=1");
    until("READY=1");
    wait_parked(&d, 1, 4);
    d.fifo_write(b"b");
    let between = until("RELOADING=1");
    assert!(between.is_empty(), "{between:?}");
    let between = until("READY=1");
    assert!(between.is_empty(), "{between:?}");
    let s = d.wait_stats("the rollback counted", |s| {
        s["uwsgid"]["reload_counts"]["total"]
            .as_array()?
            .iter()
            .any(|t| t[0] == "rollback" && t[1] == "complete" && t[2] == 1)
            .then(|| s.clone())
    });
    assert_eq!(s["uwsgid"]["last_reload"]["kind"], "rollback", "{s}");
}

/// Native Python workers of a replaced snapshot wake to read their stop signal and exit
/// (they do not accept again); the newer snapshot is parked in their place.
#[test]
fn python_snapshot_workers_replaced_by_a_newer_snapshot_exit() {
    let dir = TestDir::new("snap-python-replace");
    let app = dir.write("app.py", &APP_V.replace("VERSION", "v"));
    let python = crate::exec_support::python();
    let d = start_snapshot(
        &dir,
        &format!("wsgi-file = {}\npython = {python}\n", app.display()),
    );
    let first = pids_of(&d.stats(), 1);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 1, 4), first);
    let second = pids_of(&d.stats(), 2);
    let requests = Concurrent::start(&d.addr, "/", &["v"], 2);
    d.fifo_write(b"w");
    assert_eq!(wait_parked(&d, 2, 4), second);
    d.wait_stats("generation 1 gone", |s| {
        s["uwsgid"]["draining"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    requests.more(20);
    requests.finish();
    for p in &first {
        let gone = !std::path::Path::new(&format!("/proc/{p}")).exists()
            || uwsgi_tests::is_zombie(*p as i32);
        assert!(gone, "snapshot worker {p} of generation 1 is still there");
    }
    let log = d.log_text();
    assert!(
        log.contains("snapshot of generation 1 replaced by generation 2"),
        "{log}"
    );
}

/// A connection whose wake-up went to a worker just as it began to park was left in the
/// listen queue: with every client waiting on it, nobody else was woken, and it waited until
/// the client gave up (a rollback bench probe waited out its 2 s timeout in 2 of 7 reloads).
/// One client probing on fresh connections, one at a time, through graceful reloads that
/// park 16 Python workers, and rollbacks: each probe is answered, none waits for a wake-up
/// that went astray. (The race needs the wake-up to land in a window of microseconds: the
/// release bench hit it in 2 of 7 reloads, this debug-build test less often.)
/// It also caught two more (each about 1 run in 3 under load before its fix): a draining
/// worker whose sweep exited while another of its threads was still taking the backlog (the
/// probe read EOF, 0 bytes), and a parking worker that stopped itself with `kill(getpid())`,
/// came back from the call before the stop took it, resumed accepting and was stopped holding
/// a probe it had read (unanswered while the snapshot stayed parked).
#[test]
fn a_connection_woken_for_a_parking_python_worker_is_served() {
    use std::io::{Read, Write};
    let dir = TestDir::new("snap-park-wakeup");
    let app = dir.write("app.py", &APP_V.replace("VERSION", "v"));
    let python = crate::exec_support::python();
    let ini = dir.write(
        "snap.ini",
        &format!(
            "[uwsgi]\nprocesses = 16\nauto-snapshot = true\nworker-reload-mercy = 10\n\
             wsgi-file = {}\npython = {python}\n",
            app.display()
        ),
    );
    let d = Daemon::start(&dir, &["--ini", ini.to_str().unwrap()]);
    let addr = d.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let prober = std::thread::spawn(move || {
        let (mut answered, mut stalls) = (0u64, Vec::new());
        // Bounded: 120 s of probes at most, whatever the test does.
        let end = std::time::Instant::now() + Duration::from_secs(120);
        while !s.load(Ordering::Relaxed) && std::time::Instant::now() < end {
            let t = std::time::Instant::now();
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            let port = c.local_addr().unwrap().port();
            // Unanswered after 1 s: where the connection is (a worker's or the listen
            // queue's) is recorded, then it gets 4 s more (far beyond any reload here).
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            c.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
            let mut raw = Vec::new();
            let mut seen = String::new();
            let mut r = c.read_to_end(&mut raw);
            if r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
            {
                seen = sockets_of(port);
                c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                r = c.read_to_end(&mut raw);
            }
            match r {
                Ok(_) if raw.starts_with(b"HTTP/1.") && raw.ends_with(b"v") => answered += 1,
                r => stalls.push(format!(
                    "port {port} at {} ms (unix) after {:?}: {r:?} {:?}; sockets after 1 s: {seen}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        - t.elapsed().as_millis(),
                    t.elapsed(),
                    raw.len()
                )),
            }
        }
        (answered, stalls)
    });
    // Reloads that park the serving generation, and rollbacks that restore the parked one
    // and retire the other: each waited for until no worker is left draining or parking.
    let finished = |s: &serde_json::Value| s["uwsgid"]["last_reload"]["finished_unix_ms"].clone();
    let mut last = finished(&d.stats());
    for round in 0..4 {
        for byte in [b"r", b"b", b"r", b"r"] {
            if byte == b"b" && round % 2 == 1 {
                continue;
            }
            d.fifo_write(byte);
            last = d.wait_stats("the reload or rollback done, nothing draining", |s| {
                let u = &s["uwsgid"];
                (finished(s) != last
                    && u["reload"].is_null()
                    && u["draining"].as_array().is_some_and(|d| d.is_empty())
                    && uwsgi_tests::all_ready(s))
                .then(|| finished(s))
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, stalls) = prober.join().unwrap();
    assert!(
        stalls.is_empty(),
        "{} probes unanswered: {stalls:?}",
        stalls.len()
    );
    assert!(answered > 20, "only {answered} probes answered");
}

/// Where the connection of client port `port` is: both ends as `ss` shows them (with the
/// process holding each), and for a worker holding one, each thread's state, the system call
/// it is in and its signals (a worker stopped with the connection, or a thread stuck in it).
fn sockets_of(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args(["-tanp"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss: {e}"));
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| l.contains(&format!(":{port} ")) && !l.starts_with("TIME-WAIT"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    // The threads of a worker holding it: state, the syscall each is in, the signal masks.
    let pids: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split("pid=").skip(1))
        .filter_map(|r| r.split(',').next().map(str::to_string))
        .collect();
    for pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let p = t.path();
            let read = |f: &str| fs::read_to_string(p.join(f)).unwrap_or_default();
            let status = read("status");
            let field = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            lines.push(format!(
                "task {} {} {} {} {} {} syscall {} wchan {}",
                p.display(),
                read("comm").trim(),
                field("State:"),
                field("SigPnd:"),
                field("ShdPnd:"),
                field("SigBlk:"),
                read("syscall").trim(),
                read("wchan").trim()
            ));
        }
    }
    lines.join(" | ")
}

#[test]
fn python_restored_workers_take_new_connections_before_the_replaced_generation() {
    let python = crate::exec_support::python();
    restored_workers_answer_first("snap-first-python", "/", |dir, r| {
        let app = dir.write("app.py", &APP_V.replace("VERSION", r));
        snapshot_ini(
            dir,
            &format!(
                "wsgi-file = {}\npython = {python}\nthreads = 1\n",
                app.display()
            ),
        );
    });
}
