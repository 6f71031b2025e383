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
