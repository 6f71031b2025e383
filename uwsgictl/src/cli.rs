//! The command line, as clap definitions: the one table that drives parsing, `--help`, the
//! man page and the shell completions.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Control uwsgid and uWSGI 2.0 instances.
#[derive(Parser, Debug)]
#[command(
    name = "uwsgictl",
    version,
    about = "Control uwsgid and uWSGI 2.0 instances: reload, stop, pause, stats",
    long_about = "Control uwsgid and uWSGI 2.0 instances: reload, stop, pause, resume, inspect.\n\n\
        Before any signal is sent the pidfile is validated: its content, that the pid is alive, \
        that it is a uwsgid or uWSGI master and that it started before the pidfile was written. \
        Signals go through a pidfd, so a pid reused after the check is never hit.\n\n\
        With no target option the embedded default instance (--name default) is meant.",
    after_help = "Exit codes are listed in uwsgictl(1). Run 'uwsgictl COMMAND --help' for a command's options."
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print exactly one JSON document on stdout (errors too); progress is never shown.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Which instance to control.
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// The master's pidfile (uwsgid or uWSGI); for uwsgid, also enough to find its FIFO and
    /// stats.
    #[arg(long, global = true, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// The master FIFO (--master-fifo).
    #[arg(long, global = true, value_name = "PATH")]
    pub fifo: Option<PathBuf>,

    /// The stats server: HOST:PORT, a Unix socket path, @ABSTRACT, or http://HOST:PORT for
    /// --stats-http.
    #[arg(long, global = true, value_name = "ADDR")]
    pub stats: Option<String>,

    /// Read safe-pidfile/pidfile, master-fifo, stats and stats-http from FILE's [uwsgi]
    /// section (FILE:SECTION for another), read as uwsgid reads it: placeholders, includes,
    /// config logic.
    #[arg(long, global = true, value_name = "FILE")]
    pub ini: Option<PathBuf>,

    /// The uwsgid instance NAME in the runtime directory (default: "default").
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
}

/// How a command reaches the master.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A signal through a pidfd (needs the pidfile).
    Signal,
    /// A byte written to the master FIFO.
    Fifo,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Reload the instance: graceful by default (SIGHUP or FIFO 'r').
    #[command(
        long_about = "Reload the instance. Graceful by default (SIGHUP, or FIFO 'r' with --via fifo): \
        busy workers finish their request. --brutal kills old workers at once (FIFO 'R'), --chain \
        replaces one worker at a time (FIFO 'c'), --workers keeps the master (FIFO 'w', or 'W' with \
        --brutal).\n\nWith --wait, return only once the reload is complete: every worker slot holds a \
        ready worker of the new generation and no old worker is alive (for uWSGI: every worker pid \
        is new and accepting)."
    )]
    Reload(ReloadArgs),
    /// Stop the instance: graceful by default (FIFO 'q'), --brutal sends SIGINT.
    Stop(StopArgs),
    /// Pause: workers stop accepting, connections wait in the backlog. Does nothing if paused.
    Pause(ViaArgs),
    /// Resume a paused instance. Does nothing if it is not paused.
    Resume(ViaArgs),
    /// Roll back (uwsgid): abort a reload under way, back to the generation that serves; else
    /// restore the parked snapshot (--auto-snapshot) and retire the current generation.
    Rollback(RollbackArgs),
    /// Show the instance and its workers as a table, or the daemon's document with --json.
    Stats(StatsArgs),
    /// One line saying whether the instance runs; LSB exit codes (0, 1, 3, 4).
    Status,
    /// Send a signal from the master's signal table (HUP, TERM, INT, QUIT, USR1, USR2, URG,
    /// TSTP, WINCH) to the validated master.
    Signal(SignalArgs),
    /// Write raw command bytes to the master FIFO (see FIFO COMMANDS in uwsgictl(1)).
    Fifo(FifoArgs),
    /// List the uwsgid instances in the runtime directory.
    List,
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ReloadArgs {
    /// Block until the reload is complete (or failed).
    #[arg(long)]
    pub wait: bool,
    /// Kill old workers at once instead of letting them finish their requests.
    #[arg(long, conflicts_with = "chain")]
    pub brutal: bool,
    /// Replace one worker at a time, each once the previous replacement is ready.
    #[arg(long, conflicts_with = "workers")]
    pub chain: bool,
    /// Replace the workers only; the master keeps running as it is.
    #[arg(long)]
    pub workers: bool,
    /// Give up waiting after S seconds (exit code 20).
    #[arg(long, value_name = "S", default_value = "60", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Send a signal or write to the FIFO (default: signal for graceful reloads when the
    /// pidfile is known, else FIFO).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// Block until the rollback is complete: only the restored generation serves (or the
    /// reload it aborted is over).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after S seconds (exit code 20).
    #[arg(long, value_name = "S", default_value = "60", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Send a signal or write to the FIFO (default: FIFO when known, else signal).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
}

#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// Block until the master has exited.
    #[arg(long)]
    pub wait: bool,
    /// Kill the workers at once (SIGINT, or FIFO 'Q') instead of letting requests finish.
    #[arg(long)]
    pub brutal: bool,
    /// Give up waiting after S seconds (exit code 20).
    #[arg(long, value_name = "S", default_value = "60", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Send a signal or write to the FIFO (graceful stop is FIFO-only).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
}

#[derive(Args, Debug, Clone)]
pub struct ViaArgs {
    /// Send a signal or write to the FIFO (default: FIFO when known, else signal).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
}

#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Refresh in place every --interval seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_seconds)]
    pub interval: f64,
    /// Stop after N refreshes with --watch.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct SignalArgs {
    /// Signal name (HUP, SIGHUP, hup) or number.
    #[arg(value_name = "NAME")]
    pub signal: String,
    /// Send even a signal known to kill a uWSGI 2.0 master (USR2).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FifoArgs {
    /// Command bytes, e.g. "r" or "w"; whitespace is ignored.
    #[arg(value_name = "BYTES")]
    pub bytes: String,
    /// Write bytes this master does not know.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Seconds as a positive decimal number.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a number of seconds; give a positive number such as 30 or 0.5"
        )),
    }
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn definitions_are_consistent() {
        super::command().debug_assert();
    }
}
