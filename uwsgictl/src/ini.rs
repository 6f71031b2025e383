//! Reading the management options from a uWSGI/uwsgid ini file's `[uwsgi]` section.
//!
//! Only what uwsgictl needs is read: `safe-pidfile`, `pidfile` (and their `2` variants),
//! `master-fifo` (repeatable; the first is slot 0), `stats` / `stats-server`, `stats-http` and
//! uwsgid's `name`. Keys may be spelled with `_` for `-`, as uWSGI allows. The magic variables
//! `%d` (the file's directory, with a trailing slash), `%p` (its absolute path), `%s` (its file
//! name), `%n` (its name without extension), `%%`, and `$(VAR)` environment references are
//! expanded. Relative paths are taken from the current directory, as uWSGI takes them from
//! the directory it was started in.

use std::fs;
use std::path::{Path, PathBuf};

/// What an ini file says about how to reach its instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IniTarget {
    pub pidfile: Option<PathBuf>,
    pub fifos: Vec<PathBuf>,
    pub stats: Option<String>,
    pub stats_http: bool,
    pub name: Option<String>,
}

/// Read `path` and extract the `[uwsgi]` section's management options.
pub fn read(path: &Path) -> Result<IniTarget, String> {
    let text = fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "ini {}: no such file; give the path of the instance's ini file",
                path.display()
            )
        } else {
            format!("ini {}: {e}", path.display())
        }
    })?;
    let target = parse(path, &text)?;
    if target == IniTarget::default() {
        return Err(format!(
            "ini {}: its [uwsgi] section names no safe-pidfile, pidfile, master-fifo, stats or \
             name; add one, or give --pidfile, --fifo or --stats",
            path.display()
        ));
    }
    Ok(target)
}

fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "1" | "true" | "yes" | "on" | "y"
    )
}

/// Parse ini text; `path` is used for the magic variables and in messages.
pub fn parse(path: &Path, text: &str) -> Result<IniTarget, String> {
    let mut section: Option<String> = None;
    let mut seen_uwsgi = false;
    let mut target = IniTarget::default();
    let mut pidfiles: Vec<(u8, PathBuf)> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            seen_uwsgi |= name.trim() == "uwsgi";
            continue;
        }
        if section.as_deref() != Some("uwsgi") {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, ""),
        };
        let key = key.replace('_', "-");
        let value = expand(path, value);
        match key.as_str() {
            "safe-pidfile" => pidfiles.push((0, PathBuf::from(value))),
            "pidfile" => pidfiles.push((1, PathBuf::from(value))),
            "safe-pidfile2" => pidfiles.push((2, PathBuf::from(value))),
            "pidfile2" => pidfiles.push((3, PathBuf::from(value))),
            "master-fifo" => target.fifos.push(PathBuf::from(value)),
            "stats" | "stats-server" => target.stats = Some(value),
            "stats-http" => target.stats_http = truthy(&value),
            "name" => target.name = Some(value),
            _ => {}
        }
    }
    if !seen_uwsgi {
        return Err(format!(
            "ini {}: no [uwsgi] section; uwsgictl reads the instance's options from it",
            path.display()
        ));
    }
    pidfiles.sort_by_key(|(rank, _)| *rank);
    target.pidfile = pidfiles.into_iter().map(|(_, p)| p).next();
    Ok(target)
}

/// Expand `%d %p %s %n %%` and `$(VAR)`.
fn expand(path: &Path, value: &str) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let dir = absolute
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    let file = absolute
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = absolute
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('d') => out.push_str(&dir),
                Some('p') => out.push_str(&absolute.display().to_string()),
                Some('s') => out.push_str(&file),
                Some('n') => out.push_str(&stem),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != ')').collect();
                out.push_str(&std::env::var(&name).unwrap_or_default());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_uwsgi_ini() {
        let text = "; comment\n[other]\npidfile = /nope\n[uwsgi]\nmaster = true\n\
                    pidfile = /run/a.pid\nsafe_pidfile = %dsafe.pid\nmaster-fifo = /run/f1\n\
                    master-fifo = /run/f2\nstats = 127.0.0.1:9191\nstats-http\n";
        let t = parse(Path::new("/etc/app/app.ini"), text).unwrap();
        assert_eq!(t.pidfile, Some(PathBuf::from("/etc/app/safe.pid")));
        assert_eq!(
            t.fifos,
            vec![PathBuf::from("/run/f1"), PathBuf::from("/run/f2")]
        );
        assert_eq!(t.stats.as_deref(), Some("127.0.0.1:9191"));
        assert!(t.stats_http);
    }

    #[test]
    fn magic_variables_and_env() {
        std::env::set_var("UWSGICTL_INI_TEST", "x");
        let t = parse(
            Path::new("/srv/site.ini"),
            "[uwsgi]\npidfile = /run/%n-$(UWSGICTL_INI_TEST).pid\nname = %s\n",
        )
        .unwrap();
        assert_eq!(t.pidfile, Some(PathBuf::from("/run/site-x.pid")));
        assert_eq!(t.name.as_deref(), Some("site.ini"));
    }

    #[test]
    fn refuses_a_file_without_uwsgi_section() {
        let e = parse(Path::new("a.ini"), "[app]\nx=1\n").unwrap_err();
        assert!(e.contains("no [uwsgi] section"), "{e}");
    }
}
