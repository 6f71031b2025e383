//! A built-in worker out of file descriptors neither spins, nor floods the log, nor stops
//! serving for good.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_worker_out_of_fds_pauses_accepting_instead_of_spinning() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        assert!(std::env::var("CI").is_err(), "prlimit is missing in CI");
        return;
    }
    let dir = TestDir::new("emfile");
    let wrapper = dir.write(
        "uwsgid-lowfd",
        &format!(
            "#!/bin/sh\nexec prlimit --nofile=40:40 {} \"$@\"\n",
            bin("uwsgid").display()
        ),
    );
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::spawn_with(&dir, &["--processes", "1"], &wrapper, true);
    d.wait_running();
    let worker = d.worker_pids()[0] as i32;
    // Hold more idle connections than the worker has fds for.
    let mut held = Vec::new();
    for _ in 0..60 {
        let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
        s.write_all(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        held.push(s);
    }
    d.wait_log("pausing accepts");
    // A rate needs a window: ten of the worker's accept retries (a negative observation, no
    // event ends it). A spinning worker takes all of it; the bound is on the measured wall.
    let before = cpu_ticks(worker);
    let t0 = Instant::now();
    std::thread::sleep(uwsgid::worker::ACCEPT_RETRY * 10);
    let used = cpu_ticks(worker) - before;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    assert!(
        (used as f64 / hz) < t0.elapsed().as_secs_f64() * 0.3,
        "the worker burned {used} ticks while out of fds"
    );
    // Accept fails every 100 ms meanwhile; the log says so once per 10 s, not each time.
    let lines = d.log_count("pausing accepts");
    assert!(
        lines <= 2,
        "{lines} \"pausing accepts\" lines in {:?}",
        t0.elapsed()
    );
    drop(held);
    // Once the clients are gone the worker accepts again.
    let (status, _) = wait_for("service again", Duration::from_secs(20), || d.get("/").ok());
    assert_eq!(status, 200);
    assert_eq!(d.worker_pids()[0] as i32, worker, "the worker was replaced");
}
