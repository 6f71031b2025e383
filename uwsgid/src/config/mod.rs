//! uWSGI's configuration language: the command line, `--ini`/`--json`/`--yaml` files (and a
//! bare `FILE.ini` argument), `UWSGI_*` environment variables, placeholders, magic variables,
//! config logic and includes, turned into the command-line words [`crate::cli`] validates.
//!
//! Order and precedence, as in uWSGI: `UWSGI_*` variables first (lowest), then the command
//! line from left to right with each configuration file's entries in the place it is named.
//! A single-valued option keeps its last value, a repeatable one accumulates, a flag takes its
//! last boolean. Each key of a file is judged by [`options`]: supported, accepted with no
//! effect (one warning), refused (all refusals are reported together), or, when it is no
//! option at all, a placeholder (an error under `strict = true`). `docs/configuration.md`
//! says what is covered.
//!
//! The language itself (files, sections, placeholders, logic, includes) is `common::config`,
//! which uwsgictl reads ini files with too; this module adds what only uwsgid does: the
//! command line and `UWSGI_*` variables around it, and the judgment of each key.

pub mod options;

pub use common::config::{ini, logic, placeholders, Error};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};

use common::config::{
    parse_bool, source_format, split_comment, split_spec, Reader, CONFIG_SOURCES,
};
use options::Rule;

/// `--check-config`'s line for one key of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub origin: String,
    pub key: String,
    pub value: String,
    pub verdict: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} = {:?}: {}",
            self.origin, self.key, self.value, self.verdict
        )
    }
}

/// The configuration, read.
#[derive(Clone, Debug, Default)]
pub struct Expanded {
    /// Command-line words for clap, the program name first.
    pub words: Vec<String>,
    pub warnings: Vec<String>,
    pub verdicts: Vec<Verdict>,
    /// One line per refused key: option, where, why.
    pub refused: Vec<String>,
    /// The configuration files read, in order.
    pub sources: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flag,
    Single,
    Multi,
}

/// uwsgid's clap definition, built once per process and kept: building it (a hundred
/// arguments, their help, their value parsers) costs about as much as parsing a short
/// command line with it, and a start reads the configuration, parses it, and looks names up
/// for the exec workers' `UWSGID_OPT`. Parsing with it again is what clap's
/// `try_get_matches_from_mut` is for (it keeps the first program name it sees for usage
/// lines, the same in one process). Do not call it again from inside `f`.
pub fn with_command<R>(f: impl FnOnce(&mut clap::Command) -> R) -> R {
    static COMMAND: LazyLock<Mutex<clap::Command>> = LazyLock::new(|| {
        use clap::CommandFactory;
        let mut cmd = crate::cli::Args::command();
        cmd.build();
        Mutex::new(cmd)
    });
    f(&mut COMMAND.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Build the options' definition and name table now, if this process has not yet: the
/// master calls it once it is quiet, so that a reload's check of the options does not
/// wait for them.
pub fn prepare() {
    Own::get_or_build();
}

/// uwsgid's own options, from the clap definition.
struct Own {
    by_name: HashMap<String, (String, Kind, bool)>,
    shorts: HashMap<char, String>,
}

impl Own {
    /// The table, built once per process from [`with_command`]'s definition.
    fn get_or_build() -> &'static Own {
        static OWN: OnceLock<Own> = OnceLock::new();
        OWN.get_or_init(Own::new)
    }

    fn new() -> Own {
        with_command(|cmd| Own::of(cmd))
    }

    fn of(cmd: &clap::Command) -> Own {
        let mut by_name = HashMap::new();
        let mut shorts = HashMap::new();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            let kind = match a.get_action() {
                clap::ArgAction::SetTrue => Kind::Flag,
                clap::ArgAction::Append => Kind::Multi,
                clap::ArgAction::Set => Kind::Single,
                _ => continue,
            };
            let numeric = a
                .get_value_names()
                .is_some_and(|v| v.iter().any(|n| n == "N" || n == "SECS"));
            let info = (long.to_string(), kind, numeric);
            by_name.insert(long.to_string(), info.clone());
            for alias in a.get_visible_aliases().unwrap_or_default() {
                by_name.insert(alias.to_string(), info.clone());
            }
            if let Some(c) = a.get_short() {
                shorts.insert(c, long.to_string());
            }
        }
        // clap's own --help and --version (their actions are skipped above) are uwsgid's own
        // (clap answers them), not uWSGI's.
        for (long, short) in [("help", 'h'), ("version", 'V')] {
            by_name.insert(long.to_string(), (long.to_string(), Kind::Flag, false));
            shorts.insert(short, long.to_string());
        }
        Own { by_name, shorts }
    }

    fn get(&self, name: &str) -> Option<&(String, Kind, bool)> {
        if CONFIG_SOURCES.contains(&name) || name == "strict" {
            return None;
        }
        self.by_name.get(name)
    }
}

/// Read the whole configuration `argv` names.
pub fn expand(argv: &[String]) -> Result<Expanded, Error> {
    read(argv, true)
}

/// Like [`expand`], printing nothing (`print =` lines): for a second reading of the same
/// configuration (the options the `uwsgi` Python module shows as `uwsgi.opt`).
pub fn expand_quiet(argv: &[String]) -> Result<Expanded, Error> {
    read(argv, false)
}

/// The verdict for every key, for `--check-config` (reads like [`expand`], prints nothing).
pub fn verdicts(argv: &[String]) -> Vec<Verdict> {
    read(argv, false).map(|e| e.verdicts).unwrap_or_default()
}

fn read(argv: &[String], print: bool) -> Result<Expanded, Error> {
    let own = Own::get_or_build();
    let mut r = Reader::new();
    r.print = print;
    let mut raw_words: Vec<String> = Vec::new();

    // UWSGI_* variables: options, lowest precedence. Names that are no option are ignored.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("UWSGI_")?;
            Some((name.to_ascii_lowercase().replace('_', "-"), v))
        })
        .collect();
    env.sort();
    for (key, value) in env {
        let origin = format!(
            "environment UWSGI_{}",
            key.to_ascii_uppercase().replace('-', "_")
        );
        if let Some(f) = source_format(&key) {
            r.load(&key, &value, Some(f), None)?;
        } else if options::rule(&key, |k| own.get(k).is_some()).is_some() {
            r.push(&key, value, origin, false);
        }
    }

    let mut i = 1;
    while i < argv.len() {
        let w = &argv[i];
        i += 1;
        if let Some(body) = w.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let value = |i: &mut usize| -> Result<String, Error> {
                if let Some(v) = &inline {
                    return Ok(v.clone());
                }
                let v = argv
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| Error::NeedsValue(name.to_string()))?;
                *i += 1;
                Ok(v)
            };
            if CONFIG_SOURCES.contains(&name) {
                let spec = value(&mut i)?;
                r.load(name, &spec, source_format(name), None)?;
            } else if name == "strict" {
                r.strict = true;
            } else if let Some((long, kind, _)) = own.get(name) {
                let v = if *kind == Kind::Flag {
                    inline.clone().unwrap_or_default()
                } else if let Ok(v) = value(&mut i) {
                    v
                } else {
                    // No value: clap says so in its own words.
                    raw_words.push(w.clone());
                    continue;
                };
                r.push(&long.clone(), v, "the command line".into(), true);
            } else if options::rule(name, |_| false).is_some() || logic::unsupported(name) {
                // A uWSGI option that is not one of uwsgid's (`--enable-threads`,
                // `--socket X`): judged like a file's key. uWSGI's help does not say which
                // take a value: the next word is its value unless it is an option.
                let v = match (&inline, argv.get(i)) {
                    (Some(v), _) => v.clone(),
                    (None, Some(next)) if !next.starts_with('-') => {
                        i += 1;
                        next.clone()
                    }
                    _ => String::new(),
                };
                r.push(name, v, "the command line".into(), false);
            } else {
                raw_words.push(w.clone());
            }
        } else if let Some(c) = w
            .strip_prefix('-')
            .filter(|s| s.chars().count() == 1)
            .and_then(|s| s.chars().next())
        {
            match own.shorts.get(&c).and_then(|l| own.get(l)) {
                Some((long, Kind::Flag, _)) => r.push(
                    &long.clone(),
                    String::new(),
                    "the command line".into(),
                    true,
                ),
                Some((long, _, _)) => match argv.get(i) {
                    Some(v) => {
                        i += 1;
                        r.push(&long.clone(), v.clone(), "the command line".into(), true);
                    }
                    None => raw_words.push(w.clone()),
                },
                None => raw_words.push(w.clone()),
            }
        } else if [".ini", ".json", ".js", ".yaml", ".yml"]
            .iter()
            .any(|e| w.ends_with(e) || split_spec(w).0.ends_with(e))
        {
            // A bare configuration file, as `uwsgi app.ini` takes it.
            r.load("ini", w, None, None)?;
        } else {
            raw_words.push(w.clone());
        }
    }
    Ok(finish(
        r,
        own,
        argv.first().cloned().unwrap_or_default(),
        raw_words,
    ))
}

fn finish(r: Reader, own: &Own, argv0: String, raw_words: Vec<String>) -> Expanded {
    let mut out = Expanded {
        warnings: r.warnings,
        sources: r.sources,
        ..Expanded::default()
    };
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut warned: Vec<String> = Vec::new();
    let mut add = |long: &str, value: String, origin: &str| {
        if !values.contains_key(long) {
            order.push(long.to_string());
        }
        values
            .entry(long.to_string())
            .or_default()
            .push((value, origin.to_string()));
    };
    for e in &r.entries {
        let rule = if e.cmdline {
            Some(Rule::Own)
        } else if logic::unsupported(&e.key) {
            Some(Rule::Refused("config logic uwsgid does not implement"))
        } else {
            options::rule(&e.key, |k| own.get(k).is_some())
        };
        let verdict = match rule {
            None if r.strict => {
                out.refused.push(format!(
                    "{} ({}): not an option (strict = true makes unknown keys errors)",
                    e.key, e.origin
                ));
                "refused: not an option (strict)".to_string()
            }
            None => "placeholder (not an option)".to_string(),
            Some(Rule::Own) => {
                let long = own.get(&e.key).map(|o| o.0.clone()).unwrap_or_default();
                add(&long, e.value.clone(), &e.origin);
                "supported".to_string()
            }
            Some(Rule::Arg(long)) => {
                add(long, e.value.clone(), &e.origin);
                "supported".to_string()
            }
            Some(Rule::Venv) => {
                let python = Path::new(&e.value).join("bin").join("python");
                if python.exists() {
                    add("python", python.display().to_string(), &e.origin);
                    "supported (the interpreter is DIR/bin/python)".to_string()
                } else {
                    let why = format!("{} does not exist; give a virtualenv", python.display());
                    out.refused.push(format!("{} ({}): {why}", e.key, e.origin));
                    format!("refused: {why}")
                }
            }
            Some(Rule::NoEffect(why)) => {
                if !warned.contains(&e.key) {
                    warned.push(e.key.clone());
                    out.warnings.push(format!(
                        "{}: {} has no effect in uwsgid: {why}",
                        e.origin, e.key
                    ));
                }
                format!("no effect: {why}")
            }
            Some(Rule::Refused(why)) => {
                out.refused.push(format!("{} ({}): {why}", e.key, e.origin));
                format!("refused: {why}")
            }
            Some(Rule::NotYet(why)) => {
                out.refused.push(format!(
                    "{} ({}): not implemented yet: {why}",
                    e.key, e.origin
                ));
                format!("refused, not implemented yet: {why}")
            }
        };
        if !e.cmdline {
            out.verdicts.push(Verdict {
                origin: e.origin.clone(),
                key: e.key.clone(),
                value: e.value.clone(),
                verdict,
            });
        }
    }
    let mut words = vec![argv0];
    for long in &order {
        let vals = &values[long];
        let (kind, numeric) = own
            .get(long)
            .map(|o| (o.1, o.2))
            .unwrap_or((Kind::Single, false));
        match kind {
            Kind::Flag => {
                let (v, origin) = vals.last().expect("one value");
                match parse_bool(long, v, origin, &mut out.warnings) {
                    Ok(true) => words.push(format!("--{long}")),
                    Ok(false) => {}
                    Err(e) => out.refused.push(e.to_string()),
                }
            }
            Kind::Single => {
                let (v, origin) = vals.last().expect("one value");
                let v = match split_comment(v) {
                    Some((head, _)) if numeric => {
                        out.warnings.push(format!(
                            "{origin}: {long} = {v:?}: uWSGI ini files have no inline comments; \
                             read as {head}, as uWSGI does"
                        ));
                        head.to_string()
                    }
                    _ => v.clone(),
                };
                words.push(format!("--{long}"));
                words.push(v);
            }
            Kind::Multi => {
                for (v, _) in vals {
                    words.push(format!("--{long}"));
                    words.push(v.clone());
                }
            }
        }
    }
    words.extend(raw_words);
    out.words = words;
    out
}
