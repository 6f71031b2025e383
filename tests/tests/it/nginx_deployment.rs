//! The headline of issue 13: the classic uWSGI deployment ini, run unchanged by uwsgid as root
//! behind a real nginx (`uwsgi_pass unix:...` with `include uwsgi_params`): a Unix socket with
//! `chmod-socket`, `uid`/`gid`, `master`, `processes`, `wsgi-file`, `die-on-term`, `vacuum`,
//! `stats`, `safe-pidfile`. Reloaded by `uwsgid --reload PIDFILE` and by `uwsgi.reload()` from
//! a request while load runs through nginx (no failed request), then stopped by
//! `uwsgid --stop PIDFILE`: every process gone, nothing left in its directory, the pidfile's
//! lock included (the master removes it while it holds it; a starter locks only the file still
//! at the path). Load goes through nginx with `wrk` and its output must show no non-2xx answer
//! and no socket error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

use crate::nginx_uwsgi::assert_python_program;
use crate::privileges::{assert_dropped, instance_pids, SYSTEM_PYTHON};

const APP: &str = r#"
import os, uwsgi

def application(env, start_response):
    if env["PATH_INFO"] == "/reload":
        body = str(uwsgi.reload()).encode()
    else:
        body = ("hello from %d as %d" % (os.getpid(), os.getuid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#;

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // SAFETY: the process group we created for the daemon, by its id.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn uwsgid(args: &[&str]) -> String {
    let out = Command::new(bin("uwsgid")).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// wrk through nginx from [`Wrk::start`] until [`Wrk::finish`] (SIGINT: wrk stops and prints
/// its report). A Lua hook counts the answers per wrk thread in files, so the test can wait for
/// progress; the report gives non-2xx answers and socket errors.
struct Wrk {
    child: Option<Child>,
    counts: std::path::PathBuf,
}

impl Wrk {
    fn start(dir: &TestDir, addr: &str) -> Wrk {
        let counts = dir.join("wrk-counts");
        std::fs::create_dir_all(&counts).unwrap();
        let script = dir.write(
            "count.lua",
            &format!(
                "local n = 0\n\
                 local threads = 0\n\
                 function setup(thread) threads = threads + 1; thread:set(\"id\", threads) end\n\
                 function response(status, headers, body)\n\
                   n = n + 1\n\
                   if n % 10 == 0 then\n\
                     local f = io.open(\"{}/\" .. id, \"w\"); f:write(n); f:close()\n\
                   end\n\
                 end\n",
                counts.display()
            ),
        );
        let child = Command::new("wrk")
            .args(["-t2", "-c8", "-d600s", "--timeout", "10s", "-s"])
            .arg(&script)
            .arg(format!("http://{addr}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wrk");
        Wrk {
            child: Some(child),
            counts,
        }
    }

    /// Answers counted so far (in steps of 10 per thread).
    fn answered(&self) -> u64 {
        std::fs::read_dir(&self.counts)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| t.trim().parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    }

    fn wait_more(&self, n: u64) {
        wait_for("wrk's answers", Duration::from_secs(60), || {
            (self.answered() >= n).then_some(())
        });
    }

    /// Stop wrk (SIGINT, then at most 20 s) and return its report.
    fn finish(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling the wrk process we started, by its pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let exited = wait_for("wrk to report", Duration::from_secs(20), || {
            child.try_wait().ok().flatten()
        });
        let out = child.wait_with_output().unwrap();
        assert!(
            exited.success() || exited.code().is_some(),
            "wrk: {exited:?}"
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn stats_generation(stats: &std::path::Path) -> Option<(u64, bool)> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(stats).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let v: serde_json::Value = serde_json::from_str(&raw).ok()?;
    let g = v["uwsgid"]["generation"].as_u64()?;
    let settled = v["uwsgid"]["reload"].is_null()
        && v["uwsgid"]["draining"]
            .as_array()
            .is_some_and(|d| d.is_empty())
        && all_ready(&v);
    Some((g, settled))
}

#[test]
fn the_classic_deployment_ini_behind_nginx() {
    if !require(
        nginx_binary().is_some(),
        "nginx",
        "apt-get install nginx (tests/run.sh does)",
    ) || !require(
        // SAFETY: geteuid has no memory effects.
        unsafe { libc::geteuid() } == 0,
        "root",
        "run the tests as root (CI does): the ini drops to uid nobody",
    ) || !require(
        std::path::Path::new(SYSTEM_PYTHON).exists(),
        SYSTEM_PYTHON,
        "apt-get install python3",
    ) || !require_program("wrk", "wrk (apt-get install wrk)")
    {
        return;
    }
    let dir = TestDir::new("deployment");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id").args(["-g", "nobody"]).output().unwrap();
    let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id").args(["-G", "nobody"]).output().unwrap();
    let groups = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // /run/app as systemd's RuntimeDirectory= makes it: owned by the app's user.
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
    let app = dir.write("app.py", APP);
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sock = run.join("app.sock");
    let pidfile = run.join("app.pid");
    let stats = run.join("stats.sock");
    let ini = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\n\
             socket = {sock}\n\
             chmod-socket = 666\n\
             uid = nobody\n\
             gid = {gid}\n\
             master = true\n\
             processes = 2\n\
             wsgi-file = {app}\n\
             die-on-term = true\n\
             vacuum = true\n\
             stats = {stats}\n\
             safe-pidfile = {pidfile}\n",
            sock = sock.display(),
            app = app.display(),
            stats = stats.display(),
            pidfile = pidfile.display(),
        ),
    );
    let log = std::fs::File::create(dir.join("uwsgid.log")).unwrap();
    let mut cmd = Command::new(bin("uwsgid"));
    cmd.args(["--ini", ini.to_str().unwrap()])
        .current_dir(&dir.path)
        // systemd's default PATH: the system interpreter (one under root's home is not
        // nobody's to run).
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let guard = Guard(cmd.spawn().unwrap());
    let master = guard.0.id() as i32;
    let log_text = || std::fs::read_to_string(dir.join("uwsgid.log")).unwrap_or_default();
    wait_for("the instance to serve", Duration::from_secs(60), || {
        assert!(alive(master), "uwsgid exited:\n{}", log_text());
        stats_generation(&stats).filter(|(g, s)| *g == 1 && *s)
    });
    assert_dropped(master, uid, gid, &groups, false);
    // The Python app runs on the native worker (or the stdlib runner in its pass), the
    // standby zygote too: every process but the master.
    let python: Vec<i32> = instance_pids(master)
        .into_iter()
        .filter(|&p| p != master)
        .collect();
    assert_python_program(&python);
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o666));
    assert_eq!(std::fs::metadata(&pidfile).unwrap().uid(), 0);

    let ngx = Nginx::start(&dir, &format!("unix:{}", sock.display()));
    let (status, body) = http_get(&ngx.addr, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.ends_with(&format!("as {uid}")), "{body}");

    let wrk = Wrk::start(&dir, &ngx.addr);
    wrk.wait_more(50);
    let pf = pidfile.to_str().unwrap();
    // 1: uwsgid --reload PIDFILE; 2: uwsgi.reload() from a request, through nginx.
    let said = uwsgid(&["--reload", pf, "--wait"]);
    assert!(said.contains("complete"), "{said}");
    let before = wrk.answered();
    wrk.wait_more(before + 30);
    let (status, body) = http_get(&ngx.addr, "/reload").unwrap();
    assert_eq!((status, body.as_str()), (200, "True"));
    let started = Instant::now();
    wait_for(
        "uwsgi.reload() to complete",
        Duration::from_secs(60),
        || stats_generation(&stats).filter(|(g, s)| *g == 3 && *s),
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let before = wrk.answered();
    wrk.wait_more(before + 30);
    let report = wrk.finish();
    let requests = report
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
    assert!(requests > 100, "{report}");
    assert!(
        !report.contains("Non-2xx or 3xx responses"),
        "failed requests through nginx:\n{report}\n{}",
        ngx.error_log_text()
    );
    if let Some(line) = report.lines().find(|l| l.contains("Socket errors:")) {
        let counts: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(counts.iter().all(|&n| n == 0), "socket errors:\n{report}");
    }
    eprintln!("{requests} requests by wrk through nginx across two reloads, none failed");
    assert_dropped(master, uid, gid, &groups, false);
    assert_eq!(log_text().matches("master pid").count(), 1, "one master");
    let python: Vec<i32> = instance_pids(master)
        .into_iter()
        .filter(|&p| p != master)
        .collect();
    assert_python_program(&python);

    let pids = instance_pids(master);
    uwsgid(&["--stop", pf, "--wait"]);
    let mut guard = guard;
    wait_for("uwsgid to exit", Duration::from_secs(20), || {
        guard.0.try_wait().ok().flatten()
    });
    for pid in pids {
        wait_for("every process to end", Duration::from_secs(10), || {
            (!alive(pid)).then_some(())
        });
    }
    let left: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}\n{}",
        run.display(),
        log_text()
    );
    drop(ngx);
}
