//! Exit codes and the one error type every command returns.
//!
//! Each failure a script may want to tell apart has its own code, so `uwsgictl reload --wait`
//! in a deploy script can distinguish "the pidfile is stale" from "the new code crash-loops"
//! from "it took too long". `status` alone follows the LSB convention (0 running, 1 dead but
//! the pidfile exists, 3 not running, 4 unknown); [`Exit::ALL`] drives the man page.

use std::fmt;

pub use common::exit::Exit;

/// A failure: what happened, the exit code, and for `--wait` the last state seen.
#[derive(Debug)]
pub struct CtlError {
    pub exit: Exit,
    pub message: String,
    pub state: Option<serde_json::Value>,
}

impl CtlError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CtlError {
        CtlError {
            exit,
            message: message.into(),
            state: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Usage, message)
    }

    pub fn with_state(mut self, state: serde_json::Value) -> CtlError {
        self.state = Some(state);
        self
    }

    /// The JSON document printed on stdout for this error under `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "ok": false,
            "exit_code": self.exit.code(),
            "error": { "kind": self.exit.name(), "message": self.message },
        });
        if let Some(state) = &self.state {
            doc["state"] = state.clone();
        }
        doc
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CtlError {}
