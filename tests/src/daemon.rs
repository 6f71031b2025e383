//! [`Daemon`], the one guard for a uwsgid under test: it starts uwsgid in its own process
//! group with its pidfile, FIFO, stats socket and log inside a [`TestDir`] and a kernel-chosen
//! port, waits (against a deadline) until every worker is ready, and on drop stops it through
//! the FIFO, then `killpg(SIGKILL)` on the group it leads as the last resort. When a test
//! fails, the daemon's log is printed. `ctl::Uwsgid` (an instance started from an ini file, or
//! a named one) is a thin layer over it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{bin, group_members, http_get, is_zombie, poll, wait_for, TestDir};

/// A running uwsgid under test.
pub struct Daemon {
    pub child: Child,
    pub pid: i32,
    pub dir: PathBuf,
    pub pidfile: PathBuf,
    pub fifo: PathBuf,
    pub stats: PathBuf,
    pub log: PathBuf,
    pub addr: String,
    stopped: bool,
}

impl Daemon {
    /// Start uwsgid with `extra` arguments after the harness's own (pidfile, FIFO, stats,
    /// loopback port 0, demo routes), and wait until it serves.
    pub fn start(dir: &TestDir, extra: &[&str]) -> Daemon {
        let mut d = Daemon::spawn(dir, extra);
        d.wait_running();
        d
    }

    /// Start without waiting.
    pub fn spawn(dir: &TestDir, extra: &[&str]) -> Daemon {
        Daemon::spawn_with(dir, extra, &bin("uwsgid"), true)
    }

    pub fn spawn_with(dir: &TestDir, extra: &[&str], exe: &Path, defaults: bool) -> Daemon {
        Daemon::spawn_env(dir, extra, exe, defaults, &[])
    }

    /// [`Daemon::spawn_with`] with extra environment variables.
    pub fn spawn_env(
        dir: &TestDir,
        extra: &[&str],
        exe: &Path,
        defaults: bool,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::spawn_command(dir, extra, exe, defaults, &mut |cmd| {
            cmd.envs(env.iter().copied());
        })
    }

    /// [`Daemon::spawn_with`], letting `configure` change the command (environment, fds
    /// passed by a `pre_exec`) before it is spawned.
    pub fn spawn_command(
        dir: &TestDir,
        extra: &[&str],
        exe: &Path,
        defaults: bool,
        configure: &mut dyn FnMut(&mut Command),
    ) -> Daemon {
        let pidfile = dir.join("uwsgid.pid");
        let fifo = dir.join("master.fifo");
        let stats = dir.join("stats.sock");
        let log = dir.join("uwsgid.log");
        let mut args: Vec<String> = Vec::new();
        if defaults {
            args.extend(
                [
                    "--safe-pidfile",
                    pidfile.to_str().unwrap(),
                    "--master-fifo",
                    fifo.to_str().unwrap(),
                    "--stats",
                    stats.to_str().unwrap(),
                    "--demo-routes",
                ]
                .map(String::from),
            );
            if !extra.contains(&"--http-socket") {
                args.extend(["--http-socket".to_string(), "127.0.0.1:0".to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(&args)
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn uwsgid");
        let pid = child.id() as i32;
        Daemon {
            child,
            pid,
            dir: dir.path.clone(),
            pidfile,
            fifo,
            stats,
            log,
            addr: String::new(),
            stopped: false,
        }
    }

    /// Wait until the pidfile names us and every worker is ready; learn the HTTP address.
    pub fn wait_running(&mut self) -> Value {
        self.addr = self.wait_record();
        self.wait_stats("every worker ready", |s| all_ready(s).then_some(()));
        self.stats()
    }

    /// Wait until the pidfile's instance record names this daemon (without waiting for the
    /// workers, for instances that never get ready); its first listener address.
    pub fn wait_record(&self) -> String {
        let record = wait_for("the instance record", Duration::from_secs(20), || {
            self.assert_alive();
            common::discovery::read_record(&self.pidfile)
                .ok()
                .filter(|r| r.pid == self.pid)
        });
        record.listeners.first().cloned().unwrap_or_default()
    }

    /// Start with exactly `args` (none of the harness's own): the caller names the pidfile
    /// (`--safe-pidfile`) and the rest; returns once the pidfile record names it.
    pub fn spawn_bare(dir: &TestDir, args: &[&str]) -> Daemon {
        let d = Daemon::spawn_with(dir, args, &bin("uwsgid"), false);
        d.wait_record();
        d
    }

    pub fn assert_alive(&self) {
        // SAFETY: kill with signal 0 only checks existence.
        let alive = unsafe { libc::kill(self.pid, 0) } == 0 && !is_zombie(self.pid);
        if !alive {
            panic!("uwsgid exited early; log:\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle`; returns the log.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(
            &format!("log line {needle:?}"),
            Duration::from_secs(20),
            || {
                let t = self.log_text();
                t.contains(needle).then_some(t)
            },
        )
    }

    /// Number of times `needle` occurs in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// The stats document, or None if the socket does not answer right now.
    pub fn try_stats(&self) -> Option<Value> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.stats).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn stats(&self) -> Value {
        wait_for("a stats document", Duration::from_secs(10), || {
            self.try_stats()
        })
    }

    pub fn wait_stats<T>(&self, what: &str, mut f: impl FnMut(&Value) -> Option<T>) -> T {
        wait_for(what, Duration::from_secs(20), || {
            self.assert_alive();
            self.try_stats().and_then(|s| f(&s))
        })
    }

    pub fn generation(&self) -> u64 {
        self.stats()["uwsgid"]["generation"].as_u64().unwrap()
    }

    /// Wait until a reload to at least `generation` is complete.
    pub fn wait_generation(&self, generation: u64) -> Value {
        self.wait_stats(&format!("generation {generation} complete"), |s| {
            let u = &s["uwsgid"];
            let done = u["generation"].as_u64() >= Some(generation)
                && u["reload"].is_null()
                && u["draining"].as_array().is_some_and(|d| d.is_empty())
                && all_ready(s);
            done.then(|| s.clone())
        })
    }

    pub fn worker_pids(&self) -> Vec<i64> {
        let s = self.stats();
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_i64().unwrap())
            .collect()
    }

    /// The pid of the one worker (`--processes 1`); panics if there are more or none.
    pub fn only_worker(&self) -> i32 {
        let pids = self.worker_pids();
        assert_eq!(pids.len(), 1, "one worker expected: {pids:?}");
        pids[0] as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling the daemon we started, by its pid.
        let ret = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(ret, 0, "kill({}, {sig})", self.pid);
    }

    /// Write bytes to the master FIFO (non-blocking open: fails if nobody reads).
    pub fn fifo_write(&self, bytes: &[u8]) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo)
            .expect("open master FIFO");
        // A large write may need the master to read: switch to blocking writes.
        // SAFETY: fcntl on our own fd.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            libc::fcntl(fd, libc::F_SETFL, 0);
        }
        f.write_all(bytes).expect("write master FIFO");
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.addr, path)
    }

    /// Start `GET path` on a thread and return once a worker is busy with it: its request
    /// shown in the stats (a worker marks itself busy a moment before it records which
    /// request, so busy alone could be seen before a SIGUSR2 report or a drain would know it).
    pub fn request_in_flight(
        &self,
        path: &str,
    ) -> std::thread::JoinHandle<Result<(u16, String), String>> {
        let shown = format!("PATH_INFO={}", path.split('?').next().unwrap_or(path));
        let (addr, path) = (self.addr.clone(), path.to_string());
        let handle = std::thread::spawn(move || http_get(&addr, &path));
        self.wait_stats("the request in flight", |s| {
            s["workers"]
                .as_array()?
                .iter()
                .any(|w| {
                    w["status"] == "busy"
                        && w["cores"][0]["vars"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|x| *x == shown))
                })
                .then_some(())
        });
        handle
    }

    /// Wait for the master to exit; returns its raw wait status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        let status = wait_for("uwsgid to exit", timeout, || {
            child.try_wait().ok().flatten()
        });
        self.stopped = true;
        status
    }

    /// Pids of live processes in the daemon's process group (master and built-in workers).
    pub fn group_pids(&self) -> Vec<i32> {
        group_members(self.pid)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- uwsgid log ({}) ----\n{}\n---- end of log ----",
                self.log.display(),
                self.log_text()
            );
        }
        if !self.stopped {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stopped = true;
            }
        }
        if !self.stopped {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.fifo)
            {
                let _ = f.write_all(b"Q");
            }
            let child = &mut self.child;
            if poll(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_some() {
                self.stopped = true;
            }
        }
        // Last resort, and for anything left in the group: the group we created, by its id.
        // SAFETY: killpg on the process group we created for this daemon.
        unsafe {
            libc::killpg(self.pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub fn all_ready(s: &Value) -> bool {
    s["workers"].as_array().is_some_and(|ws| {
        !ws.is_empty()
            && ws.iter().all(|w| {
                w["uwsgid"]["ready"].as_bool() == Some(true) && w["pid"].as_i64() > Some(0)
            })
    })
}
