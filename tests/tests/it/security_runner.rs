//! The bundled WSGI runner runs nothing another user could have written (issue 10, item 1).
//!
//! Python modules that shadow what the runner and the zygote import (`selectors`, `socket`,
//! `json`, …), a runner module of the name older versions wrote with a planted `.pyc` in its
//! `__pycache__`, all owned by another user: in the runtime directory (hostile, 0777 and owned
//! by `nobody`, or ours and 0700) and in the working directory. Each plant would append its
//! name to a marker file if Python ever ran it. The app serves, reloads (`w`, then `r` through
//! the FIFO) in both preload and `--lazy-apps` modes, the marker never appears, no runner file
//! is written to disk, and the app's own directories (`--pythonpath`, `--env PYTHONPATH=…`)
//! still work.

use crate::exec_support as uwsgid_exec_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use uwsgi_tests::*;
use uwsgid_exec_support::*;

const NOBODY: u32 = 65534;

/// Modules the runner (and its zygote) import, or that a stub might: each planted copy
/// records that it ran.
const SHADOWED: &[&str] = &[
    "selectors",
    "socket",
    "json",
    "signal",
    "threading",
    "ctypes",
    "traceback",
    "sitecustomize",
    "usercustomize",
    "queue",
    "importlib",
];

/// The name older versions gave the runner module: `uwsgid_wsgi_` and the FNV-1a of its source.
fn legacy_module_name() -> String {
    let source = include_str!("../../../uwsgid/python/uwsgid_wsgi.py");
    let hash = source.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("uwsgid_wsgi_{hash:016x}")
}

fn plant_code(marker: &Path, name: &str) -> String {
    format!(
        "with open({:?}, 'a') as f:\n    f.write({name:?} + '\\n')\n",
        marker.to_str().unwrap()
    )
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// Plant every shadowing module and a runner stub of the name older versions used in `dir`,
/// owned by `nobody` and writable by all; with `pyc`, the legacy runner module and a `.pyc` of
/// it in `__pycache__` too.
fn plant(dir: &Path, marker: &Path, pyc: bool) {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        chown(&p, NOBODY);
    };
    for name in SHADOWED {
        write(&format!("{name}.py"), &plant_code(marker, name));
    }
    write(
        &format!("uwsgid_wsgi-{}.py", env!("CARGO_PKG_VERSION")),
        &plant_code(marker, "stub"),
    );
    if !pyc {
        return;
    }
    let module = legacy_module_name();
    // A bytecode file that Python uses without looking at the source (unchecked hash).
    let evil = dir.join("evil-source.py");
    std::fs::write(&evil, plant_code(marker, "pyc")).unwrap();
    let script = "import importlib.util, py_compile, sys\n\
         cfile = importlib.util.cache_from_source(sys.argv[2])\n\
         py_compile.compile(sys.argv[1], cfile=cfile, doraise=True,\n\
         invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n\
         print(cfile)\n";
    let module_py = dir.join(format!("{module}.py"));
    let out = std::process::Command::new(python())
        .args([
            "-c",
            script,
            evil.to_str().unwrap(),
            module_py.to_str().unwrap(),
        ])
        .output()
        .expect("run python to compile the planted .pyc");
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(&evil).unwrap();
    let cfile = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(cfile.is_file(), "{}", cfile.display());
    chown(&cfile, NOBODY);
    chown(cfile.parent().unwrap(), NOBODY);
    std::fs::set_permissions(
        cfile.parent().unwrap(),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    // The module's source as uwsgid used to write it, with the plant in its place.
    write(&format!("{module}.py"), &plant_code(marker, "module"));
}

fn marker_text(marker: &Path) -> String {
    std::fs::read_to_string(marker).unwrap_or_default()
}

fn assert_nothing_ran(marker: &Path, d: Option<&Daemon>) {
    let ran = marker_text(marker);
    assert!(
        ran.is_empty(),
        "planted code ran: {ran:?}\n{}",
        d.map(|d| d.log_text()).unwrap_or_default()
    );
}

/// An app that answers `/` with `ok`, `/path` with `sys.path` as JSON, `/lib` with what the
/// `--pythonpath` module says, and `/fds` with the link targets of its fds and whether the
/// runner's fd variable leaked into it.
const APP: &str = r#"
import json, os, sys
import helper
def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/path":
        body = json.dumps(sys.path)
    elif path == "/lib":
        body = helper.WHO
    elif path == "/fds":
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.append(os.readlink("/proc/self/fd/" + fd))
            except OSError:
                pass
        body = json.dumps({"links": links, "var": os.environ.get("UWSGID_RUNNER_FD")})
    else:
        body = "ok"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

fn write_app(dir: &TestDir) {
    dir.write("app.py", APP);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    dir.write("lib/helper.py", "WHO = 'helper from lib'\n");
}

fn args<'a>(lazy: bool, extra: &[&'a str], py: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "--wsgi-file",
        "app.py",
        "--pythonpath",
        "lib",
        "--processes",
        "2",
        "--python",
        py,
    ];
    if lazy {
        v.push("--lazy-apps");
    }
    v.extend_from_slice(extra);
    v
}

/// Start uwsgid and wait until it serves, failing at once if a plant runs meanwhile.
fn start(dir: &TestDir, args: &[&str], marker: &Path) -> Daemon {
    let mut d = Daemon::spawn(dir, args);
    wait_serving(&mut d, marker);
    d
}

fn wait_serving(d: &mut Daemon, marker: &Path) {
    wait_for("every worker ready", Duration::from_secs(20), || {
        assert_nothing_ran(marker, Some(d));
        d.assert_alive();
        common::discovery::read_record(&d.pidfile)
            .ok()
            .filter(|r| r.pid == d.pid)?;
        d.try_stats().filter(all_ready)
    });
    d.wait_running();
}

/// Serve, reload with `w` and with `r`, serve again; the plants never ran.
fn serve_and_reload(d: &Daemon, marker: &Path) {
    assert_eq!(d.get("/").unwrap(), (200, "ok".into()));
    assert_eq!(d.get("/lib").unwrap(), (200, "helper from lib".into()));
    for cmd in [b"w", b"r"] {
        let g = d.generation();
        d.fifo_write(cmd);
        d.wait_generation(g + 1);
        assert_eq!(d.get("/").unwrap(), (200, "ok".into()));
        assert_nothing_ran(marker, Some(d));
    }
    // Neither the runner's fd nor its variable reach the application.
    let (status, body) = d.get("/fds").unwrap();
    assert_eq!(status, 200);
    let fds: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(fds["var"].is_null(), "{body}");
    assert!(
        !fds["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("uwsgid-wsgi")),
        "{body}"
    );
    // Neither '' nor the runtime directory is on sys.path; the app's directories lead it.
    let (_, body) = d.get("/path").unwrap();
    let path: Vec<String> = serde_json::from_str(&body).unwrap();
    let runtime = d.dir.join("runtime");
    assert!(
        !path
            .iter()
            .any(|p| p.is_empty() || p == "." || Path::new(p) == runtime),
        "{path:?}"
    );
    let app_dir = std::fs::canonicalize(&d.dir).unwrap();
    assert_eq!(Path::new(&path[0]), app_dir, "{path:?}");
    assert_eq!(Path::new(&path[1]), app_dir.join("lib"), "{path:?}");
}

/// No file of the runner's was written anywhere under `dir` (besides the plants).
fn assert_no_runner_files(dir: &Path, planted: &[PathBuf]) {
    let mut stack = vec![dir.to_path_buf()];
    let mut bounded = 0;
    while let Some(d) = stack.pop() {
        bounded += 1;
        assert!(bounded < 1000);
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("uwsgid_wsgi") && !planted.contains(&p) {
                panic!("a runner file was written: {}", p.display());
            }
        }
    }
}

fn planted_runner_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        v.push(e.path());
    }
    if let Ok(cache) = std::fs::read_dir(dir.join("__pycache__")) {
        v.extend(cache.flatten().map(|e| e.path()));
    }
    v
}

#[test]
fn planted_modules_in_our_runtime_directory_never_run() {
    for lazy in [false, true] {
        let dir = TestDir::new("sec-runner-ours");
        write_app(&dir);
        let marker = dir.join("marker.txt");
        let runtime = dir.join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        plant(&runtime, &marker, true);
        let planted = planted_runner_files(&runtime);
        let py = python();
        let d = start(&dir, &args(lazy, &[], &py), &marker);
        assert_nothing_ran(&marker, Some(&d));
        serve_and_reload(&d, &marker);
        assert_no_runner_files(&runtime, &planted);
        drop(d);
        assert_nothing_ran(&marker, None);
    }
}

#[test]
fn a_hostile_runtime_directory_runs_nothing_of_its_owners() {
    let dir = TestDir::new("sec-runner-hostile");
    write_app(&dir);
    let marker = dir.join("marker.txt");
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    plant(&runtime, &marker, false);
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    chown(&runtime, NOBODY);
    assert_eq!(std::fs::metadata(&runtime).unwrap().uid(), NOBODY);
    let py = python();
    let mut d = Daemon::spawn(&dir, &args(false, &[], &py));
    // Either uwsgid refuses the directory (its owner check), or it serves without running a
    // byte of what is in it.
    let refused = wait_for(
        "uwsgid serving or refusing",
        Duration::from_secs(20),
        || {
            assert_nothing_ran(&marker, Some(&d));
            if let Ok(Some(status)) = d.child.try_wait() {
                return Some(Some(status));
            }
            common::discovery::read_record(&d.pidfile)
                .ok()
                .filter(|r| r.pid == d.pid)
                .map(|_| None)
        },
    );
    match refused {
        Some(status) => {
            assert!(!status.success());
            let log = d.log_text();
            assert!(log.contains(runtime.to_str().unwrap()), "{log}");
            assert_nothing_ran(&marker, None);
        }
        None => {
            wait_serving(&mut d, &marker);
            assert_nothing_ran(&marker, Some(&d));
            serve_and_reload(&d, &marker);
            assert_no_runner_files(&runtime, &planted_runner_files(&runtime));
        }
    }
    drop(d);
    assert_nothing_ran(&marker, None);
}

#[test]
fn modules_planted_in_the_working_directory_never_run_and_pythonpath_still_works() {
    let dir = TestDir::new("sec-runner-cwd");
    write_app(&dir);
    let marker = dir.join("marker.txt");
    // The working directory (the master's, and the workers' with --chdir) is also the app's
    // directory here: what the app imports from there is the app's, but the runner's own
    // imports happen before it is on sys.path.
    let cwd = dir.join("work");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o777)).unwrap();
    plant(&cwd, &marker, true);
    let extra_dir = dir.join("extra");
    std::fs::create_dir(&extra_dir).unwrap();
    std::fs::write(extra_dir.join("fromenv.py"), "WHO = 'from PYTHONPATH'\n").unwrap();
    let env = format!("PYTHONPATH={}", extra_dir.display());
    let app = dir.join("app.py");
    let lib = dir.join("lib");
    let py = python();
    for lazy in [false, true] {
        let mut a = vec![
            "--wsgi-file",
            app.to_str().unwrap(),
            "--pythonpath",
            lib.to_str().unwrap(),
            "--chdir",
            cwd.to_str().unwrap(),
            "--env",
            &env,
            "--processes",
            "2",
            "--python",
            &py,
        ];
        if lazy {
            a.push("--lazy-apps");
        }
        let d = start(&dir, &a, &marker);
        assert_eq!(d.get("/lib").unwrap(), (200, "helper from lib".into()));
        let (_, body) = d.get("/path").unwrap();
        let path: Vec<String> = serde_json::from_str(&body).unwrap();
        assert!(!path.iter().any(|p| p.is_empty()), "{path:?}");
        assert!(
            path.iter().any(|p| Path::new(p) == extra_dir),
            "--env PYTHONPATH is honoured: {path:?}"
        );
        let g = d.generation();
        d.fifo_write(b"w");
        d.wait_generation(g + 1);
        assert_eq!(d.get("/").unwrap(), (200, "ok".into()));
        assert_nothing_ran(&marker, Some(&d));
    }
}
