//! uwsgid: a pre-forking master daemon with zero-downtime reloads, managed like uWSGI.
//!
//! The binary is a thin `main` over [`main_entry`]. The master lives in [`master`]; built-in
//! workers in [`worker`] (HTTP in [`http`]); exec workers and their readiness protocol in
//! [`exec`]. Everything a master passes to its next image is in [`master::handoff`].

pub mod cli;
pub mod config;
pub mod conn;
pub mod daemonize;
pub mod exec;
pub mod fault;
pub mod fifo;
pub mod http;
pub mod listener;
pub mod log;
pub mod manage;
pub mod master;
pub mod metrics;
pub mod notify;
pub mod options;
pub mod privileges;
pub mod procname;
pub mod pyapi;
pub mod reqlog;
pub mod runner;
pub mod scoreboard;
pub mod sd_notify;
pub mod sizing;
pub mod static_map;
pub mod stats_server;
pub mod sys;
#[cfg(test)]
mod test_support;
pub mod touch;
pub mod uwsgi_proto;
pub mod worker;

/// Run uwsgid with the process's arguments; returns the exit code.
pub fn main_entry() -> i32 {
    // First of all: signals are only ever taken from a signalfd, so none is lost or fatal
    // while we start (after a re-exec the blocked mask and pending signals carry over).
    if let Err(e) = sys::block_managed_signals() {
        eprintln!("uwsgid: error: cannot block signals: {e}");
        return 1;
    }
    sys::install_fatal_handlers();
    fault::init();
    sys::ignore_sigpipe();
    sys::raise_fd_limit();
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `--reload PIDFILE` and the other management options act on a running instance and exit.
    if let Some(code) = manage::run(&argv) {
        return code;
    }
    let mut handoff = match master::handoff::Handoff::take() {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            log!("ignoring a broken handoff: {e}");
            None
        }
        None => None,
    };
    let check_only = argv.iter().skip(1).any(|a| a == "--check-config");
    // A re-exec of the same binary: the old image read the configuration a moment ago.
    let checked = handoff
        .as_mut()
        .and_then(|h| h.checked.take())
        .filter(|_| !check_only)
        .and_then(|c| c.take(&argv));
    if let Some(c) = checked {
        return serve(argv, c.config, handoff, c.warnings, &c.words);
    }
    // Read once: `--check-config` prints the verdict for every key of the configuration
    // files (refused ones included) before judging the whole.
    let expanded = config::expand(&argv).map_err(cli::ConfigError::Config);
    if check_only {
        for v in expanded.iter().flat_map(|e| &e.verdicts) {
            println!("{v}");
        }
    }
    // For the exec workers' UWSGID_OPT: the same words, not a second reading.
    let words = match &expanded {
        Ok(e) => e.words.clone(),
        Err(_) => argv.clone(),
    };
    match cli::Config::load_expanded(&argv, expanded) {
        Ok((_, config, warnings)) => {
            if check_only {
                for w in &warnings {
                    eprintln!("uwsgid: warning: {w}");
                }
                println!(
                    "uwsgid: configuration OK ({} listener(s), {} worker(s))",
                    config.listeners.len(),
                    config.processes
                );
                return 0;
            }
            serve(argv, config, handoff, warnings, &words)
        }
        Err(e) => {
            if let (Some(h), false) = (handoff, check_only) {
                // The binary changed under us and refuses the options: keep serving with the
                // configuration that worked.
                let config = h.config.clone();
                let mut h = h;
                let reason =
                    format!("new configuration refused, the previous one stays in force: {e}");
                h.last_error = Some(reason.clone());
                h.config_refused = Some(reason);
                log!("{}", h.last_error.as_deref().unwrap_or_default());
                return master::run(argv, config, Some(h), Vec::new());
            }
            let e = e.to_string();
            let e = e.trim_end();
            let e = e.strip_prefix("error: ").unwrap_or(e);
            eprintln!("uwsgid: error: {e}");
            2
        }
    }
}

/// Run the master with a configuration that was read and accepted (`words`: what it
/// expanded to).
fn serve(
    argv: Vec<String>,
    config: cli::Config,
    handoff: Option<master::handoff::Handoff>,
    warnings: Vec<String>,
    words: &[String],
) -> i32 {
    if let Some(mask) = config.umask {
        privileges::set_umask(mask);
    }
    pyapi::set_instance_env(&config, words);
    master::run(argv, config, handoff, warnings)
}
