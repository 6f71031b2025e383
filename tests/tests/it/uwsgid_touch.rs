//! Touch files (BEHAVIOUR 1.4): `--touch-reload`, `--touch-workers-reload` and
//! `--touch-chain-reload` each fire exactly once per touch (one log line, one generation),
//! including when the file did not exist and is created, and never on a change that is not a
//! touch (a chmod) or on a file next to it.

use crate::chan;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chan::*;
use uwsgi_tests::*;

/// Touch `file`, wait for the reload it causes, and check it fired exactly once.
fn touch_once(d: &Daemon, file: &Path, kind: &str, generation: u64) {
    touch_once_with(d, file, kind, generation, touch);
}

/// The real `touch` command: open with O_CREAT, set the times on the fd, close.
fn touch_command(file: &Path) {
    let status = std::process::Command::new("touch")
        .arg(file)
        .status()
        .unwrap();
    assert!(status.success());
}

fn touch_once_with(d: &Daemon, file: &Path, kind: &str, generation: u64, how: fn(&Path)) {
    let line = format!("touch file {} was touched", file.display());
    let before = d.log_count(&line);
    how(file);
    let s = d.wait_generation(generation);
    assert_eq!(s["uwsgid"]["last_reload"]["kind"], kind, "{s}");
    assert_eq!(s["uwsgid"]["last_reload"]["result"], "complete", "{s}");
    barrier(d);
    assert_eq!(d.log_count(&line), before + 1, "{}", d.log_text());
    assert_eq!(d.generation(), generation, "one touch fired twice");
}

#[test]
fn each_touch_file_fires_once_per_touch() {
    let dir = TestDir::new("touch");
    let reload = dir.write("reload.touch", "");
    let workers = dir.write("workers.touch", "");
    let chain = dir.join("chain.touch");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--touch-reload",
            reload.to_str().unwrap(),
            "--touch-workers-reload",
            workers.to_str().unwrap(),
            "--touch-chain-reload",
            chain.to_str().unwrap(),
        ],
    );
    let master = d.pid;
    touch_once(&d, &workers, "workers", 2);
    // A file that did not exist fires when it appears.
    assert!(!chain.exists());
    touch_once_with(&d, &chain, "chain", 3, touch_command);
    touch_once_with(&d, &reload, "graceful", 4, touch_command);
    assert_eq!(d.stats()["pid"], master);
    d.wait_log("re-executing");
    // After the re-exec the new image watches the same files.
    touch_once(&d, &workers, "workers", 5);
    touch_once(&d, &chain, "chain", 6);
}

#[test]
fn writing_a_new_file_in_several_steps_fires_once() {
    let dir = TestDir::new("touch-write");
    let file = dir.join("deploy.touch");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--touch-workers-reload",
            file.to_str().unwrap(),
        ],
    );
    let line = format!("touch file {} was touched", file.display());
    // `echo ... > file` style: create, several writes, close.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        for _ in 0..20 {
            f.write_all(b"deploying\n").unwrap();
            f.sync_data().unwrap();
        }
    }
    d.wait_generation(2);
    barrier(&d);
    assert_eq!(d.log_count(&line), 1, "{}", d.log_text());
    assert_eq!(d.generation(), 2);
}

#[test]
fn a_chmod_or_a_neighbour_file_does_not_fire() {
    let dir = TestDir::new("touch-noise");
    let file = dir.write("reload.touch", "");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--touch-workers-reload",
            file.to_str().unwrap(),
        ],
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    touch(&dir.join("other.touch"));
    std::fs::write(dir.join("other.txt"), "x").unwrap();
    barrier(&d);
    assert_eq!(d.generation(), 1, "{}", d.log_text());
    assert!(!d.log_text().contains("was touched"));
    touch_once(&d, &file, "workers", 2);
}
