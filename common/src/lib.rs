//! The protocols uwsgid and uwsgictl speak, in one place.
//!
//! Both binaries depend on this crate and on nothing of each other, so every byte they exchange
//! (the pidfile, the master FIFO commands, the stats JSON document and the files that let
//! uwsgictl discover an instance) is defined here once. Each module documents its format as the
//! specification of that protocol.

pub mod config;
pub mod discovery;
pub mod exit;
pub mod fifo;
pub mod pidfd;
pub mod pidfile;
pub mod process;
pub mod reload;
pub mod signals;
pub mod stats;
pub mod trust;

/// The version both binaries report; stats documents carry it in `uwsgid.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
