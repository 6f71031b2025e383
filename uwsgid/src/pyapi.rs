//! What applications learn about their instance: the environment of exec workers and the
//! `uwsgi` Python module.
//!
//! Every exec worker (any language) gets `UWSGID_MASTER_PID` (its master), and when the
//! instance has them `UWSGID_MASTER_FIFO` (the first `--master-fifo`), `UWSGID_PROCESSES`,
//! `UWSGID_STARTED_ON` (the master's start, Unix seconds) and `UWSGID_OPT` (the options as
//! JSON), plus `UWSGID_BUFFER_SIZE` and `UWSGID_UWSGI_ALLOW` (comma-separated networks) for
//! programs that serve the uwsgi listeners. A program reloads its instance gracefully by writing `r` to the FIFO, or by sending
//! SIGHUP to the master pid (`docs/apps.md` has one-liners for Ruby, Node and Perl).
//!
//! [`UWSGI_MODULE`] is `python/uwsgi.py`, the `uwsgi` module Python apps written for uWSGI
//! import (`reload()`, `stop()`, `worker_id()`, `masterpid()`, `numproc`, `opt`,
//! `started_on`, `total_requests()`); the bundled runner carries it ([`crate::runner::SOURCE`]) and installs it as
//! `sys.modules["uwsgi"]` before it loads the app; any other Python worker can do the same.

use std::sync::OnceLock;

/// The `uwsgi` module's source.
pub const UWSGI_MODULE: &str = include_str!("../python/uwsgi.py");

static INSTANCE_ENV: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();

/// Record the instance facts for exec workers (the master calls it once per image).
///
/// `words`: what the configuration expanded to ([`crate::config::Expanded::words`]). Built-in
/// workers execute nothing: their instance records nothing (`UWSGID_OPT` would build the
/// options' definition at every start of the image, a re-exec's included).
pub fn set_instance_env(config: &crate::cli::Config, words: &[String]) {
    if matches!(config.worker, crate::cli::WorkerKind::Builtin) {
        return;
    }
    let mut vars = vec![
        ("UWSGID_MASTER_PID", std::process::id().to_string()),
        ("UWSGID_PROCESSES", config.processes.to_string()),
        ("UWSGID_OPT", options_json_of(words)),
        // For Python workers serving uwsgi listeners (named uwsgi=ADDR in LISTEN_FDNAMES).
        ("UWSGID_BUFFER_SIZE", config.buffer_size.to_string()),
        (
            "UWSGID_UWSGI_ALLOW",
            config
                .uwsgi_allow
                .iter()
                .map(|(ip, bits)| format!("{ip}/{bits}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    if let Some(info) = common::process::ProcessInfo::read(std::process::id() as i32) {
        if let Ok(t) = info.started.duration_since(std::time::UNIX_EPOCH) {
            vars.push(("UWSGID_STARTED_ON", t.as_secs().to_string()));
        }
    }
    if config.auto_snapshot {
        // Native Python workers then keep a standby registration of the listeners
        // (uwsgid-python's `Engine::resume_accepting`).
        vars.push(("UWSGID_AUTO_SNAPSHOT", "1".to_string()));
    }
    if let Some(fifo) = config.fifos.first() {
        let abs = std::path::absolute(fifo).unwrap_or_else(|_| fifo.clone());
        vars.push(("UWSGID_MASTER_FIFO", abs.to_string_lossy().into_owned()));
    }
    let _ = INSTANCE_ENV.set(vars);
}

/// The facts recorded by [`set_instance_env`] (empty before).
pub fn instance_env() -> &'static [(&'static str, String)] {
    INSTANCE_ENV.get().map(Vec::as_slice).unwrap_or(&[])
}

/// The options of the command line and its `--ini` file, as a JSON object: `name` -> value
/// (`true` for a flag), a list when an option is given more than once.
pub fn options_json(argv: &[String]) -> String {
    // The words the configuration files expand to, then the command line's (as clap sees
    // them); a file that does not expand gives no options from it.
    match crate::config::expand_quiet(argv) {
        Ok(e) => options_json_of(&e.words),
        Err(_) => options_json_of(argv),
    }
}

/// [`options_json`] of the words a configuration expanded to (the program name first), as
/// [`crate::config::Expanded::words`] holds them: what a start read already, not read again.
pub fn options_json_of(words: &[String]) -> String {
    let words = words.get(1..).unwrap_or_default();
    // Per word: does the option it names take a value (None: not an option of uwsgid's).
    let takes: Vec<Option<bool>> = crate::config::with_command(|cmd| {
        words
            .iter()
            .map(|w| {
                let name = w.strip_prefix("--")?;
                cmd.get_arguments()
                    .find(|a| {
                        a.get_long() == Some(name)
                            || a.get_visible_aliases().is_some_and(|v| v.contains(&name))
                    })
                    .map(|a| {
                        a.get_action().takes_values()
                            && a.get_num_args().is_none_or(|n| n.min_values() > 0)
                    })
            })
            .collect()
    });
    let mut map = serde_json::Map::new();
    let mut push = |k: &str, v: serde_json::Value| match map.get_mut(k) {
        None => {
            map.insert(k.to_string(), v);
        }
        Some(serde_json::Value::Array(list)) => list.push(v),
        Some(old) => *old = serde_json::Value::Array(vec![old.clone(), v]),
    };
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let Some(opt) = w.strip_prefix("--") else {
            continue;
        };
        if let Some((k, v)) = opt.split_once('=') {
            push(k, v.into());
            continue;
        }
        match takes[i - 1] {
            Some(true) if i < words.len() => {
                push(opt, words[i].clone().into());
                i += 1;
            }
            Some(false) if i < words.len() && !words[i].starts_with('-') => {
                // An optional value (--chmod-socket 660).
                push(opt, words[i].clone().into());
                i += 1;
            }
            _ => push(opt, true.into()),
        }
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    /// The module travels inside the runner as a raw triple-quoted string.
    #[test]
    fn the_module_fits_in_a_raw_string() {
        assert!(!super::UWSGI_MODULE.contains("'''"));
        assert!(!super::UWSGI_MODULE.ends_with('\\'));
        assert!(crate::runner::SOURCE.contains(super::UWSGI_MODULE));
    }

    #[test]
    fn options_become_json() {
        let argv: Vec<String> = [
            "uwsgid",
            "--processes",
            "2",
            "--master",
            "--http-socket",
            "a",
            "--http-socket",
            "b",
            "--chmod-socket=660",
            "--vacuum",
        ]
        .map(String::from)
        .to_vec();
        let v: serde_json::Value = serde_json::from_str(&super::options_json(&argv)).unwrap();
        assert_eq!(v["processes"], "2");
        assert_eq!(v["master"], true);
        assert_eq!(v["http-socket"], serde_json::json!(["a", "b"]));
        assert_eq!(v["chmod-socket"], "660");
        assert_eq!(v["vacuum"], true);
    }
}
