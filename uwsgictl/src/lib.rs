//! uwsgictl: the control tool for uwsgid and uWSGI 2.0 instances.
//!
//! The binary is thin glue over this library: [`main`] parses the command line with the clap
//! definitions in [`cli`], resolves the target ([`target`], [`ini`]), runs one command
//! ([`commands`]) and writes its [`commands::Report`]. Commands decide; rendering is pure
//! ([`render`]); every byte exchanged with a daemon is defined in `common`. Before any signal
//! the pidfile is validated ([`master`]) and signals go through a pidfd ([`pidfd`]); every
//! `--wait` is one [`wait::wait_until`] loop. [`gen`] renders the man page and completions from
//! the same definitions (and is reused for `uwsgid.8`).

pub mod cli;
pub mod commands;
pub mod exit;
pub mod fifo;
pub mod gen;
pub mod ini;
pub mod master;
pub mod pidfd;
pub mod render;
pub mod statsclient;
pub mod target;
pub mod term;
pub mod wait;

use std::io::Write;

use clap::Parser;

pub use gen::{render_man, ManItem, ManSection};

use crate::cli::{Cli, Command};
use crate::exit::Exit;

/// Run uwsgictl with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    let json = cli.json;
    let is_status = matches!(cli.command, Command::Status);
    let mut stdout = std::io::stdout().lock();
    match commands::run(cli) {
        Ok(report) => {
            let text = if json {
                if report.json.is_null() {
                    return 0;
                }
                format!("{}\n", report.json)
            } else if report.text.is_empty() {
                String::new()
            } else {
                format!("{}\n", report.text.trim_end_matches('\n'))
            };
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            if is_status {
                report.json["exit_code"].as_i64().unwrap_or(4) as i32
            } else {
                0
            }
        }
        Err(e) => {
            if json {
                let _ = writeln!(stdout, "{}", e.to_json());
                let _ = stdout.flush();
            }
            eprintln!("uwsgictl: error: {}", e.message);
            e.exit.code()
        }
    }
}
