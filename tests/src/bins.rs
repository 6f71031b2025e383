//! The workspace binaries the tests run, always fresh. Cargo builds the bin targets of a
//! package only for that package's own integration tests, and `uwsgid`/`uwsgictl` are other
//! packages: a plain `cargo test` after an edit would run the binaries of an earlier build.
//! So the first [`bin`] call of a test process runs `cargo build --bins -p uwsgid -p uwsgictl`
//! once (a `OnceLock`), with the cargo that runs the tests (`$CARGO`), the test executable's
//! profile and target directory (the binaries land next to `deps/`, where [`bin`] looks).
//! When the build is up to date this is a no-op of a fraction of a second.
//!
//! `UWSGI_TESTS_NO_BUILD=1` skips the build (for binaries built by other means, say with
//! extra flags); the freshness test (`it::harness`) still checks their mtimes then.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (for generated files, examples and the tidy checks).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The profile directory of this test executable (`target/debug` for `target/debug/deps/it-*`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("profile dir")
        .to_path_buf()
}

/// The cargo profile whose output lives in `dir` (`debug` is the `dev` profile).
fn profile_name(dir: &Path) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Build the daemon and the control tool (once per process); the directory they are in.
fn built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os("UWSGI_TESTS_NO_BUILD").is_some_and(|v| !v.is_empty()) {
            return Ok(dir);
        }
        let target_dir = dir.parent().ok_or("the profile dir has no parent")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "uwsgid",
            "-p",
            "uwsgid-python",
            "-p",
            "uwsgictl",
        ])
        .arg("--profile")
        .arg(profile_name(&dir))
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .env_remove("CARGO_BUILD_TARGET");
        let out = cmd
            .output()
            .map_err(|e| format!("run {}: {e}", Path::new(&cargo).display()))?;
        if !out.status.success() {
            return Err(format!(
                "{cmd:?} failed ({}): fix the build, then run the tests again\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match r {
        Ok(dir) => dir,
        Err(e) => panic!("building the binaries under test: {e}"),
    }
}

/// A binary of this workspace (`uwsgid` or `uwsgictl`), built fresh by the first call.
pub fn bin(name: &str) -> PathBuf {
    let path = built().join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo build --bins -p uwsgid -p uwsgictl` did not make it",
        path.display()
    );
    path
}
