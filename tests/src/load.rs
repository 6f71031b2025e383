//! [`Load`]: client threads sending GETs on fresh connections until stopped, each cycling
//! through its paths; every failed or wrong answer is kept with what went wrong, so a test can
//! assert that none failed across a reload, and [`Load::wait_more`] shows the load really runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{http_get, wait_for};

/// The paths a [`Load`] cycles through: one path (`"/"`) or several (`&["/a", "/b"]`).
pub trait LoadPaths {
    fn into_paths(self) -> Vec<String>;
}

impl LoadPaths for &str {
    fn into_paths(self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl LoadPaths for &[&str] {
    fn into_paths(self) -> Vec<String> {
        self.iter().map(|p| p.to_string()).collect()
    }
}

impl<const N: usize> LoadPaths for &[&str; N] {
    fn into_paths(self) -> Vec<String> {
        self.iter().map(|p| p.to_string()).collect()
    }
}

/// Clients sending GETs on fresh connections until finished; every failure is kept.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Successful (200) answers so far.
    pub ok: Arc<AtomicU64>,
    /// Every failure so far: `GET path: status body` or `GET path: error`.
    pub errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` threads, each in a loop of fresh-connection GETs over `paths` in turn.
    pub fn start(addr: &str, clients: usize, paths: impl LoadPaths) -> Load {
        let paths = paths.into_paths();
        assert!(!paths.is_empty(), "a load needs at least one path");
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
                let (addr, paths) = (addr.to_string(), paths.clone());
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[n % paths.len()];
                        n += 1;
                        match http_get(&addr, path) {
                            Ok((200, _)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, body)) => errors
                                .lock()
                                .unwrap()
                                .push(format!("GET {path}: {status} {body:?}")),
                            Err(e) => errors.lock().unwrap().push(format!("GET {path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            threads,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait until at least `n` more requests succeeded (the load really runs).
    pub fn wait_more(&self, n: u64) {
        let from = self.ok();
        wait_for(
            "the request loop to make progress",
            Duration::from_secs(20),
            || (self.ok() >= from + n).then_some(()),
        );
    }

    /// Stop the clients; `(successes, failures)`.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (self.ok(), errors)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that panicked before `finish`: stop the clients rather than leave them running.
        self.stop.store(true, Ordering::Relaxed);
    }
}
