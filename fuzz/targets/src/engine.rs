//! The built-in engine: seeded mutation fuzzing with outcome signatures as feedback.
//!
//! Start from the target's seeds; each execution picks a corpus entry, mutates it
//! ([`crate::mutate`]) and runs the target under `catch_unwind`. An input whose outcome
//! signature was never seen joins the corpus (at most [`MAX_CORPUS`] entries). A panic stops
//! the run and is returned with the input that caused it, so the caller can save it and turn
//! it into a regression test. An execution slower than [`SLOW`], twice in a row (once may be a loaded machine), is
//! reported too.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::mutate::{mutate, Rng};
use crate::Target;

/// Corpus size cap: enough for every outcome class, small enough to stay fast.
pub const MAX_CORPUS: usize = 4096;
/// One execution taking longer than this is a finding (a parser must stay linear).
pub const SLOW: Duration = Duration::from_secs(2);

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Iterations(u64),
    Time(Duration),
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub executions: u64,
    pub corpus: usize,
    pub signatures: usize,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
}

/// A panic or a slow execution, with the input that caused it.
#[derive(Debug)]
pub struct Failure {
    pub input: Vec<u8>,
    pub message: String,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

/// Run `input` through `target`, turning a panic into an error.
pub fn run_one(target: &Target, input: &[u8]) -> Result<String, String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|p| panic_text(&*p))
}

/// Fuzz `target` from `seed` until `budget` is spent or something fails.
pub fn fuzz(target: &'static Target, seed: u64, budget: Budget) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    let mut seen = HashSet::new();
    let mut executions = 0u64;
    let mut failure = None;
    // Every seed first: they must pass as they are.
    for input in corpus.clone() {
        executions += 1;
        match run_one(target, &input) {
            Ok(sig) => {
                seen.insert(sig);
            }
            Err(message) => {
                failure = Some(Failure { input, message });
                break;
            }
        }
    }
    while failure.is_none() {
        let done = match budget {
            Budget::Iterations(n) => executions >= n,
            // Check the clock every 64 executions only.
            Budget::Time(t) => executions & 63 == 0 && started.elapsed() >= t,
        };
        if done {
            break;
        }
        let mut input = if corpus.is_empty() {
            Vec::new()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        mutate(&mut rng, &mut input, &corpus, target.dictionary);
        executions += 1;
        let t0 = Instant::now();
        match run_one(target, &input) {
            Ok(sig) => {
                let took = t0.elapsed();
                // Slow once may be a loaded machine (the CI box is shared): it counts only when
                // the same input is slow again when re-run at once.
                let slow_again = took > SLOW && {
                    let t1 = Instant::now();
                    let _ = run_one(target, &input);
                    t1.elapsed() > SLOW
                };
                if slow_again {
                    failure = Some(Failure {
                        input,
                        message: format!("slow: one execution took {took:?}"),
                    });
                } else if seen.insert(sig) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(message) => failure = Some(Failure { input, message }),
        }
    }
    Report {
        target: target.name,
        executions,
        corpus: corpus.len(),
        signatures: seen.len(),
        elapsed: started.elapsed(),
        failure,
    }
}

/// Shrink a failing `input` by deleting chunks (halving their size) while it still fails, at
/// most `budget` executions; returns the smallest failing input found and its message.
pub fn minimize(target: &Target, input: &[u8], budget: usize) -> (Vec<u8>, String) {
    let mut best = input.to_vec();
    let mut message = match run_one(target, &best) {
        Err(m) => m,
        Ok(_) => return (best, "does not fail when run again".into()),
    };
    let mut runs = 0;
    let mut chunk = (best.len() / 2).max(1);
    while chunk >= 1 && runs < budget {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && runs < budget {
            let mut candidate = best.clone();
            let end = (at + chunk).min(candidate.len());
            candidate.drain(at..end);
            runs += 1;
            if let Err(m) = run_one(target, &candidate) {
                best = candidate;
                message = m;
                shrunk = true;
            } else {
                at += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    (best, message)
}

/// Bytes as a Rust byte-string literal body, for pasting into a regression test.
pub fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}
