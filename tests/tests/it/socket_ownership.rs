//! Socket ownership (issue 13, item 3): `--chmod-socket[=MODE]` (666 when bare),
//! `--chown-socket USER[:GROUP]` and `--umask` give every Unix listener the instance creates its
//! mode and owner, and the file keeps them across a re-exec (same inode, nothing rebound).
//! Bad values stop startup before anything is bound.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use uwsgi_tests::*;

fn facts(path: &Path) -> (u32, u32, u32, u64) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert!(m.file_type().is_socket(), "{} is a socket", path.display());
    (m.mode() & 0o7777, m.uid(), m.gid(), m.ino())
}

fn root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn chmod_socket_bare_is_666_and_survives_a_re_exec() {
    let dir = TestDir::new("chmod-bare");
    let a = dir.join("a.sock");
    let b = dir.join("b.sock");
    // Bare on the command line, and given a mode: both forms.
    let d = Daemon::start(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--http-socket",
            a.to_str().unwrap(),
            "--http-socket",
            b.to_str().unwrap(),
            "--chmod-socket",
        ],
    );
    let before = (facts(&a), facts(&b));
    assert_eq!(before.0 .0, 0o666);
    assert_eq!(before.1 .0, 0o666);
    d.fifo_write(b"r");
    d.wait_generation(2);
    assert_eq!((facts(&a), facts(&b)), before, "kept across the re-exec");
}

#[test]
fn chmod_socket_mode_from_an_ini_file_and_umask() {
    let dir = TestDir::new("chmod-ini");
    let sock = dir.join("app.sock");
    let ini = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\nhttp-socket = {}\nchmod-socket = 660\n",
            sock.display()
        ),
    );
    let _d = Daemon::start(&dir, &["--ini", ini.to_str().unwrap()]);
    assert_eq!(facts(&sock).0, 0o660);

    // Without --chmod-socket the umask decides (777 minus the umask).
    let dir = TestDir::new("umask");
    let sock = dir.join("app.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--http-socket",
            sock.to_str().unwrap(),
            "--umask",
            "027",
        ],
    );
    assert_eq!(facts(&sock).0, 0o750);
    // The umask is the process's: the master's pidfile lock is made under it as well.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).unwrap();
    assert!(status.contains("Umask:\t0027"), "{status}");
}

#[test]
fn chown_socket_gives_the_file_to_the_user_and_group() {
    if !require(
        root(),
        "root",
        "run the tests as root (CI does): --chown-socket needs it",
    ) {
        return;
    }
    let dir = TestDir::new("chown");
    let sock = dir.join("app.sock");
    let only_group = dir.join("group.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--http-socket",
            sock.to_str().unwrap(),
            "--chown-socket",
            "nobody:4242",
            "--chmod-socket=660",
        ],
    );
    let nobody: u32 = {
        let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let f = facts(&sock);
    assert_eq!((f.0, f.1, f.2), (0o660, nobody, 4242));
    d.fifo_write(b"r");
    d.wait_generation(2);
    assert_eq!(facts(&sock), f);
    drop(d);

    let dir2 = TestDir::new("chown-group");
    let _d = Daemon::start(
        &dir2,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--http-socket",
            only_group.to_str().unwrap(),
            "--chown-socket",
            ":4243",
        ],
    );
    let f = facts(&only_group);
    assert_eq!((f.1, f.2), (0, 4243));
}

#[test]
fn bad_ownership_options_stop_startup_before_binding() {
    let dir = TestDir::new("chown-bad");
    let sock = dir.join("app.sock");
    for (extra, needle) in [
        (
            &["--chmod-socket", "99"][..],
            "--chmod-socket \"99\": not an octal mode",
        ),
        (&["--chmod-socket", "rw"][..], "not an octal mode"),
        (
            &["--umask", "888"][..],
            "--umask \"888\": not an octal mode",
        ),
        (
            &["--chown-socket", "no-such-user-uwsgid"][..],
            "no user \"no-such-user-uwsgid\"",
        ),
        (
            &["--chown-socket", "root:no-such-group-uwsgid"][..],
            "no group \"no-such-group-uwsgid\"",
        ),
    ] {
        let out = Command::new(bin("uwsgid"))
            .args(["--http-socket", sock.to_str().unwrap()])
            .args(extra)
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!sock.exists(), "{extra:?} bound the socket");
    }
}
