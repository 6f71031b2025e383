//! Config logic, as uWSGI 2.0 defines it: `if-*` … `endif` blocks and `for*` … `endfor`
//! loops over the entries of a file. Inside a block `%(_)` is the tested value (the
//! variable's value, the path, the option's value) or the loop item; `if-not-*` blocks bind
//! nothing. Blocks nest (uwsgid finds each block's matching end by counting).

use std::path::Path;

use super::Error;

/// Whether `key` opens an `if` block.
pub fn is_if(key: &str) -> bool {
    matches!(
        key,
        "if-env"
            | "ifenv"
            | "if-not-env"
            | "if-exists"
            | "ifexists"
            | "if-not-exists"
            | "if-file"
            | "if-not-file"
            | "if-dir"
            | "ifdir"
            | "if-directory"
            | "if-not-dir"
            | "if-opt"
            | "if-not-opt"
            | "if-hostname"
            | "if-not-hostname"
    )
}

/// Whether `key` opens a `for` loop.
pub fn is_for(key: &str) -> bool {
    matches!(key, "for" | "for-times" | "for-readline" | "for-glob")
}

/// Config-logic keys uwsgid does not implement (refused, never a placeholder).
pub fn unsupported(key: &str) -> bool {
    key.starts_with("if-") || key.starts_with("for-") || key == "ifplugin"
}

/// Evaluate an `if-*` with its expanded value: (true?, the `%(_)` binding inside).
pub fn test(
    key: &str,
    value: &str,
    option: impl Fn(&str) -> Option<String>,
) -> (bool, Option<String>) {
    let negated = key.starts_with("if-not-");
    let kind = key
        .trim_start_matches("if-not-")
        .trim_start_matches("if-")
        .trim_start_matches("if");
    let (hit, bind) = match kind {
        "env" => {
            let (name, want) = match value.split_once('=') {
                Some((n, w)) => (n, Some(w)),
                None => (value, None),
            };
            match std::env::var(name.trim()) {
                Ok(v) if want.is_none() || want == Some(v.as_str()) => (true, Some(v)),
                _ => (false, None),
            }
        }
        "exists" => (Path::new(value).exists(), Some(value.to_string())),
        "file" => (Path::new(value).is_file(), Some(value.to_string())),
        "dir" | "directory" => (Path::new(value).is_dir(), Some(value.to_string())),
        "opt" => {
            let (name, want) = match value.split_once('=') {
                Some((n, w)) => (n.trim(), Some(w.trim())),
                None => (value.trim(), None),
            };
            match option(name) {
                Some(v) if want.is_some_and(|w| w == v) => (true, Some(v)),
                Some(v) if want.is_none() && !v.is_empty() => (true, Some(v)),
                _ => (false, None),
            }
        }
        "hostname" => {
            let h = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            (h == value, Some(h))
        }
        _ => (false, None),
    };
    if negated {
        (!hit, None)
    } else {
        (hit, bind)
    }
}

/// The items of a `for*` loop.
pub fn items(key: &str, value: &str) -> Result<Vec<String>, Error> {
    Ok(match key {
        "for" => value.split_whitespace().map(str::to_string).collect(),
        "for-times" => {
            let n: u32 = value
                .trim()
                .parse()
                .map_err(|_| Error::NotACount(value.to_string()))?;
            (1..=n.min(10_000)).map(|i| i.to_string()).collect()
        }
        "for-readline" if !Path::new(value).is_file() => {
            return Err(Error::ForReadline {
                value: value.to_string(),
                error: None,
            })
        }
        "for-readline" => std::fs::read_to_string(value)
            .map_err(|e| Error::ForReadline {
                value: value.to_string(),
                error: Some(e),
            })?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        "for-glob" => glob(value),
        _ => Vec::new(),
    })
}

/// A small glob: `*` and `?` in the last path component only (what uWSGI's files use).
fn glob(pattern: &str) -> Vec<String> {
    let path = Path::new(pattern);
    let (dir, pat) = match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) => (d, f.to_string_lossy().into_owned()),
        _ => return Vec::new(),
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| matches(pat.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
        .map(|e| {
            path.parent()
                .unwrap_or(Path::new(""))
                .join(e.file_name())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

fn matches(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
        (Some(b'?'), Some(_)) => matches(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => matches(&p[1..], &s[1..]),
        _ => false,
    }
}

/// The index of the `endif`/`endfor` closing the block opened at `start`, counting nested
/// blocks of the same kind.
pub fn block_end(keys: &[&str], start: usize) -> Option<usize> {
    let opening = keys[start];
    let (opens, close): (fn(&str) -> bool, &str) = if is_for(opening) {
        (is_for, "endfor")
    } else {
        (is_if, "endif")
    };
    let mut depth = 0usize;
    for (i, k) in keys.iter().enumerate().skip(start + 1) {
        if opens(k) {
            depth += 1;
        } else if *k == close {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_blocks() {
        assert!(matches(b"host*", b"hosts"));
        assert!(!matches(b"host?", b"host"));
        let keys = ["if-env", "a", "if-opt", "endif", "endif", "x"];
        assert_eq!(block_end(&keys, 0), Some(4));
        assert_eq!(block_end(&keys, 2), Some(3));
        assert_eq!(block_end(&["for", "endif"], 0), None);
    }
}
