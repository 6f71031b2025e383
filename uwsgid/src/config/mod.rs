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

pub mod ini;
pub mod logic;
pub mod options;
pub mod placeholders;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ini::{Format, Raw};
use options::Rule;
use placeholders::{FileInfo, Scope};

/// How deep `ini =` / `include =` may nest (a file including itself stops here).
const MAX_DEPTH: usize = 16;

/// How many entries a configuration may expand to (loops and includes multiply them).
const MAX_ENTRIES: usize = 100_000;

/// Why the configuration cannot be read: each names the file and line (or the option naming
/// the file), the key and the value, and what to write instead.
#[derive(Debug)]
pub enum Error {
    /// `ini =`/`include =` nesting past [`MAX_DEPTH`].
    Nesting {
        option: String,
        spec: String,
    },
    /// `:section` with no current file.
    BareSection {
        option: String,
        spec: String,
    },
    /// The file cannot be read.
    Read {
        option: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file's text is refused (`error` says where in it).
    File {
        option: String,
        path: PathBuf,
        error: Box<Error>,
    },
    NoSection {
        option: String,
        path: PathBuf,
        want: String,
    },
    /// Something wrong at `at` (`FILE line N`).
    At {
        at: String,
        error: Box<Error>,
    },
    /// Loops and includes multiplied the entries past [`MAX_ENTRIES`].
    TooMany {
        at: String,
    },
    /// An `if*`/`for*` block without its end.
    Unclosed {
        at: String,
        key: String,
        close: &'static str,
    },
    /// `set-placeholder` without `NAME=VALUE`.
    SetPlaceholder {
        at: String,
        key: String,
        value: String,
    },
    /// A flag's value: `comment` when it is a false spelling followed by what looks like an
    /// inline comment (uWSGI reads that as true).
    NotBool {
        at: String,
        key: String,
        value: String,
        comment: bool,
    },
    /// A command-line option naming a file, without its value.
    NeedsValue(String),
    // The file's text (ini.rs): the caller adds the file.
    NotJson(String),
    NotYaml(String),
    UnterminatedHeader {
        line: usize,
        text: String,
    },
    NoKey {
        line: usize,
        text: String,
    },
    TopLevel,
    SectionNotObject(String),
    /// A JSON/YAML value that is a map, or a key that is not a scalar.
    BadValue(String),
    // Placeholders (placeholders.rs): the caller adds file and line.
    /// `@(scheme://...)`.
    Scheme {
        path: String,
        scheme: String,
    },
    NotRegular(String),
    Unreadable {
        path: String,
        error: std::io::Error,
    },
    // Config logic (logic.rs).
    NotACount(String),
    ForReadline {
        value: String,
        error: Option<std::io::Error>,
    },
}

impl Error {
    /// The message already says which file and line (an error inside a nested file).
    fn located(&self) -> bool {
        match self {
            Error::At { .. }
            | Error::TooMany { .. }
            | Error::Unclosed { .. }
            | Error::SetPlaceholder { .. }
            | Error::NotBool { .. } => true,
            Error::File { error, .. } => matches!(
                **error,
                Error::UnterminatedHeader { .. }
                    | Error::NoKey { .. }
                    | Error::NotJson(_)
                    | Error::NotYaml(_)
            ),
            _ => false,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Nesting { option, spec } => write!(
                f,
                "{option} {spec}: configuration files nest deeper than {MAX_DEPTH} (a file \
                 including itself?)"
            ),
            Error::BareSection { option, spec } => write!(
                f,
                "{option} {spec}: a bare :section needs a file; give FILE:section"
            ),
            Error::Read {
                option,
                path,
                error,
            } => write!(
                f,
                "--{option} {}: {error}; give the path of a readable configuration file",
                path.display()
            ),
            Error::File {
                option,
                path,
                error,
            } => write!(f, "--{option} {}: {error}", path.display()),
            Error::NoSection { option, path, want } => write!(
                f,
                "--{option} {}: no [{want}] section; options go under a [{want}] header",
                path.display()
            ),
            Error::At { at, error } => write!(f, "{at}: {error}"),
            Error::TooMany { at } => write!(
                f,
                "{at}: the configuration expands to more than {MAX_ENTRIES} entries (loops or \
                 includes multiply them)"
            ),
            Error::Unclosed { at, key, close } => write!(f, "{at}: {key} has no matching {close}"),
            Error::SetPlaceholder { at, key, value } => {
                write!(f, "{at}: {key} = {value:?}: expected NAME=VALUE")
            }
            Error::NotBool {
                at,
                key,
                value,
                comment: true,
            } => write!(
                f,
                "{at}: {key} = {value:?}: uWSGI reads this as true (there are no inline \
                 comments, and only an exact false/no/off/0 is false); remove the comment"
            ),
            Error::NotBool { at, key, value, .. } => write!(
                f,
                "{at}: {key} = {value:?} is not a boolean; use true/false, yes/no, on/off or 1/0"
            ),
            Error::NeedsValue(name) => write!(f, "--{name} needs a value"),
            Error::NotJson(e) => write!(f, "not valid JSON: {e}"),
            Error::NotYaml(e) => write!(f, "not valid YAML: {e}"),
            Error::UnterminatedHeader { line, text } => {
                write!(f, "line {line}: unterminated section header {text:?}")
            }
            Error::NoKey { line, text } => write!(f, "line {line}: {text:?} has no option name"),
            Error::TopLevel => f.write_str("the top level must be an object of sections"),
            Error::SectionNotObject(want) => {
                write!(f, "section {want:?} must be an object of options")
            }
            Error::BadValue(k) => {
                write!(f, "{k}: a value must be a string, number, boolean or list")
            }
            Error::Scheme { path, scheme } => write!(
                f,
                "@({path}): the {scheme}:// scheme is refused (a configuration file may not run \
                 commands or fetch URLs); @(PATH) reads a local file"
            ),
            Error::NotRegular(path) => write!(f, "@({path}): not a regular file"),
            Error::Unreadable { path, error } => {
                write!(f, "@({path}): {error}; give a readable file")
            }
            Error::NotACount(value) => write!(f, "for-times = {value:?}: not a count"),
            Error::ForReadline { value, error: None } => {
                write!(f, "for-readline = {value}: not a regular file")
            }
            Error::ForReadline {
                value,
                error: Some(e),
            } => write!(f, "for-readline = {value}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// `FILE line N: error`.
fn at(at: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |error| Error::At {
        at: at.to_string(),
        error: Box::new(error),
    }
}

/// One option given, with where it came from.
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    value: String,
    origin: String,
    /// From the command line: the key is already uwsgid's long name.
    cmdline: bool,
}

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

/// uwsgid's own options, from the clap definition.
struct Own {
    by_name: HashMap<String, (String, Kind, bool)>,
    shorts: HashMap<char, String>,
}

impl Own {
    fn new() -> Own {
        use clap::CommandFactory;
        let cmd = crate::cli::Args::command();
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
        // clap adds --help and --version when it builds the command, so they are not among
        // the arguments above; they are uwsgid's own (clap answers them), not uWSGI's.
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

/// Options that name a configuration file.
const CONFIG_SOURCES: &[&str] = &["ini", "json", "js", "yaml", "yml", "include", "inherit"];

fn source_format(key: &str) -> Option<Format> {
    match key {
        "ini" => Some(Format::Ini),
        "json" | "js" => Some(Format::Json),
        "yaml" | "yml" => Some(Format::Yaml),
        _ => None,
    }
}

struct Reader {
    entries: Vec<Entry>,
    placeholders: HashMap<String, String>,
    first: HashMap<String, String>,
    strict: bool,
    top: Option<FileInfo>,
    sources: Vec<String>,
    depth: usize,
    warnings: Vec<String>,
    /// `print =` lines go to stderr (not while only judging keys for `--check-config`).
    print: bool,
    /// Entries processed so far, bounded by [`MAX_ENTRIES`].
    steps: usize,
}

/// `FILE:section` → (FILE, section). A path may contain ':' only before a '/'.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((p, s)) if !s.contains('/') && !s.is_empty() => (p, Some(s)),
        Some((p, "")) => (p, None),
        _ => (spec, None),
    }
}

impl Reader {
    fn new() -> Reader {
        Reader {
            entries: Vec::new(),
            placeholders: HashMap::new(),
            first: HashMap::new(),
            strict: false,
            top: None,
            sources: Vec::new(),
            depth: 0,
            warnings: Vec::new(),
            print: true,
            steps: 0,
        }
    }

    fn push(&mut self, key: &str, value: String, origin: String, cmdline: bool) {
        self.first
            .entry(key.to_string())
            .or_insert_with(|| value.clone());
        self.entries.push(Entry {
            key: key.to_string(),
            value,
            origin,
            cmdline,
        });
    }

    /// Read `spec` (`FILE`, `FILE:section` or `:section` of `current`).
    fn load(
        &mut self,
        option: &str,
        spec: &str,
        format: Option<Format>,
        current: Option<&FileInfo>,
    ) -> Result<(), Error> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::Nesting {
                option: option.to_string(),
                spec: spec.to_string(),
            });
        }
        let (path_text, section) = split_spec(spec);
        let path: PathBuf = if path_text.is_empty() {
            match current {
                Some(c) => c.abs.clone(),
                None => {
                    return Err(Error::BareSection {
                        option: option.to_string(),
                        spec: spec.to_string(),
                    })
                }
            }
        } else {
            PathBuf::from(path_text)
        };
        let format = format.unwrap_or_else(|| Format::of(&path));
        let text = std::fs::read_to_string(&path).map_err(|error| Error::Read {
            option: option.to_string(),
            path: path.clone(),
            error,
        })?;
        let want = section.unwrap_or("uwsgi");
        let raws = ini::section(&text, want, format)
            .map_err(|e| Error::File {
                option: option.to_string(),
                path: path.clone(),
                error: Box::new(e),
            })?
            .ok_or_else(|| Error::NoSection {
                option: option.to_string(),
                path: path.clone(),
                want: want.to_string(),
            })?;
        // %o is the path as named, without the section (as uWSGI 2.0 prints it).
        let given = match current {
            Some(c) if path_text.is_empty() => c.given.clone(),
            _ => path_text.to_string(),
        };
        let info = FileInfo::new(&given, &path, section);
        if self.top.is_none() {
            self.top = Some(info.clone());
        }
        self.sources.push(path.display().to_string());
        self.depth += 1;
        let r = self.run(&raws, &info, None);
        self.depth -= 1;
        r
    }

    fn expand(&self, value: &str, file: &FileInfo, binding: Option<&str>) -> Result<String, Error> {
        let top = self.top.as_ref().unwrap_or(file);
        placeholders::expand(
            value,
            &Scope {
                file,
                top,
                binding,
                placeholders: &self.placeholders,
                options: &self.first,
            },
        )
    }

    fn run(&mut self, raws: &[Raw], file: &FileInfo, binding: Option<&str>) -> Result<(), Error> {
        let name = file.given.clone();
        let keys: Vec<&str> = raws.iter().map(|r| r.key.as_str()).collect();
        let mut i = 0;
        while i < raws.len() {
            let r = &raws[i];
            let at = format!("{name} line {}", r.line);
            self.steps += 1;
            if self.steps > MAX_ENTRIES {
                return Err(Error::TooMany { at });
            }
            let is_if = logic::is_if(&r.key);
            if is_if || logic::is_for(&r.key) {
                let close = if is_if { "endif" } else { "endfor" };
                let end = logic::block_end(&keys, i).ok_or_else(|| Error::Unclosed {
                    at: at.clone(),
                    key: r.key.clone(),
                    close,
                })?;
                let value = self
                    .expand(&r.value, file, binding)
                    .map_err(self::at(&at))?;
                let body = &raws[i + 1..end];
                if is_if {
                    let (hit, bind) = logic::test(&r.key, &value, |n| self.first.get(n).cloned());
                    if hit {
                        self.run(body, file, bind.as_deref().or(binding))?;
                    }
                } else {
                    let items = logic::items(&r.key, &value).map_err(self::at(&at))?;
                    for item in items {
                        self.run(body, file, Some(&item))?;
                    }
                }
                i = end + 1;
                continue;
            }
            if r.key == "endif" || r.key == "endfor" {
                self.warnings
                    .push(format!("{at}: {} closes no block; ignored", r.key));
                i += 1;
                continue;
            }
            let value = self
                .expand(&r.value, file, binding)
                .map_err(self::at(&at))?;
            match r.key.as_str() {
                k @ ("ini" | "include" | "inherit" | "json" | "js" | "yaml" | "yml") => self
                    .load(k, &value, source_format(k), Some(file))
                    // An error inside the nested file already says where it is.
                    .map_err(|e| if e.located() { e } else { self::at(&at)(e) })?,
                "set-placeholder" | "set-ph" => {
                    let (n, v) = value.split_once('=').ok_or_else(|| Error::SetPlaceholder {
                        at: at.clone(),
                        key: r.key.clone(),
                        value: value.clone(),
                    })?;
                    self.placeholders
                        .insert(n.trim().to_string(), v.trim().to_string());
                }
                "strict" => self.strict = parse_bool("strict", &value, &at, &mut self.warnings)?,
                "print" | "iprint" if self.print => eprintln!("{value}"),
                "print" | "iprint" => {}
                key => self.push(key, value, at, false),
            }
            i += 1;
        }
        Ok(())
    }
}

/// A flag's value, as uWSGI reads it (false, off, no and 0 are false; uwsgid refuses what is
/// neither a true nor a false spelling, and reads `true ; comment` as uWSGI does, as true).
fn parse_bool(key: &str, value: &str, at: &str, warnings: &mut Vec<String>) -> Result<bool, Error> {
    let not_bool = |comment| Error::NotBool {
        at: at.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        comment,
    };
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "true" | "yes" | "on" | "1" => return Ok(true),
        "false" | "no" | "off" | "0" => return Ok(false),
        _ => {}
    }
    if let Some((head, _)) = split_comment(&v) {
        match head {
            "true" | "yes" | "on" | "1" => {
                warnings.push(format!(
                    "{at}: {key} = {value:?}: uWSGI ini files have no inline comments; read \
                     as true, as uWSGI does"
                ));
                return Ok(true);
            }
            "false" | "no" | "off" | "0" => return Err(not_bool(true)),
            _ => {}
        }
    }
    Err(not_bool(false))
}

/// `4 ; comment` → ("4", "; comment").
fn split_comment(v: &str) -> Option<(&str, &str)> {
    let pos = v.find([';', '#'])?;
    let (head, tail) = v.split_at(pos);
    (head.ends_with(char::is_whitespace) && !head.trim().is_empty()).then(|| (head.trim(), tail))
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
    let own = Own::new();
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
        &own,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_comments() {
        assert_eq!(split_spec("a.ini:sec"), ("a.ini", Some("sec")));
        assert_eq!(split_spec(":sec"), ("", Some("sec")));
        assert_eq!(split_spec("/x:y/a.ini"), ("/x:y/a.ini", None));
        assert_eq!(split_comment("4 ; c"), Some(("4", "; c")));
        assert_eq!(split_comment("a;b"), None);
        let mut w = Vec::new();
        assert_eq!(parse_bool("m", "true  ; c", "f", &mut w).ok(), Some(true));
        assert_eq!(w.len(), 1);
        assert!(parse_bool("m", "false ; c", "f", &mut w).is_err());
        assert!(parse_bool("m", "maybe", "f", &mut w).is_err());
        assert_eq!(parse_bool("m", "", "f", &mut w).ok(), Some(true));
        assert_eq!(parse_bool("m", "OFF", "f", &mut w).ok(), Some(false));
    }
}
