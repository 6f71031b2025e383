//! The interpreter the bundled Python WSGI runner runs on (the runner itself is handed to it
//! without a file: [`crate::runner`]), resolved once (a version manager's shim would otherwise
//! cost every worker of every generation its own start), with a time bound.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::handoff::Handoff;
use super::Error;
use crate::cli::{Config, WorkerKind};
use crate::log;

/// Asking a shim for `sys.executable` gives up after this long (the shim is then run as is).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Runner {
    /// The interpreter as configured, and the real executable behind it.
    pub python: (String, String),
}

/// The runner's interpreter, if the worker program names `{runner}`; `None` otherwise. After
/// a re-exec, the interpreter the previous image resolved is reused if the name is the same.
pub fn prepare(config: &Config, handoff: Option<&Handoff>) -> Result<Option<Runner>, Error> {
    let WorkerKind::Exec { argv, .. } = &config.worker else {
        return Ok(None);
    };
    if !crate::runner::wanted(argv) {
        return Ok(None);
    }
    let python = argv[0].clone();
    let resolved = handoff
        .and_then(|h| h.python.clone())
        .filter(|(name, _)| *name == python)
        .map(|(_, path)| path)
        .unwrap_or_else(|| resolve_interpreter(&python, RESOLVE_TIMEOUT));
    if resolved != python {
        log!("Python interpreter {python} is {resolved}");
    }
    Ok(Some(Runner {
        python: (python, resolved),
    }))
}

/// The executable behind an interpreter name: itself, unless it is a script (a version
/// manager's shim), in which case the interpreter is asked for `sys.executable` once, for at
/// most `timeout` (then the name is used as it is).
pub fn resolve_interpreter(name: &str, timeout: Duration) -> String {
    let path = if name.contains('/') {
        Some(PathBuf::from(name))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = path else {
        return name.to_string();
    };
    let mut head = [0u8; 2];
    let is_script = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == *b"#!";
    if !is_script {
        return name.to_string();
    }
    ask_executable(&path, timeout).unwrap_or_else(|| name.to_string())
}

fn ask_executable(path: &std::path::Path, timeout: Duration) -> Option<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(path)
        .args(["-c", "import sys; sys.stdout.write(sys.executable or '')"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                log!(
                    "{} did not say its executable within {}s: using it as it is",
                    path.display(),
                    timeout.as_secs()
                );
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    let out = out.trim().to_string();
    (status.success() && !out.is_empty() && std::path::Path::new(&out).is_file()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_that_hangs_is_given_up_on() {
        let dir = std::env::temp_dir().join(format!("uwsgid-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shim = dir.join("python-shim");
        std::fs::write(&shim, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let name = shim.to_str().unwrap();
        let t0 = Instant::now();
        assert_eq!(resolve_interpreter(name, Duration::from_millis(200)), name);
        assert!(t0.elapsed() < Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_binary_is_its_own_interpreter() {
        assert_eq!(resolve_interpreter("/bin/sh", RESOLVE_TIMEOUT), "/bin/sh");
        assert_eq!(
            resolve_interpreter("no-such-python", RESOLVE_TIMEOUT),
            "no-such-python"
        );
    }
}
