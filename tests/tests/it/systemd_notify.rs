//! systemd's notify protocol, played from systemd's side: the test binds the notify socket
//! (a path, or an abstract `@name`), starts uwsgid with `NOTIFY_SOCKET`, reloads it each way,
//! stops it, and checks the exact datagrams, their order, and `MONOTONIC_USEC=` against
//! `CLOCK_MONOTONIC` read around the reload; then `WATCHDOG=1` at half `WATCHDOG_USEC`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// systemd's end: every datagram received, STATUS= ones kept apart.
struct Manager {
    sock: UnixDatagram,
    statuses: Vec<String>,
}

impl Manager {
    fn new(sock: UnixDatagram) -> Manager {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            sock,
            statuses: Vec::new(),
        }
    }

    fn recv(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram")),
            Err(_) => None,
        }
    }

    /// The next datagram that is not a STATUS= (those are recorded), within 20 s.
    fn next(&mut self) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            match self.recv() {
                Some(m) if m.starts_with("STATUS=") => self.statuses.push(m),
                Some(m) => return m,
                None => {}
            }
        }
        panic!("no datagram within 20 s; statuses: {:?}", self.statuses);
    }

    /// Wait (up to 10 s) until `status` was received; only STATUS= may arrive meanwhile.
    fn wait_status(&mut self, status: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.statuses.iter().any(|t| t == status) {
            assert!(Instant::now() < end, "no {status:?} in {:?}", self.statuses);
            if let Some(m) = self.recv() {
                assert!(m.starts_with("STATUS="), "unexpected datagram {m:?}");
                self.statuses.push(m);
            }
        }
    }

    /// Nothing but STATUS= arrives for `d`.
    fn quiet_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(m) = self.recv() {
                assert!(m.starts_with("STATUS="), "unexpected datagram {m:?}");
                self.statuses.push(m);
            }
        }
    }
}

fn start(dir: &TestDir, notify_socket: &str, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![("NOTIFY_SOCKET", notify_socket)];
    all.extend_from_slice(env);
    let mut d = Daemon::spawn_env(dir, &["--processes", "2"], &bin("uwsgid"), true, &all);
    d.wait_running();
    d
}

fn expect_reload(m: &mut Manager, d: &Daemon, generation: u64, trigger: impl FnOnce()) {
    let before = monotonic_usec();
    trigger();
    let reloading = m.next();
    let after = monotonic_usec();
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| {
            panic!("generation {generation}: expected RELOADING=1, got {reloading:?}")
        })
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} not within [{before}, {after}]"
    );
    assert_eq!(m.next(), "READY=1", "generation {generation}");
    let s = d.wait_generation(generation);
    assert!(
        all_ready(&s),
        "READY=1 before the generation was ready: {s}"
    );
    m.wait_status(&format!(
        "STATUS=running, generation {generation}, 2/2 workers ready"
    ));
}

#[test]
fn every_reload_is_announced_then_ready_and_the_stop_too() {
    let dir = TestDir::new("sd-notify");
    let path = dir.join("notify.sock");
    let mut m = Manager::new(UnixDatagram::bind(&path).unwrap());
    let mut d = start(&dir, path.to_str().unwrap(), &[]);
    assert_eq!(m.next(), "READY=1");
    m.wait_status("STATUS=running, generation 1, 2/2 workers ready");
    expect_reload(&mut m, &d, 2, || d.signal(libc::SIGHUP));
    expect_reload(&mut m, &d, 3, || d.fifo_write(b"r"));
    expect_reload(&mut m, &d, 4, || d.fifo_write(b"R"));
    expect_reload(&mut m, &d, 5, || d.fifo_write(b"w"));
    expect_reload(&mut m, &d, 6, || d.fifo_write(b"c"));
    // No READY=1 is re-sent by a resumed image, nor anything else, while nothing happens.
    m.quiet_for(Duration::from_millis(500));
    d.fifo_write(b"q");
    assert_eq!(m.next(), "STOPPING=1");
    let extend = m.next();
    let usec: u64 = extend
        .strip_prefix("EXTEND_TIMEOUT_USEC=")
        .unwrap_or_else(|| panic!("expected EXTEND_TIMEOUT_USEC, got {extend:?}"))
        .parse()
        .unwrap();
    assert!(usec >= 1_000_000, "{usec}");
    d.wait_exit(Duration::from_secs(30));
    m.quiet_for(Duration::from_millis(200));
    assert!(
        m.statuses.iter().any(|t| t.starts_with("STATUS=stopping")),
        "{:?}",
        m.statuses
    );
}

#[test]
fn a_refused_reload_is_ready_again_with_a_status_naming_it() {
    let dir = TestDir::new("sd-refused");
    let path = dir.join("notify.sock");
    let mut m = Manager::new(UnixDatagram::bind(&path).unwrap());
    let ini = dir.join("app.ini");
    std::fs::write(&ini, "[uwsgi]\nprocesses = 1\n").unwrap();
    let mut d = Daemon::spawn_env(
        &dir,
        &["--ini", ini.to_str().unwrap()],
        &bin("uwsgid"),
        true,
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    d.wait_running();
    assert_eq!(m.next(), "READY=1");
    std::fs::write(&ini, "[uwsgi]\nprocesses = not-a-number\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(m.next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(m.next(), "READY=1");
    assert!(
        m.statuses
            .iter()
            .any(|t| t.starts_with("STATUS=reload failed, previous generation serving:")),
        "{:?}",
        m.statuses
    );
    assert_eq!(d.generation(), 1);
}

#[test]
fn an_abstract_notify_socket_is_reached() {
    let dir = TestDir::new("sd-abstract");
    let name = format!("uwsgid-test-{}-{}", std::process::id(), monotonic_usec());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut m = Manager::new(UnixDatagram::bind_addr(&addr).unwrap());
    let d = start(&dir, &format!("@{name}"), &[]);
    assert_eq!(m.next(), "READY=1");
    expect_reload(&mut m, &d, 2, || d.signal(libc::SIGHUP));
}

/// Time `path` (a `/proc/.../schedstat`) spent runnable but waiting for a CPU, in
/// nanoseconds; 0 where the kernel does not keep it (then nothing is excused).
fn run_delay_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU time stolen from this (virtual) machine, summed over its CPUs, in nanoseconds.
fn steal_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

/// One `WATCHDOG=1` as the test read it, with the delays measured up to then.
struct Ping {
    at: Instant,
    /// The master's and this thread's time waiting for a CPU, and the machine's stolen time.
    delays: [u64; 3],
}

#[test]
fn the_watchdog_is_fed_at_half_its_timeout() {
    const HALF: Duration = Duration::from_millis(100);
    // What a quiet machine adds to a gap: the poll's millisecond rounding, wake-ups, reads.
    const SLACK: Duration = Duration::from_millis(20);
    const PINGS: usize = 12;
    let dir = TestDir::new("sd-watchdog");
    let path = dir.join("notify.sock");
    let mut m = Manager::new(UnixDatagram::bind(&path).unwrap());
    let d = start(&dir, path.to_str().unwrap(), &[("WATCHDOG_USEC", "200000")]);
    let master = format!("/proc/{}/schedstat", d.pid);
    let delays = || {
        [
            run_delay_ns(&master),
            run_delay_ns("/proc/thread-self/schedstat"),
            steal_ns(),
        ]
    };
    let mut pings: Vec<Ping> = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while pings.len() < PINGS && Instant::now() < end {
        match m.recv() {
            Some(x) if x == "WATCHDOG=1" => pings.push(Ping {
                at: Instant::now(),
                delays: delays(),
            }),
            Some(x) if x.starts_with("STATUS=") || x == "READY=1" => {}
            Some(x) => panic!("unexpected {x:?}"),
            None => {}
        }
    }
    assert_eq!(pings.len(), PINGS, "WATCHDOG=1 stopped coming (20 s)");
    // The master sends the next one half the timeout after the last, when it gets to run. A
    // gap read here is that, plus the master's wait for a CPU before it sent, plus this
    // thread's wait before it read (which also shortens the next gap), plus stolen time: each
    // gap is judged with the delays measured over it and the one before (a wait just before a
    // read counts for the gap it ends), so it fails when the master feeds late or early, not
    // when the machine is busy (unexcused, a gap stays well under the 200 ms timeout systemd
    // enforces).
    for i in 1..pings.len() {
        let gap = pings[i].at - pings[i - 1].at;
        let from = &pings[i.saturating_sub(2)].delays;
        let excuse: u64 = (0..3)
            .map(|k| pings[i].delays[k].saturating_sub(from[k]))
            .sum();
        let excuse = Duration::from_nanos(excuse);
        assert!(
            gap <= HALF + SLACK + excuse && gap + SLACK + excuse >= HALF,
            "gap {i}: {gap:?} between two WATCHDOG=1, with {excuse:?} of measured delays (half \
             the timeout is {HALF:?})"
        );
    }
}
