//! The master's side of systemd's notify protocol, as a *sender* (`Type=notify`,
//! `Type=notify-reload`): datagrams of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`.
//!
//! Not to be confused with [`crate::notify`], the socket on which uwsgid itself *receives*
//! its workers' `READY=1`.
//!
//! - [`Notifier::from_env`] reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract
//!   namespace), `WATCHDOG_USEC` and `WATCHDOG_PID`. Without `NOTIFY_SOCKET` it returns `None`
//!   and the master sends nothing. A bad value is logged and ignored, never fatal.
//! - One datagram per state: [`Notifier::ready`] (`READY=1`), [`Notifier::reloading`]
//!   (`RELOADING=1` + `MONOTONIC_USEC=` of `CLOCK_MONOTONIC`, as `Type=notify-reload` requires;
//!   send `READY=1` again once the reload completes *or fails*: the instance serves either way),
//!   [`Notifier::stopping`], [`Notifier::status`] (`STATUS=`, sent only when the text changed,
//!   see [`status_text`]), [`Notifier::watchdog`] (`WATCHDOG=1`) and
//!   [`Notifier::extend_timeout`] (`EXTEND_TIMEOUT_USEC=`, for a long drain).
//! - Sends are non-blocking: a full or absent receiver costs a logged line, never a stall of the
//!   master's loop and never an exit.
//! - The watchdog: [`Notifier::watchdog_interval`] is half `WATCHDOG_USEC`, and `None` when
//!   `WATCHDOG_PID` names another process (systemd sets it when the watchdog is for someone
//!   else, e.g. the shell of an `ExecStart=` wrapper).
//!
//! Who keeps the address: the master re-executes itself on a graceful reload and its next image
//! must still reach systemd, with the same pid (so `WATCHDOG_PID` still matches). The variables
//! therefore stay in the *master's* environment, which crosses its own `execve` unchanged, and
//! are removed from what every other program gets: [`is_systemd_variable`] names them and
//! [`without_systemd_variables`] filters an environment for a child that execs something (the
//! exec workers' environment is already built without them, in [`crate::exec`]; the master's
//! `--check-config` child should use this filter). [`remove_from_process_env`] is for a process
//! that forked from the master and will exec, or for a master that stops notifying for good.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variables of the protocol the master keeps for itself.
pub const VARIABLES: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where the datagrams go, parsed from `NOTIFY_SOCKET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    /// `@name`: the abstract namespace (the name without the `@`).
    Abstract(Vec<u8>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(p) => write!(f, "{}", p.display()),
            Target::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// Why systemd cannot be notified: each names the `NOTIFY_SOCKET` value. Logged, never fatal:
/// the instance runs without notifying.
#[derive(Debug)]
pub enum Error {
    Empty,
    /// `@` alone.
    NoName,
    /// Longer than a Unix socket address holds (`max` bytes).
    TooLong {
        value: String,
        max: usize,
    },
    /// Neither an absolute path nor `@name` (or a path with a NUL byte).
    NotAnAddress {
        value: String,
    },
    /// The address is refused by the kernel's address rules.
    Address {
        target: Target,
        error: io::Error,
    },
    /// No datagram socket could be created.
    Socket(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Empty => f.write_str("NOTIFY_SOCKET is empty"),
            Error::NoName => f.write_str("NOTIFY_SOCKET=@ names no socket"),
            Error::TooLong { value, max } => {
                write!(f, "NOTIFY_SOCKET={value}: longer than {max} bytes")
            }
            Error::NotAnAddress { value } => {
                write!(f, "NOTIFY_SOCKET={value}: not an absolute path or @name")
            }
            Error::Address { target, error } => write!(f, "NOTIFY_SOCKET={target}: {error}"),
            Error::Socket(e) => write!(f, "cannot create a datagram socket: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parse a `NOTIFY_SOCKET` value: an absolute path, or `@name`.
pub fn parse_target(value: &[u8]) -> Result<Target, Error> {
    // sun_path holds 108 bytes, one of them the leading NUL (abstract) or the trailing one.
    const MAX: usize = 107;
    let shown = String::from_utf8_lossy(value);
    match value {
        [] => Err(Error::Empty),
        [b'@'] => Err(Error::NoName),
        [b'@', name @ ..] if name.len() > MAX => Err(Error::TooLong {
            value: shown.into_owned(),
            max: MAX,
        }),
        [b'@', name @ ..] => Ok(Target::Abstract(name.to_vec())),
        [b'/', ..] if value.len() > MAX => Err(Error::TooLong {
            value: shown.into_owned(),
            max: MAX,
        }),
        [b'/', ..] if !value.contains(&0) => Ok(Target::Path(std::path::PathBuf::from(
            std::ffi::OsStr::from_bytes(value),
        ))),
        _ => Err(Error::NotAnAddress {
            value: shown.into_owned(),
        }),
    }
}

/// Parse `WATCHDOG_USEC`/`WATCHDOG_PID` into the interval at which to send `WATCHDOG=1`: half
/// the timeout, and `None` when unset, zero, unparsable, or meant for another pid.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC=` against.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The `STATUS=` text: what `systemctl status` shows.
pub fn status_text(state: &str, generation: u64, ready: u32, total: u32) -> String {
    format!("{state}, generation {generation}, {ready}/{total} workers ready")
}

/// A sender to the service manager's notify socket.
pub struct Notifier {
    target: Target,
    addr: SocketAddr,
    socket: UnixDatagram,
    watchdog: Option<Duration>,
    last_status: Option<String>,
}

impl Notifier {
    /// From the process environment; `None` without `NOTIFY_SOCKET` or when it is unusable
    /// (logged).
    pub fn from_env() -> Option<Notifier> {
        let var = |k: &str| std::env::var_os(k);
        let socket = var("NOTIFY_SOCKET")?;
        let usec = var("WATCHDOG_USEC").map(|v| v.to_string_lossy().into_owned());
        let pid = var("WATCHDOG_PID").map(|v| v.to_string_lossy().into_owned());
        match Notifier::new(
            socket.as_bytes(),
            watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()),
        ) {
            Ok(n) => Some(n),
            Err(e) => {
                crate::log!("systemd notify: {e}; sending nothing to the service manager");
                None
            }
        }
    }

    /// A sender to `notify_socket` (a `NOTIFY_SOCKET` value) with the given watchdog interval.
    pub fn new(notify_socket: &[u8], watchdog: Option<Duration>) -> Result<Notifier, Error> {
        let target = parse_target(notify_socket)?;
        let addr = match &target {
            Target::Path(p) => SocketAddr::from_pathname(p),
            Target::Abstract(n) => SocketAddr::from_abstract_name(n),
        };
        let addr = match addr {
            Ok(a) => a,
            Err(error) => return Err(Error::Address { target, error }),
        };
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(Error::Socket)?;
        Ok(Notifier {
            target,
            addr,
            socket,
            watchdog,
            last_status: None,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How often to call [`Notifier::watchdog`]; `None`: no watchdog for us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one datagram; false (and a log line) when it could not be sent.
    pub fn send(&self, message: &str) -> bool {
        self.try_send(message)
            .map_err(|e| {
                let first = message.lines().next().unwrap_or_default();
                crate::log!(
                    "systemd notify: cannot send {first} to {}: {e}",
                    self.target
                );
            })
            .is_ok()
    }

    fn try_send(&self, message: &str) -> io::Result<()> {
        let n = self.socket.send_to_addr(message.as_bytes(), &self.addr)?;
        if n != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram cut short",
            ));
        }
        Ok(())
    }

    /// `READY=1`: the first generation is ready, or a reload ended (complete or failed).
    pub fn ready(&self) -> bool {
        self.send("READY=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now: a reload (of any kind) begins.
    pub fn reloading(&self) -> bool {
        self.send(&reloading_message(monotonic_usec()))
    }

    /// `STOPPING=1`: the instance stops (gracefully or not).
    pub fn stopping(&self) -> bool {
        self.send("STOPPING=1")
    }

    /// `STATUS=text`, sent only when it differs from the last one sent. Newlines are replaced,
    /// as one would end the value.
    pub fn status(&mut self, text: &str) -> bool {
        let text = text.replace('\n', " ");
        if self.last_status.as_deref() == Some(text.as_str()) {
            return false;
        }
        let sent = self.send(&format!("STATUS={text}"));
        if sent {
            self.last_status = Some(text);
        }
        sent
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> bool {
        self.send("WATCHDOG=1")
    }

    /// `EXTEND_TIMEOUT_USEC=`: ask for `more` time from now for the start, reload or stop under
    /// way (sent during a long drain, before the previous extension runs out).
    pub fn extend_timeout(&self, more: Duration) -> bool {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", more.as_micros()))
    }
}

/// The `RELOADING=1` datagram for a reload that began at `usec` on `CLOCK_MONOTONIC`.
pub fn reloading_message(usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Whether `key` is one of the protocol's variables, which only the master may use.
pub fn is_systemd_variable(key: &[u8]) -> bool {
    VARIABLES.iter().any(|v| v.as_bytes() == key)
}

/// `env` without the protocol's variables: the environment for a child that execs a program.
pub fn without_systemd_variables(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    env.into_iter()
        .filter(|(k, _)| !is_systemd_variable(k.as_bytes()))
        .collect()
}

/// Remove the protocol's variables from this process's environment. Only for a single-threaded
/// process: a child forked from the master before it execs, or a master that will never notify
/// again. The master itself keeps them (see the module docs).
pub fn remove_from_process_env() {
    for v in VARIABLES {
        // Single-threaded by this function's contract, so nothing reads the environment at once.
        std::env::remove_var(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn receiver_at_path() -> (tempdir::Dir, UnixDatagram, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("notify");
        let s = UnixDatagram::bind(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, s, path.to_str().unwrap().to_string())
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "uwsgid-sdnotify-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn parses_paths_and_abstract_names_and_refuses_the_rest() {
        assert_eq!(
            parse_target(b"/run/systemd/notify").unwrap(),
            Target::Path("/run/systemd/notify".into())
        );
        assert_eq!(
            parse_target(b"@sd-notify").unwrap(),
            Target::Abstract(b"sd-notify".to_vec())
        );
        for bad in [&b""[..], b"@", b"relative/path", b"/a\0b"] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(parse_target(long.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("longer"));
    }

    #[test]
    fn watchdog_is_half_the_timeout_and_only_for_our_pid() {
        assert_eq!(
            watchdog_interval(Some("3000000"), None, 7),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            watchdog_interval(Some("3000000"), Some("7"), 7),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(watchdog_interval(Some("3000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn sends_each_state_as_one_datagram_to_a_path_socket() {
        let (_dir, rx, path) = receiver_at_path();
        let mut n = Notifier::new(path.as_bytes(), None).unwrap();
        assert!(n.ready());
        assert_eq!(recv(&rx), "READY=1");
        let before = monotonic_usec();
        assert!(n.reloading());
        let after = monotonic_usec();
        let msg = recv(&rx);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC line")
            .parse()
            .unwrap();
        assert!(
            (before..=after).contains(&usec),
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.next(), None);
        assert!(n.status("running, generation 2, 4/4 workers ready"));
        assert_eq!(recv(&rx), "STATUS=running, generation 2, 4/4 workers ready");
        // Unchanged: not sent again; a newline cannot end the value early.
        assert!(!n.status("running, generation 2, 4/4 workers ready"));
        assert!(n.status("a\nb"));
        assert_eq!(recv(&rx), "STATUS=a b");
        assert!(n.watchdog());
        assert_eq!(recv(&rx), "WATCHDOG=1");
        assert!(n.extend_timeout(Duration::from_secs(90)));
        assert_eq!(recv(&rx), "EXTEND_TIMEOUT_USEC=90000000");
        assert!(n.stopping());
        assert_eq!(recv(&rx), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("uwsgid-sdnotify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(format!("@{name}").as_bytes(), None).unwrap();
        assert_eq!(n.target(), &Target::Abstract(name.into_bytes()));
        assert!(n.ready());
        assert_eq!(recv(&rx), "READY=1");
        assert!(n.stopping());
        assert_eq!(recv(&rx), "STOPPING=1");
    }

    #[test]
    fn a_missing_or_full_receiver_is_an_error_not_a_stall() {
        let (dir, rx, path) = receiver_at_path();
        let n = Notifier::new(path.as_bytes(), None).unwrap();
        // Fill the receiver's queue: the sender must not block.
        let start = std::time::Instant::now();
        let mut refused = false;
        for _ in 0..100_000 {
            if n.try_send("WATCHDOG=1").is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a full receiver refused nothing");
        assert!(!n.watchdog(), "a full receiver reported as sent");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(rx);
        std::fs::remove_file(dir.0.join("notify")).unwrap();
        assert!(!n.ready(), "sent to a socket that is gone");
    }

    #[test]
    fn children_get_the_environment_without_the_protocol_variables() {
        let env = [
            ("PATH", "/bin"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("WATCHDOG_USEC", "1000"),
            ("WATCHDOG_PID", "1"),
            ("WATCHDOG_USECX", "kept"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<_> = without_systemd_variables(env)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(kept, ["PATH", "WATCHDOG_USECX"]);
        assert_eq!(
            status_text("reloading", 3, 1, 4),
            "reloading, generation 3, 1/4 workers ready"
        );
        assert_eq!(reloading_message(42), "RELOADING=1\nMONOTONIC_USEC=42");
    }
}
