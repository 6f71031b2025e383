//! Generated documentation: man pages and shell completions from the clap definitions and the
//! protocol tables in `common`.
//!
//! [`render_man`] is reusable for any clap command (the lead renders `uwsgid.8` with it):
//! title, NAME, SYNOPSIS, DESCRIPTION, OPTIONS, a COMMANDS section detailing every subcommand
//! and its options, then the caller's extra sections. Output is deterministic (no date), so a
//! test can compare the committed files with freshly rendered ones. [`signals_section`] and
//! [`fifo_section`] render the tables from `common` for either page.

use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use common::fifo::{FifoCommand, UWSGI_ONLY};
use common::signals::MASTER_SIGNALS;

use crate::exit::Exit;

/// One paragraph of an extra man page section.
#[derive(Clone, Debug)]
pub enum ManItem {
    /// A plain paragraph.
    Para(String),
    /// A tagged paragraph: the tag in bold, the text indented below it.
    Tagged { tag: String, text: String },
    /// Literal lines (examples), shown unfilled.
    Literal(String),
}

/// An extra man page section: `TITLE` and its paragraphs.
#[derive(Clone, Debug)]
pub struct ManSection {
    pub title: String,
    pub items: Vec<ManItem>,
}

impl ManSection {
    pub fn new(title: &str) -> ManSection {
        ManSection {
            title: title.to_uppercase(),
            items: Vec::new(),
        }
    }

    pub fn para(mut self, text: impl Into<String>) -> ManSection {
        self.items.push(ManItem::Para(text.into()));
        self
    }

    pub fn tagged(mut self, tag: impl Into<String>, text: impl Into<String>) -> ManSection {
        self.items.push(ManItem::Tagged {
            tag: tag.into(),
            text: text.into(),
        });
        self
    }

    pub fn literal(mut self, text: impl Into<String>) -> ManSection {
        self.items.push(ManItem::Literal(text.into()));
        self
    }
}

fn arg_tag(arg: &clap::Arg) -> Vec<Inline> {
    let mut tag = Vec::new();
    if let Some(short) = arg.get_short() {
        tag.push(bold(format!("-{short}")));
        if arg.get_long().is_some() {
            tag.push(roman(", "));
        }
    }
    if let Some(long) = arg.get_long() {
        tag.push(bold(format!("--{long}")));
    }
    let takes_value = arg.get_action().takes_values();
    if takes_value {
        let names: Vec<String> = arg
            .get_value_names()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
        if arg.is_positional() {
            tag.push(italic(names.join(" ")));
        } else {
            tag.push(roman(" "));
            tag.push(italic(names.join(" ")));
        }
    }
    tag
}

fn arg_text(arg: &clap::Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        text.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !possible.is_empty() && arg.get_action().takes_values() {
        text.push_str(&format!(" [values: {}]", possible.join(", ")));
    }
    text
}

fn render_args<'a>(roff: &mut Roff, args: impl Iterator<Item = &'a clap::Arg>) {
    for arg in args {
        if arg.is_hide_set() {
            continue;
        }
        roff.control("TP", []);
        roff.text(arg_tag(arg));
        let text = arg_text(arg);
        if !text.is_empty() {
            roff.text([roman(text)]);
        }
    }
}

fn render_items(roff: &mut Roff, items: &[ManItem]) {
    for item in items {
        match item {
            ManItem::Para(text) => {
                roff.control("PP", []);
                roff.text([roman(text.as_str())]);
            }
            ManItem::Tagged { tag, text } => {
                roff.control("TP", []);
                roff.text([bold(tag.as_str())]);
                roff.text([roman(text.as_str())]);
            }
            ManItem::Literal(text) => {
                roff.control("PP", []);
                roff.control("nf", []);
                for line in text.lines() {
                    roff.text([roman(line)]);
                    roff.control("br", []);
                }
                roff.control("fi", []);
            }
        }
    }
}

/// Render a man page for `cmd`, its subcommands in a COMMANDS section, then `extra_sections`.
/// The section number comes from `cmd`'s `Command::name` conventions: pass a command whose
/// `display_name` is unset; use [`render_man_section`] for another section number.
pub fn render_man(cmd: clap::Command, extra_sections: &[ManSection]) -> String {
    render_man_section(cmd, "1", extra_sections)
}

/// As [`render_man`], with an explicit section ("1" for uwsgictl, "8" for uwsgid).
pub fn render_man_section(
    mut cmd: clap::Command,
    section: &str,
    extra_sections: &[ManSection],
) -> String {
    cmd.build();
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().unwrap_or("").to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .date("")
        .source(format!("{name} {version}"))
        .manual("uwsgi-rs manual");
    let mut out: Vec<u8> = Vec::new();
    // Writing into a Vec cannot fail.
    man.render_title(&mut out).expect("writing to memory");
    man.render_name_section(&mut out)
        .expect("writing to memory");
    man.render_synopsis_section(&mut out)
        .expect("writing to memory");
    man.render_description_section(&mut out)
        .expect("writing to memory");
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)
            .expect("writing to memory");
    }
    let mut roff = Roff::new();
    let subcommands: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if !subcommands.is_empty() {
        roff.control("SH", ["COMMANDS"]);
        for sub in subcommands {
            roff.control("TP", []);
            let mut usage = vec![bold(format!("{name} {}", sub.get_name()))];
            let args: Vec<&clap::Arg> = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set() && !a.is_global_set())
                .filter(|a| a.get_id() != "help")
                .collect();
            for a in &args {
                usage.push(roman(" "));
                if a.is_positional() {
                    let v = a
                        .get_value_names()
                        .and_then(|v| v.first().map(|s| s.to_string()))
                        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
                    usage.push(italic(v));
                } else if let Some(long) = a.get_long() {
                    usage.push(roman(format!("[--{long}]")));
                }
            }
            roff.text(usage);
            let about = sub
                .get_long_about()
                .or(sub.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            for (i, para) in about.split("\n\n").enumerate() {
                if i > 0 {
                    roff.control("br", []);
                }
                roff.text([roman(para.replace('\n', " "))]);
            }
            if !args.is_empty() {
                roff.control("RS", []);
                render_args(&mut roff, args.into_iter());
                roff.control("RE", []);
            }
        }
    }
    for section in extra_sections {
        roff.control("SH", [section.title.as_str()]);
        render_items(&mut roff, &section.items);
    }
    let mut text = String::from_utf8(out).expect("roff is UTF-8");
    text.push_str(&roff.to_roff());
    text
}

/// The master signal table from `common`, as a man page section.
pub fn signals_section() -> ManSection {
    let mut s = ManSection::new("SIGNALS");
    s = s.para(
        "The master obeys this signal table (uwsgid; uWSGI 2.0 differs for TERM, QUIT and USR2).",
    );
    for sig in MASTER_SIGNALS {
        s = s.tagged(format!("SIG{}", sig.name), sig.action);
    }
    s
}

/// The master FIFO bytes from `common`, as a man page section.
pub fn fifo_section() -> ManSection {
    let mut s = ManSection::new("FIFO COMMANDS");
    s = s.para(
        "One byte per command, written to the master FIFO (--master-fifo); whitespace is ignored.",
    );
    for &c in FifoCommand::ALL {
        let tag = match c {
            FifoCommand::Slot(_) => "0-9".to_string(),
            other => (other.as_byte() as char).to_string(),
        };
        s = s.tagged(tag, format!("{} ({})", c.describe(), c.name()));
    }
    let refused: Vec<String> = UWSGI_ONLY
        .iter()
        .map(|(b, what)| format!("'{}' ({what})", *b as char))
        .collect();
    s.para(format!(
        "uWSGI-only bytes, refused by uwsgid with a log line: {}.",
        refused.join(", ")
    ))
}

/// The exit code table, as a man page section.
pub fn exit_section() -> ManSection {
    let mut s = ManSection::new("EXIT STATUS");
    s = s.para(
        "status follows the LSB convention: 0 running, 1 dead but the pidfile exists (stale, \
         reused or not a master), 3 not running (no pidfile, nothing answers), 4 unknown \
         (unreadable pidfile). Every other command exits with:",
    );
    for &e in Exit::ALL {
        s = s.tagged(
            e.code().to_string(),
            format!("{} ({})", e.describe(), e.name()),
        );
    }
    s
}

/// Every extra section of uwsgictl(1).
pub fn uwsgictl_sections() -> Vec<ManSection> {
    vec![
        ManSection::new("TARGETS")
            .para(
                "--pidfile, --fifo and --stats always win. --ini FILE fills in what its [uwsgi] \
                 section names (safe-pidfile before pidfile; the first master-fifo; stats or \
                 stats-server; stats-http; name). --name NAME means the instance directory \
                 RUNTIME/NAME/ with uwsgid.pid, master.fifo and stats.sock. With no target \
                 option at all, the default instance (--name default) is meant.",
            )
            .para(
                "Given a uwsgid pidfile, its instance record PIDFILE.json names the FIFOs and \
                 the stats address; a record naming another pid is ignored with a warning, and \
                 so is one another user could have written (not a regular file, owned by \
                 neither us nor root, or writable by group or others). With --name, the \
                 runtime directory and RUNTIME/NAME must be ours and writable by nobody else \
                 (RUNTIME/NAME not a symlink), as uwsgid requires; otherwise the command stops \
                 (5) naming the path, owner, mode and fix.",
            ),
        ManSection::new("PIDFILE VALIDATION")
            .para(
                "Before any signal, the pidfile is read and refused, each with its own exit \
                 code, when it is missing, empty, not a decimal number, 0 or 1, negative or out \
                 of range, when its pid is not running, is not a uwsgid or uWSGI master (a \
                 worker is not a master either), or started after the pidfile was written. A \
                 master is known by its executable as well as its name: /proc/PID/exe must be \
                 a file named uwsgi* owned by root or by us and writable by nobody else, so a \
                 process that renamed itself uwsgid (prctl PR_SET_NAME) or a script called \
                 uwsgid is refused (16). The \
                 signal is sent with pidfd_send_signal(2) on a pidfd opened before the check, \
                 so a pid reused in between is never hit; kernels without pidfds fall back to \
                 kill(2) with a warning.",
            )
            .para(
                "The channels are tied to that master: a FIFO is written only if its inode is \
                 open in the master's /proc/PID/fd, and a stats document is used only if it \
                 carries the master's pid and comes from a listening socket the master holds \
                 (found by inode in /proc/net/unix or /proc/net/tcp), so a record naming another instance's FIFO or stats \
                 socket makes no command act on (or report on) that instance (24, 23). A \
                 master that is stopped (state T: SIGSTOP, a debugger) acts on nothing until \
                 continued: commands say so and how to continue it (kill -CONT PID) instead \
                 of timing out, and status reports it as stopped.",
            )
            .para(
                "Against uWSGI 2.0, stop never uses SIGTERM or SIGQUIT (their meaning depends \
                 on the version and --die-on-term): --brutal sends SIGINT, graceful stop writes \
                 'q' to the FIFO. pause and resume read the stats first and toggle only when \
                 needed, since uWSGI only has a toggle.",
            ),
        ManSection::new("WAITING")
            .para(
                "reload --wait polls the stats server (every 1 to 5 ms) and returns when every \
                 worker slot holds a ready worker of the new generation and no worker of an \
                 older generation is alive; for uWSGI, when every worker pid is new and \
                 accepting. A refused or missing stats socket while the master re-executes \
                 counts as still reloading. It fails with the reason and the last state seen \
                 when the master dies (21), the new generation fails or crash-loops (22), or \
                 the timeout passes (20). stop --wait returns once the master has exited. A \
                 progress display is drawn on stderr only when it is a terminal and --json is \
                 not given.",
            ),
        ManSection::new("OUTPUT")
            .para(
                "stdout carries only the result: a line, a table, or with --json exactly one \
                 JSON document (errors included: {\"ok\": false, \"exit_code\": N, \"error\": \
                 {\"kind\", \"message\"}}). stats --watch --json prints one document per line. \
                 Messages, warnings and progress go to stderr.",
            )
            .para(
                "The stats table shows per worker: ID, PID, GEN (uwsgid generation), STATUS \
                 (dead for a slot without a process, which uWSGI calls idle), REQUESTS, REQ/S \
                 (since the previous refresh with --watch, else since the worker spawned), AVG \
                 response time, RSS, RESPAWNS, UPTIME. Columns are dropped on narrow terminals.",
            ),
        exit_section(),
        signals_section(),
        fifo_section(),
        ManSection::new("ENVIRONMENT")
            .tagged("NO_COLOR", "when set, never colour the stats table")
            .tagged("COLUMNS", "the width to render tables for when stdout is not a terminal")
            .tagged(
                "UWSGID_RUNTIME_DIR",
                "the runtime directory (default $XDG_RUNTIME_DIR/uwsgid, else /tmp/uwsgid-UID)",
            ),
        ManSection::new("EXAMPLES").literal(
            "uwsgictl --pidfile /run/app.pid reload --wait --timeout 120\n\
             uwsgictl --ini /etc/uwsgi/app.ini stats --watch\n\
             uwsgictl --name api stop --wait\n\
             uwsgictl --pidfile /run/app.pid --stats /run/app-stats.sock --fifo /run/app.fifo pause\n\
             uwsgictl status || echo not running\n\
             uwsgictl completions bash > /etc/bash_completion.d/uwsgictl",
        ),
        ManSection::new("SEE ALSO").para("uwsgid(8), uwsgi(1)"),
    ]
}

/// uwsgictl(1).
pub fn uwsgictl_man() -> String {
    render_man(crate::cli::command(), &uwsgictl_sections())
}

/// A completion script for `shell`.
pub fn completion(shell: clap_complete::Shell, mut cmd: clap::Command) -> String {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    String::from_utf8(buf).expect("completion scripts are UTF-8")
}

/// The committed files uwsgictl generates, relative to the workspace root.
pub fn generated_files() -> Vec<(PathBuf, String)> {
    use clap_complete::Shell;
    let cmd = crate::cli::command;
    vec![
        (PathBuf::from("man/uwsgictl.1"), uwsgictl_man()),
        (
            PathBuf::from("completions/uwsgictl.bash"),
            completion(Shell::Bash, cmd()),
        ),
        (
            PathBuf::from("completions/_uwsgictl"),
            completion(Shell::Zsh, cmd()),
        ),
        (
            PathBuf::from("completions/uwsgictl.fish"),
            completion(Shell::Fish, cmd()),
        ),
    ]
}

/// Compare (or with `regenerate`, rewrite) generated files under `root`; returns the stale ones.
pub fn check_generated(root: &Path, files: &[(PathBuf, String)], regenerate: bool) -> Vec<PathBuf> {
    let mut stale = Vec::new();
    for (rel, content) in files {
        let path = root.join(rel);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != *content {
            if regenerate {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                std::fs::write(&path, content)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            } else {
                stale.push(rel.clone());
            }
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_every_command_and_table() {
        let man = uwsgictl_man();
        for needle in [
            ".TH uwsgictl 1",
            "COMMANDS",
            "uwsgictl reload",
            "EXIT STATUS",
            "SIGNALS",
            "FIFO COMMANDS",
            "\\-\\-wait",
            "pidfile\\-not\\-a\\-number",
        ] {
            assert!(man.contains(needle), "missing {needle:?}");
        }
        assert_eq!(man, uwsgictl_man(), "rendering is deterministic");
    }

    #[test]
    fn render_man_works_for_other_commands() {
        let cmd = clap::Command::new("uwsgid")
            .version("0.1.0")
            .about("the daemon")
            .arg(
                clap::Arg::new("processes")
                    .long("processes")
                    .value_name("N"),
            );
        let man = render_man_section(cmd, "8", &[signals_section()]);
        assert!(man.contains(".TH uwsgid 8"), "{man}");
        assert!(man.contains("SIGHUP"), "{man}");
        assert!(man.contains("processes"), "{man}");
    }
}
