//! The bundled Python WSGI runner: written where exec workers can run it, and the interpreter
//! it runs on resolved once (a version manager's shim would otherwise cost every worker of
//! every generation its own start), with a time bound.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::handoff::Handoff;
use super::Error;
use crate::cli::{Config, WorkerKind};
use crate::log;

/// Asking a shim for `sys.executable` gives up after this long (the shim is then run as is).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Runner {
    /// The stub script workers and zygotes run.
    pub path: PathBuf,
    /// The interpreter as configured, and the real executable behind it.
    pub python: (String, String),
}

/// Write the runner if the worker program names `{runner}`; `None` otherwise. After a
/// re-exec, the interpreter the previous image resolved is reused if the name is the same.
pub fn prepare(config: &Config, handoff: Option<&Handoff>) -> Result<Option<Runner>, Error> {
    let WorkerKind::Exec { argv, .. } = &config.worker else {
        return Ok(None);
    };
    if !argv.iter().any(|a| a == "{runner}") {
        return Ok(None);
    }
    let dir = common::discovery::runtime_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::Runner(dir.clone(), e))?;
    // The runner is a module imported by a two-line script, so that Python caches its
    // bytecode (compiling it costs every interpreter start 9 ms; a script is never cached).
    // The module is named after its content, so a cached .pyc can never be stale.
    let module = format!(
        "uwsgid_wsgi_{:016x}",
        fnv1a(crate::exec::WSGI_RUNNER.as_bytes())
    );
    let module_path = dir.join(format!("{module}.py"));
    let stub = format!(
        "# uwsgid's bundled WSGI runner: the code is in {module}.py, beside this file.\n\
         # Its bytecode is cached even under PYTHONDONTWRITEBYTECODE (only this module's).\n\
         import sys\nkeep = sys.dont_write_bytecode\nsys.dont_write_bytecode = False\n\
         import {module} as runner\nsys.dont_write_bytecode = keep\nsys.exit(runner.main())\n"
    );
    let path = dir.join(format!("uwsgid_wsgi-{}.py", common::VERSION));
    for (file, text) in [
        (&module_path, crate::exec::WSGI_RUNNER),
        (&path, stub.as_str()),
    ] {
        if std::fs::read_to_string(file).unwrap_or_default() != text {
            common::pidfile::write_file_atomic(file, text.as_bytes(), 0o644)
                .map_err(|e| Error::Runner(file.clone(), e))?;
        }
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
        path,
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

/// FNV-1a, 64 bits: a stable name for the runner's content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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
