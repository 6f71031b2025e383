//! `--uid`/`--gid`/`--master-as-root` (issue 13, item 4), run as root (CI is root): listeners,
//! pidfile, FIFO and stats socket are made as root, then the master and every worker run as the
//! user (real, effective, saved and filesystem ids, supplementary groups from the user's
//! entry); graceful, brutal and chain reloads keep working with the unprivileged re-executed
//! master; what cannot be applied is refused before anything is bound.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use uwsgi_tests::*;

fn root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

fn need_root() -> bool {
    require(
        root(),
        "root",
        "run the tests as root (CI does): --uid needs it",
    )
}

/// `(uid, gid)` of a user, from `id`.
fn ids_of(user: &str) -> (u32, u32, String) {
    let q = |flag: &str| {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (q("-u").parse().unwrap(), q("-g").parse().unwrap(), q("-G"))
}

/// The Uid, Gid and Groups lines of /proc/PID/status.
pub fn creds(pid: i32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// The master and every live child of it (workers, zygotes).
pub fn instance_pids(master: i32) -> Vec<i32> {
    let mut pids = vec![master];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(master) && f[0] != "Z" {
            pids.push(pid);
        }
    }
    pids
}

/// Every process of the instance runs as `uid`/`gid` with `groups` (the master too unless
/// `master_root`).
pub fn assert_dropped(master: i32, uid: u32, gid: u32, groups: &str, master_root: bool) {
    let want_groups: Vec<u32> = groups
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    let pids = instance_pids(master);
    assert!(pids.len() >= 2, "the master and its workers: {pids:?}");
    for pid in pids {
        let (u, g, mut gs) = creds(pid);
        gs.sort();
        let mut want = want_groups.clone();
        want.sort();
        if pid == master && master_root {
            assert_eq!(u, [0, 0, 0, 0], "master {pid}");
            continue;
        }
        assert_eq!(u, [uid; 4], "pid {pid} (master {master}) uids");
        assert_eq!(g, [gid; 4], "pid {pid} gids");
        assert_eq!(gs, want, "pid {pid} supplementary groups");
    }
}

/// An interpreter every user may run.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A directory the instance's user may write (as `/run/app` made by systemd's
/// `RuntimeDirectory=`): the unprivileged master removes its files there at exit.
fn run_dir(dir: &TestDir, uid: u32, gid: u32) -> std::path::PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The user must reach it (the test directory is root's).
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    run
}

fn manage(args: &[&str]) {
    let out = Command::new(bin("uwsgid")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn uid_and_gid_drop_every_process_and_reloads_keep_working() {
    if !need_root() {
        return;
    }
    let (uid, gid, groups) = ids_of("nobody");
    let dir = TestDir::new("priv-drop");
    let run = run_dir(&dir, uid, gid);
    let sock = run.join("app.sock");
    let pidfile = run.join("app.pid");
    let fifo = run.join("master.fifo");
    let stats = run.join("stats.sock");
    let mut d = Daemon::spawn_with(
        &dir,
        &[
            "--http-socket",
            "127.0.0.1:0",
            "--socket",
            sock.to_str().unwrap(),
            "--chmod-socket=660",
            "--processes",
            "2",
            "--demo-routes",
            "--uid",
            "nobody",
            "--gid",
            &gid.to_string(),
            "--safe-pidfile",
            pidfile.to_str().unwrap(),
            "--master-fifo",
            fifo.to_str().unwrap(),
            "--stats",
            stats.to_str().unwrap(),
            "--vacuum",
        ],
        &bin("uwsgid"),
        false,
    );
    d.pidfile = pidfile.clone();
    d.fifo = fifo.clone();
    d.stats = stats.clone();
    d.wait_running();
    d.wait_log("dropped privileges: running as uid");
    assert_dropped(d.pid, uid, gid, &groups, false);
    // Made as root before the drop.
    assert_eq!(owner_mode(&sock), (0, 0, 0o660));
    assert_eq!(owner_mode(&fifo), (0, 0, 0o600));
    assert_eq!(owner_mode(&pidfile), (0, 0, 0o644));
    let (su, sg, smode) = owner_mode(&stats);
    assert_eq!((su, sg), (0, 0));
    assert_eq!(
        smode & 0o002,
        0,
        "stats socket mode {smode:o}: others may not connect"
    );
    let record = run.join("app.pid.json");
    let lock = run.join("app.pid.lock");
    assert_eq!(owner_mode(&record), (0, 0, 0o644));
    assert_eq!(owner_mode(&lock), (0, 0, 0o644));
    let pf = pidfile.to_str().unwrap();
    for (n, kind) in ["--reload", "--brutal-reload", "--chain-reload"]
        .iter()
        .enumerate()
    {
        manage(&[kind, pf, "--wait"]);
        d.wait_generation(n as u64 + 2);
        assert_dropped(d.pid, uid, gid, &groups, false);
        assert_eq!(d.get("/").unwrap().0, 200, "serving after {kind}");
    }
    assert!(d.log_text().matches("master pid").count() == 1);
    manage(&["--graceful-stop", pf, "--wait"]);
    assert!(d.wait_exit(std::time::Duration::from_secs(20)).success());
    // The unprivileged master removed what it made, in its own directory.
    let left: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn python_workers_drop_too_and_master_as_root_keeps_only_the_master() {
    if !need_root()
        || !require(
            Path::new(SYSTEM_PYTHON).exists(),
            SYSTEM_PYTHON,
            "apt-get install python3",
        )
    {
        return;
    }
    let (uid, gid, groups) = ids_of("nobody");
    let dir = TestDir::new("priv-python");
    let run = run_dir(&dir, uid, gid);
    let app = dir.write(
        "app.py",
        "import os\ndef application(e, s):\n    s('200 OK', [('Content-Type', 'text/plain')])\n    return [b'%d' % os.getuid()]\n",
    );
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    for master_as_root in [false, true] {
        let pidfile = run.join(format!("py-{master_as_root}.pid"));
        let mut args = vec![
            "--http-socket",
            "127.0.0.1:0",
            "--processes",
            "2",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--uid",
            "nobody",
            "--safe-pidfile",
            pidfile.to_str().unwrap(),
            // The system interpreter: one under root's home (pyenv) is not nobody's to run.
            "--python",
            SYSTEM_PYTHON,
        ];
        if master_as_root {
            args.push("--master-as-root");
        }
        let mut d = Daemon::spawn_with(&dir, &args, &bin("uwsgid"), false);
        d.pidfile = pidfile.clone();
        d.addr = d.wait_record();
        wait_for(
            "the app to answer",
            std::time::Duration::from_secs(30),
            || http_get(&d.addr, "/").ok().filter(|(s, _)| *s == 200),
        );
        assert_eq!(http_get(&d.addr, "/").unwrap().1, uid.to_string());
        assert_dropped(d.pid, uid, gid, &groups, master_as_root);
        manage(&["--reload", pidfile.to_str().unwrap()]);
        wait_for("generation 2", std::time::Duration::from_secs(30), || {
            d.log_text()
                .contains("to generation 2 complete")
                .then_some(())
        });
        assert_dropped(d.pid, uid, gid, &groups, master_as_root);
        manage(&["--stop", pidfile.to_str().unwrap(), "--wait"]);
        d.wait_exit(std::time::Duration::from_secs(20));
    }
}

#[test]
fn what_cannot_be_applied_is_refused_before_binding() {
    let dir = TestDir::new("priv-refuse");
    let sock = dir.join("app.sock");
    let run = |args: &[&str], as_nobody: bool| {
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(bin("uwsgid"));
            c
        } else {
            Command::new(bin("uwsgid"))
        };
        let out = cmd
            .args(["--socket", sock.to_str().unwrap()])
            .args(args)
            .current_dir("/")
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, needle) in [
        (
            &["--uid", "no-such-user-uwsgid"][..],
            "--uid no-such-user-uwsgid: no such user",
        ),
        (
            &["--uid", "nobody", "--gid", "no-such-group-uwsgid"][..],
            "--gid no-such-group-uwsgid: no such group",
        ),
        (&["--uid", "root"][..], "that is root"),
        (&["--master-as-root"][..], "--master-as-root without --uid"),
    ] {
        let (code, err) = run(args, false);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!sock.exists());
    }
    if root() && have_program("setpriv") {
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (code, err) = run(&["--uid", "daemon"], true);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("cannot change to uid"), "{err}");
        assert!(!sock.exists());
    }
}
