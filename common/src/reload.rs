//! The kinds of reload and how one ended, as the stats document, the master's handoff and
//! uwsgictl name them.
//!
//! Each value serializes as the lowercase word the stats document has always carried
//! (`graceful`, `brutal`, `workers`, `brutal-workers`, `chain`, `rollback`; `complete`, `failed`), so
//! older readers and the golden files keep working. A word this version does not know reads
//! as `Unknown` instead of failing the whole document (a newer daemon, an older ctl).

use serde::{Deserialize, Serialize};

/// What a reload replaces, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadKind {
    /// Re-execute the master; workers drain within the mercy.
    #[default]
    Graceful,
    /// Re-execute the master; workers are killed.
    Brutal,
    /// New workers; the old ones drain.
    Workers,
    /// New workers; the old ones are killed at once.
    BrutalWorkers,
    /// One worker after the other.
    Chain,
    /// The parked snapshot generation back in service (`--auto-snapshot`, then `SIGURG`,
    /// FIFO `b` or `uwsgictl rollback`); the generation that served retires.
    Rollback,
    /// A kind this version does not know (read from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ReloadKind {
    /// Every kind of reload that can be asked for, in the order the docs list them (a
    /// [`ReloadKind::Rollback`] is asked for by a rollback request, not as a reload).
    pub const ALL: [ReloadKind; 5] = [
        ReloadKind::Graceful,
        ReloadKind::Brutal,
        ReloadKind::Workers,
        ReloadKind::BrutalWorkers,
        ReloadKind::Chain,
    ];

    /// The stable name, as in the stats document.
    pub fn name(self) -> &'static str {
        match self {
            ReloadKind::Graceful => "graceful",
            ReloadKind::Brutal => "brutal",
            ReloadKind::Workers => "workers",
            ReloadKind::BrutalWorkers => "brutal-workers",
            ReloadKind::Chain => "chain",
            ReloadKind::Rollback => "rollback",
            ReloadKind::Unknown => "unknown",
        }
    }

    /// Graceful and brutal reloads re-execute the master; the others only replace workers.
    pub fn re_executes(self) -> bool {
        matches!(self, ReloadKind::Graceful | ReloadKind::Brutal)
    }
}

impl std::fmt::Display for ReloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a finished reload ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadResult {
    /// Every slot holds a ready worker of the new generation; no older worker is alive.
    #[default]
    Complete,
    /// Refused, or the new generation did not come up (the old workers keep serving).
    Failed,
    /// A word this version does not know.
    #[serde(other)]
    Unknown,
}

impl ReloadResult {
    pub fn name(self) -> &'static str {
        match self {
            ReloadResult::Complete => "complete",
            ReloadResult::Failed => "failed",
            ReloadResult::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ReloadResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_stats_names() {
        for k in ReloadKind::ALL.into_iter().chain([ReloadKind::Rollback]) {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<ReloadKind>(&json).unwrap(), k);
        }
        assert_eq!(
            serde_json::from_str::<ReloadKind>("\"sideways\"").unwrap(),
            ReloadKind::Unknown
        );
    }

    #[test]
    fn results_keep_their_stats_names() {
        for r in [ReloadResult::Complete, ReloadResult::Failed] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<ReloadResult>(&json).unwrap(), r);
        }
        assert_eq!(
            serde_json::from_str::<ReloadResult>("\"maybe\"").unwrap(),
            ReloadResult::Unknown
        );
    }
}
