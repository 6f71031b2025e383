//! Tests that need something outside the workspace (real uWSGI, a Python module, tmux,
//! uwsgitop, gunicorn, perl, node...) ask [`require`] first. When it is missing, under `CI=true`
//! the test fails (CI installs everything: `tests/run.sh`); elsewhere the test is skipped,
//! and the skip is printed with the reason and the fix, never silent: straight to the
//! process's stderr, past libtest's capture of `eprintln!`, so a plain `cargo test` run shows
//! a `SKIPPED:` line among the results (`grep SKIPPED` finds them all).

use std::path::Path;
use std::process::{Command, Stdio};

/// True when running under CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `present` or not, say so: returns true when the test may go on. When `what` is missing it
/// panics under CI and otherwise prints `SKIPPED: <test>: <what> is missing (<fix>)` and returns
/// false (the caller returns).
pub fn require(present: bool, what: &str, fix: &str) -> bool {
    if present {
        return true;
    }
    match when_missing(what, fix, in_ci()) {
        Ok(skip_line) => {
            say(&skip_line);
            false
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// What [`require`] does about a missing `what`: under CI (`ci`) the failure message (`Err`),
/// elsewhere the skip line it prints (`Ok`).
pub fn when_missing(what: &str, fix: &str, ci: bool) -> Result<String, String> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if ci {
        Err(format!(
            "CI=true but {what} is missing: {fix} (tests/run.sh installs it)"
        ))
    } else {
        Ok(format!("SKIPPED: {test}: {what} is missing ({fix})"))
    }
}

/// A skip for a reason other than a missing dependency (a busy fixed port, say): printed the
/// same way, and allowed under CI too.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    say(&format!("SKIPPED: {test}: {reason}"));
}

/// One line to the real stderr (fd 2), which libtest does not capture.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// True if `program` is an executable file in one of the `PATH` directories (or, given with a
/// `/`, is one itself).
pub fn have_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| executable(&d.join(program)))
}

/// True if `python3 -c "import MODULE"` succeeds.
pub fn have_python_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`require`] for a program on PATH; `package` names what installs it.
pub fn require_program(program: &str, package: &str) -> bool {
    require(
        have_program(program),
        &format!("`{program}`"),
        &format!("install {package}"),
    )
}

/// [`require`] for a Python module; `package` names what installs it.
pub fn require_python_module(module: &str, package: &str) -> bool {
    require(
        have_python_module(module),
        &format!("the python3 module `{module}`"),
        &format!("install {package}"),
    )
}
