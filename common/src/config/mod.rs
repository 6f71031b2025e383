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
    ) -> Result<(), String> {
        let (path_text, section) = split_spec(spec);
        let path: PathBuf = if path_text.is_empty() {
            match current {
                Some(c) => c.abs.clone(),
                None => {
                    return Err(format!(
                        "{option} {spec}: a bare :section needs a file; give FILE:section"
                    ))
                }
            }
        } else {
            PathBuf::from(path_text)
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "--{option} {}: {e}; give the path of a readable configuration file",
                path.display()
            )
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
    ) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "{option} {given}: configuration files nest deeper than {MAX_DEPTH} (a file \
                 including itself?)"
            ));
        }
        let format = format.unwrap_or_else(|| Format::of(path));
        let want = section.unwrap_or("uwsgi");
        let raws = ini::section(text, want, format)
            .map_err(|e| format!("--{option} {}: {e}", path.display()))?
            .ok_or_else(|| {
                format!(
                    "--{option} {}: no [{want}] section; options go under a [{want}] header",
                    path.display()
                )
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

    fn expand(
        &self,
        value: &str,
        file: &FileInfo,
        binding: Option<&str>,
    ) -> Result<String, String> {
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

    fn run(&mut self, raws: &[Raw], file: &FileInfo, binding: Option<&str>) -> Result<(), String> {
        let name = file.given.clone();
        let keys: Vec<&str> = raws.iter().map(|r| r.key.as_str()).collect();
        let mut i = 0;
        while i < raws.len() {
            let r = &raws[i];
            let at = format!("{name} line {}", r.line);
            self.steps += 1;
            if self.steps > MAX_ENTRIES {
                return Err(format!(
                    "{at}: the configuration expands to more than {MAX_ENTRIES} entries \
                     (loops or includes multiply them)"
                ));
            }
            let is_if = logic::is_if(&r.key);
            if is_if || logic::is_for(&r.key) {
                let close = if is_if { "endif" } else { "endfor" };
                let end = logic::block_end(&keys, i)
                    .ok_or_else(|| format!("{at}: {} has no matching {close}", r.key))?;
                let value = self
                    .expand(&r.value, file, binding)
                    .map_err(|e| format!("{at}: {e}"))?;
                let body = &raws[i + 1..end];
                if is_if {
                    let (hit, bind) = logic::test(&r.key, &value, |n| self.first.get(n).cloned());
                    if hit {
                        self.run(body, file, bind.as_deref().or(binding))?;
                    }
                } else {
                    let items = logic::items(&r.key, &value).map_err(|e| format!("{at}: {e}"))?;
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
                .map_err(|e| format!("{at}: {e}"))?;
            match r.key.as_str() {
                k @ ("ini" | "include" | "inherit" | "json" | "js" | "yaml" | "yml") => self
                    .load(k, &value, source_format(k), Some(file))
                    // An error inside the nested file already says where it is.
                    .map_err(|e| {
                        if e.contains(" line ") {
                            e
                        } else {
                            format!("{at}: {e}")
                        }
                    })?,
                "set-placeholder" | "set-ph" => {
                    let (n, v) = value.split_once('=').ok_or_else(|| {
                        format!("{at}: {} = {value:?}: expected NAME=VALUE", r.key)
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
) -> Result<bool, String> {
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
            "false" | "no" | "off" | "0" => {
                return Err(format!(
                    "{at}: {key} = {value:?}: uWSGI reads this as true (there are no inline \
                     comments, and only an exact false/no/off/0 is false); remove the comment"
                ))
            }
            _ => {}
        }
    }
    Err(format!(
        "{at}: {key} = {value:?} is not a boolean; use true/false, yes/no, on/off or 1/0"
    ))
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
        assert_eq!(parse_bool("m", "true  ; c", "f", &mut w), Ok(true));
        assert_eq!(w.len(), 1);
        assert!(parse_bool("m", "false ; c", "f", &mut w).is_err());
        assert!(parse_bool("m", "maybe", "f", &mut w).is_err());
        assert_eq!(parse_bool("m", "", "f", &mut w), Ok(true));
        assert_eq!(parse_bool("m", "OFF", "f", &mut w), Ok(false));
    }
}
