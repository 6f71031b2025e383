//! Is a pid a live uwsgid or uWSGI master, started before its pidfile was written?
//!
//! Read from `/proc`: the process name and parent (`stat`), its start time (`stat` field 22, in
//! clock ticks since boot, turned into wall time with `btime` from `/proc/stat`) and its
//! executable. A master is a process named `uwsgid` (or `uwsgi`) whose parent is not itself such
//! a process; workers are named `uwsgid:wN` and are never masters.
//!
//! The name alone proves nothing (any process can rename itself with `prctl(PR_SET_NAME)`, and
//! a script's name is its file's), so the executable decides too: `/proc/PID/exe` must be a
//! file whose name starts with `uwsgi` (`uwsgid`, `uwsgi`, Debian's `uwsgi-core`), owned by root
//! or by the effective uid and writable by neither group nor others. A renamed Python, a shell
//! script called `uwsgid`, or a copy of an interpreter another user placed is not a master.
//! (Another user's process whose executable we may not read is judged by its name: we could
//! neither signal it nor open its FIFO through its fds anyway.)

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What kind of master a pid is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterKind {
    Uwsgid,
    Uwsgi,
}

/// Facts about one live process.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub started: SystemTime,
    pub exe: Option<PathBuf>,
}

/// Why a pid is not the master we were asked to manage.
#[derive(Debug, PartialEq, Eq)]
pub enum MasterError {
    /// No such process (or a zombie): the pidfile is stale.
    Dead { pid: i32 },
    /// Alive, but not a uwsgid/uWSGI master.
    NotAMaster { pid: i32, comm: String },
    /// Named like a master, but its executable is not one (`why` says what it is).
    NotOurExe { pid: i32, comm: String, why: String },
    /// Started after the pidfile was written: the pid was reused.
    Younger { pid: i32, started_after: Duration },
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterError::Dead { pid } => write!(f, "pid {pid} is not running (stale pidfile)"),
            MasterError::NotAMaster { pid, comm } => {
                write!(f, "pid {pid} is {comm:?}, not a uwsgid or uWSGI master")
            }
            MasterError::NotOurExe { pid, comm, why } => write!(
                f,
                "pid {pid} is named {comm:?} but is not a uwsgid or uWSGI master: {why}"
            ),
            MasterError::Younger { pid, started_after } => write!(
                f,
                "pid {pid} started {:.1}s after the pidfile was written (pid reused)",
                started_after.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for MasterError {}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

fn boot_time() -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

impl ProcessInfo {
    /// Read a process from `/proc`; `None` if it does not exist.
    pub fn read(pid: i32) -> Option<ProcessInfo> {
        if pid <= 0 {
            return None;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm is in parentheses and may itself contain ") ": split at the last one.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let state = rest.first()?.chars().next()?;
        let ppid = rest.get(1)?.parse().ok()?;
        let start_ticks: u64 = rest.get(19)?.parse().ok()?;
        let ticks = clock_ticks();
        let started = boot_time()?
            + Duration::from_secs(start_ticks / ticks)
            + Duration::from_nanos((start_ticks % ticks) * 1_000_000_000 / ticks);
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        Some(ProcessInfo {
            pid,
            comm,
            state,
            ppid,
            started,
            exe,
        })
    }

    fn kind(&self) -> Option<MasterKind> {
        match self.comm.as_str() {
            "uwsgid" => Some(MasterKind::Uwsgid),
            "uwsgi" | "uWSGI master" => Some(MasterKind::Uwsgi),
            _ => None,
        }
    }

    /// True if the process is stopped (`T`: SIGSTOP, SIGTSTP, or job control) or traced (`t`).
    pub fn is_stopped(&self) -> bool {
        self.state == 'T' || self.state == 't'
    }
}

/// Why the executable of `pid` is not a uwsgid or uWSGI binary, or `None` if it is one.
pub fn exe_problem(pid: i32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let link = format!("/proc/{pid}/exe");
    let exe = match fs::read_link(&link) {
        Ok(p) => p,
        // Another user's process (no ptrace access): we cannot signal it or open its fds
        // either, so what it is changes nothing we could do to it; its name has to do.
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            return None
        }
        Err(e) => return Some(format!("its executable cannot be read ({link}: {e})")),
    };
    let shown = exe.to_string_lossy();
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.trim_end_matches(" (deleted)");
    if !name.starts_with("uwsgi") {
        return Some(format!("its executable is {shown}"));
    }
    // The binary may have been replaced since (a rebuild): the open one is what counts.
    let meta = match fs::metadata(&link) {
        Ok(m) => m,
        Err(e) => return Some(format!("its executable {shown} cannot be checked: {e}")),
    };
    // SAFETY: geteuid never fails and has no memory effects.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!(
            "its executable {shown} belongs to uid {}, neither root nor us",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "its executable {shown} has mode {:04o} (writable by group or others)",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Check that `pid` is a live master that started no later than `written` (the pidfile's mtime).
/// Start times are compared with one second of slack: `btime` has a one-second resolution.
pub fn check_master(pid: i32, written: Option<SystemTime>) -> Result<MasterKind, MasterError> {
    let info = match ProcessInfo::read(pid) {
        Some(info) if info.state != 'Z' && info.state != 'X' => info,
        _ => return Err(MasterError::Dead { pid }),
    };
    let kind = info.kind().ok_or_else(|| MasterError::NotAMaster {
        pid,
        comm: info.comm.clone(),
    })?;
    if let Some(why) = exe_problem(pid) {
        return Err(MasterError::NotOurExe {
            pid,
            comm: info.comm.clone(),
            why,
        });
    }
    if let Some(parent) = ProcessInfo::read(info.ppid) {
        if parent.kind() == Some(kind) {
            return Err(MasterError::NotAMaster {
                pid,
                comm: format!("{} worker", info.comm),
            });
        }
    }
    if let Some(written) = written {
        if let Ok(after) = info.started.duration_since(written) {
            if after > Duration::from_secs(1) {
                return Err(MasterError::Younger {
                    pid,
                    started_after: after,
                });
            }
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        assert_ne!(me.state, 'Z');
        assert!(me.started <= SystemTime::now() + Duration::from_secs(1));
    }

    #[test]
    fn a_test_binary_is_not_a_master() {
        let pid = std::process::id() as i32;
        assert!(matches!(
            check_master(pid, None),
            Err(MasterError::NotAMaster { .. })
        ));
    }

    #[test]
    fn a_dead_pid_is_stale() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert_eq!(check_master(pid, None), Err(MasterError::Dead { pid }));
    }
}
