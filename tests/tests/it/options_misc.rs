//! `--listen` above somaxconn warned, process titles (`--auto-procname`, `--procname-prefix*`,
//! `--procname`) in /proc/PID/cmdline and comm, `--cpu-affinity` in Cpus_allowed_list,
//! `--chdir` of built-in workers, several `--touch-reload` files.

use std::time::Duration;

use uwsgi_tests::*;

fn cmdline(pid: i64) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

fn comm(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}

/// (slot id, pid) of every worker in the stats.
fn workers(d: &Daemon) -> Vec<(u64, i64)> {
    d.stats()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_u64().unwrap(), w["pid"].as_i64().unwrap()))
        .collect()
}

#[test]
fn listen_above_somaxconn_is_warned() {
    let max: i64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max >= 65_535 {
        return skip("net.core.somaxconn is already at the --listen maximum");
    }
    let dir = TestDir::new("somaxconn");
    let backlog = (max + 1).to_string();
    let d = Daemon::start(&dir, &["--processes", "1", "--listen", &backlog]);
    let log = d.wait_log("net.core.somaxconn");
    let line = log.lines().find(|l| l.contains("somaxconn")).unwrap();
    assert!(
        line.contains(&format!("--listen {backlog}"))
            && line.contains(&format!("sysctl -w net.core.somaxconn={backlog}")),
        "{line}"
    );
    assert_eq!(log.matches("somaxconn (").count(), 1, "one line: {log}");
    let dir = TestDir::new("somaxconn-ok");
    let d = Daemon::start(&dir, &["--processes", "1", "--listen", "16"]);
    assert!(!d.log_text().contains("somaxconn"), "{}", d.log_text());
}

#[test]
fn process_titles_name_master_workers_and_generation() {
    let dir = TestDir::new("procname");
    let d = Daemon::start(
        &dir,
        &["--processes", "2", "--procname-prefix-spaced", "shop"],
    );
    assert_eq!(cmdline(d.pid as i64), "shop uwsgid master (generation 1)\0");
    assert_eq!(comm(d.pid as i64), "shop uwsgid mas");
    for (id, pid) in workers(&d) {
        assert_eq!(
            cmdline(pid),
            format!("shop uwsgid worker {id} (generation 1)\0")
        );
        assert_eq!(comm(pid), "shop uwsgid wor");
    }
    d.fifo_write(b"r");
    d.wait_generation(2);
    wait_for("the reloaded workers", Duration::from_secs(20), || {
        workers(&d)
            .iter()
            .all(|(_, p)| cmdline(*p).contains("(generation 2)"))
            .then_some(())
    });
    assert_eq!(cmdline(d.pid as i64), "shop uwsgid master (generation 2)\0");
    // The title changed the argument area, not the options the master runs with.
    assert_eq!(d.get("/").unwrap().0, 200);

    let dir = TestDir::new("procname-fixed");
    let d = Daemon::start(&dir, &["--processes", "1", "--procname", "myname"]);
    assert_eq!(cmdline(d.pid as i64), "myname\0");
    assert_eq!(cmdline(d.worker_pids()[0]), "myname\0");
    assert_eq!(comm(d.pid as i64), "myname");
}

#[test]
fn without_procname_options_the_command_line_is_left_alone() {
    let dir = TestDir::new("procname-none");
    let d = Daemon::start(&dir, &["--processes", "1"]);
    assert!(cmdline(d.pid as i64).contains("--safe-pidfile\0"));
}

fn allowed_list(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// CPUs of a Cpus_allowed_list ("0-2,5").
fn parse_list(s: &str) -> Vec<usize> {
    s.split(',')
        .flat_map(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![r.parse().unwrap()],
        })
        .collect()
}

#[test]
fn cpu_affinity_pins_workers_round_robin() {
    let mine = parse_list(&allowed_list(std::process::id() as i64));
    let dir = TestDir::new("affinity");
    let d = Daemon::start(&dir, &["--processes", "3", "--cpu-affinity", "1"]);
    for (id, pid) in workers(&d) {
        let want = mine[(id as usize - 1) % mine.len()];
        assert_eq!(allowed_list(pid), want.to_string(), "worker {id}");
    }
    assert_eq!(
        parse_list(&allowed_list(d.pid as i64)),
        mine,
        "the master is not pinned"
    );
}

#[test]
fn chdir_applies_to_builtin_workers() {
    let dir = TestDir::new("chdir-builtin");
    std::fs::create_dir(dir.join("wd")).unwrap();
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--chdir",
            "wd",
            "--env",
            "UWSGID_TEST_X=1",
        ],
    );
    let wd = std::fs::canonicalize(dir.join("wd")).unwrap();
    let pid = d.worker_pids()[0];
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), wd);
    let dir = TestDir::new("chdir2-builtin");
    std::fs::create_dir(dir.join("wd2")).unwrap();
    let d = Daemon::start(&dir, &["--processes", "1", "--chdir2", "wd2"]);
    let pid = d.worker_pids()[0];
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::fs::canonicalize(dir.join("wd2")).unwrap()
    );
}

#[test]
fn several_touch_reload_files_each_reload() {
    let dir = TestDir::new("touch-list");
    let a = dir.write("a.touch", "");
    let b = dir.write("b.touch", "");
    let ini = dir.write(
        "t.ini",
        &format!(
            "[uwsgi]\ntouch-reload = {}\ntouch-reload = {}\n",
            a.display(),
            b.display()
        ),
    );
    let d = Daemon::start(&dir, &["--processes", "1", "--ini", ini.to_str().unwrap()]);
    for (file, generation) in [(&b, 2), (&a, 3)] {
        std::fs::write(file, "x").unwrap();
        d.wait_generation(generation);
    }
}

const MOUNT_APP: &str = "def application(e, s):\n    s('200 OK', [('Content-Type', 'text/plain')])\n    return [('@APP:' + e['SCRIPT_NAME'] + '|' + e['PATH_INFO']).encode()]\n";

/// `--mount` with `--manage-script-name`: the longest prefix at a '/' boundary picks the app
/// and becomes SCRIPT_NAME; no match goes to the default app (the first) unchanged. The
/// expectations are what uWSGI 2.0 answers for the same mounts and requests.
#[test]
fn mount_dispatches_by_prefix_with_script_name() {
    let python = crate::exec_support::python();
    let dir = TestDir::new("mount");
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    dir.write("a.py", &MOUNT_APP.replace("@APP", "a"));
    dir.write("b.py", &MOUNT_APP.replace("@APP", "b"));
    dir.write("pkg/__init__.py", "");
    dir.write("pkg/c.py", &MOUNT_APP.replace("@APP", "c"));
    let d = Daemon::start(
        &dir,
        &[
            "--python",
            &python,
            "--processes",
            "1",
            "--mount",
            "/a=a.py",
            "--mount",
            "/a/b=b.py",
            "--mount",
            "/b=pkg.c",
            "--manage-script-name",
        ],
    );
    for (path, want) in [
        ("/b/x", "c:/b|/x"),
        ("/b", "c:/b|"),
        ("/a/y", "a:/a|/y"),
        ("/ab", "a:|/ab"),
        ("/zzz", "a:|/zzz"),
        ("/a/b/q", "b:/a/b|/q"),
        ("/b/x%2Fy", "c:/b|/x/y"),
    ] {
        assert_eq!(d.get(path).unwrap(), (200, want.to_string()), "{path}");
    }
    drop(d);

    // Without --manage-script-name every request goes to the default app, unchanged.
    let dir2 = TestDir::new("mount-plain");
    dir2.write("a.py", &MOUNT_APP.replace("@APP", "a"));
    dir2.write("c.py", &MOUNT_APP.replace("@APP", "c"));
    let d = Daemon::start(
        &dir2,
        &[
            "--python", &python, "--mount", "/a=a.py", "--mount", "/b=c.py",
        ],
    );
    assert_eq!(d.get("/b/x").unwrap(), (200, "a:|/b/x".to_string()));
    drop(d);

    // A --wsgi-file app is the default; a mount of "/" has an empty SCRIPT_NAME.
    let dir3 = TestDir::new("mount-default");
    dir3.write("main.py", &MOUNT_APP.replace("@APP", "main"));
    dir3.write("a.py", &MOUNT_APP.replace("@APP", "a"));
    let d = Daemon::start(
        &dir3,
        &[
            "--python",
            &python,
            "--wsgi-file",
            "main.py",
            "--mount",
            "/a=a.py",
            "--manage-script-name",
        ],
    );
    assert_eq!(d.get("/a/b/q").unwrap(), (200, "a:/a|/b/q".to_string()));
    assert_eq!(d.get("/ab").unwrap(), (200, "main:|/ab".to_string()));
}

#[test]
fn mount_needs_a_prefix_and_manage_script_name_a_python_app() {
    for (args, needle) in [
        (vec!["--mount", "a.py"], "expected /PREFIX=APP"),
        (vec!["--mount", "x=a.py"], "starting with '/'"),
        (vec!["--mount", "/x=missing.py"], "missing.py"),
        (vec!["--manage-script-name"], "Python apps only"),
    ] {
        let mut all = vec!["--http-socket", "127.0.0.1:0", "--check-config"];
        all.extend(args.iter().copied());
        let out = std::process::Command::new(bin("uwsgid"))
            .args(&all)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Python workers forked by a zygote are pinned by the master when it adopts them.
#[test]
fn cpu_affinity_pins_preloaded_python_workers() {
    let mine = parse_list(&allowed_list(std::process::id() as i64));
    let dir = TestDir::new("affinity-python");
    dir.write("a.py", &MOUNT_APP.replace("@APP", "a"));
    let d = Daemon::start(
        &dir,
        &[
            "--python",
            &crate::exec_support::python(),
            "--wsgi-file",
            "a.py",
            "--processes",
            "2",
            "--cpu-affinity",
            "1",
        ],
    );
    for (id, pid) in workers(&d) {
        let want = mine[(id as usize - 1) % mine.len()];
        assert_eq!(allowed_list(pid), want.to_string(), "worker {id}");
    }
}
