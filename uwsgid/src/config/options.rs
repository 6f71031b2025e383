//! What uwsgid does with each uWSGI option a configuration file may name: the table behind
//! `docs/uwsgi-options.md` and `--check-config`'s verdict per key.
//!
//! A key is, in this order: one of the configuration language's own keys (handled by
//! [`super`]), a row of [`TABLE`], one of uwsgid's own options (the clap definition in
//! [`crate::cli::Args`], taken as supported), a uWSGI 2.0 option from `uwsgi_options.txt`
//! (refused: uwsgid does not implement it), or else a placeholder, as uWSGI treats an unknown
//! key (an error only under `strict`).

/// What happens to an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Given to uwsgid's own option of this long name.
    Arg(&'static str),
    /// One of uwsgid's own options (its long name or an alias), not in the table.
    Own,
    /// `virtualenv`/`home`: the interpreter is DIR/bin/python.
    Venv,
    /// Accepted; one log line says it has no effect in uwsgid, and why.
    NoEffect(&'static str),
    /// Refused, naming the option, the file and this reason.
    Refused(&'static str),
    /// Refused today because uwsgid does not implement it yet (planned).
    NotYet(&'static str),
}

/// The uWSGI 2.0 option names, one a line: the output of `uwsgi --plugin python3,http --help`
/// of uWSGI 2.0.21 (Debian), every `--NAME` and alias, sorted (see `docs/uwsgi-options.md`).
pub const UWSGI_OPTIONS: &str = include_str!("uwsgi_options.txt");

/// Whether `key` is an option of uWSGI 2.0 (a set built once: a file of thousands of keys is
/// judged in milliseconds, not a scan of the list per key).
pub fn is_uwsgi_option(key: &str) -> bool {
    static NAMES: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| UWSGI_OPTIONS.lines().collect())
        .contains(key)
}

const PLANNED_RECYCLING: &str = "worker recycling and timeouts are planned (issue 14 item 4)";
const NO_PLUGINS: &str = "uwsgid has no plugins: HTTP and the Python runner are built in";

/// The uWSGI options deployment files use, with uwsgid's verdict. `docs/uwsgi-options.md`
/// lists the same rows (a test keeps them equal). Options not listed here follow the order
/// in the module docs.
pub const TABLE: &[(&str, Rule)] = &[
    // Supported: given to uwsgid's option of the same meaning.
    ("http-socket", Rule::Arg("http-socket")),
    ("http", Rule::Arg("http")),
    ("processes", Rule::Arg("processes")),
    ("workers", Rule::Arg("processes")),
    ("master", Rule::Arg("master")),
    ("pidfile", Rule::Arg("pidfile")),
    ("safe-pidfile", Rule::Arg("safe-pidfile")),
    ("die-on-term", Rule::Arg("die-on-term")),
    ("worker-reload-mercy", Rule::Arg("worker-reload-mercy")),
    ("listen", Rule::Arg("listen")),
    ("logto", Rule::Arg("logto")),
    ("daemonize", Rule::Arg("daemonize")),
    ("check-static", Rule::Arg("check-static")),
    ("master-fifo", Rule::Arg("master-fifo")),
    ("stats", Rule::Arg("stats")),
    ("stats-server", Rule::Arg("stats")),
    ("stats-http", Rule::Arg("stats-http")),
    ("touch-reload", Rule::Arg("touch-reload")),
    ("touch-workers-reload", Rule::Arg("touch-workers-reload")),
    ("touch-chain-reload", Rule::Arg("touch-chain-reload")),
    ("vacuum", Rule::Arg("vacuum")),
    ("wsgi-file", Rule::Arg("wsgi-file")),
    ("file", Rule::Arg("wsgi-file")),
    ("module", Rule::Arg("module")),
    ("wsgi", Rule::Arg("module")),
    ("callable", Rule::Arg("callable")),
    ("pythonpath", Rule::Arg("pythonpath")),
    ("python-path", Rule::Arg("pythonpath")),
    ("pp", Rule::Arg("pythonpath")),
    ("threads", Rule::Arg("threads")),
    ("lazy-apps", Rule::Arg("lazy-apps")),
    ("env", Rule::Arg("env")),
    ("chdir", Rule::Arg("chdir")),
    ("virtualenv", Rule::Venv),
    ("venv", Rule::Venv),
    ("home", Rule::Venv),
    ("pyhome", Rule::Venv),
    // Accepted, no effect in uwsgid.
    ("thunder-lock", Rule::NoEffect("workers wait for connections with EPOLLEXCLUSIVE: the kernel wakes one, no accept lock is needed")),
    ("single-interpreter", Rule::NoEffect("each Python worker runs exactly one interpreter")),
    ("enable-threads", Rule::NoEffect("the Python runner always runs with threads enabled")),
    ("memory-report", Rule::NoEffect("uwsgictl stats always shows each worker's memory")),
    ("disable-write-exception", Rule::NoEffect("a client that goes away while its response is written just ends that request")),
    ("ignore-write-errors", Rule::NoEffect("a client that goes away while its response is written just ends that request")),
    ("ignore-sigpipe", Rule::NoEffect("uwsgid ignores SIGPIPE always")),
    ("offload-threads", Rule::NoEffect("uwsgid has no offload engine: the worker writes every response itself")),
    ("need-app", Rule::NoEffect("uwsgid never serves without the app: a worker that cannot load it fails its start")),
    ("plugin", Rule::NoEffect(NO_PLUGINS)),
    ("plugins", Rule::NoEffect(NO_PLUGINS)),
    ("plugins-dir", Rule::NoEffect(NO_PLUGINS)),
    ("max-fd", Rule::NoEffect("uwsgid raises its open-file limit to the hard limit at start")),
    ("buffer-size", Rule::Arg("buffer-size")),
    ("limit-post", Rule::Arg("limit-post")),
    ("post-buffering", Rule::NoEffect("the request body reaches the app as a stream; there is no buffering option")),
    ("wsgi-env-behaviour", Rule::NoEffect("the Python runner builds a fresh environ for every request")),
    ("log-master", Rule::NoEffect("exec workers' output always goes through the master to the log")),
    ("so-keepalive", Rule::NoEffect("not applicable: uwsgid's listeners keep their own options")),
    // Refused: uwsgid does not do this.
    ("socket", Rule::Arg("socket")),
    ("protocol", Rule::Refused("a listener's protocol follows its option: http-socket (HTTP) or socket (uwsgi)")),
    ("uwsgi-socket", Rule::Arg("socket")),
    ("attach-daemon", Rule::Refused("uwsgid does not run attached daemons: run them as their own service")),
    ("attach-daemon2", Rule::Refused("uwsgid does not run attached daemons: run them as their own service")),
    ("smart-attach-daemon", Rule::Refused("uwsgid does not run attached daemons: run them as their own service")),
    ("cron", Rule::Refused("uwsgid has no cron: use a systemd timer or cron")),
    ("unique-cron", Rule::Refused("uwsgid has no cron: use a systemd timer or cron")),
    ("hook-pre-app", Rule::Refused("uwsgid runs no hooks: run the command before starting it")),
    ("hook-master-start", Rule::Refused("uwsgid runs no hooks; for `unix_signal:15 gracefully_kill_them_all` use die-on-term")),
    ("cache2", Rule::Refused("uwsgid has no cache subsystem")),
    ("add-header", Rule::Refused("uwsgid does not add response headers: set them in the app or the proxy")),
    ("static-gzip-all", Rule::Refused("uwsgid serves no pre-compressed static files")),
    ("static-gzip-dir", Rule::Refused("uwsgid serves no pre-compressed static files")),
    ("static-expires", Rule::Refused("uwsgid sets no Expires headers by regexp")),
    ("req-logger", Rule::Refused("uwsgid has one log: use logto")),
    ("logger", Rule::Refused("uwsgid has one log: use logto")),
    ("log-route", Rule::Refused("uwsgid has one log: use logto")),
    ("emperor", Rule::Refused("uwsgid has no Emperor mode: run one instance per unit")),
    ("py-autoreload", Rule::Refused("uwsgid does not watch Python modules: use touch-reload")),
    ("python-autoreload", Rule::Refused("uwsgid does not watch Python modules: use touch-reload")),
    ("http-keepalive", Rule::Refused("the HTTP router's option: uwsgid's listener has no setting for it")),
    ("http-auto-chunked", Rule::Refused("the HTTP router's option: uwsgid's listener has no setting for it")),
    ("http-timeout", Rule::Refused("the HTTP router's option: uwsgid's listener has no setting for it")),
    ("socket-timeout", Rule::Refused("uwsgid's request timeouts are fixed")),
    ("touch-logrotate", Rule::Refused("use uwsgictl's log rotation or the master FIFO")),
    ("log-backupname", Rule::Refused("uwsgid does not rotate its log by size")),
    ("pyargv", Rule::Refused("the Python runner passes no sys.argv")),
    ("exit-on-reload", Rule::Refused("a uwsgid reload never exits")),
    ("reload-mercy", Rule::Refused("use worker-reload-mercy (uWSGI 2.0's reload-mercy does not bound workers)")),
    ("logdate", Rule::Refused("uwsgid's log lines always carry a timestamp")),
    ("log-date", Rule::Refused("uwsgid's log lines always carry a timestamp")),
    ("procname-master", Rule::Own),
    ("procname", Rule::Own),
    ("daemonize2", Rule::Refused("use daemonize")),
    // Planned: refused today, with the reason.
    ("uid", Rule::Arg("uid")),
    ("gid", Rule::Arg("gid")),
    ("chmod-socket", Rule::Arg("chmod-socket")),
    ("chown-socket", Rule::Arg("chown-socket")),
    ("harakiri", Rule::Own),
    ("harakiri-verbose", Rule::Own),
    ("harakiri-graceful-timeout", Rule::Own),
    ("harakiri-graceful-signal", Rule::Own),
    ("max-requests", Rule::Own),
    ("max-requests-delta", Rule::Own),
    ("reload-on-rss", Rule::Own),
    ("reload-on-as", Rule::NotYet(PLANNED_RECYCLING)),
    ("evil-reload-on-rss", Rule::NotYet(PLANNED_RECYCLING)),
    ("min-worker-lifetime", Rule::Own),
    ("max-worker-lifetime", Rule::Own),
    ("max-worker-lifetime-delta", Rule::Own),
    ("static-map", Rule::Own),
    ("static-map2", Rule::Own),
    ("static-index", Rule::Own),
    ("static-expires-type", Rule::Own),
    ("mount", Rule::Own),
    ("manage-script-name", Rule::Own),
    ("disable-logging", Rule::Own),
    ("log-4xx", Rule::Own),
    ("log-5xx", Rule::Own),
    ("logformat", Rule::Own),
    ("log-format", Rule::Own),
    ("log-reopen", Rule::Own),
    ("log-maxsize", Rule::Own),
    ("cheaper", Rule::Own),
    ("cheaper-initial", Rule::Own),
    ("cheaper-step", Rule::Own),
    ("cheaper-algo", Rule::Own),
    ("cheaper-overload", Rule::Own),
    ("procname-prefix", Rule::Own),
    ("procname-prefix-spaced", Rule::Own),
    ("auto-procname", Rule::Own),
    ("cpu-affinity", Rule::Own),
    ("chdir2", Rule::Own),
];

/// The rule for a config-file key, if the key is an option (of the table, of uwsgid, or of
/// uWSGI 2.0). `None`: the key is a placeholder.
pub fn rule(key: &str, own: impl Fn(&str) -> bool) -> Option<Rule> {
    if let Some((_, r)) = TABLE.iter().find(|(k, _)| *k == key) {
        return Some(*r);
    }
    if own(key) {
        return Some(Rule::Own);
    }
    if is_uwsgi_option(key) {
        return Some(Rule::Refused("a uWSGI option uwsgid does not implement"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/uwsgi-options.md` has exactly the rows of [`TABLE`], with the same verdicts.
    #[test]
    fn the_doc_table_is_this_table() {
        let doc = include_str!("../../../docs/uwsgi-options.md");
        let rows: Vec<(&str, &str)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((key, *cells.get(2)?))
            })
            .collect();
        let ours: Vec<(&str, &str)> = TABLE
            .iter()
            .map(|(k, r)| {
                let v = match r {
                    Rule::Arg(_) | Rule::Venv | Rule::Own => "supported",
                    Rule::NoEffect(_) => "no effect",
                    Rule::Refused(_) => "refused",
                    Rule::NotYet(_) => "not yet",
                };
                (*k, v)
            })
            .collect();
        assert_eq!(rows, ours);
    }
}
