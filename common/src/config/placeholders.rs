//! Value expansion, as uWSGI 2.0 does it while it reads a file: `%(name)` placeholders with
//! their arithmetic, the one-letter magic variables (`%d`, `%n`, ...), `$(ENV)` and `@(FILE)`.
//!
//! Rules (checked against uWSGI 2.0's own output by the `config_placeholders` tests):
//! - `%(name)`: the block variable `_` of config logic, then a `set-placeholder`, then the
//!   first value an earlier key of that name was given, then the environment variable
//!   `UWSGI_NAME` (upper case, `-` as `_`). Unknown: left as written.
//! - `%(a OP b ...)` with spaces around `+ - * /` (left to right, integers, an unknown operand
//!   counts 0) and `%(a ++)`, `%(a --)`.
//! - `%%` is `%`; a magic letter uWSGI does not know expands to nothing.
//! - `$(NAME)`: the environment variable; unset, it is left as written.
//! - `@(PATH)`: the file's contents without its trailing newline. A missing file is an error.
//!   `@(scheme://...)` is refused: `exec://` would run a command from a configuration file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::Error;

/// The file a line comes from, for the magic variables.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// As it was named (`--ini a/b.ini:sec` gives `a/b.ini:sec`).
    pub given: String,
    /// The path, absolute.
    pub abs: PathBuf,
    /// The section named explicitly (`FILE:section`), else empty.
    pub section: String,
}

impl FileInfo {
    pub fn new(given: &str, path: &Path, section: Option<&str>) -> FileInfo {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        FileInfo {
            given: given.to_string(),
            abs,
            section: section.unwrap_or_default().to_string(),
        }
    }

    fn dir(&self) -> String {
        let d = self.abs.parent().unwrap_or(Path::new("/"));
        let d = d.to_string_lossy();
        if d.ends_with('/') {
            d.into_owned()
        } else {
            format!("{d}/")
        }
    }

    fn file_name(&self) -> String {
        self.abs
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn stem(&self) -> String {
        let n = self.file_name();
        match n.rsplit_once('.') {
            Some((s, _)) if !s.is_empty() => s.to_string(),
            _ => n,
        }
    }

    fn ext(&self) -> String {
        let n = self.file_name();
        match n.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => e.to_string(),
            _ => String::new(),
        }
    }

    fn parent_name(&self) -> String {
        self.abs
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn magic(&self, c: char) -> String {
        match c.to_ascii_lowercase() {
            'o' => self.given.clone(),
            'p' => self.abs.to_string_lossy().into_owned(),
            's' => self.file_name(),
            'd' => self.dir(),
            'e' => self.ext(),
            'n' => self.stem(),
            'c' => self.parent_name(),
            'x' => self.section.clone(),
            _ => String::new(),
        }
    }
}

/// What a value is expanded against.
pub struct Scope<'a> {
    /// The file the line is in.
    pub file: &'a FileInfo,
    /// The first file read (uWSGI's "first non-template" file): the upper-case letters.
    pub top: &'a FileInfo,
    /// `%(_)` of config logic.
    pub binding: Option<&'a str>,
    pub placeholders: &'a HashMap<String, String>,
    /// The first value of each option seen so far.
    pub options: &'a HashMap<String, String>,
}

impl Scope<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        if name == "_" {
            return self.binding.map(str::to_string);
        }
        if let Some(v) = self.placeholders.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.options.get(name) {
            return Some(v.clone());
        }
        let env = format!("UWSGI_{}", name.to_ascii_uppercase().replace('-', "_"));
        std::env::var(env).ok()
    }

    /// `%(...)`'s inside: a name, or arithmetic. `None`: left as written.
    fn placeholder(&self, inner: &str) -> Option<String> {
        let words: Vec<&str> = inner.split_whitespace().collect();
        if words.len() <= 1 {
            return self.lookup(inner);
        }
        let num = |w: &str| -> i64 {
            let v = self.lookup(w).unwrap_or_else(|| w.to_string());
            v.trim().parse::<i64>().unwrap_or(0)
        };
        let mut acc = num(words[0]);
        let mut i = 1;
        while i < words.len() {
            match words[i] {
                "++" => acc = acc.wrapping_add(1),
                "--" => acc = acc.wrapping_sub(1),
                op @ ("+" | "-" | "*" | "/") => {
                    let Some(w) = words.get(i + 1) else { break };
                    let b = num(w);
                    acc = match op {
                        "+" => acc.wrapping_add(b),
                        "-" => acc.wrapping_sub(b),
                        "*" => acc.wrapping_mul(b),
                        _ if b == 0 => 0,
                        _ => acc.wrapping_div(b),
                    };
                    i += 1;
                }
                _ => return self.lookup(inner),
            }
            i += 1;
        }
        Some(acc.to_string())
    }
}

/// One-letter variables not tied to a file.
fn global_magic(c: char) -> Option<String> {
    Some(match c {
        'v' => std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        'V' => env!("CARGO_PKG_VERSION").to_string(),
        'h' => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        't' => now().as_secs().to_string(),
        'T' => now().as_micros().to_string(),
        'k' => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
        'u' => nix::unistd::getuid().to_string(),
        'g' => nix::unistd::getgid().to_string(),
        'U' => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| nix::unistd::getuid().to_string()),
        'G' => nix::unistd::Group::from_gid(nix::unistd::getgid())
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| nix::unistd::getgid().to_string()),
        _ => return None,
    })
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// `%0`..`%9`: the components of the file's directory.
fn dir_component(file: &FileInfo, n: usize) -> String {
    file.abs
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .nth(n)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Expand one value. Errors name the problem; the caller adds file and line.
pub fn expand(value: &str, scope: &Scope) -> Result<String, Error> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find(['%', '$', '@']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let sigil = tail.as_bytes()[0];
        let after = &tail[1..];
        if after.starts_with('(') {
            if let Some(end) = after.find(')') {
                let inner = &after[1..end];
                let whole = &tail[..end + 2];
                match sigil {
                    b'%' => out.push_str(&scope.placeholder(inner).unwrap_or(whole.to_string())),
                    b'$' => out.push_str(&std::env::var(inner).unwrap_or(whole.to_string())),
                    _ => out.push_str(&file_contents(inner)?),
                }
                rest = &after[end + 1..];
                continue;
            }
        }
        if sigil == b'%' {
            if let Some(c) = after.chars().next() {
                let s = match c {
                    '%' => "%".to_string(),
                    '0'..='9' => dir_component(scope.file, c as usize - '0' as usize),
                    'o' | 'p' | 's' | 'd' | 'e' | 'n' | 'c' | 'x' => scope.file.magic(c),
                    'O' | 'P' | 'S' | 'D' | 'E' | 'N' | 'C' | 'X' => scope.top.magic(c),
                    c => global_magic(c).unwrap_or_default(),
                };
                out.push_str(&s);
                rest = &after[c.len_utf8()..];
                continue;
            }
        }
        out.push(sigil as char);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

fn file_contents(path: &str) -> Result<String, Error> {
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(Error::Scheme {
            path: path.to_string(),
            scheme: scheme.to_string(),
        });
    }
    let unreadable = |error| Error::Unreadable {
        path: path.to_string(),
        error,
    };
    // A regular file only: a FIFO or a device would block or never end.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Error::NotRegular(path.to_string())),
        Err(e) => return Err(unreadable(e)),
    }
    let mut text = std::fs::read_to_string(path).map_err(unreadable)?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math_and_literals() {
        let f = FileInfo::new("a/b.ini", Path::new("/x/a/b.ini"), None);
        let mut opts = HashMap::new();
        opts.insert("n".to_string(), "5".to_string());
        let ph = HashMap::new();
        let s = Scope {
            file: &f,
            top: &f,
            binding: None,
            placeholders: &ph,
            options: &opts,
        };
        let e = |v: &str| expand(v, &s).unwrap();
        assert_eq!(e("%(n + 1 * 2)"), "12");
        assert_eq!(e("%(n ++)"), "6");
        assert_eq!(e("%(nope + 1)"), "1");
        assert_eq!(e("%(nope)"), "%(nope)");
        assert_eq!(e("%% [%z] %d %n %e %0"), "% [] /x/a/ b ini x");
        assert_eq!(e("$(SURELY_UNSET_VAR_X)"), "$(SURELY_UNSET_VAR_X)");
        assert!(expand("@(exec://id)", &s)
            .unwrap_err()
            .to_string()
            .contains("refused"));
    }
}
