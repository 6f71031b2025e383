//! The integration-test harness: real binaries, real sockets, real signals. One module per
//! concern, all re-exported here (`uwsgi_tests::*`):
//!
//! - [`bins`]: [`bin`] finds a workspace binary, built fresh by the first call of the process.
//! - [`dir`]: [`TestDir`], the one temporary directory (`ctl::TempDir` is the same type).
//! - [`poll`]: [`wait_for`]/[`poll()`], the one way to wait (`ctl::eventually` is `wait_for`).
//! - [`daemon`]: [`Daemon`], the one guard for a uwsgid under test (`ctl::Uwsgid` wraps it).
//! - [`uwsgi`]: [`Uwsgi`], a guard for a real uWSGI 2.0 master.
//! - [`require`](mod@require): [`require()`], a missing dependency fails under `CI=true`, is a
//!   visible skip elsewhere.
//! - [`load`]: [`Load`], client threads that count every failed request.
//! - [`http`], [`procs`]: loopback HTTP clients and ports; /proc readers.
//! - [`ctl`]: running uwsgictl and judging its output, decoy processes.
//!
//! Nothing here sleeps for a fixed time: every wait polls a condition until a deadline. Every
//! process started is ended by its pid (the process group it leads), never by name.

pub mod bins;
pub mod ctl;
pub mod daemon;
pub mod dir;
pub mod http;
pub mod load;
pub mod poll;
pub mod procs;
pub mod require;
pub mod uwsgi;

pub use bins::{bin, profile_dir, workspace_root};
pub use daemon::{all_ready, Daemon};
pub use dir::TestDir;
pub use http::{free_port, http_get, http_raw, listening, parse_response};
pub use load::{Load, LoadPaths};
pub use poll::{poll, wait_for};
pub use procs::{alive, group_members, is_zombie, socket_inodes};
pub use require::{
    have_program, have_python_module, in_ci, require, require_program, require_python_module, skip,
    when_missing,
};
pub use uwsgi::{uwsgi_available, Uwsgi};
