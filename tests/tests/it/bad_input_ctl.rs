//! Bad-input catalogue, uwsgictl: hostile pidfiles that `uwsgictl_validation.rs` does not
//! cover (a symlink to /etc/passwd, a FIFO that nobody writes, a huge file). Each is refused
//! with exit code 14 (`status`: 4, unknown), a message naming the path and what it is, nothing on stdout, no hang,
//! nothing read past the limit, and a decoy process that records signals receives none.

use uwsgi_tests::ctl;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use ctl::{ctl, Decoy, TempDir};

#[test]
fn hostile_pidfiles_are_refused_without_reading_them_and_nothing_is_sent() {
    let dir = TempDir::new("hostile");
    let decoy = Decoy::spawn(&dir.path, "decoy");
    let passwd = fs::metadata("/etc/passwd").unwrap();
    let link = dir.join("passwd.pid");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let fifo = dir.join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let huge = dir.join("huge.pid");
    // Starts with the decoy's pid, so only the size check can refuse it.
    let mut text = format!("{}\n", decoy.pid).into_bytes();
    text.resize(64 << 20, b' ');
    fs::write(&huge, &text).unwrap();
    let cases = [
        (&link, "is a symlink, not a regular file"),
        (&fifo, "is a FIFO, not a regular file"),
        (&huge, "67108864 bytes is too large to hold a pid"),
    ];
    for (path, message) in cases {
        for cmd in [
            &["reload"][..],
            &["stop", "--brutal"],
            &["status"],
            &["signal", "HUP"],
        ] {
            let mut args = vec!["--pidfile".to_string(), path.display().to_string()];
            args.extend(cmd.iter().map(|s| s.to_string()));
            let started = Instant::now();
            let out = ctl(&args).process_group(decoy.pid).run();
            // Opening the FIFO for reading would block for ever (nobody writes it): the bound
            // only tells "refused" from "stuck", so it is far above what a loaded machine
            // takes to start the tool (9.6 s was seen once with a 5 s bound, at load 40).
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{cmd:?} on {path:?} took {:?}",
                started.elapsed()
            );
            if cmd == ["status"] {
                // status's result is the state, on stdout, with the LSB code 4 (unknown).
                out.code(4).stdout_has(message);
            } else {
                out.code(14).stderr_has(message);
                assert!(out.stdout.is_empty(), "stdout must stay empty: {out:?}");
            }
        }
    }
    decoy.assert_untouched("hostile pidfiles");
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (passwd.ino(), passwd.len(), passwd.mtime_nsec()),
        (after.ino(), after.len(), after.mtime_nsec())
    );
}
