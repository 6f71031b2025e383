//! What a master passes to its own next image across `execve`.
//!
//! The old image serializes its state as JSON into the `UWSGID_HANDOFF` environment variable and
//! clears close-on-exec on exactly the fds named here. The new image reads it once, removes the
//! variable (workers and exec'd programs never see it), and each part takes back its own state
//! (see [`super::reexec`]): every fd named here goes through one validating `take_fd` (open,
//! made close-on-exec again) before it is adopted, and goes on from where the old image stopped: same listeners, same workers (still its
//! children), same scoreboard, same FIFO and stats socket, next generation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::Config;

pub const ENV: &str = "UWSGID_HANDOFF";

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
    /// A retiring worker's SIGKILL deadline (wall clock), so that re-execs in a row do not
    /// push it back.
    #[serde(default)]
    pub drain_deadline_unix_ms: Option<u64>,
    pub spawned_unix_ms: u64,
    pub status_text: Option<String>,
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

/// A handoff that does not parse (the master then starts afresh).
#[derive(Debug)]
pub struct HandoffError(serde_json::Error);

impl std::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad {ENV}: {}", self.0)
    }
}

impl std::error::Error for HandoffError {}

impl Handoff {
    /// Take the handoff from the environment, if this image is a re-exec.
    pub fn take() -> Option<Result<Handoff, HandoffError>> {
        let text = std::env::var(ENV).ok()?;
        std::env::remove_var(ENV);
        Some(serde_json::from_str(&text).map_err(HandoffError))
    }
}
