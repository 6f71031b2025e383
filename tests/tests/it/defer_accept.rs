//! TCP listeners queue a connection for `accept` only once its first bytes have arrived
//! (`TCP_DEFER_ACCEPT`, set by default as uWSGI sets it; `--no-defer-accept` turns it off). With
//! one worker and the kernel's accept queue in arrival order, a client that connects and says
//! nothing, then a second client that sends a request: once the second is answered, the silent
//! one is in the worker's hands without the option (it was queued first) and not with it (the
//! kernel still holds it); once it sends, it is answered either way. The same after a graceful
//! reload that turns the option off: the inherited listener follows the new configuration.

use std::io::{Read, Write};
use std::net::TcpStream;

use uwsgi_tests::*;

/// The inode of the server's side of `client`'s connection, from `/proc/net/tcp` (None while
/// the kernel holds it as a request not yet established, which has no inode).
fn server_side_inode(client: &TcpStream) -> Option<String> {
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    // Rows: `sl local rem st ... inode`; addresses as `0100007F:1F90` (IPv4 little-endian).
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        other => panic!("IPv4 loopback expected, got {other}"),
    };
    let (local, remote) = (hex(server_addr), hex(client_addr));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|row| {
        let f: Vec<&str> = row.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[2] == remote && f[9] != "0")
            .then(|| format!("socket:[{}]", f[9]))
    })
}

/// Whether the worker holds a silent client's connection once a later request is answered;
/// the silent client is then answered too.
fn silent_client_taken(d: &Daemon) -> bool {
    let worker = d.only_worker();
    let mut silent = TcpStream::connect(&d.addr).unwrap();
    let (status, _) = d.get("/").unwrap();
    assert_eq!(status, 200);
    let taken =
        server_side_inode(&silent).is_some_and(|inode| socket_inodes(worker).contains(&inode));
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    silent
        .write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    silent.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    taken
}

#[test]
fn a_silent_tcp_client_waits_in_the_kernel_until_it_sends() {
    let dir = TestDir::new("defer-accept");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    assert!(
        !silent_client_taken(&d),
        "with TCP_DEFER_ACCEPT the worker accepted a connection that had sent nothing"
    );
}

#[test]
fn no_defer_accept_hands_over_connections_at_once_and_follows_a_reload() {
    let dir = TestDir::new("no-defer-accept");
    let ini = dir.write(
        "app.ini",
        "[uwsgi]\nprocesses = 1\nno-defer-accept = true\n",
    );
    let d = Daemon::start(&dir, &["--ini", ini.to_str().unwrap()]);
    assert!(
        silent_client_taken(&d),
        "with --no-defer-accept the silent connection, queued first, was not accepted first"
    );
    // The same listener, inherited by the re-executed master, with the option dropped.
    std::fs::write(&ini, "[uwsgi]\nprocesses = 1\n").unwrap();
    let generation = d.generation();
    d.signal(libc::SIGHUP);
    d.wait_generation(generation + 1);
    d.wait_stats("the reload complete", |s| {
        (s["uwsgid"]["reload"].is_null() && all_ready(s)).then_some(())
    });
    assert!(
        !silent_client_taken(&d),
        "after the reload without --no-defer-accept, a silent connection was accepted"
    );
}
