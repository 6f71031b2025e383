//! systemd socket activation, played from systemd's side: the test binds listening sockets,
//! passes them as fds 3.. with `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` (the pid that
//! execs uwsgid: a shell that sets it to `$$` and execs). Without `--http-socket` the activated
//! socket is the only listener (nothing bound on the default address), across a re-exec too;
//! with `--http-socket fd://3` naming it, it is taken once and the workers serve. By name:
//! `--http-socket fd://web --socket fd://api` serve HTTP and the uwsgi protocol on the sockets
//! passed under those names (whatever their order, across a re-exec), `fd://NAME` takes every
//! socket of that name, and a name systemd did not pass stops startup before anything is bound.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;

use uwsgi_tests::*;

fn start_activated(dir: &TestDir, listener: &TcpListener, extra: &[&str]) -> Daemon {
    let mut d = spawn_activated(dir, &[(listener, "http")], extra);
    d.wait_running();
    d
}

/// Start uwsgid with `passed` as fds 3.. and `LISTEN_FDNAMES` from their names.
fn spawn_activated(dir: &TestDir, passed: &[(&TcpListener, &str)], extra: &[&str]) -> Daemon {
    let uwsgid = bin("uwsgid");
    let (pidfile, fifo, stats) = (
        dir.join("uwsgid.pid"),
        dir.join("master.fifo"),
        dir.join("stats.sock"),
    );
    let mut args = vec![
        "-c",
        "export LISTEN_PID=$$; exec \"$0\" \"$@\"",
        uwsgid.to_str().unwrap(),
        "--safe-pidfile",
        pidfile.to_str().unwrap(),
        "--master-fifo",
        fifo.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
        "--demo-routes",
        "--processes",
        "2",
    ];
    args.extend_from_slice(extra);
    // Each listener first dup'ed above the target range, so no dup2 onto 3.. clobbers a
    // listener still to be moved there.
    let raws: Vec<i32> = passed
        .iter()
        .map(|(l, _)| {
            // SAFETY: F_DUPFD_CLOEXEC of a listener we own; the new fd is ours until the test ends.
            unsafe { libc::fcntl(l.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) }
        })
        .collect();
    assert!(raws.iter().all(|&fd| fd >= 100));
    let names: Vec<&str> = passed.iter().map(|(_, n)| *n).collect();
    let names = names.join(":");
    let count = passed.len().to_string();
    let moved = raws.clone();
    let d = Daemon::spawn_command(dir, &args, Path::new("/bin/sh"), false, &mut |cmd| {
        cmd.env("LISTEN_FDS", &count).env("LISTEN_FDNAMES", &names);
        let moved = moved.clone();
        // SAFETY: between fork and exec only dup2 and fcntl, which are async-signal-safe; fds
        // 3.. are then the test's listeners without close-on-exec, as systemd passes them
        // (dup2 onto itself keeps the flag: it is cleared explicitly).
        unsafe {
            cmd.pre_exec(move || {
                for (i, &raw) in moved.iter().enumerate() {
                    let to = 3 + i as i32;
                    if libc::dup2(raw, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    });
    for fd in raws {
        // SAFETY: our own duplicate, no longer needed once the child has it.
        unsafe { libc::close(fd) };
    }
    d
}

/// A uwsgi-protocol request for `path` on `addr`; the HTTP status the worker answered.
fn uwsgi_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let packet = uwsgid::uwsgi_proto::encode(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", path),
        ("PATH_INFO", path),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "example.test"),
    ])
    .unwrap();
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    s.write_all(&packet).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw).ok().map(|r| r.0)
}

fn listeners(d: &Daemon) -> Vec<String> {
    common::discovery::read_record(&d.pidfile)
        .unwrap()
        .listeners
}

fn check_serves_only_activated(extra: &[&str], name: &str) {
    let dir = TestDir::new(name);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut d = start_activated(&dir, &listener, extra);
    assert_eq!(listeners(&d), vec![addr.clone()], "{}", d.log_text());
    assert_eq!(http_get(&addr, "/").unwrap().0, 200);
    // A re-exec keeps exactly that listener and binds nothing else.
    d.signal(libc::SIGHUP);
    let s = d.wait_generation(2);
    assert!(all_ready(&s), "{s}");
    assert_eq!(listeners(&d), vec![addr.clone()], "{}", d.log_text());
    assert_eq!(http_get(&addr, "/").unwrap().0, 200);
    let log = d.log_text();
    assert!(
        !log.contains("EEXIST") && !log.contains("File exists"),
        "{log}"
    );
    assert!(!log.contains("8000"), "bound the default address: {log}");
    d.fifo_write(b"q");
    d.wait_exit(std::time::Duration::from_secs(20));
}

#[test]
fn without_http_socket_the_activated_socket_is_the_only_listener() {
    check_serves_only_activated(&[], "activation-default");
}

#[test]
fn http_socket_fd_3_takes_the_activated_socket_once() {
    check_serves_only_activated(&["--http-socket", "fd://3"], "activation-fd3");
}

fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

#[test]
fn sockets_are_matched_by_name_whatever_their_order_http_and_uwsgi() {
    let dir = TestDir::new("activation-names");
    // systemd passes them in its units' order: the uwsgi one first here.
    let (api, api_addr) = bind();
    let (web, web_addr) = bind();
    let mut d = spawn_activated(
        &dir,
        &[(&api, "api"), (&web, "web")],
        &["--http-socket", "fd://web", "--socket", "fd://api"],
    );
    d.wait_running();
    let check = |d: &Daemon| {
        assert_eq!(http_get(&web_addr, "/").unwrap().0, 200, "{}", d.log_text());
        assert_eq!(uwsgi_status(&api_addr, "/"), Some(200), "{}", d.log_text());
        // And not the other way round: HTTP on the uwsgi socket is no uwsgi packet.
        assert!(http_get(&api_addr, "/").map_or(true, |r| r.0 != 200));
        let mut l = listeners(d);
        l.sort();
        let mut want = vec![api_addr.clone(), web_addr.clone()];
        want.sort();
        assert_eq!(l, want, "{}", d.log_text());
    };
    check(&d);
    d.signal(libc::SIGHUP);
    assert!(all_ready(&d.wait_generation(2)));
    check(&d);
    d.fifo_write(b"q");
    d.wait_exit(std::time::Duration::from_secs(20));
}

#[test]
fn a_name_takes_every_socket_of_that_name_and_unnamed_ones_stay_http() {
    let dir = TestDir::new("activation-same-name");
    let (a, a_addr) = bind();
    let (b, b_addr) = bind();
    let (c, c_addr) = bind();
    let mut d = spawn_activated(
        &dir,
        &[(&a, "legacy"), (&b, "api"), (&c, "api")],
        &["--socket", "fd://api"],
    );
    d.wait_running();
    assert_eq!(uwsgi_status(&b_addr, "/"), Some(200), "{}", d.log_text());
    assert_eq!(uwsgi_status(&c_addr, "/"), Some(200), "{}", d.log_text());
    // The socket no option names is served as HTTP, as without any option.
    assert_eq!(http_get(&a_addr, "/").unwrap().0, 200);
    d.signal(libc::SIGHUP);
    assert!(all_ready(&d.wait_generation(2)));
    assert_eq!(uwsgi_status(&b_addr, "/"), Some(200), "{}", d.log_text());
    assert_eq!(uwsgi_status(&c_addr, "/"), Some(200), "{}", d.log_text());
    assert_eq!(http_get(&a_addr, "/").unwrap().0, 200);
    assert_eq!(listeners(&d).len(), 3, "{}", d.log_text());
}

#[test]
fn a_name_systemd_did_not_pass_stops_startup() {
    let dir = TestDir::new("activation-missing-name");
    let (web, _) = bind();
    let bound = format!("127.0.0.1:{}", free_port());
    let mut d = spawn_activated(
        &dir,
        &[(&web, "web")],
        &["--http-socket", bound.as_str(), "--socket", "fd://api"],
    );
    let status = d.wait_exit(std::time::Duration::from_secs(20));
    assert!(!status.success());
    let log = d.log_text();
    assert!(
        log.contains("fd://api: systemd passed no socket named \"api\"")
            && log.contains("FileDescriptorName=api")
            && log.contains("LISTEN_FDNAMES named: web"),
        "{log}"
    );
    assert!(!d.pidfile.exists(), "{log}");
    assert!(!listening(&bound), "{log}");
}
