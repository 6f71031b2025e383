//! Master FIFO commands: one byte each, uWSGI's bytes where uWSGI has one.
//!
//! A writer opens the FIFO with `O_WRONLY | O_NONBLOCK` (`ENXIO` means no master is reading) and
//! writes any number of command bytes; the master executes them in order. Whitespace is ignored
//! silently (so `echo r > fifo` works); bytes uWSGI uses for features uwsgid does not have are
//! refused with a log line. A read that contains any other byte is garbage: the master refuses
//! it whole, executes nothing of it and logs it once (so a stray write of random bytes cannot
//! stop or pause an instance).
//!
//! uwsgid adds three bytes uWSGI does not use: `h` (hold: pause, idempotent), `u` (unhold: resume,
//! idempotent) and `b` (back: roll back to the parked snapshot generation).

/// One master FIFO command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FifoCommand {
    /// `r`: graceful reload of workers and master.
    Reload,
    /// `R`: brutal reload: old workers are killed at once.
    BrutalReload,
    /// `w`: graceful reload of the workers only.
    WorkersReload,
    /// `W`: brutal reload of the workers only.
    BrutalWorkersReload,
    /// `c`: chain reload, one worker at a time.
    ChainReload,
    /// `q`: graceful shutdown.
    Stop,
    /// `Q`: brutal shutdown.
    BrutalStop,
    /// `p`: toggle pause/resume, as SIGTSTP.
    TogglePause,
    /// `h`: pause (uwsgid only); does nothing when already paused.
    Pause,
    /// `u`: resume (uwsgid only); does nothing when not paused.
    Resume,
    /// `b`: roll back to the snapshot generation (uwsgid only).
    Rollback,
    /// `s`: statistics to the log, as SIGUSR1.
    Stats,
    /// `l`: reopen the log file.
    ReopenLog,
    /// `L`: rotate the log file.
    RotateLog,
    /// `P`: rewrite the pidfile(s).
    WritePidfile,
    /// `+`: one worker more.
    AddWorker,
    /// `-`: one worker less.
    RemoveWorker,
    /// `0`-`9`: make FIFO slot N the active one.
    Slot(u8),
}

/// What one byte read from the FIFO means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    Command(FifoCommand),
    /// Spaces, tabs and newlines: ignored without a log line.
    Whitespace,
    /// A byte uWSGI gives a meaning uwsgid does not have (`f`, `C`, `B`, `E`, `S`).
    UwsgiOnly(u8),
    /// Anything else.
    Unknown(u8),
}

/// Bytes uWSGI defines for features uwsgid does not implement, with uWSGI's meaning.
pub const UWSGI_ONLY: &[(u8, &str)] = &[
    (b'f', "re-fork the master"),
    (b'C', "go cheap"),
    (b'B', "ask the Emperor for reinforcements"),
    (b'E', "Emperor rescan"),
    (b'S', "toggle subscriptions blocking"),
];

impl FifoCommand {
    /// Every command, slots as `Slot(0)` only; drives help text, man pages and tests.
    pub const ALL: &'static [FifoCommand] = &[
        FifoCommand::Reload,
        FifoCommand::BrutalReload,
        FifoCommand::WorkersReload,
        FifoCommand::BrutalWorkersReload,
        FifoCommand::ChainReload,
        FifoCommand::Stop,
        FifoCommand::BrutalStop,
        FifoCommand::TogglePause,
        FifoCommand::Pause,
        FifoCommand::Resume,
        FifoCommand::Rollback,
        FifoCommand::Stats,
        FifoCommand::ReopenLog,
        FifoCommand::RotateLog,
        FifoCommand::WritePidfile,
        FifoCommand::AddWorker,
        FifoCommand::RemoveWorker,
        FifoCommand::Slot(0),
    ];

    pub fn as_byte(self) -> u8 {
        match self {
            FifoCommand::Reload => b'r',
            FifoCommand::BrutalReload => b'R',
            FifoCommand::WorkersReload => b'w',
            FifoCommand::BrutalWorkersReload => b'W',
            FifoCommand::ChainReload => b'c',
            FifoCommand::Stop => b'q',
            FifoCommand::BrutalStop => b'Q',
            FifoCommand::TogglePause => b'p',
            FifoCommand::Pause => b'h',
            FifoCommand::Resume => b'u',
            FifoCommand::Rollback => b'b',
            FifoCommand::Stats => b's',
            FifoCommand::ReopenLog => b'l',
            FifoCommand::RotateLog => b'L',
            FifoCommand::WritePidfile => b'P',
            FifoCommand::AddWorker => b'+',
            FifoCommand::RemoveWorker => b'-',
            FifoCommand::Slot(n) => b'0' + n.min(9),
        }
    }

    pub fn from_byte(byte: u8) -> Option<FifoCommand> {
        Some(match byte {
            b'r' => FifoCommand::Reload,
            b'R' => FifoCommand::BrutalReload,
            b'w' => FifoCommand::WorkersReload,
            b'W' => FifoCommand::BrutalWorkersReload,
            b'c' => FifoCommand::ChainReload,
            b'q' => FifoCommand::Stop,
            b'Q' => FifoCommand::BrutalStop,
            b'p' => FifoCommand::TogglePause,
            b'h' => FifoCommand::Pause,
            b'u' => FifoCommand::Resume,
            b'b' => FifoCommand::Rollback,
            b's' => FifoCommand::Stats,
            b'l' => FifoCommand::ReopenLog,
            b'L' => FifoCommand::RotateLog,
            b'P' => FifoCommand::WritePidfile,
            b'+' => FifoCommand::AddWorker,
            b'-' => FifoCommand::RemoveWorker,
            b'0'..=b'9' => FifoCommand::Slot(byte - b'0'),
            _ => return None,
        })
    }

    /// A stable, lowercase name for logs, JSON and the command line.
    pub fn name(self) -> &'static str {
        match self {
            FifoCommand::Reload => "reload",
            FifoCommand::BrutalReload => "brutal-reload",
            FifoCommand::WorkersReload => "workers-reload",
            FifoCommand::BrutalWorkersReload => "brutal-workers-reload",
            FifoCommand::ChainReload => "chain-reload",
            FifoCommand::Stop => "stop",
            FifoCommand::BrutalStop => "brutal-stop",
            FifoCommand::TogglePause => "toggle-pause",
            FifoCommand::Pause => "pause",
            FifoCommand::Resume => "resume",
            FifoCommand::Rollback => "rollback",
            FifoCommand::Stats => "stats",
            FifoCommand::ReopenLog => "reopen-log",
            FifoCommand::RotateLog => "rotate-log",
            FifoCommand::WritePidfile => "write-pidfile",
            FifoCommand::AddWorker => "add-worker",
            FifoCommand::RemoveWorker => "remove-worker",
            FifoCommand::Slot(_) => "slot",
        }
    }

    /// One line for help text and the man page.
    pub fn describe(self) -> &'static str {
        match self {
            FifoCommand::Reload => "graceful reload of workers and master",
            FifoCommand::BrutalReload => "brutal reload: old workers are killed at once",
            FifoCommand::WorkersReload => "graceful reload of the workers only",
            FifoCommand::BrutalWorkersReload => "brutal reload of the workers only",
            FifoCommand::ChainReload => "chain reload: one worker at a time, next once ready",
            FifoCommand::Stop => "graceful shutdown within the mercy",
            FifoCommand::BrutalStop => "brutal shutdown",
            FifoCommand::TogglePause => "toggle pause/resume (as SIGTSTP)",
            FifoCommand::Pause => "pause; nothing if already paused (uwsgid only)",
            FifoCommand::Resume => "resume; nothing if not paused (uwsgid only)",
            FifoCommand::Rollback => {
                "rollback: abort a reload under way, else restore the parked snapshot (uwsgid only, --auto-snapshot)"
            }
            FifoCommand::Stats => "statistics to the log (as SIGUSR1)",
            FifoCommand::ReopenLog => "reopen the log file",
            FifoCommand::RotateLog => "rotate the log file (rename to FILE.EPOCH, reopen)",
            FifoCommand::WritePidfile => "rewrite the pidfile(s)",
            FifoCommand::AddWorker => "one worker more, at runtime",
            FifoCommand::RemoveWorker => "one worker less, at runtime",
            FifoCommand::Slot(_) => "0-9: make FIFO slot N the active one",
        }
    }
}

/// Decode one byte read from the FIFO.
pub fn decode(byte: u8) -> Decoded {
    if let Some(command) = FifoCommand::from_byte(byte) {
        return Decoded::Command(command);
    }
    if byte.is_ascii_whitespace() || byte == 0 {
        return Decoded::Whitespace;
    }
    if UWSGI_ONLY.iter().any(|&(b, _)| b == byte) {
        return Decoded::UwsgiOnly(byte);
    }
    Decoded::Unknown(byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for byte in 0..=255u8 {
            if let Some(command) = FifoCommand::from_byte(byte) {
                assert_eq!(command.as_byte(), byte);
            }
        }
        for &command in FifoCommand::ALL {
            assert_eq!(FifoCommand::from_byte(command.as_byte()), Some(command));
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = FifoCommand::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FifoCommand::ALL.len());
    }

    #[test]
    fn decodes_whitespace_and_refusals() {
        assert_eq!(decode(b'\n'), Decoded::Whitespace);
        assert_eq!(decode(b'f'), Decoded::UwsgiOnly(b'f'));
        assert_eq!(decode(b'x'), Decoded::Unknown(b'x'));
        assert_eq!(decode(b'7'), Decoded::Command(FifoCommand::Slot(7)));
    }
}
