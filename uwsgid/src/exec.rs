//! Exec workers: run any program as a worker, handing it the listeners by the systemd socket
//! protocol and hearing its readiness on an sd_notify-style datagram socket.
//!
//! # The contract with the caller (the master's spawn code)
//!
//! [`exec_worker`] runs in the **forked child**, after `fork` in the single-threaded master and
//! before anything else can run in that child. Before calling it the caller must, in order:
//!
//! 1. fork with every managed signal blocked (the master's mask: it takes them from a
//!    signalfd), so that none is delivered in the child before its dispositions are reset;
//! 2. in the child, reset every caught signal to `SIG_DFL`, then unblock the mask;
//! 3. `setpgid(0, 0)` (own process group), `prctl(PR_SET_PDEATHSIG, SIGKILL)` and then check
//!    that `getppid()` is still the master (it may have died before the prctl): `_exit` if not.
//!    The death signal survives `execve` (it is cleared only for set-id binaries);
//! 4. point fds 0, 1 and 2 at `/dev/null` and the instance log;
//! 5. call [`exec_worker`] and, if it returns, log the error to fd 2 and `_exit(127)` (or 126
//!    for [`std::io::ErrorKind::PermissionDenied`]). Never return into the master's code.
//!
//! [`exec_worker`] then does the rest and calls `execve`: it moves the listeners to fds 3, 4, …
//! (without close-on-exec), marks every other fd from `3 + n` up close-on-exec (so nothing of
//! the master leaks into the program, whatever its flags), sets every signal disposition to
//! `SIG_DFL` (an ignored `SIGPIPE` would otherwise survive `execve`) and empties the signal mask
//! (belt and braces for steps 1–2), builds the environment explicitly and resolves `argv[0]` via
//! `PATH` (after moving to [`ExecSpec::cwd`], when one is set). Everything fallible that does
//! not touch process state (names, `PATH` lookup, C strings) happens before the first fd is
//! moved, so most errors leave the child untouched.
//! It takes no lock: the environment is read from `environ` directly, not through `std::env`.
//!
//! The environment is the master's, minus `LISTEN_*`, `NOTIFY_SOCKET`, `WATCHDOG_*` and
//! `UWSGID_*` left over from whoever started the master, plus [`ExecSpec::env`] (which wins over
//! inherited values), plus, last and winning over both:
//! `LISTEN_FDS=n`, `LISTEN_PID=<the child's pid>`, `LISTEN_FDNAMES=a:b` (see [`fd_name`]),
//! `NOTIFY_SOCKET`, `UWSGID_WORKER_ID`, `UWSGID_GENERATION` and the instance facts of
//! [`crate::pyapi`] (`UWSGID_MASTER_PID`, `UWSGID_MASTER_FIFO`, ...). uwsgi listeners are
//! named `uwsgi=ADDR` in `LISTEN_FDNAMES`. [`exec_zygote`] runs a
//! preload zygote the same way, with its control socket as one more fd right after the
//! listeners (named by `UWSGID_ZYGOTE_FD`, not counted in `LISTEN_FDS`). A program that runs
//! the bundled runner ([`ExecSpec::runner`]) gets, after those, a sealed memfd with the
//! runner's source, named by `UWSGID_RUNNER_FD` ([`crate::runner`]).
//!
//! Listeners are passed as they are. `O_NONBLOCK` belongs to the open socket, shared by the
//! master and every worker: a program may switch it (the bundled runner and gunicorn make it
//! non-blocking), so no worker may rely on a blocking `accept`.
//!
//! # Readiness
//!
//! The master binds one datagram socket ([`crate::notify::bind`]) and passes its name as
//! `NOTIFY_SOCKET`. A program says `READY=1` (and `STATUS=…`, `STOPPING=1`, `RELOADING=1`)
//! exactly as it would to systemd. [`crate::notify::recv`] attributes each datagram to the pid the
//! kernel reports in `SCM_CREDENTIALS`; a pid written in the payload is never believed, and a
//! datagram from a pid that is not a worker is the caller's to ignore (`NotifyAccess=main`).

use std::convert::Infallible;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The bundled Python WSGI runner (`--wsgi-file`, `--module`), run as an exec worker program
/// without a file ([`crate::runner`]).
pub const WSGI_RUNNER: &str = crate::runner::SOURCE;

/// The first fd of the listeners, as in systemd's `SD_LISTEN_FDS_START`.
pub const LISTEN_FDS_START: RawFd = 3;

/// Longest `LISTEN_FDNAMES` entry systemd accepts (`FDNAME_MAX`).
const FDNAME_MAX: usize = 255;

/// What to run in an exec worker slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The program and its arguments; `argv[0]` without a `/` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables set for the program, over the inherited environment.
    pub env: Vec<(String, String)>,
    /// The program's working directory (`--chdir`); the master's when `None`. A relative
    /// program path or `PATH` entry is resolved from there, as a shell started there would.
    pub cwd: Option<PathBuf>,
    /// The program runs the bundled runner ([`crate::runner::expand`] put its bootstrap in
    /// `argv`): its source is passed in a sealed memfd, at the fd after the listeners (and the
    /// zygote's control socket), named by `UWSGID_RUNNER_FD`.
    pub runner: bool,
}

/// A listener's name as it appears in `LISTEN_FDNAMES`.
///
/// systemd accepts printable ASCII except `:` (the separator), at most 255 bytes; anything
/// else is replaced by `_` (so `127.0.0.1:8000` becomes `127.0.0.1_8000`). An empty name
/// becomes `unknown`, systemd's name for an unnamed fd.
pub fn fd_name(name: &str) -> String {
    if name.is_empty() {
        return "unknown".to_string();
    }
    name.chars()
        .map(|c| match c {
            ':' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .take(FDNAME_MAX)
        .collect()
}

/// Replace this forked child by the worker program. Returns only if that failed.
///
/// `listeners` are `(fd, name)` pairs in the order the program sees them (fd 3 first);
/// `notify_socket` is the value for `NOTIFY_SOCKET` (the name given to
/// [`crate::notify::bind`]). See the module documentation for what the caller must have done
/// after `fork`, and for the environment the program gets.
pub fn exec_worker(
    spec: &ExecSpec,
    listeners: &[(RawFd, String)],
    notify_socket: &str,
    worker_id: u32,
    generation: u64,
) -> io::Error {
    match try_exec_worker(spec, listeners, notify_socket, worker_id, generation, None) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Like [`exec_worker`], for a preload zygote: `control` (the zygote's end of its control
/// socket) is passed as fd `3 + listeners.len()`, named by `UWSGID_ZYGOTE_FD`, and
/// `UWSGID_WORKER_ID` is 0. Returns only if that failed.
pub fn exec_zygote(
    spec: &ExecSpec,
    listeners: &[(RawFd, String)],
    notify_socket: &str,
    generation: u64,
    control: RawFd,
) -> io::Error {
    match try_exec_worker(spec, listeners, notify_socket, 0, generation, Some(control)) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec_worker(
    spec: &ExecSpec,
    listeners: &[(RawFd, String)],
    notify_socket: &str,
    worker_id: u32,
    generation: u64,
    control: Option<RawFd>,
) -> io::Result<Infallible> {
    let Some(program) = spec.argv.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "worker command is empty",
        ));
    };
    if let Some(dir) = &spec.cwd {
        std::env::set_current_dir(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("working directory {}: {e}", dir.display()),
            )
        })?;
    }
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    let names: Vec<String> = listeners.iter().map(|(_, name)| fd_name(name)).collect();
    let control_at = LISTEN_FDS_START + listeners.len() as RawFd;
    let runner_at = control_at + RawFd::from(control.is_some());
    let first_free = runner_at + RawFd::from(spec.runner);
    let mut ours = vec![
        ("LISTEN_FDS", listeners.len().to_string()),
        ("LISTEN_PID", pid.to_string()),
        ("LISTEN_FDNAMES", names.join(":")),
        ("NOTIFY_SOCKET", notify_socket.to_string()),
        ("UWSGID_WORKER_ID", worker_id.to_string()),
        ("UWSGID_GENERATION", generation.to_string()),
    ];
    if control.is_some() {
        ours.push(("UWSGID_ZYGOTE_FD", control_at.to_string()));
    }
    // The master's pid and FIFO, the slot count and the options (crate::pyapi).
    ours.extend(
        crate::pyapi::instance_env()
            .iter()
            .map(|(k, v)| (*k, v.clone())),
    );
    if spec.runner {
        ours.push((crate::runner::FD_VAR, runner_at.to_string()));
    }
    let env = worker_env(inherited_env(), &spec.env, &ours);
    let path_var = env
        .iter()
        .find(|(k, _)| k.as_bytes() == b"PATH")
        .map(|(_, v)| v.as_os_str());
    let resolved = resolve_program(OsStr::new(program), path_var)?;
    let c_path = cstring(resolved.as_os_str().as_bytes(), "program path")?;
    let c_argv = spec
        .argv
        .iter()
        .map(|arg| cstring(arg.as_bytes(), "argument"))
        .collect::<io::Result<Vec<_>>>()?;
    let c_env = env
        .iter()
        .map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            cstring(&entry, "environment variable")
        })
        .collect::<io::Result<Vec<_>>>()?;
    let argv_ptrs = null_terminated(&c_argv);
    let env_ptrs = null_terminated(&c_env);

    // The runner's source and the control socket are first put above every target fd, so
    // placing the listeners cannot overwrite them, then right after the listeners.
    let runner = if spec.runner {
        Some(crate::runner::source_fd(first_free)?)
    } else {
        None
    };
    let control = match control {
        Some(fd) => {
            // SAFETY: F_DUPFD_CLOEXEC only reads the fd number; an invalid one is EBADF.
            let tmp = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free) };
            if tmp < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: tmp is a new fd that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(tmp) })
        }
        None => None,
    };
    place_listeners(listeners)?;
    for (tmp, at) in [(&control, control_at), (&runner, runner_at)] {
        if let Some(tmp) = tmp {
            // SAFETY: dup2 onto a plain fd number right after the listeners; the copy has
            // FD_CLOEXEC clear, so the program inherits it.
            if unsafe { libc::dup2(tmp.as_raw_fd(), at) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    drop(control);
    drop(runner);
    mark_cloexec_from(first_free);
    reset_signals();

    // SAFETY: c_path is a valid C string, and argv_ptrs/env_ptrs are arrays of pointers into
    // c_argv/c_env (alive until after the call), each terminated by a null pointer.
    unsafe { libc::execve(c_path.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    let err = io::Error::last_os_error();
    Err(io::Error::new(
        err.kind(),
        format!("cannot execute {}: {err}", resolved.display()),
    ))
}

fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} {:?} contains a NUL byte",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The process environment, read from `environ` without taking std's environment lock.
fn inherited_env() -> Vec<(OsString, OsString)> {
    let mut out = Vec::new();
    // SAFETY: the caller is the only thread of this process (a child of the single-threaded
    // master), so nothing modifies `environ` while we read it; it is a null-terminated array
    // of pointers to NUL-terminated strings, or null.
    unsafe {
        let mut entry = libc::environ as *const *const libc::c_char;
        if entry.is_null() {
            return out;
        }
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
                out.push((
                    OsString::from_vec(bytes[..eq].to_vec()),
                    OsString::from_vec(bytes[eq + 1..].to_vec()),
                ));
            }
            entry = entry.add(1);
        }
    }
    out
}

/// Variables the master must not pass on as they were: they describe the master's own
/// activation (systemd's sockets, watchdog and notify socket) or a previous worker's identity.
fn is_replaced_variable(key: &[u8]) -> bool {
    key.starts_with(b"LISTEN_")
        || key.starts_with(b"WATCHDOG_")
        || key.starts_with(b"UWSGID_")
        || key == b"NOTIFY_SOCKET"
}

/// The worker's environment: `base` without stale activation variables and without what
/// `spec` or `ours` set, then `spec`, then `ours` (in that order, each key once).
fn worker_env(
    base: Vec<(OsString, OsString)>,
    spec: &[(String, String)],
    ours: &[(&str, String)],
) -> Vec<(OsString, OsString)> {
    let ours_has = |k: &[u8]| ours.iter().any(|(o, _)| o.as_bytes() == k);
    let spec_has = |k: &[u8]| spec.iter().any(|(s, _)| s.as_bytes() == k);
    let mut env: Vec<(OsString, OsString)> = base
        .into_iter()
        .filter(|(k, _)| {
            let k = k.as_bytes();
            !is_replaced_variable(k) && !spec_has(k) && !ours_has(k)
        })
        .collect();
    for (i, (k, v)) in spec.iter().enumerate() {
        let later_duplicate = spec[i + 1..].iter().any(|(other, _)| other == k);
        if !later_duplicate && !ours_has(k.as_bytes()) {
            env.push((k.into(), v.into()));
        }
    }
    env.extend(
        ours.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    env
}

/// `program` itself if it contains a `/`, else the first executable file named `program` in
/// `PATH` (default `/usr/local/bin:/usr/bin:/bin`; an empty entry is the current directory).
fn resolve_program(program: &OsStr, path_var: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "worker program name is empty",
        ));
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let search = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in search.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => {
                if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
                    return Ok(candidate);
                }
                not_executable.get_or_insert(candidate);
            }
            _ => {}
        }
    }
    let name = program.to_string_lossy();
    Err(match not_executable {
        Some(found) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "program {name:?} found as {} but it is not executable",
                found.display()
            ),
        ),
        None => io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "program {name:?} not found in PATH={}",
                search.to_string_lossy()
            ),
        ),
    })
}

/// Put `listeners[i]` at fd `3 + i`, without close-on-exec.
///
/// Every source is first duplicated above the target range, so a source already sitting at
/// some target (say the listener for fd 4 at fd 3) is not overwritten before it is moved.
fn place_listeners(listeners: &[(RawFd, String)]) -> io::Result<()> {
    let first_free = LISTEN_FDS_START + listeners.len() as RawFd;
    let mut temps = Vec::with_capacity(listeners.len());
    for (fd, name) in listeners {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) only reads the fd number; an invalid one is EBADF.
        let tmp = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, first_free) };
        if tmp < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("listener {name} (fd {fd}): {err}"),
            ));
        }
        // SAFETY: tmp is a new fd that nothing else owns.
        temps.push(unsafe { OwnedFd::from_raw_fd(tmp) });
    }
    for (i, tmp) in temps.iter().enumerate() {
        let target = LISTEN_FDS_START + i as RawFd;
        // SAFETY: dup2 onto a plain fd number; whatever was open there is replaced, which is
        // intended (the child execs next and fds other than the listeners are not passed on).
        // The new fd has FD_CLOEXEC clear.
        if unsafe { libc::dup2(tmp.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: target is open (dup2 succeeded); F_SETFD with 0 clears FD_CLOEXEC, which
        // dup2 already did: stated explicitly because the program depends on it.
        if unsafe { libc::fcntl(target, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(()) // the temporary copies are closed here
}

/// Mark every fd from `first` up close-on-exec.
fn mark_cloexec_from(first: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open fds in the range;
    // it closes nothing. It needs Linux 5.11; older kernels return an error, handled below.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if done {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on an fd number only changes its flags (EBADF if already closed,
        // as the directory's own fd is by now).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Every signal to its default action, and none blocked.
fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound; signals the C library reserves refuse
        // with EINVAL, which is fine to ignore.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: set is a local sigset_t initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names_follow_systemd_rules() {
        assert_eq!(fd_name("127.0.0.1:8000"), "127.0.0.1_8000");
        assert_eq!(fd_name("[::1]:80"), "[__1]_80");
        assert_eq!(fd_name("/run/app.sock"), "/run/app.sock");
        assert_eq!(fd_name("unix:/tmp/é s"), "unix_/tmp/_ s");
        assert_eq!(fd_name(""), "unknown");
        assert_eq!(fd_name(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn worker_env_replaces_activation_variables() {
        let base = [
            ("PATH", "/bin"),
            ("LISTEN_FDS", "9"),
            ("LISTEN_FDNAMES", "old"),
            ("LISTEN_FDS_FIRST_FD", "5"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("WATCHDOG_USEC", "1000"),
            ("HOME", "/root"),
            ("FOO", "inherited"),
        ]
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let spec = [
            ("FOO".to_string(), "first".to_string()),
            ("FOO".to_string(), "spec".to_string()),
            ("LISTEN_PID".to_string(), "1".to_string()),
        ];
        let ours = [
            ("LISTEN_FDS", "2".to_string()),
            ("LISTEN_PID", "42".to_string()),
        ];
        let env: Vec<(String, String)> = worker_env(base, &spec, &ours)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            pairs,
            [
                ("PATH", "/bin"),
                ("HOME", "/root"),
                ("FOO", "spec"),
                ("LISTEN_FDS", "2"),
                ("LISTEN_PID", "42")
            ]
        );
    }

    #[test]
    fn programs_are_found_in_path() {
        let sh = resolve_program(OsStr::new("sh"), Some(OsStr::new("/nonexistent::/bin"))).unwrap();
        assert_eq!(sh, Path::new("/bin/sh"));
        let direct = resolve_program(OsStr::new("./x/y"), Some(OsStr::new("/bin"))).unwrap();
        assert_eq!(direct, Path::new("./x/y"));
        let e = resolve_program(
            OsStr::new("uwsgid-no-such-program"),
            Some(OsStr::new("/bin")),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("not found in PATH=/bin"), "{e}");

        let dir = TempDir::new();
        std::fs::write(dir.path.join("plain"), "not a program").unwrap();
        let e = resolve_program(OsStr::new("plain"), Some(dir.path.as_os_str())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    }

    #[test]
    fn exec_errors_are_reported_before_touching_the_process() {
        // Safe to call in the test process: a missing program fails before any fd is moved.
        let spec = ExecSpec {
            argv: vec!["uwsgid-no-such-program".into()],
            env: vec![("PATH".into(), "/nonexistent".into())],
            cwd: None,
            runner: false,
        };
        let e = exec_worker(&spec, &[(0, "x".into())], "@n", 1, 1);
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("uwsgid-no-such-program"), "{e}");
        let e = exec_worker(&ExecSpec::default(), &[], "@n", 1, 1);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    use crate::test_support::TempDir;
}
