//! systemd socket activation, played from systemd's side: the test binds a listening socket,
//! passes it as fd 3 with `LISTEN_FDS=1`, `LISTEN_FDNAMES` and `LISTEN_PID` (the pid that execs
//! uwsgid: a shell that sets it to `$$` and execs). Without `--http-socket` the activated socket
//! is the only listener (nothing bound on the default address), across a re-exec too; with
//! `--http-socket fd://3` naming it, it is taken once and the workers serve.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;

use uwsgi_tests::*;

fn start_activated(dir: &TestDir, listener: &TcpListener, extra: &[&str]) -> Daemon {
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
    let raw = listener.as_raw_fd();
    let mut d = Daemon::spawn_command(dir, &args, Path::new("/bin/sh"), false, &mut |cmd| {
        cmd.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", "http");
        // SAFETY: between fork and exec only dup2 and fcntl, which are async-signal-safe; fd 3
        // is then the test's listener without close-on-exec, as systemd passes it (dup2 onto
        // itself keeps the flag: it is cleared explicitly).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    d.wait_running();
    d
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
