//! The exit codes of every command that acts on a master (uwsgictl, and uwsgid's pidfile
//! conveniences such as `uwsgid --reload PIDFILE`), so both tools report the same failure with
//! the same number; and which code each pidfile or master-validation error maps to.
//!
//! Each failure a script may want to tell apart has its own code, so a deploy script can
//! distinguish "the pidfile is stale" from "the new code crash-loops" from "it took too long".
//! `status` alone follows the LSB convention (0 running, 1 dead but the pidfile exists, 3 not
//! running, 4 unknown); [`Exit::ALL`] drives the man page.

use crate::pidfile::PidfileError;
use crate::process::MasterError;

/// A process exit code with a stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    Ok,
    Failure,
    Usage,
    NotRunning,
    Unknown,
    Permission,
    PidfileEmpty,
    PidfileNotANumber,
    PidfileReserved,
    PidfileOutOfRange,
    PidfileUnreadable,
    Stale,
    NotAMaster,
    PidReused,
    Timeout,
    MasterDied,
    ReloadFailed,
    Stats,
    Fifo,
    NoSnapshot,
}

impl Exit {
    /// Every code, in numeric order; drives the man page and a uniqueness test.
    pub const ALL: &'static [Exit] = &[
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::NotRunning,
        Exit::Unknown,
        Exit::Permission,
        Exit::PidfileEmpty,
        Exit::PidfileNotANumber,
        Exit::PidfileReserved,
        Exit::PidfileOutOfRange,
        Exit::PidfileUnreadable,
        Exit::Stale,
        Exit::NotAMaster,
        Exit::PidReused,
        Exit::Timeout,
        Exit::MasterDied,
        Exit::ReloadFailed,
        Exit::Stats,
        Exit::Fifo,
        Exit::NoSnapshot,
    ];

    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NotRunning => 3,
            Exit::Unknown => 4,
            Exit::Permission => 5,
            Exit::PidfileEmpty => 10,
            Exit::PidfileNotANumber => 11,
            Exit::PidfileReserved => 12,
            Exit::PidfileOutOfRange => 13,
            Exit::PidfileUnreadable => 14,
            Exit::Stale => 15,
            Exit::NotAMaster => 16,
            Exit::PidReused => 17,
            Exit::Timeout => 20,
            Exit::MasterDied => 21,
            Exit::ReloadFailed => 22,
            Exit::Stats => 23,
            Exit::Fifo => 24,
            Exit::NoSnapshot => 25,
        }
    }

    /// A stable identifier, used as `error.kind` in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failure => "failure",
            Exit::Usage => "usage",
            Exit::NotRunning => "not-running",
            Exit::Unknown => "unknown",
            Exit::Permission => "permission",
            Exit::PidfileEmpty => "pidfile-empty",
            Exit::PidfileNotANumber => "pidfile-not-a-number",
            Exit::PidfileReserved => "pidfile-reserved-pid",
            Exit::PidfileOutOfRange => "pidfile-out-of-range",
            Exit::PidfileUnreadable => "pidfile-unreadable",
            Exit::Stale => "stale-pidfile",
            Exit::NotAMaster => "not-a-master",
            Exit::PidReused => "pid-reused",
            Exit::Timeout => "timeout",
            Exit::MasterDied => "master-died",
            Exit::ReloadFailed => "reload-failed",
            Exit::Stats => "stats-error",
            Exit::Fifo => "fifo-error",
            Exit::NoSnapshot => "no-snapshot",
        }
    }

    /// One line for the man page.
    pub fn describe(self) -> &'static str {
        match self {
            Exit::Ok => "success; for status: the instance is running",
            Exit::Failure => {
                "the operation failed; for status: the master is dead but its pidfile exists"
            }
            Exit::Usage => "bad command line, or the target lacks what the command needs",
            Exit::NotRunning => "not running: the pidfile does not exist, nothing answers",
            Exit::Unknown => "status only: the state could not be determined (unreadable pidfile)",
            Exit::Permission => "not allowed to signal the master (another user's process)",
            Exit::PidfileEmpty => "the pidfile is empty",
            Exit::PidfileNotANumber => "the pidfile does not hold a decimal number",
            Exit::PidfileReserved => "the pidfile holds pid 0 or 1",
            Exit::PidfileOutOfRange => "the pidfile holds a negative or too large number",
            Exit::PidfileUnreadable => {
                "the pidfile is not a regular file, is too large or cannot be read"
            }
            Exit::Stale => "the pid in the pidfile is not running (stale pidfile)",
            Exit::NotAMaster => "the pid is alive but not a uwsgid or uWSGI master",
            Exit::PidReused => "the pid started after the pidfile was written (pid reused)",
            Exit::Timeout => "--wait: the timeout passed before the operation completed",
            Exit::MasterDied => "--wait: the master died while reloading",
            Exit::ReloadFailed => "--wait: the new generation failed or its workers crash-loop",
            Exit::Stats => "the stats server is unreachable or sent a malformed document",
            Exit::Fifo => "the master FIFO is missing, not a FIFO, or nobody reads it",
            Exit::NoSnapshot => "rollback: no snapshot generation is parked; nothing was sent",
        }
    }
}

/// The exit code of a pidfile that cannot be read, and what to do about it.
pub fn pidfile_exit(err: &PidfileError) -> (Exit, &'static str) {
    match err {
        PidfileError::Missing(_) => (
            Exit::NotRunning,
            "the instance is not running, or give its pidfile with --pidfile, --ini or --name",
        ),
        PidfileError::Empty(_) => (
            Exit::PidfileEmpty,
            "nothing was sent; if no instance is starting, remove the file",
        ),
        PidfileError::NotANumber { .. } => (
            Exit::PidfileNotANumber,
            "nothing was sent; check --pidfile names a pidfile, or remove the file",
        ),
        PidfileError::Reserved { .. } => (
            Exit::PidfileReserved,
            "nothing was sent; remove the file and restart the instance",
        ),
        PidfileError::OutOfRange { .. } => (
            Exit::PidfileOutOfRange,
            "nothing was sent; remove the file and restart the instance",
        ),
        PidfileError::NotRegular { .. } | PidfileError::TooLarge { .. } => (
            Exit::PidfileUnreadable,
            "nothing was sent; check --pidfile names the instance's pidfile",
        ),
        PidfileError::Io { .. } => (
            Exit::PidfileUnreadable,
            "nothing was sent; check the file's permissions",
        ),
    }
}

/// The exit code of a pid that is not the master, and what to do about it.
pub fn master_exit(err: &MasterError) -> (Exit, &'static str) {
    match err {
        MasterError::Dead { .. } => (
            Exit::Stale,
            "nothing was sent; the instance is not running: remove the stale pidfile or start it",
        ),
        MasterError::NotAMaster { .. } => (
            Exit::NotAMaster,
            "nothing was sent; the pidfile is stale and its pid now belongs to another program: \
             remove the file",
        ),
        MasterError::NotOurExe { .. } => (
            Exit::NotAMaster,
            "nothing was sent; the pidfile names a process that only takes a master's name (its \
             pid was reused, or it is a decoy): remove the file",
        ),
        MasterError::Younger { .. } => (
            Exit::PidReused,
            "nothing was sent; the master that wrote the pidfile is gone: remove the file",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_distinct() {
        let mut codes: Vec<i32> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len());
        let mut names: Vec<&str> = Exit::ALL.iter().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Exit::ALL.len());
    }
}
