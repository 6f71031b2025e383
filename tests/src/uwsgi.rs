//! [`Uwsgi`], a guard for a real uWSGI 2.0 master with the python3 plugin (the reference the
//! uwsgictl tests also run against): started from an ini file in a [`TestDir`] on a free
//! loopback port, polled until every worker accepts, stopped on drop with SIGINT and then
//! `killpg(SIGKILL)` on the group it leads. [`uwsgi_available`] is its [`require`] check.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ctl::http_get;
use crate::{free_port, poll, require, wait_for, TestDir};

/// Is real uWSGI with the python3 plugin here? Without it: skip with a message, except in CI
/// (`CI=true`), where its absence is a failure.
pub fn uwsgi_available() -> bool {
    let present = Path::new("/usr/bin/uwsgi").exists()
        && (Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists()
            || Command::new("/usr/bin/uwsgi")
                .args(["--plugin", "python3", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()));
    require(
        present,
        "/usr/bin/uwsgi with the python3 plugin",
        "apt-get install uwsgi-core uwsgi-plugin-python3",
    )
}

const WSGI_APP: &str = r#"
import os, time
def application(env, start_response):
    path = env.get('PATH_INFO', '')
    if path == '/sleep':
        q = env.get('QUERY_STRING', '')
        ms = int(q.split('=', 1)[1]) if '=' in q else 1000
        time.sleep(ms / 1000.0)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    if path == '/pid':
        return [str(os.getpid()).encode()]
    return [b'Hello World']
"#;

/// A real uWSGI 2.0 master on loopback, stopped (SIGINT, then SIGKILL to its group) on drop.
pub struct Uwsgi {
    child: Child,
    pub pid: i32,
    pub port: u16,
    pub pidfile: PathBuf,
    pub stats: PathBuf,
    pub fifo: PathBuf,
    pub ini: PathBuf,
    pub log: PathBuf,
}

impl Uwsgi {
    pub fn start(dir: &TestDir, processes: u32) -> Uwsgi {
        let app = dir.join("app.py");
        fs::write(&app, WSGI_APP).unwrap();
        let port = free_port();
        let pidfile = dir.join("uwsgi.pid");
        let stats = dir.join("stats.sock");
        let fifo = dir.join("master.fifo");
        let log = dir.join("uwsgi.log");
        let ini = dir.join("app.ini");
        fs::write(
            &ini,
            format!(
                "[uwsgi]\nmaster = true\nplugin = python3\nhttp-socket = 127.0.0.1:{port}\n\
                 wsgi-file = %dapp.py\nprocesses = {processes}\nsafe-pidfile = {}\n\
                 stats = {}\nmaster-fifo = {}\nlogto = {}\nworker-reload-mercy = 10\n",
                pidfile.display(),
                stats.display(),
                fifo.display(),
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/uwsgi")
            .arg("--ini")
            .arg(&ini)
            .current_dir(&dir.path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uwsgi");
        let pid = child.id() as i32;
        let mut u = Uwsgi {
            child,
            pid,
            port,
            pidfile,
            stats,
            fifo,
            ini,
            log,
        };
        u.wait_ready();
        u
    }

    fn wait_ready(&mut self) {
        wait_for("uwsgi to become ready", Duration::from_secs(20), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "uwsgi exited during startup ({status}); log:\n{}",
                    self.log_text()
                );
            }
            let pidfile_ok =
                fs::read_to_string(&self.pidfile).is_ok_and(|t| t.trim() == self.pid.to_string());
            (pidfile_ok
                && self.stats_doc().is_some_and(|d| {
                    d["workers"]
                        .as_array()
                        .is_some_and(|ws| ws.iter().all(|w| w["accepting"] == 1 && w["pid"] != 0))
                })
                && http_get(self.port, "/").is_ok_and(|(c, _)| c == 200))
            .then_some(())
        });
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The stats document, read directly (not through uwsgictl).
    pub fn stats_doc(&self) -> Option<serde_json::Value> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.stats).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok()
    }

    pub fn worker_pids(&self) -> Vec<i64> {
        self.stats_doc()
            .map(|d| {
                d["workers"]
                    .as_array()
                    .map(|ws| ws.iter().filter_map(|w| w["pid"].as_i64()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The target options for uwsgictl: pidfile, stats, FIFO.
    pub fn target(&self) -> Vec<String> {
        vec![
            "--pidfile".into(),
            self.pidfile.display().to_string(),
            "--stats".into(),
            self.stats.display().to_string(),
            "--fifo".into(),
            self.fifo.display().to_string(),
        ]
    }

    /// True once the master process has exited (reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Uwsgi {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        // SAFETY: signals to our own child (and the group it leads); no memory effects.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        poll(Duration::from_secs(5), || self.exited().then_some(()));
        // SAFETY: as above.
        unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- uwsgi log ---\n{}", self.log_text());
        }
    }
}
