//! The examples in `docs/exec-workers.md` run as documented: the Perl program (notify
//! readiness), the Node.js program (grace readiness) and gunicorn (its own notify support)
//! serve, reload under load without an error, and stop on SIGTERM. A test whose interpreter
//! or server is missing fails under CI=true (tests/run.sh installs them) and is a visible skip
//! elsewhere (`uwsgi_tests::require`).

use std::path::PathBuf;
use std::time::Duration;

use uwsgi_tests::*;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples")
        .join(name)
}

fn serve_reload_stop(dir: &TestDir, args: &[&str], greeting: &str) {
    let mut d = Daemon::start(dir, args);
    let (status, body) = d.get("/hello").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(greeting), "{body}");
    let load = Load::start(&d.addr, 3, &["/a", "/b"]);
    d.fifo_write(b"w");
    d.wait_generation(2);
    d.signal(libc::SIGHUP);
    d.wait_generation(3);
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} errors in {ok}: {errors:?}",
        errors.len()
    );
    d.fifo_write(b"q");
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let log = d.log_text();
    assert!(
        !log.contains("mercy: SIGKILL"),
        "a worker ignored SIGTERM:\n{log}"
    );
}

#[test]
fn perl_example_notifies_and_drains() {
    if !require_program("perl", "perl (apt-get install perl)") {
        return;
    }
    let dir = TestDir::new("exec-example-perl");
    let cmd = format!("perl {}", example("listenfd-server.pl").display());
    serve_reload_stop(&dir, &["--worker-exec", &cmd, "--processes", "2"], "Perl");
}

#[test]
fn node_example_with_a_grace() {
    if !require_program("node", "Node.js (apt-get install nodejs)") {
        return;
    }
    let dir = TestDir::new("exec-example-node");
    let cmd = format!("node {}", example("listenfd-server.js").display());
    serve_reload_stop(
        &dir,
        &[
            "--worker-exec",
            &cmd,
            "--processes",
            "2",
            "--worker-ready-timeout",
            "1",
        ],
        "Node.js",
    );
}

#[test]
fn gunicorn_example_as_documented() {
    // tests/run.sh installs gunicorn from PyPI (and fails under CI=true when it cannot).
    let python = "python3";
    if !require_python_module("gunicorn", "gunicorn (python3 -m pip install gunicorn)") {
        return;
    }
    let dir = TestDir::new("exec-example-gunicorn");
    dir.write(
        "app.py",
        r#"
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello from gunicorn\n"]
"#,
    );
    // The command of docs/exec-workers.md, with `python3 -m gunicorn` for `gunicorn` so that
    // the gunicorn of this Python runs whatever PATH holds.
    let cmd = format!(
        "{python} -m gunicorn --preload --workers 2 --no-control-socket --graceful-timeout 5 \
         app:application"
    );
    serve_reload_stop(
        &dir,
        &["--worker-exec", &cmd, "--processes", "2"],
        "gunicorn",
    );
}
