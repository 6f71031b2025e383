//! On stop, graceful (`q`) or brutal (`Q`, SIGINT), nothing the instance started or adopted
//! outlives it and the port can be bound again at once: exec workers lead their own process
//! group, which is killed with them, and the master (a child subreaper) kills every child it
//! adopted from them (a crash-looping `sh -c "sleep & exit 0"` leaves one per start; a
//! program's children that left its group with `setsid` are adopted when it exits).
//!
//! A master SIGKILLed right after a SIGHUP (mid re-exec, while the next zygote loads, or as
//! the new image starts its standby) should leave no zygote or worker alive 2 s later (that
//! test is ignored: it still fails now and then under load, see its comment).
//!
//! Every process a test starts carries a unique marker in its argv (`sleep 301.NNNNNN`), so
//! the /proc scan finds only what this test started, and the guard kills those by pid.

use std::time::{Duration, Instant};

use uwsgi_tests::*;

use crate::exec_support::probe_cmd;

/// A unique `sleep` duration for this test's processes: 301 s and a random fraction.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("301.{:06}", (nanos ^ std::process::id()) % 1_000_000)
}

/// Live processes whose argv contains `marker`.
fn marked(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(marker) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Kills, by pid, whatever still carries the marker when the test ends (pass or fail).
struct Marked(String);

impl Drop for Marked {
    fn drop(&mut self) {
        for pid in marked(&self.0) {
            // SAFETY: SIGKILL to a process this test started (it carries the test's marker).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// After the master exited: within 2 s no marked process is alive, and the port binds.
fn nothing_left(d: &Daemon, mark: &str, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = marked(mark);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still alive 2 s after the master exited: {left:?}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = std::net::TcpListener::bind(addr) {
        panic!(
            "{addr} cannot be bound after the stop: {e}\n{}",
            d.log_text()
        );
    }
}

fn wait_marked(mark: &str, at_least: usize) {
    wait_for(
        &format!("{at_least} processes marked {mark}"),
        Duration::from_secs(20),
        || (marked(mark).len() >= at_least).then_some(()),
    );
}

#[test]
fn a_crash_looping_worker_leaves_no_orphan_after_q() {
    let dir = TestDir::new("stop-orphans");
    let mark = marker();
    let _guard = Marked(mark.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let cmd = format!("sh -c \"sleep {mark} & exit 0\"");
    let mut d = Daemon::spawn(
        &dir,
        &[
            "--http-socket",
            &addr,
            "--worker-exec",
            &cmd,
            "--processes",
            "2",
        ],
    );
    // Each start leaves a `sleep` behind (its parent exits at once): adopted by the master.
    wait_marked(&mark, 4);
    d.fifo_write(b"q");
    d.wait_exit(Duration::from_secs(15));
    nothing_left(&d, &mark, &addr);
}

/// A worker that forks two long-lived children holding the listener (fd 3): one stays in its
/// process group, one starts a session of its own.
fn with_children(dir: &TestDir, mark: &str, addr: &str) -> Daemon {
    let probe = probe_cmd(dir, "notify");
    let cmd = format!("sh -c 'sleep {mark} & setsid sleep {mark} & exec {probe}'");
    let d = Daemon::start(
        dir,
        &[
            "--http-socket",
            addr,
            "--worker-exec",
            &cmd,
            "--processes",
            "2",
        ],
    );
    wait_marked(mark, 4);
    d
}

#[test]
fn a_workers_children_holding_the_listener_are_gone_after_q() {
    let dir = TestDir::new("stop-children-q");
    let mark = marker();
    let _guard = Marked(mark.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut d = with_children(&dir, &mark, &addr);
    d.fifo_write(b"q");
    d.wait_exit(Duration::from_secs(15));
    nothing_left(&d, &mark, &addr);
}

#[test]
fn a_workers_children_holding_the_listener_are_gone_after_a_brutal_stop() {
    for how in ["Q", "SIGINT"] {
        let dir = TestDir::new("stop-children-brutal");
        let mark = marker();
        let _guard = Marked(mark.clone());
        let addr = format!("127.0.0.1:{}", free_port());
        let mut d = with_children(&dir, &mark, &addr);
        match how {
            "Q" => d.fifo_write(b"Q"),
            _ => d.signal(libc::SIGINT),
        }
        d.wait_exit(Duration::from_secs(10));
        nothing_left(&d, &mark, &addr);
    }
}

/// Live processes other than this test whose argv names `dir` (the master, its forked
/// built-in workers, and every Python process: the runner lives in `dir`'s runtime directory).
fn of_instance(dir: &TestDir) -> Vec<(i32, String)> {
    let needle = dir.path.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if pid != me && cmd.contains(&needle) && alive(pid) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Issue 10 item 9: a worker forked by a zygote that a HUP activated from standby used to
/// outlive a master SIGKILLed right then by its whole re-parenting wait (5 s): it read its
/// middle parent's pid with getppid() after the middle had already exited, so the pid it waited
/// to leave was init's. The middle now passes its own pid down.
#[test]
fn no_zygote_outlives_a_master_killed_right_after_a_hup() {
    let python = crate::exec_support::python();
    // A few delays between the HUP and the SIGKILL: during the re-exec, while the next
    // zygote loads, and once the new image starts its own standby.
    for delay_ms in [0u64, 5, 30, 150] {
        let dir = TestDir::new("stop-kill-after-hup");
        dir.write(
            "app.py",
            "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n",
        );
        let app = dir.join("app.py");
        let mut d = Daemon::start(
            &dir,
            &[
                "--processes",
                "2",
                "--wsgi-file",
                app.to_str().unwrap(),
                "--python",
                &python,
            ],
        );
        d.wait_log("standby zygote of generation 2");
        // The master, 2 workers, the zygote and the standby.
        wait_for(
            "5 processes of the instance",
            Duration::from_secs(10),
            || (of_instance(&dir).len() >= 5).then_some(()),
        );
        d.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(5));
        let killed = Instant::now();
        loop {
            let left = of_instance(&dir);
            if left.is_empty() {
                break;
            }
            if killed.elapsed() > Duration::from_secs(2) {
                let status: Vec<String> = left
                    .iter()
                    .map(|(pid, _)| {
                        let st = std::fs::read_to_string(format!("/proc/{pid}/status"))
                            .unwrap_or_default();
                        let keep = ["State", "PPid", "SigBlk", "SigIgn", "NSpid"];
                        let lines: Vec<&str> = st
                            .lines()
                            .filter(|l| keep.iter().any(|k| l.starts_with(k)))
                            .collect();
                        format!("{pid}: {}", lines.join(" | "))
                    })
                    .collect();
                for (pid, _) in &left {
                    // SAFETY: SIGKILL to a process of the instance this test started.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                panic!(
                    "{delay_ms} ms after the HUP: alive 2 s after the master's SIGKILL: \
                     {left:?}\n{status:?}\n{}",
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
