//! The bundled Python WSGI runner, handed to the interpreter without a file.
//!
//! `--wsgi-file` and `--module` (and the word `{runner}` in `--worker-exec`) run
//! `python3 -c BOOTSTRAP ARGS…`, never a script on disk: there is no file, directory or bytecode
//! cache that anyone could plant, edit or replace between our write and the interpreter's read.
//! The runner's source is embedded in the binary ([`SOURCE`]); in the forked child, just
//! before `execve`, [`source_fd`] copies it into a sealed memfd (no write, grow, shrink or
//! further seals), which the program inherits at the fd named by [`FD_VAR`].
//!
//! [`BOOTSTRAP`], the whole `-c` program, first takes the current directory off `sys.path`
//! (`-c` puts `''` first; nothing is imported before that but what the interpreter's start-up
//! imports, and Python adds `''` only after that), then reads the source from the fd, closes it
//! (so forked workers and the application do not inherit it), compiles it as the module
//! `uwsgid_wsgi` and calls its `main()`. No interpreter flag is added, so `PYTHONPATH` (also via
//! `--env`), user site-packages and a virtualenv's interpreter (`--python VENV/bin/python`)
//! behave as for any Python program; `-I` would drop the first two. The directories the
//! application asks for (`--pythonpath`, the `--wsgi-file` directory, the working directory for
//! `--module`) are put on `sys.path` by the runner after its own imports, so the standard
//! library modules it uses are never taken from them.
//!
//! The source is compiled at every interpreter start (about 10 ms, 40 ms on a loaded
//! machine); a zygote pays it once per generation, and a standby zygote before the reload, so
//! a preloaded reload does not wait for it. Only `--lazy-apps` workers and reloads with
//! `--no-python-standby` pay it each time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The runner's source (`uwsgid/python/uwsgid_wsgi.py`).
pub const SOURCE: &str = include_str!("../python/uwsgid_wsgi.py");

/// The word in an exec command line that stands for the bundled runner.
pub const PLACEHOLDER: &str = "{runner}";

/// The environment variable naming the fd the runner's source is read from.
pub const FD_VAR: &str = "UWSGID_RUNNER_FD";

/// The `-c` program: drop `''` (the current directory) from the front of `sys.path` unless
/// `-P`/`PYTHONSAFEPATH` already kept it off, read the source from the inherited memfd, close
/// it, run it as the module `uwsgid_wsgi` (file name `<uwsgid-wsgi>`; its `__source__` lets
/// the runner show its own lines in a traceback). One line, so that `ps` shows it readably.
pub const BOOTSTRAP: &str = "import os,sys;p=sys.path;\
getattr(sys.flags,'safe_path',0) or p[:1]!=[''] or p.pop(0);\
fd=os.environ.pop('UWSGID_RUNNER_FD','') or sys.exit('uwsgid-wsgi: UWSGID_RUNNER_FD is not set (only uwsgid runs this)');\
fd=int(fd);src=os.pread(fd,os.fstat(fd).st_size,0);os.close(fd);\
m=type(sys)('uwsgid_wsgi');sys.modules[m.__name__]=m;m.__source__=src;\
exec(compile(src,'<uwsgid-wsgi>','exec'),m.__dict__);del src;sys.exit(m.main())";

/// Whether the command line runs the bundled runner.
pub fn wanted(argv: &[String]) -> bool {
    argv.iter().any(|a| a == PLACEHOLDER)
}

/// Replace each [`PLACEHOLDER`] word by `-c` [`BOOTSTRAP`]; true if there was one (the
/// program then needs [`source_fd`] at the fd named by [`FD_VAR`]).
pub fn expand(argv: Vec<String>) -> (Vec<String>, bool) {
    if !wanted(&argv) {
        return (argv, false);
    }
    let mut out = Vec::with_capacity(argv.len() + 1);
    for a in argv {
        if a == PLACEHOLDER {
            out.push("-c".to_string());
            out.push(BOOTSTRAP.to_string());
        } else {
            out.push(a);
        }
    }
    (out, true)
}

/// A new sealed memfd holding [`SOURCE`], close-on-exec, at an fd number `>= min`.
pub fn source_fd(min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static NUL-terminated name; we own the returned fd.
    let raw = unsafe {
        libc::memfd_create(
            c"uwsgid-wsgi".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(annotate(io::Error::last_os_error(), "memfd_create"));
    }
    // SAFETY: raw is a new fd that nothing else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut rest = SOURCE.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writing from a live buffer of rest.len() bytes to our own fd.
        let n = unsafe {
            libc::write(
                memfd.as_raw_fd(),
                rest.as_ptr() as *const libc::c_void,
                rest.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(annotate(e, "write"));
        }
        rest = &rest[n as usize..];
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on our own memfd, which has no mapping.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(annotate(io::Error::last_os_error(), "seal"));
    }
    // SAFETY: F_DUPFD_CLOEXEC only reads the fd number of our own fd.
    let moved = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if moved < 0 {
        return Err(annotate(io::Error::last_os_error(), "dup"));
    }
    // SAFETY: moved is a new fd that nothing else owns; the original closes on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("bundled WSGI runner ({what}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_becomes_a_bootstrap_and_nothing_else_changes() {
        let argv: Vec<String> = ["python3", "{runner}", "--wsgi-file", "{runner}x"]
            .map(String::from)
            .to_vec();
        let (out, used) = expand(argv);
        assert!(used);
        assert_eq!(
            out,
            ["python3", "-c", BOOTSTRAP, "--wsgi-file", "{runner}x"]
        );
        let plain: Vec<String> = vec!["sh".into(), "-c".into(), "python3 {runner}".into()];
        assert_eq!(expand(plain.clone()), (plain, false));
    }

    #[test]
    fn the_source_memfd_is_sealed_and_complete() {
        let fd = source_fd(10).unwrap();
        assert!(fd.as_raw_fd() >= 10);
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SOURCE);
        // Neither through this fd nor through a new writable open of the same file.
        // SAFETY: a one-byte write from a static buffer to our own fd.
        let n = unsafe { libc::pwrite(fd.as_raw_fd(), b"x".as_ptr() as *const _, 1, 0) };
        assert_eq!(n, -1);
        let reopened = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut f) = reopened {
            assert!(std::io::Write::write_all(&mut f, b"import evil\n").is_err());
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SOURCE);
        // SAFETY: F_GETFD on our own fd.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
