//! The master FIFO obeys only its owner: an existing FIFO that another user owns or can write
//! (the attack: `nobody` pre-creates `/tmp/app.fifo` 0666 and writes `Q`), or a symlink at the
//! FIFO's path, is refused at startup before anything is bound, naming the path, owner, mode
//! and fix; a private FIFO of our own is still adopted.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use uwsgi_tests::*;

fn mkfifo(path: &Path, mode: u32) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Start uwsgid with the harness's FIFO path already taken; it must exit 1 without writing
/// its pidfile or creating its stats socket. Returns the log.
fn refused(dir: &TestDir) -> String {
    let mut d = Daemon::spawn(dir, &["--processes", "1"]);
    let status = d.wait_exit(Duration::from_secs(10));
    let log = d.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(!d.pidfile.exists(), "pidfile written: {log}");
    assert!(!d.stats.exists(), "stats socket bound: {log}");
    log
}

#[test]
fn a_fifo_owned_by_another_user_is_refused() {
    let dir = TestDir::new("fifo-foreign");
    let fifo = dir.join("master.fifo");
    mkfifo(&fifo, 0o666);
    std::os::unix::fs::lchown(&fifo, Some(65534), Some(65534)).unwrap();
    let log = refused(&dir);
    for needle in [
        fifo.to_str().unwrap(),
        "uid 65534",
        "mode 0666",
        "remove it",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in: {log}");
    }
    // Untouched: still the attacker's FIFO.
    let m = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(m.file_type().is_fifo() && m.uid() == 65534);
}

#[test]
fn a_fifo_of_ours_that_others_can_write_is_refused() {
    let dir = TestDir::new("fifo-writable");
    mkfifo(&dir.join("master.fifo"), 0o622);
    let log = refused(&dir);
    assert!(
        log.contains("mode 0622") && log.contains("chmod go-w"),
        "{log}"
    );
}

/// A regression guard (option validation already refused this before FIFOs were checked for
/// ownership): a symlink at the FIFO path is never followed.
#[test]
fn a_symlink_at_the_fifo_path_is_refused() {
    let dir = TestDir::new("fifo-link");
    let real = dir.join("real.fifo");
    mkfifo(&real, 0o600);
    std::os::unix::fs::symlink(&real, dir.join("master.fifo")).unwrap();
    let mut d = Daemon::spawn(&dir, &["--processes", "1"]);
    let status = d.wait_exit(Duration::from_secs(10));
    let log = d.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("master.fifo") && !d.pidfile.exists(), "{log}");
}

#[test]
fn a_private_fifo_of_ours_is_adopted() {
    let dir = TestDir::new("fifo-own");
    let fifo = dir.join("master.fifo");
    mkfifo(&fifo, 0o600);
    let before = std::fs::metadata(&fifo).unwrap().ino();
    let mut d = Daemon::start(&dir, &["--processes", "1"]);
    assert_eq!(std::fs::metadata(&fifo).unwrap().ino(), before);
    d.fifo_write(b"q");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
}
