//! uWSGI's configuration language, read the same way by uwsgid (which judges every key and
//! turns the result into its command line) and uwsgictl (which finds an instance's pidfile,
//! FIFO and stats socket in its ini file): `--ini`/`--json`/`--yaml` files and their sections
//! ([`ini`]), placeholders and magic variables ([`placeholders`]), config logic ([`logic`]),
//! includes (`ini =`, `include =`, `inherit =`, `:section`), `set-placeholder`, `strict` and
//! `print`. [`Reader`] yields the entries in order, each with where it came from; what an
//! entry means is for the caller (uwsgid: `uwsgid/src/config/`, `docs/configuration.md`).

pub mod ini;
pub mod logic;
pub mod placeholders;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ini::{Format, Raw};
use placeholders::{FileInfo, Scope};

/// How deep `ini =` / `include =` may nest (a file including itself stops here).
pub const MAX_DEPTH: usize = 16;

/// How many entries a configuration may expand to (loops and includes multiply them).
pub const MAX_ENTRIES: usize = 100_000;

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
    pub fn located(&self) -> bool {
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
pub struct Entry {
    pub key: String,
    pub value: String,
    /// `FILE line N`, `the command line`, `environment UWSGI_X`.
    pub origin: String,
    /// From the command line: the key is already uwsgid's long name.
    pub cmdline: bool,
}

/// Options that name a configuration file.
pub const CONFIG_SOURCES: &[&str] = &["ini", "json", "js", "yaml", "yml", "include", "inherit"];

pub fn source_format(key: &str) -> Option<Format> {
    match key {
        "ini" => Some(Format::Ini),
        "json" | "js" => Some(Format::Json),
        "yaml" | "yml" => Some(Format::Yaml),
        _ => None,
    }
}

/// Reads configuration files into [`Entry`]s.
pub struct Reader {
    /// Every option given, in order (config-language keys excluded).
    pub entries: Vec<Entry>,
    placeholders: HashMap<String, String>,
    /// The first value each key was given (what `%(key)` expands to).
    first: HashMap<String, String>,
    /// `strict = true` was read (unknown keys are errors for the caller).
    pub strict: bool,
    top: Option<FileInfo>,
    /// The configuration files read, in order.
    pub sources: Vec<String>,
    depth: usize,
    pub warnings: Vec<String>,
    /// `print =` lines go to stderr (not while only judging keys for `--check-config`).
    pub print: bool,
    /// Entries processed so far, bounded by [`MAX_ENTRIES`].
    steps: usize,
}

/// `FILE:section` → (FILE, section). A path may contain ':' only before a '/'.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((p, s)) if !s.contains('/') && !s.is_empty() => (p, Some(s)),
        Some((p, "")) => (p, None),
        _ => (spec, None),
    }
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
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

    /// One option, from outside a file (the command line, the environment).
    pub fn push(&mut self, key: &str, value: String, origin: String, cmdline: bool) {
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

    /// Read `spec` (`FILE`, `FILE:section` or `:section` of `current`); `option` names what
    /// asked for it in messages (`ini`, `include`, ...).
    pub fn load(
        &mut self,
        option: &str,
        spec: &str,
        format: Option<Format>,
        current: Option<&FileInfo>,
    ) -> Result<(), Error> {
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
        let text = std::fs::read_to_string(&path).map_err(|error| Error::Read {
            option: option.to_string(),
            path: path.clone(),
            error,
        })?;
        // %o is the path as named, without the section (as uWSGI 2.0 prints it).
        let given = match current {
            Some(c) if path_text.is_empty() => c.given.clone(),
            _ => path_text.to_string(),
        };
        self.load_text(option, &given, &path, &text, section, format)
    }

    /// Read `text`, the contents of `path` (named `given`), as [`Reader::load`] reads a file:
    /// its `section` (default `uwsgi`), includes resolved from disk.
    pub fn load_text(
        &mut self,
        option: &str,
        given: &str,
        path: &Path,
        text: &str,
        section: Option<&str>,
        format: Option<Format>,
    ) -> Result<(), Error> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::Nesting {
                option: option.to_string(),
                spec: given.to_string(),
            });
        }
        let format = format.unwrap_or_else(|| Format::of(path));
        let want = section.unwrap_or("uwsgi");
        let raws = ini::section(text, want, format)
            .map_err(|e| Error::File {
                option: option.to_string(),
                path: path.to_path_buf(),
                error: Box::new(e),
            })?
            .ok_or_else(|| Error::NoSection {
                option: option.to_string(),
                path: path.to_path_buf(),
                want: want.to_string(),
            })?;
        let info = FileInfo::new(given, path, section);
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
pub fn parse_bool(
    key: &str,
    value: &str,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<bool, Error> {
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
pub fn split_comment(v: &str) -> Option<(&str, &str)> {
    let pos = v.find([';', '#'])?;
    let (head, tail) = v.split_at(pos);
    (head.ends_with(char::is_whitespace) && !head.trim().is_empty()).then(|| (head.trim(), tail))
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
