//! The one way the harness waits: poll a condition with a short backoff (1 ms doubling to
//! 25 ms) until it holds or a deadline passes. [`poll`] returns `None` at the deadline;
//! [`wait_for`] (also reachable as `ctl::eventually`) panics naming what it waited for.
//! Nothing in the harness sleeps a fixed time instead of polling.

use std::time::{Duration, Instant};

/// Poll `probe` until it returns `Some` or `timeout` passes (then `None`). It is always called
/// at least once, and once more at the deadline.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Poll `probe` until it returns `Some`; panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll(timeout, probe).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}
