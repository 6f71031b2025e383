//! The runtime and instance directories are trusted before anything is created, bound or read
//! in them: a runtime directory another user pre-created (0777, owned by `nobody`), one that is
//! ours but writable by others, a symlink owned by another user, and a symlinked instance
//! directory are refused by uwsgid before it binds its port, and by uwsgictl before it reads a
//! record, each with a message naming the path, owner, mode and fix. Also: the pidfile's
//! neighbours (a planted temporary file, a lock file owned by another user).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use uwsgi_tests::ctl::ctl;
use uwsgi_tests::*;

const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown (the tests run as root)");
}

/// Run `uwsgid --name app` on a fresh loopback port with RUNTIME at `runtime`, to completion
/// (bounded): (exit code, stderr, address).
fn start_named(dir: &TestDir, runtime: &Path) -> (i32, String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin("uwsgid"))
        .args(["--name", "app", "--processes", "1", "--http-socket", &addr])
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uwsgid");
    let pid = child.id() as i32;
    let status = wait_for("uwsgid to refuse", Duration::from_secs(10), || {
        let s = child.try_wait().ok().flatten();
        if s.is_none() && listening(&addr) {
            // SAFETY: stopping the instance this test started, by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
            panic!("uwsgid started and bound {addr}");
        }
        s
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err, addr)
}

#[test]
fn a_runtime_dir_precreated_by_another_user_is_refused_and_nothing_is_bound() {
    let dir = TestDir::new("rt-foreign");
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    chown(&runtime, NOBODY);
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err, addr) = start_named(&dir, &runtime);
    assert_eq!(code, 1, "{err}");
    for needle in [
        runtime.to_str().unwrap(),
        "uid 65534",
        "mode 0777",
        "UWSGID_RUNTIME_DIR",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    assert!(!listening(&addr), "the refused instance bound its port");
    assert_eq!(
        std::fs::read_dir(&runtime).unwrap().count(),
        0,
        "something was created in the attacker's directory"
    );
    // uwsgictl reads no record from it either.
    ctl(["--name", "app", "status"])
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .run()
        .code(5)
        .stderr_has("uid 65534");
    ctl(["list"])
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .run()
        .code(5)
        .stderr_has("runtime directory");
}

#[test]
fn a_runtime_dir_writable_by_others_or_behind_a_foreign_symlink_is_refused() {
    let dir = TestDir::new("rt-writable");
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o757)).unwrap();
    let (code, err, _) = start_named(&dir, &runtime);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("mode 0757") && err.contains("chmod"), "{err}");
    // Our own private directory, reached through a symlink someone else owns.
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.join("runtime-link");
    std::os::unix::fs::symlink(&runtime, &link).unwrap();
    chown(&link, NOBODY);
    let (code, err, _) = start_named(&dir, &link);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("symlink owned by uid 65534"), "{err}");
    assert_eq!(std::fs::read_dir(&runtime).unwrap().count(), 0);
}

#[test]
fn a_symlinked_instance_directory_is_refused() {
    let dir = TestDir::new("inst-link");
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, runtime.join("app")).unwrap();
    let (code, err, addr) = start_named(&dir, &runtime);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("instance directory") && err.contains("is a symlink"),
        "{err}"
    );
    assert!(!listening(&addr));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    ctl(["--name", "app", "status"])
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .run()
        .code(5)
        .stderr_has("is a symlink");
}

#[test]
fn a_fresh_runtime_dir_is_private_whatever_the_umask() {
    let dir = TestDir::new("rt-umask");
    let runtime = dir.join("runtime");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "umask 000; exec {} --name app --processes 1 --http-socket {addr}",
            bin("uwsgid").display()
        ))
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let pidfile = runtime.join("app").join("uwsgid.pid");
    let pid = child.id() as i32;
    wait_for("the instance's pidfile", Duration::from_secs(10), || {
        common::pidfile::read(&pidfile)
            .ok()
            .filter(|c| c.pid == pid)
    });
    for d in [&runtime, &runtime.join("app")] {
        let mode = std::fs::metadata(d).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{} has mode {mode:04o}", d.display());
    }
    // SAFETY: stopping the instance this test started, by its pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    wait_for("uwsgid to exit", Duration::from_secs(10), || {
        child.try_wait().ok().flatten()
    });
}

#[test]
fn a_planted_temp_file_neither_stops_the_pidfile_write_nor_is_removed() {
    let dir = TestDir::new("planted-tmp");
    let planted = "planted by another user\n";
    // The old temporary names were `.NAME.PID.tmp`: plant them for the pid uwsgid will have
    // (the shell's, which exec keeps).
    let script = format!(
        "for f in .uwsgid.pid.$$.tmp .uwsgid.pid.json.$$.tmp; do printf '{}' > $f; \
         chown {NOBODY}:{NOBODY} $f; done; exec {} \"$@\"",
        planted.trim_end().to_owned() + "\\n",
        bin("uwsgid").display()
    );
    let wrapper = dir.write("uwsgid-planted", &format!("#!/bin/sh\n{script}\n"));
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::spawn_with(&dir, &["--processes", "1"], &wrapper, true);
    d.wait_running();
    assert_eq!(
        std::fs::read_to_string(&d.pidfile).unwrap(),
        format!("{}\n", d.pid)
    );
    for name in [
        format!(".uwsgid.pid.{}.tmp", d.pid),
        format!(".uwsgid.pid.json.{}.tmp", d.pid),
    ] {
        let p = dir.join(&name);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap_or_default(),
            planted,
            "{name} was changed or removed"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), NOBODY);
    }
    let log = d.log_text();
    assert!(!log.contains("File exists"), "{log}");
}

#[test]
fn a_lock_file_owned_by_another_user_is_refused_with_a_clear_message() {
    let dir = TestDir::new("foreign-lock");
    let lock = dir.join("uwsgid.pid.lock");
    std::fs::write(&lock, "").unwrap();
    chown(&lock, NOBODY);
    // Held, as the other user would hold it to block every start.
    let held = std::fs::File::open(&lock).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // SAFETY: flock on our own open fd.
    let locked = unsafe { libc::flock(fd, libc::LOCK_EX) };
    assert_eq!(locked, 0);
    let mut d = Daemon::spawn(&dir, &["--processes", "1"]);
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert!(
        log.contains("uid 65534") && log.contains(&format!("rm {}", lock.display())),
        "{log}"
    );
    assert!(!log.contains("another uwsgid"), "{log}");
    assert!(!d.pidfile.exists());
    drop(held);
    std::fs::write(&d.log, "").unwrap();
    // Not held: refused just the same (owned by another user).
    let mut d = Daemon::spawn(&dir, &["--processes", "1"]);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(d.log_text().contains("belongs to uid 65534"));
}
