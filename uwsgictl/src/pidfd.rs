//! A handle on one process that can never point at another: [`common::pidfd`], shared with
//! `uwsgid --reload PIDFILE` and the other pidfile conveniences.

pub use common::pidfd::PidHandle;
