//! What a master passes to its own next image across `execve`.
//!
//! The old image serializes its state as JSON into the `UWSGID_HANDOFF` environment variable and
//! clears close-on-exec on exactly the fds named here. The new image reads it once, removes the
//! variable (workers and exec'd programs never see it), and each part takes back its own state
//! (see [`super::reexec`]): every fd named here goes through one validating `sys::take_fd`
//! (open, made close-on-exec again) before it is adopted, and goes on from where the old image
//! stopped: same listeners, same workers (still its
//! children), same scoreboard, same FIFO and stats socket, next generation.
//!
//! The kernel limits one environment string to 128 KiB, and the worker list grows with
//! `--processes` (512 slots mid-reload hand over more than a thousand workers): a handoff
//! larger than [`INLINE_MAX`] travels in a memfd instead, and the variable only
//! names it (`fd:N`). Small ones stay inline, so an older binary can still take them.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::Config;

pub const ENV: &str = "UWSGID_HANDOFF";

/// Above this size the handoff goes in a memfd (see the module docs).
pub const INLINE_MAX: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Handoff {
    pub exe: PathBuf,
    /// The configuration the old image ran, used if the new one cannot be parsed.
    pub config: Config,
    pub generation: u64,
    /// `graceful` or `brutal` (the stats document's names).
    pub kind: common::reload::ReloadKind,
    pub reload_started_unix_ms: u64,
    pub started_unix: u64,
    pub paused: bool,
    pub last_error: Option<String>,
    pub listeners: Vec<HandoffListener>,
    pub scoreboard_fd: i32,
    pub notify_fd: i32,
    pub notify_addr: String,
    pub lock_fds: Vec<(PathBuf, i32)>,
    pub pidfiles_written: Vec<PathBuf>,
    pub fifo: Option<HandoffFifo>,
    pub stats_fd: Option<i32>,
    pub stats_created: Option<PathBuf>,
    pub workers: Vec<HandoffWorker>,
    pub slots: Vec<HandoffSlot>,
    pub last_reload: Option<common::stats::ReloadOutcome>,
    /// The reloads that ended before this re-exec (this one is counted when it ends).
    #[serde(default)]
    pub reload_counts: common::stats::ReloadCounts,
    #[serde(default)]
    pub respawns: std::collections::BTreeMap<String, u64>,
    /// Preload zygotes, still our children, with their control sockets.
    #[serde(default)]
    pub zygotes: Vec<HandoffZygote>,
    /// Set by the new image itself when it could not parse its options and fell back to
    /// `config`: the reload then ends as failed, with this reason.
    #[serde(default)]
    pub config_refused: Option<String>,
    /// FIFO command bytes read by the old image after the one that asked for this re-exec.
    #[serde(default)]
    pub fifo_pending: Vec<u8>,
    /// The runner's interpreter as configured and the executable it resolved to.
    #[serde(default)]
    pub python: Option<(String, String)>,
    /// The exec workers' log pipe: (read end, write end).
    #[serde(default)]
    pub relay: Option<(i32, i32)>,
    /// The configuration as the old image read it just before this re-exec of the same
    /// binary: the new image takes it instead of reading and parsing it again.
    #[serde(default)]
    pub checked: Option<Box<Checked>>,
}

/// A configuration read and accepted by an image, for the next image of the same binary.
///
/// A graceful reload of an unchanged binary checks the options in the old image (a refused
/// configuration refuses the reload, nothing replaced); the same binary given the same
/// command line, environment and files a moment later reads the same, so the new image
/// takes this instead of reading the files and parsing the options a second time (that
/// parse is most of an image's start-up). [`Checked::take`] says when it applies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checked {
    /// The executable that read it (`/proc/self/exe`); `None`: unknown, not taken.
    pub exe: Option<crate::sys::FileStamp>,
    pub argv: Vec<String>,
    pub config: Config,
    pub warnings: Vec<String>,
    /// What the configuration expanded to (`config::Expanded::words`), for `UWSGID_OPT`.
    pub words: Vec<String>,
}

impl Checked {
    /// Read and judge `argv`'s configuration, as a start does.
    pub fn read(argv: &[String]) -> Result<Checked, crate::cli::ConfigError> {
        let expanded = crate::config::expand(argv).map_err(crate::cli::ConfigError::Config)?;
        let words = expanded.words.clone();
        let (_, config, warnings) = Config::load_expanded(argv, Ok(expanded))?;
        Ok(Checked {
            exe: this_exe(),
            argv: argv.to_vec(),
            config,
            warnings,
            words,
        })
    }

    /// What this image reads for `argv`, if the previous image read it with this very
    /// executable (same file, unmodified) and the same command line; else `None`, and the
    /// image reads its configuration itself.
    pub fn take(self, argv: &[String]) -> Option<Checked> {
        let same = self.argv == argv && self.exe.is_some() && this_exe() == self.exe;
        same.then_some(self)
    }
}

fn this_exe() -> Option<crate::sys::FileStamp> {
    crate::sys::FileStamp::of_program("/proc/self/exe")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandoffListener {
    pub fd: i32,
    pub configured: String,
    pub created_path: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandoffFifo {
    pub read_fd: i32,
    pub keep_fd: i32,
    pub paths: Vec<PathBuf>,
    pub active: usize,
    pub created: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandoffWorker {
    pub pid: i32,
    pub id: u32,
    pub generation: u64,
    pub cell: usize,
    pub ready: bool,
    /// Already told to stop (draining) or killed.
    pub retiring: bool,
    pub spawned_unix_ms: u64,
    pub status_text: Option<String>,
    /// A retiring worker's SIGKILL deadline, so that a re-exec does not renew its mercy.
    #[serde(default)]
    pub deadline_unix_ms: Option<u64>,
    /// Already SIGKILLed.
    #[serde(default)]
    pub killed: bool,
    /// `--auto-snapshot`: told to park (its deadline is `deadline_unix_ms`), or parked; since
    /// when it was told.
    #[serde(default)]
    pub parking: bool,
    #[serde(default)]
    pub parked: bool,
    #[serde(default)]
    pub park_since_unix_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandoffZygote {
    pub pid: i32,
    pub generation: u64,
    pub control_fd: i32,
    pub ready: bool,
    /// A standby, not yet told to `load`.
    #[serde(default)]
    pub standby: bool,
    /// The interpreter it was started from.
    #[serde(default)]
    pub interpreter: Option<crate::sys::FileStamp>,
    /// Already told to stop.
    pub stopping: bool,
    #[serde(default)]
    pub spawned_unix_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HandoffSlot {
    pub respawn_count: u64,
    pub requests: u64,
    pub tx: u64,
    pub running_time_us: u64,
    pub last_spawn: u64,
}

/// Why a handoff could not be written or read (a re-exec then fails, or the new image starts
/// afresh). Each names the variable and, where there is one, the fd.
#[derive(Debug)]
pub enum HandoffError {
    Json(serde_json::Error),
    Memfd(std::io::Error),
    NotAnFd(String),
    NotOurs(i32),
    Read(i32, std::io::Error),
}

impl std::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandoffError::Json(e) => write!(f, "bad {ENV}: {e}"),
            HandoffError::Memfd(e) => write!(f, "handoff memfd: {e}"),
            HandoffError::NotAnFd(text) => write!(f, "bad {ENV}: {text:?}"),
            HandoffError::NotOurs(fd) => write!(f, "bad {ENV}: fd {fd} is not a handoff memfd"),
            HandoffError::Read(fd, e) => write!(f, "bad {ENV}: reading fd {fd}: {e}"),
        }
    }
}

impl std::error::Error for HandoffError {}

impl Handoff {
    /// Take the handoff from the environment, if this image is a re-exec.
    pub fn take() -> Option<Result<Handoff, HandoffError>> {
        let text = std::env::var(ENV).ok()?;
        std::env::remove_var(ENV);
        Some(Handoff::decode(&text))
    }

    /// The value of [`ENV`]: the JSON itself, or `fd:N` naming a memfd that holds it (which
    /// the caller must keep open, and inheritable, across `execve`).
    pub fn encode(&self) -> Result<(String, Option<OwnedFd>), HandoffError> {
        let json = serde_json::to_string(self).map_err(HandoffError::Json)?;
        if json.len() <= INLINE_MAX {
            return Ok((json, None));
        }
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(c"uwsgid-handoff", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| HandoffError::Memfd(e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(json.as_bytes())
            .map_err(HandoffError::Memfd)?;
        let fd = OwnedFd::from(file);
        Ok((format!("fd:{}", fd.as_raw_fd()), Some(fd)))
    }

    /// Parse a value of [`ENV`] (see [`Handoff::encode`]); a named memfd is read and closed.
    pub fn decode(text: &str) -> Result<Handoff, HandoffError> {
        let Some(fd) = text.strip_prefix("fd:") else {
            return serde_json::from_str(text).map_err(HandoffError::Json);
        };
        let fd: i32 = fd
            .parse()
            .map_err(|_| HandoffError::NotAnFd(text.to_string()))?;
        let memfd = format!("/proc/self/fd/{fd}");
        let is_ours = std::fs::read_link(&memfd)
            .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:uwsgid-handoff"));
        if !is_ours {
            return Err(HandoffError::NotOurs(fd));
        }
        // SAFETY: the fd was checked to be the handoff memfd the previous image left open for
        // us; nothing else in this image knows it, and it is taken (and closed) once.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut json = String::new();
        file.rewind()
            .and_then(|_| file.read_to_string(&mut json))
            .map_err(|e| HandoffError::Read(fd, e))?;
        serde_json::from_str(&json).map_err(HandoffError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff(workers: usize) -> Handoff {
        let argv: Vec<String> = ["uwsgid", "--http-socket", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        let (_, config, _) = crate::cli::Config::load(&argv).expect("config");
        Handoff {
            exe: "/bin/true".into(),
            config,
            generation: 7,
            kind: common::reload::ReloadKind::Graceful,
            reload_started_unix_ms: 0,
            started_unix: 0,
            paused: false,
            last_error: None,
            listeners: Vec::new(),
            scoreboard_fd: -1,
            notify_fd: -1,
            notify_addr: String::new(),
            lock_fds: Vec::new(),
            pidfiles_written: Vec::new(),
            fifo: None,
            stats_fd: None,
            stats_created: None,
            workers: (0..workers)
                .map(|i| HandoffWorker {
                    pid: 100_000 + i as i32,
                    id: i as u32 % 512 + 1,
                    generation: 6,
                    cell: i,
                    ready: true,
                    retiring: false,
                    spawned_unix_ms: 1_700_000_000_000,
                    status_text: Some("serving, a status text of some length".into()),
                    deadline_unix_ms: None,
                    killed: false,
                    parking: false,
                    parked: false,
                    park_since_unix_ms: 0,
                })
                .collect(),
            slots: vec![HandoffSlot::default(); 512],
            last_reload: None,
            reload_counts: Default::default(),
            respawns: Default::default(),
            zygotes: Vec::new(),
            config_refused: None,
            fifo_pending: Vec::new(),
            python: None,
            relay: None,
            checked: None,
        }
    }

    #[test]
    fn a_small_handoff_stays_inline() {
        let (text, fd) = handoff(4).encode().unwrap();
        assert!(fd.is_none() && text.starts_with('{'));
        assert_eq!(Handoff::decode(&text).unwrap().workers.len(), 4);
    }

    #[test]
    fn a_full_scoreboard_travels_in_a_memfd() {
        let cells = crate::scoreboard::CAPACITY;
        let (text, fd) = handoff(cells).encode().unwrap();
        let fd = fd.expect("a memfd beyond the inline limit");
        assert_eq!(text, format!("fd:{}", fd.as_raw_fd()));
        // What execve would do: the fd stays open under the same number; the new image owns it.
        std::mem::forget(fd);
        let h = Handoff::decode(&text).unwrap();
        assert_eq!((h.workers.len(), h.generation), (cells, 7));
    }

    /// The configuration checked before a re-exec crosses it, and the new image takes it only
    /// when it is the same executable given the same command line.
    #[test]
    fn a_checked_configuration_is_taken_by_the_same_binary_and_command_line_only() {
        let argv: Vec<String> = ["uwsgid", "--http-socket", "127.0.0.1:0", "--processes", "3"]
            .map(String::from)
            .to_vec();
        let checked = Checked::read(&argv).expect("a valid configuration");
        assert_eq!(checked.config.processes, 3);
        assert_eq!(
            checked.words, argv,
            "no configuration file: the words are the command line"
        );
        assert!(checked.exe.is_some(), "this test binary's stamp");
        let mut h = handoff(1);
        h.checked = Some(Box::new(checked));
        let (text, _) = h.encode().unwrap();
        let back = *Handoff::decode(&text).unwrap().checked.expect("crossed");
        assert_eq!(
            back.clone().take(&argv).map(|c| c.config.processes),
            Some(3)
        );
        let mut other = argv.clone();
        other[4] = "4".into();
        assert!(
            back.clone().take(&other).is_none(),
            "another command line reads again"
        );
        let elsewhere = Checked {
            exe: crate::sys::FileStamp::of_program("/bin/sh"),
            ..back.clone()
        };
        assert!(
            elsewhere.take(&argv).is_none(),
            "another binary reads again"
        );
        let unknown = Checked { exe: None, ..back };
        assert!(
            unknown.take(&argv).is_none(),
            "an unknown binary reads again"
        );
    }

    #[test]
    fn decode_refuses_an_fd_that_is_not_a_handoff() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = Handoff::decode(&format!("fd:{}", f.as_raw_fd())).unwrap_err();
        assert!(e.to_string().contains("not a handoff memfd"), "{e}");
        assert!(Handoff::decode("fd:x").is_err());
    }
}
