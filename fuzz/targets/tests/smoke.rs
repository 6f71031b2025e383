//! Every fuzz target, a fixed number of mutations from a fixed seed, under `cargo test`.
//!
//! A short, deterministic version of `fuzz/run` so CI catches a regression in any parser's
//! invariants; the seed can be changed with `UWSGI_FUZZ_SEED` to explore locally, and the
//! iteration count with `UWSGI_FUZZ_ITERATIONS`.

use uwsgi_fuzz_targets::engine::{escape, fuzz, minimize, run_one, Budget};
use uwsgi_fuzz_targets::{target, TARGETS};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn smoke(name: &str, iterations: u64) {
    let t = target(name).expect("a known target");
    let seed = env_u64("UWSGI_FUZZ_SEED", 20_261_125);
    let iterations = env_u64("UWSGI_FUZZ_ITERATIONS", iterations);
    let report = fuzz(t, seed, Budget::Iterations(iterations));
    if let Some(f) = report.failure {
        let (small, message) = minimize(t, &f.input, 5_000);
        panic!(
            "fuzz target {name} failed after {} executions (seed {seed}): {}\n\
             minimized input ({} of {} bytes): b\"{}\"",
            report.executions,
            message,
            small.len(),
            f.input.len(),
            escape(&small[..small.len().min(4096)])
        );
    }
    assert!(report.executions >= iterations);
}

#[test]
fn every_target_is_smoke_tested() {
    let mut names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "addr", "conn", "exec", "fifo", "handoff", "http", "ini", "pidfile", "pipeline",
            "stats", "uwsgi"
        ],
        "add a smoke test for the new target"
    );
}

#[test]
fn seeds_pass() {
    for t in TARGETS {
        for s in (t.seeds)() {
            if let Err(e) = run_one(t, &s) {
                panic!("{} seed b\"{}\": {e}", t.name, escape(&s));
            }
        }
    }
}

#[test]
fn http() {
    smoke("http", 8_000);
}

#[test]
fn conn() {
    smoke("conn", 8_000);
}

#[test]
fn fifo() {
    smoke("fifo", 8_000);
}

#[test]
fn pidfile() {
    smoke("pidfile", 600);
}

#[test]
fn stats() {
    smoke("stats", 1_000);
}

#[test]
fn ini() {
    smoke("ini", 400);
}

#[test]
fn exec() {
    smoke("exec", 6_000);
}

#[test]
fn addr() {
    smoke("addr", 10_000);
}

#[test]
fn pipeline() {
    smoke("pipeline", 4_000);
}

#[test]
fn handoff() {
    smoke("handoff", 4_000);
}

#[test]
fn uwsgi() {
    smoke("uwsgi", 8_000);
}
