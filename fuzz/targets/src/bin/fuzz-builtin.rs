//! The built-in engine's command line: `fuzz-builtin [--seconds N] [--seed S] [TARGET...]`.
//!
//! Runs each target (all of them by default) for N seconds (default 10) from seed S (default:
//! the clock), prints one line per target with its executions, corpus and outcome signatures,
//! and on a failure writes the input to `fuzz/artifacts/builtin/TARGET-crash-SEED` and prints
//! it (minimized) as a byte string to paste into a regression test. Exit status 1 if anything
//! failed. `fuzz-builtin --write-seeds DIR` writes every target's seeds for libFuzzer instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uwsgi_fuzz_targets::engine::{escape, fuzz, minimize, Budget};
use uwsgi_fuzz_targets::{target, TARGETS};

fn main() {
    let mut seconds = 10.0f64;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(seed),
            "--write-seeds" => {
                // Seed a libFuzzer corpus: DIR/TARGET/seed-N for every target.
                let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "corpus".into()));
                for t in TARGETS {
                    let sub = dir.join(t.name);
                    std::fs::create_dir_all(&sub).expect("create the corpus directory");
                    for (i, s) in (t.seeds)().iter().enumerate() {
                        std::fs::write(sub.join(format!("seed-{i}")), s).expect("write a seed");
                    }
                }
                return;
            }
            "-h" | "--help" => {
                println!("usage: fuzz-builtin [--seconds N] [--seed S] [TARGET...]");
                println!(
                    "targets: {}",
                    TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(" ")
                );
                return;
            }
            name => names.push(name.to_string()),
        }
    }
    let chosen: Vec<_> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                target(n).unwrap_or_else(|| {
                    eprintln!("fuzz-builtin: no target {n:?}");
                    std::process::exit(2)
                })
            })
            .collect()
    };
    // Panics are findings, reported below with their input; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for t in chosen {
        let report = fuzz(t, seed, Budget::Time(Duration::from_secs_f64(seconds)));
        println!(
            "builtin {:<8} seed {seed} executions {:>10} in {:>5.1}s ({:>8.0}/s) corpus {:>4} signatures {:>4} {}",
            report.target,
            report.executions,
            report.elapsed.as_secs_f64(),
            report.executions as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.corpus,
            report.signatures,
            if report.failure.is_some() { "FAILED" } else { "ok" }
        );
        if let Some(f) = report.failure {
            failed = true;
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts/builtin");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{}-crash-{seed}", report.target));
            let _ = std::fs::write(&file, &f.input);
            println!("  failure: {}", f.message);
            println!(
                "  input: {} bytes, saved to {}",
                f.input.len(),
                file.display()
            );
            let (small, message) = minimize(t, &f.input, 20_000);
            let min_file = dir.join(format!("{}-minimized-{seed}", report.target));
            let _ = std::fs::write(&min_file, &small);
            println!(
                "  minimized to {} bytes ({}): {message}",
                small.len(),
                min_file.display()
            );
            println!("  b\"{}\"", escape(&small[..small.len().min(2000)]));
        }
    }
    std::process::exit(i32::from(failed));
}
