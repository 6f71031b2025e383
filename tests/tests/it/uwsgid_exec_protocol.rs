//! Exec workers over the systemd socket protocol, seen from inside and outside the worker:
//! `LISTEN_*` as systemd sets them, no fd but the listeners and stdio, notify and grace
//! readiness, the configured stop signal then SIGKILL at the mercy, crash-loop backoff that
//! costs no CPU and blocks neither reloads nor stops, `+`/`-` scaling, and stats.

use crate::exec_support as uwsgid_exec_support;

use std::time::{Duration, Instant};

use uwsgi_tests::*;
use uwsgid_exec_support::*;

#[test]
fn listen_variables_from_inside_the_worker() {
    let dir = TestDir::new("exec-listen-env");
    let second = format!("127.0.0.1:{}", free_port());
    let cmd = probe_cmd(&dir, "notify");
    let d = Daemon::start(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--http-socket",
            &second,
            "--worker-exec",
            &cmd,
        ],
    );
    let record = common::discovery::read_record(&d.pidfile).unwrap();
    assert_eq!(record.listeners.len(), 2, "{:?}", record.listeners);
    let got = probe_get(&d.addr);
    let pid = got["pid"].as_i64().unwrap();
    assert_eq!(got["LISTEN_PID"], pid.to_string(), "{got}");
    assert_eq!(got["LISTEN_FDS"], "2");
    let names: Vec<String> = record
        .listeners
        .iter()
        .map(|l| l.replace(':', "_"))
        .collect();
    assert_eq!(got["LISTEN_FDNAMES"], names.join(":"), "{got}");
    assert!(
        got["NOTIFY_SOCKET"].as_str().unwrap().starts_with('@'),
        "{got}"
    );
    assert_eq!(got["UWSGID_WORKER_ID"], "1");
    assert_eq!(got["UWSGID_GENERATION"], "1");
    // The second listener reaches the same program.
    assert_eq!(probe_get(&second)["pid"], got["pid"]);

    // From inside: at start the program had stdio and exactly the two listeners.
    let fds = got["fds_at_start"].as_object().unwrap();
    let mut numbers: Vec<i32> = fds.keys().map(|k| k.parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "fds at start: {fds:?}");
    assert_eq!(fds["0"], "/dev/null");
    assert!(fds["3"].as_str().unwrap().starts_with("socket:"), "{fds:?}");
    assert!(fds["4"].as_str().unwrap().starts_with("socket:"), "{fds:?}");
    // Those sockets are the master's listeners, not copies.
    let master_sockets = socket_inodes(d.pid);
    for n in ["3", "4"] {
        assert!(
            master_sockets.contains(&fds[n].as_str().unwrap().to_string()),
            "{fds:?}"
        );
    }
    // stdout and stderr are the instance log.
    let log = std::fs::canonicalize(&d.log).unwrap();
    assert_eq!(fds["1"].as_str().unwrap(), log.to_str().unwrap());
    assert_eq!(fds["2"].as_str().unwrap(), log.to_str().unwrap());
}

#[test]
fn env_and_chdir_for_any_program() {
    let dir = TestDir::new("exec-env-chdir");
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let cmd = probe_cmd(&dir, "notify");
    let d = Daemon::start(
        &dir,
        &[
            "--worker-exec",
            &cmd,
            "--chdir",
            "work",
            "--env",
            "PROBE_ENV=a b=c",
            "--env",
            "LISTEN_FDS=99",
        ],
    );
    let got = probe_get(&d.addr);
    assert_eq!(got["PROBE_ENV"], "a b=c");
    assert_eq!(
        got["LISTEN_FDS"], "1",
        "--env must not override the protocol"
    );
    let work = std::fs::canonicalize(dir.join("work")).unwrap();
    assert_eq!(got["cwd"], work.to_str().unwrap());
}

#[test]
fn no_fd_leaks_into_a_worker_that_opens_none() {
    let dir = TestDir::new("exec-fds");
    let d = Daemon::start(
        &dir,
        &[
            "--worker-exec",
            "sleep 600",
            "--worker-ready-timeout",
            "0.2",
        ],
    );
    let pid = d.worker_pids()[0];
    let fds = fds_of(pid);
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[0].1, "/dev/null");
    assert!(socket_inodes(d.pid).contains(&fds[3].1), "{fds:?}");
    // Own process group, dies with the master (checked by PR_SET_PDEATHSIG in /proc is not
    // exposed; the group is).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgrp: i64 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, pid, "not in its own process group");
}

#[test]
fn notify_and_grace_readiness() {
    // Notify: ready as soon as READY=1 arrives, with its STATUS= shown.
    let dir = TestDir::new("exec-notify");
    let cmd = probe_cmd(&dir, "notify");
    let t = Instant::now();
    let d = Daemon::start(&dir, &["--worker-exec", &cmd, "--processes", "2"]);
    let s = d.stats();
    for w in workers(&s) {
        let id = w["id"].as_u64().unwrap();
        assert_eq!(
            w["uwsgid"]["status_text"],
            format!("probe gen 1 worker {id}"),
            "{w}"
        );
        assert_eq!(w["uwsgid"]["ready"], true);
    }
    assert!(
        d.log_text().contains("ready in"),
        "no notify readiness in the log"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(d);

    // Never notifying, no grace: stays starting, not ready, not accepting.
    let dir = TestDir::new("exec-never");
    let cmd = probe_cmd(&dir, "");
    let mut d = Daemon::spawn(&dir, &["--worker-exec", &cmd]);
    d.addr = wait_record(&d);
    // Checked throughout 700 ms (every stats read, not one read after a fixed sleep): a
    // worker counted ready at any moment fails.
    let mut reads = 0;
    poll(Duration::from_millis(700), || {
        let s = d.stats();
        let w = &workers(&s)[0];
        assert_eq!(w["uwsgid"]["ready"], false, "{w}");
        assert_eq!(w["status"], "starting", "{w}");
        assert_eq!(s["uwsgid"]["state"], "starting");
        reads += 1;
        None::<()>
    });
    assert!(reads >= 3, "only {reads} stats reads in 700 ms");
    drop(d);

    // Never notifying, with a grace: ready after it, not before. The worker's start is its
    // kernel start time (to the clock tick); every stats read that ended less than 0.9 s after
    // it must show the worker not ready (0.1 s below the grace: the master dates the spawn
    // from its loop turn's clock, a moment before the fork), and at least one read must land
    // in that window, so the check ran.
    let dir = TestDir::new("exec-grace");
    let cmd = probe_cmd(&dir, "");
    let mut d = Daemon::spawn(
        &dir,
        &["--worker-exec", &cmd, "--worker-ready-timeout", "1"],
    );
    wait_record(&d);
    let pid = d.wait_stats("the worker spawned", |s| {
        workers(s)[0]["pid"].as_i64().filter(|p| *p > 0)
    });
    let started = start_boottime(pid as i32);
    let mut early_reads = 0;
    wait_for(
        "the worker ready after its grace",
        Duration::from_secs(20),
        || {
            let s = d.stats();
            let ended = boottime_now();
            let w = &workers(&s)[0];
            assert_eq!(w["pid"].as_i64(), Some(pid), "the worker was replaced: {w}");
            let ready = w["uwsgid"]["ready"] == true;
            if ended < started + 0.9 {
                assert!(
                    !ready,
                    "counted ready {:.3} s after its start, within its 1 s grace: {w}",
                    ended - started
                );
                early_reads += 1;
            }
            ready.then_some(())
        },
    );
    assert!(early_reads >= 1, "no stats read within the grace");
    d.wait_running();
    d.wait_log("counted ready after the 1.0s grace");
    assert_eq!(probe_get(&d.addr)["LISTEN_FDS"], "1");
}

#[test]
fn stop_signal_then_sigkill_after_the_mercy() {
    let dir = TestDir::new("exec-stop-signal");
    let cmd = probe_cmd(&dir, "notify hold-signal=SIGUSR1");
    let mut d = Daemon::start(
        &dir,
        &[
            "--worker-exec",
            &cmd,
            "--worker-stop-signal",
            "SIGUSR1",
            "--worker-reload-mercy",
            "1",
        ],
    );
    let pid = d.worker_pids()[0];
    let t = Instant::now();
    d.fifo_write(b"q");
    let status = d.wait_exit(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    // The master reads the clock for the mercy after it read the 'q' written after `t`: a
    // SIGKILL before the whole mercy is early.
    assert!(
        took >= Duration::from_secs(1),
        "stopped before the mercy: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    let signals = std::fs::read_to_string(dir.join("signals.txt")).unwrap_or_default();
    assert_eq!(
        signals.trim(),
        format!("{pid} got SIGUSR1"),
        "the stop signal was not sent"
    );
    let log = d.log_text();
    assert!(log.contains("mercy: SIGKILL"), "{log}");
    assert!(!alive(pid as i32));
}

#[test]
fn crash_loop_backs_off_cheaply_and_blocks_no_reload_or_stop() {
    let dir = TestDir::new("exec-crash-loop");
    // Worker 2 exits 1 at every start; worker 1 serves.
    let cmd = probe_cmd(&dir, "notify exit-slot=2");
    let t0 = Instant::now();
    let mut d = Daemon::spawn(&dir, &["--worker-exec", &cmd, "--processes", "2"]);
    d.addr = wait_record(&d);
    let cpu0 = cpu_seconds(d.pid);
    let t1 = Instant::now();
    // Five failed starts in a row: the master must have waited the first four backoffs
    // (0.1 + 0.2 + 0.4 + 0.8 s, the one formula) between them, said so, and spent almost no
    // CPU meanwhile (judged against the wall time measured here, not a fixed window).
    d.wait_log("failed start 5 in a row");
    let (cpu, wall) = (cpu_seconds(d.pid) - cpu0, t1.elapsed());
    assert!(
        cpu < 0.1 + wall.as_secs_f64() * 0.15,
        "master used {cpu:.2}s of CPU in {wall:?} of crash loop"
    );
    let since_spawn = t0.elapsed();
    assert!(
        since_spawn >= Duration::from_millis(1500),
        "five failed starts within {since_spawn:?}: no backoff between them"
    );
    let log = d.log_text();
    for (n, wait) in [(1, "0.1"), (2, "0.2"), (3, "0.4"), (4, "0.8"), (5, "1.6")] {
        let said = format!("failed start {n} in a row, next try in {wait}s");
        assert!(log.contains(&said), "no {said:?} in the log:\n{log}");
    }
    assert!(log.contains("exits at start as told"));
    // The slot says why it is empty: in backoff, with its next start due.
    let w2 = d.wait_stats("slot 2 in backoff", |s| {
        let w = workers(s)[1].clone();
        (w["status"] == "backoff").then_some(w)
    });
    assert!(
        w2["uwsgid"]["next_spawn_unix_ms"].as_u64() > Some(0),
        "{w2}"
    );
    assert!(w2["uwsgid"]["failed_starts"].as_u64() >= Some(5), "{w2}");
    assert_eq!(w2["uwsgid"]["last_exit"], "exited with status 1", "{w2}");
    assert_eq!(probe_get(&d.addr)["UWSGID_WORKER_ID"], "1");

    // A workers reload goes through: slot 1 is replaced, slot 2 reported.
    let w1 = d.worker_pids()[0];
    d.fifo_write(b"w");
    let s = d.wait_stats("worker 1 replaced", |s| {
        let w = &workers(s)[0];
        (w["uwsgid"]["generation"] == 2 && w["uwsgid"]["ready"] == true).then(|| s.clone())
    });
    assert_ne!(workers(&s)[0]["pid"].as_i64(), Some(w1));
    wait_for("old worker 1 gone", Duration::from_secs(10), || {
        (!alive(w1 as i32)).then_some(())
    });
    d.wait_stats("the reload reported failed", |s| {
        (s["uwsgid"]["last_reload"]["result"] == "failed").then_some(())
    });
    // A graceful re-exec reload is not blocked either.
    d.signal(libc::SIGHUP);
    d.wait_stats("generation 3 serving", |s| {
        let w = &workers(s)[0];
        (w["uwsgid"]["generation"] == 3 && w["uwsgid"]["ready"] == true).then_some(())
    });
    assert_eq!(probe_get(&d.addr)["UWSGID_GENERATION"], "3");

    // A graceful stop does not wait for the backoff: the master is gone before slot 2's next
    // start was due (a second ahead when the stop was asked).
    let due = in_backoff_until(&d, &[1], 1000);
    d.fifo_write(b"q");
    let status = d.wait_exit(Duration::from_secs(10));
    let exited = unix_ms();
    assert!(status.success(), "{status:?}");
    assert!(
        exited < due,
        "the stop ended {} ms after slot 2's next start was due: it waited for the backoff",
        exited - due
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Wait until every slot of `indexes` is in backoff with at least `margin_ms` before its next
/// start; the earliest of those next starts (ms since the epoch, the master's own date).
fn in_backoff_until(d: &Daemon, indexes: &[usize], margin_ms: u64) -> u64 {
    d.wait_stats("slots in backoff, their next start well ahead", |s| {
        let now = unix_ms();
        let ws = workers(s);
        let mut due = u64::MAX;
        for &i in indexes {
            let w = ws.get(i)?;
            if w["status"] != "backoff" {
                return None;
            }
            due = due.min(w["uwsgid"]["next_spawn_unix_ms"].as_u64()?);
        }
        (due >= now + margin_ms).then_some(due)
    })
}

#[test]
fn brutal_stop_during_a_crash_loop_is_prompt() {
    let dir = TestDir::new("exec-crash-brutal");
    let mut d = Daemon::spawn(&dir, &["--worker-exec", "false", "--processes", "3"]);
    wait_record(&d);
    // Every slot in backoff, half a second at least before the first next start: the master
    // must be gone before it (a stop that waited out a backoff would end after it).
    let due = in_backoff_until(&d, &[0, 1, 2], 500);
    d.fifo_write(b"Q");
    d.wait_exit(Duration::from_secs(10));
    let exited = unix_ms();
    assert!(
        exited < due,
        "the brutal stop ended {} ms after a slot's next start was due",
        exited - due
    );
}

#[test]
fn scaling_and_stats_of_exec_workers() {
    let dir = TestDir::new("exec-scale");
    let cmd = probe_cmd(&dir, "notify");
    let d = Daemon::start(&dir, &["--worker-exec", &cmd, "--processes", "2"]);
    d.fifo_write(b"+");
    let s = d.wait_stats("3 ready workers", |s| {
        (workers(s).len() == 3 && all_ready(s)).then(|| s.clone())
    });
    for w in workers(&s) {
        let pid = w["pid"].as_i64().unwrap();
        assert!(pid > 0 && alive(pid as i32), "{w}");
        let ext = &w["uwsgid"];
        assert_eq!(ext["generation"], 1);
        assert_eq!(ext["ready"], true);
        assert_eq!(ext["state"], "ready");
        assert_eq!(
            ext["counters"], "unknown",
            "exec counters must be marked unknown: {w}"
        );
        assert_eq!(
            ext["status_text"],
            format!("probe gen 1 worker {}", w["id"]),
            "{w}"
        );
        assert!(w["rss"].as_u64().unwrap() > 1_000_000, "rss not read: {w}");
        assert!(
            w["vsz"].as_u64().unwrap() >= w["rss"].as_u64().unwrap(),
            "{w}"
        );
        assert_eq!(w["respawn_count"], 1);
        assert!(w["last_spawn"].as_u64().unwrap() > 1_600_000_000, "{w}");
        assert_eq!(w["status"], "idle");
    }
    let third = workers(&s)[2]["pid"].as_i64().unwrap();
    d.fifo_write(b"-");
    d.wait_stats("2 workers", |s| (workers(s).len() == 2).then_some(()));
    wait_for("worker 3 retired", Duration::from_secs(10), || {
        (!alive(third as i32)).then_some(())
    });
    assert!(d.log_text().contains("worker count 3 -> 2"));

    // A worker that dies after being ready is respawned and counted.
    let first = workers(&d.stats())[0]["pid"].as_i64().unwrap();
    // SAFETY: killing a worker of the daemon this test started, by its pid.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let s = d.wait_stats("worker 1 respawned", |s| {
        let w = &workers(s)[0];
        (w["pid"].as_i64() != Some(first) && w["uwsgid"]["ready"] == true).then(|| s.clone())
    });
    let w = &workers(&s)[0];
    assert_eq!(w["respawn_count"], 2, "{w}");
    assert!(
        w["uwsgid"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{w}"
    );
}

#[test]
fn workers_made_ready_while_paused_stay_frozen_until_resume() {
    let dir = TestDir::new("exec-pause-new");
    let cmd = probe_cmd(&dir, "notify");
    let d = Daemon::start(&dir, &["--worker-exec", &cmd]);
    d.fifo_write(b"h");
    d.wait_stats("paused", |s| {
        (s["uwsgid"]["state"] == "paused").then_some(())
    });
    d.fifo_write(b"+");
    let s = d.wait_stats("2 ready workers", |s| {
        (workers(s).len() == 2 && all_ready(s)).then(|| s.clone())
    });
    for w in workers(&s) {
        let pid = w["pid"].as_i64().unwrap();
        wait_for("worker frozen", Duration::from_secs(5), || {
            (proc_state(pid) == 'T').then_some(())
        });
    }
    // Both workers are stopped (state T): the connection is then seen in the kernel's accept
    // queue, taken by nobody; that is the condition itself, no fixed wait.
    let waiting = in_flight(&d.addr, "/");
    d.wait_stats("the connection in the backlog", |s| {
        (s["listen_queue"].as_u64() == Some(1)).then_some(())
    });
    assert!(
        !waiting.is_finished(),
        "a worker spawned while paused served"
    );
    d.fifo_write(b"u");
    let (r, _) = waiting.join().unwrap();
    assert_eq!(r.unwrap().0, 200);
}

#[test]
fn stopping_unasked_gets_a_replacement_at_once_and_drops_nothing() {
    let dir = TestDir::new("exec-recycle");
    let cmd = probe_cmd(&dir, "notify recycle=5.3");
    let d = Daemon::start(&dir, &["--worker-exec", &cmd]);
    let first = d.worker_pids()[0];
    let load = Load::start(&d.addr, 2, &["/"]);
    d.wait_log("says it is stopping: draining, a replacement starts now");
    let s = d.wait_stats("a replacement serving", |s| {
        let w = &workers(s)[0];
        (w["pid"].as_i64() != Some(first) && w["uwsgid"]["ready"] == true).then(|| s.clone())
    });
    wait_for("the old worker gone", Duration::from_secs(5), || {
        (!alive(first as i32)).then_some(())
    });
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} errors in {ok}: {errors:?}",
        errors.len()
    );
    let w = &workers(&s)[0];
    assert_eq!(w["uwsgid"]["failed_starts"], 0, "{w}");
    assert_eq!(w["respawn_count"], 2, "{w}");
    // The master logs the retirement when it reaps the worker, which can
    // be a moment after the process is gone.
    d.wait_log(&format!("(pid {first}, generation 1) retired after"));
}

#[test]
fn brutal_reloads_kill_old_exec_workers_and_workers_die_with_the_master() {
    let dir = TestDir::new("exec-brutal");
    let cmd = probe_cmd(&dir, "notify");
    let logto = dir.join("instance.log");
    let mut d = Daemon::start(
        &dir,
        &[
            "--worker-exec",
            &cmd,
            "--processes",
            "2",
            "--logto",
            logto.to_str().unwrap(),
        ],
    );
    for (byte, g) in [(b"R", 2), (b"W", 3)] {
        let old = d.worker_pids();
        d.fifo_write(byte);
        d.wait_generation(g);
        for p in &old {
            assert!(!alive(*p as i32), "old worker {p} survived a brutal reload");
        }
        assert_eq!(probe_get(&d.addr)["UWSGID_GENERATION"], g.to_string());
    }
    // Worker stdio is the pipe the master copies into the instance log (see uwsgid_exec_log).
    let pids = d.worker_pids();
    let fds = fds_of(pids[0]);
    assert!(fds[1].1.starts_with("pipe:"), "{fds:?}");
    assert_eq!(fds[1].1, fds[2].1, "{fds:?}");
    let master = fds_of(d.pid as i64);
    assert!(
        master.iter().any(|(_, target)| *target == fds[1].1),
        "the master does not hold the workers' log pipe: {master:?}"
    );
    // Exec workers live in their own process groups, yet die with the master.
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    for p in pids {
        wait_for(
            "the worker to die with its master",
            Duration::from_secs(5),
            || (!alive(p as i32)).then_some(()),
        );
    }
}
