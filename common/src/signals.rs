//! The master's signal table: one list that drives uwsgid's handlers' docs, `uwsgictl signal`
//! and the man pages.

/// A signal the master obeys, and what it does.
#[derive(Clone, Copy, Debug)]
pub struct SignalAction {
    pub name: &'static str,
    pub number: i32,
    pub action: &'static str,
}

pub const MASTER_SIGNALS: &[SignalAction] = &[
    SignalAction {
        name: "HUP",
        number: libc::SIGHUP,
        action: "graceful reload of workers and master (same pid)",
    },
    SignalAction {
        name: "TERM",
        number: libc::SIGTERM,
        action: "brutal reload; with --die-on-term a graceful shutdown",
    },
    SignalAction {
        name: "INT",
        number: libc::SIGINT,
        action: "kill the whole stack at once",
    },
    SignalAction {
        name: "QUIT",
        number: libc::SIGQUIT,
        action: "kill the whole stack at once",
    },
    SignalAction {
        name: "USR1",
        number: libc::SIGUSR1,
        action: "print statistics to the log",
    },
    SignalAction {
        name: "USR2",
        number: libc::SIGUSR2,
        action: "print worker status to the log",
    },
    SignalAction {
        name: "URG",
        number: libc::SIGURG,
        action:
            "rollback: abort a reload under way, else restore the parked snapshot (--auto-snapshot)",
    },
    SignalAction {
        name: "TSTP",
        number: libc::SIGTSTP,
        action: "toggle pause/resume",
    },
    SignalAction {
        name: "WINCH",
        number: libc::SIGWINCH,
        action: "wake the workers (forwarded)",
    },
    SignalAction {
        name: "FPE",
        number: libc::SIGFPE,
        action: "log a backtrace, then die by the signal",
    },
    SignalAction {
        name: "SEGV",
        number: libc::SIGSEGV,
        action: "log a backtrace, then die by the signal",
    },
    SignalAction {
        name: "PIPE",
        number: libc::SIGPIPE,
        action: "ignored",
    },
    SignalAction {
        name: "CHLD",
        number: libc::SIGCHLD,
        action: "reap workers",
    },
];

/// Look a signal up by name, with or without the `SIG` prefix, any case, or by number.
pub fn lookup(name: &str) -> Option<SignalAction> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    MASTER_SIGNALS
        .iter()
        .copied()
        .find(|s| s.name == bare || bare.parse::<i32>().ok() == Some(s.number))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup_accepts_common_spellings() {
        assert_eq!(super::lookup("sighup").unwrap().number, libc::SIGHUP);
        assert_eq!(super::lookup("TSTP").unwrap().number, libc::SIGTSTP);
        assert_eq!(super::lookup("10").unwrap().name, "USR1");
        assert!(super::lookup("SIGFOO").is_none());
    }
}
