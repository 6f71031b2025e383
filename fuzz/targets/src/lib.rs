//! Fuzz targets for every parser of the workspace, shared by the two engines that drive them.
//!
//! Each target takes arbitrary bytes, feeds them to one parser (or a parser and what reads its
//! output), and checks invariants with `assert!`: a panic is a finding. Besides "never panics",
//! every target checks what its parser promises: determinism, round trips, bounds such as
//! "a complete head is never longer than the limit", and agreement between two readers of the
//! same format. A target returns a short *signature* of the outcome (which variant, which
//! error); the built-in engine keeps an input that produced a new signature, a cheap stand-in
//! for coverage feedback.
//!
//! [`TARGETS`] lists them; `fuzz/fuzz_targets/*.rs` wrap each one for cargo-fuzz (libFuzzer with
//! ASan), and [`engine`] is a seeded mutation fuzzer that needs no nightly flags: it runs under
//! `cargo test` for a fixed number of iterations and from `fuzz/run --engine builtin`.

pub mod conn;
pub mod engine;
pub mod mutate;
pub mod targets;
pub mod uwsgi;

/// One fuzz target: its name, the function, its seeds and the tokens its format uses.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> String,
    pub seeds: fn() -> Vec<Vec<u8>>,
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order `fuzz/run` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "http",
        run: targets::http,
        seeds: targets::http_seeds,
        dictionary: targets::HTTP_TOKENS,
    },
    Target {
        name: "conn",
        run: conn::conn,
        seeds: conn::conn_seeds,
        dictionary: conn::CONN_TOKENS,
    },
    Target {
        name: "fifo",
        run: targets::fifo,
        seeds: targets::fifo_seeds,
        dictionary: targets::FIFO_TOKENS,
    },
    Target {
        name: "pidfile",
        run: targets::pidfile,
        seeds: targets::pidfile_seeds,
        dictionary: targets::NUMBER_TOKENS,
    },
    Target {
        name: "stats",
        run: targets::stats,
        seeds: targets::stats_seeds,
        dictionary: targets::JSON_TOKENS,
    },
    Target {
        name: "ini",
        run: targets::ini,
        seeds: targets::ini_seeds,
        dictionary: targets::INI_TOKENS,
    },
    Target {
        name: "exec",
        run: targets::exec,
        seeds: targets::exec_seeds,
        dictionary: targets::SHELL_TOKENS,
    },
    Target {
        name: "addr",
        run: targets::addr,
        seeds: targets::addr_seeds,
        dictionary: targets::ADDR_TOKENS,
    },
    Target {
        name: "pipeline",
        run: targets::pipeline,
        seeds: targets::pipeline_seeds,
        dictionary: targets::HTTP_TOKENS,
    },
    Target {
        name: "handoff",
        run: targets::handoff,
        seeds: targets::handoff_seeds,
        dictionary: targets::HANDOFF_TOKENS,
    },
    Target {
        name: "uwsgi",
        run: uwsgi::run,
        seeds: uwsgi::seeds,
        dictionary: uwsgi::TOKENS,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
