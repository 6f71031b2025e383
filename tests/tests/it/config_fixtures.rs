//! The uWSGI ini files of public deployments (tests/fixtures/uwsgi-ini/, origins in its
//! README): `uwsgid --check-config` accepts each file whose options uwsgid supports, with its
//! application keys pointed at a test app, and refuses the others naming exactly the keys
//! listed here.

use std::process::{Command, Stdio};

use uwsgi_tests::*;

/// File → the keys uwsgid refuses in it today (empty: accepted).
const EXPECTED: &[(&str, &[&str])] = &[
    ("bakerydemo.ini", &["http-auto-chunked", "http-keepalive"]),
    ("ckan-docker.ini", &[]),
    (
        "healthchecks-docker.ini",
        &["attach-daemon", "hook-pre-app", "static-gzip-dir"],
    ),
    ("healthchecks.ini", &["attach-daemon", "static-gzip-dir"]),
    ("keystone-public.ini", &[]),
    (
        "mailman-web.ini",
        &[
            "attach-daemon",
            "log-route",
            "logger",
            "req-logger",
            "unique-cron",
        ],
    ),
    ("nucleus.ini", &["http-keepalive"]),
    (
        "searx-docker.ini",
        &[
            "add-header",
            "cache2",
            "log-backupname",
            "static-expires",
            "static-gzip-all",
            "touch-logrotate",
            "unique-cron",
        ],
    ),
    (
        "searxng-docker.ini",
        &["add-header", "cache2", "static-expires", "static-gzip-all"],
    ),
    ("tiangolo-base-app.ini", &[]),
    ("tiangolo-flask-example.ini", &[]),
    ("tiangolo-uwsgi-nginx.ini", &["hook-master-start"]),
];

/// Point the application keys at the test app in `dir`.
///
/// A file that names both `wsgi-file` and `module` (ckan's: uWSGI loads two apps) keeps only
/// `wsgi-file`: uwsgid serves one app per instance and refuses the pair with its own message,
/// which is not a refused key.
fn retarget(text: &str, dir: &TestDir) -> String {
    let d = dir.path.display();
    let key_of = |line: &str| {
        line.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let has_file = text.lines().any(|l| key_of(l) == "wsgi-file");
    text.lines()
        .filter(|line| !(has_file && key_of(line) == "module"))
        .map(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            let value = match key {
                "chdir" | "pythonpath" | "check-static" => format!("{d}"),
                "module" | "wsgi" => "app".to_string(),
                "wsgi-file" => format!("{d}/app.py"),
                "virtualenv" | "venv" | "home" => format!("{d}/venv"),
                "logto" => format!("{d}/uwsgi.log"),
                // Users are this machine's: root drops to nobody, anyone else stays itself.
                "uid" | "gid" | "chown-socket" => {
                    // /proc/self belongs to our effective uid and gid.
                    let me = std::fs::metadata("/proc/self").unwrap();
                    let (u, g) = (
                        std::os::unix::fs::MetadataExt::uid(&me),
                        std::os::unix::fs::MetadataExt::gid(&me),
                    );
                    match (key, u) {
                        ("uid", 0) => "nobody".to_string(),
                        ("gid", 0) => "nogroup".to_string(),
                        ("uid", _) => u.to_string(),
                        ("gid", _) => g.to_string(),
                        _ => format!("{u}:{g}"),
                    }
                }
                _ => return line.to_string(),
            };
            format!("{key} = {value}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn public_deployment_files_are_accepted_or_refused_by_name() {
    let fixtures = workspace_root().join("tests/fixtures/uwsgi-ini");
    let mut on_disk: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ini"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(f, _)| *f).collect();
    assert_eq!(on_disk, listed, "every fixture has its expectation");
    let mut accepted = 0;
    for (file, refused) in EXPECTED {
        let dir = TestDir::new("cfg-fixture");
        dir.write("app.py", "def application(e, s):\n    return [b'']\n");
        std::fs::create_dir_all(dir.join("venv/bin")).unwrap();
        std::fs::write(dir.join("venv/bin/python"), "").unwrap();
        let text = std::fs::read_to_string(fixtures.join(file)).unwrap();
        dir.write(file, &retarget(&text, &dir));
        let out = Command::new(bin("uwsgid"))
            .args(["--check-config", "--ini", file])
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .env("PORT", "0")
            .env("VIRTUAL_ENV", dir.join("venv"))
            .stdin(Stdio::null())
            .output()
            .expect("run uwsgid");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut named: Vec<String> = stderr
            .lines()
            .filter_map(|l| {
                let l = l.strip_prefix("  ")?;
                let (key, rest) = l.split_once(" (")?;
                rest.starts_with(file).then(|| key.to_string())
            })
            .collect();
        named.sort();
        named.dedup();
        assert_eq!(named, *refused, "{file}: {stderr}");
        if refused.is_empty() {
            assert!(out.status.success(), "{file}: {stderr}");
            accepted += 1;
        } else {
            assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        }
    }
    eprintln!(
        "{accepted} of {} public deployment files accepted",
        EXPECTED.len()
    );
}
