//! Reading the management options from a uWSGI/uwsgid ini file's `[uwsgi]` section (or the
//! section `FILE:section` names), with the configuration language uwsgid reads it with
//! (`common::config`): placeholders (`%(name)`, `set-placeholder`), the magic variables
//! (`%d`, `%n`, ...), `$(VAR)`, `@(FILE)`, config logic (`if-env`, `for`, ...) and includes
//! (`ini = other.ini`, `ini = :section`, `include`, `inherit`, JSON and YAML files). So
//! uwsgictl finds the pidfile where uwsgid wrote it.
//!
//! Only what uwsgictl needs is kept: `safe-pidfile`, `pidfile` (and their `2` variants),
//! `master-fifo` (repeatable; the first is slot 0), `stats` / `stats-server`, `stats-http` and
//! uwsgid's `name`; for a single-valued key the last value wins, as in uwsgid. Keys may be
//! spelled with `_` for `-`, as uWSGI allows. Relative paths are taken from the current
//! directory, as uWSGI takes them from the directory it was started in.

use std::fs;
use std::path::{Path, PathBuf};

use common::config::{split_spec, Reader};

/// What an ini file says about how to reach its instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IniTarget {
    pub pidfile: Option<PathBuf>,
    pub fifos: Vec<PathBuf>,
    pub stats: Option<String>,
    pub stats_http: bool,
    pub name: Option<String>,
}

/// Read `path` (`FILE` or `FILE:section`) and extract the management options.
pub fn read(path: &Path) -> Result<IniTarget, String> {
    let spec = path.to_string_lossy();
    let (file, _) = split_spec(&spec);
    let text = fs::read_to_string(file).map_err(|e| {
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

/// Parse `text`, the contents of `path` (`FILE` or `FILE:section`); `path` gives the magic
/// variables, includes are read from disk.
pub fn parse(path: &Path, text: &str) -> Result<IniTarget, String> {
    let spec = path.to_string_lossy();
    let (file, section) = split_spec(&spec);
    let mut reader = Reader::new();
    reader.print = false;
    reader
        .load_text("ini", file, Path::new(file), text, section, None)
        .map_err(|e| match e {
            common::config::Error::NoSection { .. } => format!(
                "ini {}: no [{}] section; uwsgictl reads the instance's options from it",
                path.display(),
                section.unwrap_or("uwsgi")
            ),
            e => {
                let e = e.to_string();
                format!("ini {}", e.strip_prefix("--ini ").unwrap_or(&e))
            }
        })?;
    let mut target = IniTarget::default();
    let mut pidfiles: [Option<PathBuf>; 4] = Default::default();
    for e in reader.entries {
        let value = e.value;
        match e.key.replace('_', "-").as_str() {
            "safe-pidfile" => pidfiles[0] = Some(PathBuf::from(value)),
            "pidfile" => pidfiles[1] = Some(PathBuf::from(value)),
            "safe-pidfile2" => pidfiles[2] = Some(PathBuf::from(value)),
            "pidfile2" => pidfiles[3] = Some(PathBuf::from(value)),
            "master-fifo" => target.fifos.push(PathBuf::from(value)),
            "stats" | "stats-server" => target.stats = Some(value),
            "stats-http" => target.stats_http = truthy(&value),
            "name" => target.name = Some(value),
            _ => {}
        }
    }
    target.pidfile = pidfiles.into_iter().flatten().next();
    Ok(target)
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

    /// A scratch directory, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!(
                "uwsgictl-ini-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_configuration_language_as_uwsgid_reads_it() {
        let d = Scratch::new("lang");
        std::env::set_var("UWSGICTL_INI_LANG", "prod");
        d.write(
            "base.ini",
            "[uwsgi]\nrun = %drun\nstats = %(run)/stats.sock\n",
        );
        let app = d.write(
            "app.ini",
            "[uwsgi]\nini = %dbase.ini\nset-placeholder = tag=%n-$(UWSGICTL_INI_LANG)\n\
             if-env = UWSGICTL_INI_LANG\npidfile = %(run)/%(tag).pid\nendif =\n\
             if-env = UWSGICTL_INI_UNSET_X\npidfile = /nope.pid\nendif =\n\
             for = a b\nmaster-fifo = %(run)/%(_).fifo\nendfor =\n\
             ini = :extra\n[extra]\nname = from-%(tag)\n",
        );
        let run = format!("{}/run", d.0.display());
        let t = read(&app).unwrap();
        assert_eq!(
            t.pidfile,
            Some(PathBuf::from(format!("{run}/app-prod.pid")))
        );
        assert_eq!(t.stats, Some(format!("{run}/stats.sock")));
        assert_eq!(
            t.fifos,
            vec![
                PathBuf::from(format!("{run}/a.fifo")),
                PathBuf::from(format!("{run}/b.fifo"))
            ]
        );
        assert_eq!(t.name.as_deref(), Some("from-app-prod"));
        // FILE:section reads that section alone (the placeholder is unknown there: kept as
        // written, as uWSGI keeps it).
        let t = read(Path::new(&format!("{}:extra", app.display()))).unwrap();
        assert_eq!(t.name.as_deref(), Some("from-%(tag)"));
        assert_eq!(t.pidfile, None);
        let other = d.write(
            "other.ini",
            "[uwsgi]\npidfile = /a.pid\n[staging]\npidfile = /b.pid\n",
        );
        let t = read(Path::new(&format!("{}:staging", other.display()))).unwrap();
        assert_eq!(t.pidfile, Some(PathBuf::from("/b.pid")));
        let e = read(Path::new(&format!("{}:nope", other.display()))).unwrap_err();
        assert!(e.contains("no [nope] section"), "{e}");
        // @(exec://...) is refused, as uwsgid refuses it.
        let bad = d.write("bad.ini", "[uwsgi]\npidfile = @(exec://id)\n");
        assert!(read(&bad).is_err());
    }

    #[test]
    fn refuses_a_file_without_uwsgi_section() {
        let e = parse(Path::new("a.ini"), "[app]\nx=1\n").unwrap_err();
        assert!(e.contains("no [uwsgi] section"), "{e}");
    }
}
