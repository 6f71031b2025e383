//! Exec workers: run any program as a worker, handing it the listeners by the systemd socket
//! protocol and hearing its readiness on an sd_notify-style datagram socket.
//!
//! # The contract with the caller (the master's spawn code)
//!
//! [`exec_worker`] runs in the **forked child**, after `fork` in the single-threaded master and
//! before anything else can run in that child. Before calling it the caller must, in order:
//!
//! 1. fork with every signal blocked (the master's mask while spawning), so that no handler of
//!    the master runs in the child: those handlers write to the master's self-pipe, which the
//!    child shares;
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
//! `NOTIFY_SOCKET`, `UWSGID_WORKER_ID` and `UWSGID_GENERATION`. [`exec_zygote`] runs a
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
//! The master binds one datagram socket ([`bind_notify_socket`]) and passes its name as
//! `NOTIFY_SOCKET`. A program says `READY=1` (and `STATUS=…`, `STOPPING=1`, `RELOADING=1`)
//! exactly as it would to systemd. [`recv_notify`] attributes each datagram to the pid the
//! kernel reports in `SCM_CREDENTIALS`; a pid written in the payload is never believed, and a
//! datagram from a pid that is not a worker is the caller's to ignore (`NotifyAccess=main`).

use std::convert::Infallible;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};

/// The bundled Python WSGI runner (`--wsgi-file`, `--module`), run as an exec worker program
/// without a file ([`crate::runner`]).
pub const WSGI_RUNNER: &str = crate::runner::SOURCE;

/// The first fd of the listeners, as in systemd's `SD_LISTEN_FDS_START`.
pub const LISTEN_FDS_START: RawFd = 3;

/// Longest `LISTEN_FDNAMES` entry systemd accepts (`FDNAME_MAX`).
const FDNAME_MAX: usize = 255;

/// Largest notify datagram read; longer ones are dropped, as systemd does.
const NOTIFY_MAX: usize = 4096;

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

/// Split a command line into words as a POSIX shell would, without running a shell.
///
/// Blanks (space, tab) separate words; `'…'` is literal; in `"…"` a backslash escapes only
/// `"`, `\`, `$`, `` ` `` and newline; outside quotes a backslash escapes any character and
/// backslash-newline joins lines; `''` is an empty word. Since nothing is expanded, whatever a
/// shell would expand or interpret is refused with a message saying how to quote it instead:
/// `$` and `` ` ``, the operators `| & ; < > ( )`, an unquoted newline, a `#` comment, and a
/// leading `NAME=value` assignment. Globs (`*`, `?`, `[`) and `~` are passed literally.
pub fn split_command_line(cmd: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = cmd.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, escaped)) => {
                    word.push(escaped);
                    in_word = true;
                }
                None => return Err(format!("{cmd:?}: trailing backslash escapes nothing")),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => word.push(ch),
                        None => {
                            return Err(format!(
                                "{cmd:?}: unterminated single quote (opened at byte {at})"
                            ))
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\' | '$' | '`'))) => word.push(e),
                            Some((_, '\n')) => {}
                            Some((_, other)) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => {
                                return Err(format!(
                                    "{cmd:?}: unterminated double quote (opened at byte {at})"
                                ))
                            }
                        },
                        Some((inner, ch @ ('$' | '`'))) => {
                            return Err(format!(
                                "{cmd:?}: '{ch}' at byte {inner} would be expanded by a shell, \
                                 and no shell runs this command; write \\{ch} or use single quotes"
                            ))
                        }
                        Some((_, ch)) => word.push(ch),
                        None => {
                            return Err(format!(
                                "{cmd:?}: unterminated double quote (opened at byte {at})"
                            ))
                        }
                    }
                }
            }
            '$' | '`' => {
                return Err(format!(
                    "{cmd:?}: '{c}' at byte {at} would be expanded by a shell, and no shell runs \
                     this command; quote it ('{c}') to pass it literally"
                ))
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' => {
                return Err(format!(
                    "{cmd:?}: shell operator '{c}' at byte {at} is not supported (no shell runs \
                     this command); quote it to pass it literally, or run sh -c '…' explicitly"
                ))
            }
            '\n' | '\r' => {
                return Err(format!(
                    "{cmd:?}: line break at byte {at}; one command only (end a line with \\ to \
                     continue it)"
                ))
            }
            '#' if !in_word => {
                return Err(format!(
                    "{cmd:?}: '#' at byte {at} starts a comment in a shell; quote it to pass it \
                     literally"
                ))
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let Some(first) = words.first() else {
        return Err("empty command: give the program to run and its arguments".to_string());
    };
    if let Some((name, _)) = first.split_once('=') {
        let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_name {
            return Err(format!(
                "{cmd:?}: {first:?} is a variable assignment, which a shell would put in the \
                 environment; set the variable with --env {first} instead"
            ));
        }
    }
    Ok(words)
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
/// [`bind_notify_socket`]). See the module documentation for what the caller must have done
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

/// One sd_notify datagram, attributed to the pid the kernel vouched for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// The sender's pid from `SCM_CREDENTIALS` (never from the payload).
    pub pid: i32,
    /// `READY=1`: the worker accepts connections.
    pub ready: bool,
    /// `STOPPING=1`: the worker is shutting down.
    pub stopping: bool,
    /// `STATUS=…`: free-form text for stats (the last one in the datagram).
    pub status: Option<String>,
    /// `RELOADING=1`: the worker reloads its own configuration; not ready until `READY=1`.
    pub reloading: bool,
    /// `UWSGID_SLOT=k`: a worker forked by a preload zygote says which slot it serves.
    pub slot: Option<u32>,
    /// `UWSGID_GENERATION=g`: and which generation it belongs to.
    pub generation: Option<u64>,
}

/// Parse an sd_notify datagram: newline-separated `KEY=VALUE` assignments.
///
/// Flags count only with the value `1`, as in systemd; unknown keys (`MAINPID`, `WATCHDOG`,
/// `ERRNO`, …) and malformed lines are ignored; invalid UTF-8 in `STATUS` is replaced.
pub fn parse_notify(pid: i32, datagram: &[u8]) -> NotifyMessage {
    let mut msg = NotifyMessage {
        pid,
        ..NotifyMessage::default()
    };
    for line in datagram.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => msg.ready |= value == b"1",
            b"STOPPING" => msg.stopping |= value == b"1",
            b"RELOADING" => msg.reloading |= value == b"1",
            b"STATUS" => msg.status = Some(String::from_utf8_lossy(value).into_owned()),
            b"UWSGID_SLOT" => {
                msg.slot = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            b"UWSGID_GENERATION" => {
                msg.generation = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    msg
}

fn notify_address(name: &str) -> io::Result<UnixAddr> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("notify socket {name:?}: {why}"),
        )
    };
    if let Some(abstract_name) = name.strip_prefix('@') {
        if abstract_name.is_empty() {
            return Err(invalid("empty abstract name"));
        }
        UnixAddr::new_abstract(abstract_name.as_bytes()).map_err(|e| invalid(&e.to_string()))
    } else if name.is_empty() {
        Err(invalid("empty name"))
    } else {
        UnixAddr::new(name).map_err(|e| invalid(&e.to_string()))
    }
}

/// Bind the master's notify socket: a non-blocking, close-on-exec `SOCK_DGRAM` Unix socket
/// with `SO_PASSCRED`, so every datagram arrives with its sender's credentials.
///
/// `name` is what workers get as `NOTIFY_SOCKET`: `@name` for the abstract namespace (nothing
/// to clean up; reachable by any process in the same network namespace, which is why senders
/// are identified by credentials), or a filesystem path, which must not exist yet.
pub fn bind_notify_socket(name: &str) -> io::Result<OwnedFd> {
    let addr = notify_address(name)?;
    let context = |e: nix::Error| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("notify socket {name}: {e}"))
    };
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(context)?;
    socket::setsockopt(&fd, sockopt::PassCred, &true).map_err(context)?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(context)?;
    Ok(fd)
}

/// Read the next notify datagram from the socket of [`bind_notify_socket`].
///
/// `Ok(None)` when nothing is queued (the socket is non-blocking). Datagrams without
/// credentials, from pid 0 (a sender outside our pid namespace), or longer than 4096 bytes are
/// dropped; so are fds passed along (closed at once, never kept). After 64 dropped datagrams
/// in one call it returns `Ok(None)` to let the master loop run; the socket stays readable.
pub fn recv_notify(fd: impl AsFd) -> io::Result<Option<NotifyMessage>> {
    let fd = fd.as_fd().as_raw_fd();
    let mut data = [0u8; NOTIFY_MAX];
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    for _ in 0..64 {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg points at iov and control, both live and writable for the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(err),
            }
        }
        let pid = take_control_messages(&msg);
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        match pid {
            Some(pid) if pid > 0 => return Ok(Some(parse_notify(pid, &data[..n as usize]))),
            _ => continue,
        }
    }
    Ok(None)
}

/// The sender pid from `SCM_CREDENTIALS`, closing any fds that came along in `SCM_RIGHTS`.
fn take_control_messages(msg: &libc::msghdr) -> Option<i32> {
    let mut pid = None;
    // SAFETY: msg was filled by a successful recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk only the
    // msg_controllen bytes the kernel wrote (complete headers even when MSG_CTRUNC is set), and
    // the data of each header is read unaligned within its cmsg_len.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let len = header.cmsg_len as usize;
            let data_len = len.saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET {
                if header.cmsg_type == libc::SCM_CREDENTIALS
                    && data_len >= std::mem::size_of::<libc::ucred>()
                {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    pid = Some(cred.pid);
                } else if header.cmsg_type == libc::SCM_RIGHTS {
                    let count = data_len / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let passed = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        libc::close(passed);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    pid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn words(cmd: &str) -> Vec<String> {
        split_command_line(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn split_error(cmd: &str) -> String {
        match split_command_line(cmd) {
            Ok(w) => panic!("{cmd:?} split into {w:?}, expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn split_words_like_a_shell() {
        assert_eq!(
            words("node  app.js\t--port 3"),
            ["node", "app.js", "--port", "3"]
        );
        assert_eq!(words("  a  "), ["a"]);
        assert_eq!(words("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(words("x 'it''s' a'b'\"c\"d"), ["x", "its", "abcd"]);
        assert_eq!(
            words(r#"x '\n$HOME' "a\"b\\c\$d\e""#),
            ["x", r"\n$HOME", r#"a"b\c$d\e"#]
        );
        assert_eq!(words(r"x a\ b \'q \$ \|"), ["x", "a b", "'q", "$", "|"]);
        assert_eq!(words("x '' \"\" z"), ["x", "", "", "z"]);
        assert_eq!(words("x a\\\nb"), ["x", "ab"]);
        assert_eq!(words("x 'multi\nline'"), ["x", "multi\nline"]);
        assert_eq!(
            words("x a#b *.py ~/p 'A=b'"),
            ["x", "a#b", "*.py", "~/p", "A=b"]
        );
        assert_eq!(
            words("/usr/bin/env A=b prog"),
            ["/usr/bin/env", "A=b", "prog"]
        );
        assert_eq!(
            words("python3 -c 'print(\"hi\")'"),
            ["python3", "-c", "print(\"hi\")"]
        );
    }

    #[test]
    fn split_refuses_what_a_shell_would_interpret() {
        assert!(split_error("").contains("empty command"));
        assert!(split_error(" \t ").contains("empty command"));
        assert!(split_error("x 'abc").contains("unterminated single quote (opened at byte 2)"));
        assert!(split_error("x \"abc").contains("unterminated double quote"));
        assert!(split_error("x \"abc\\").contains("unterminated double quote"));
        assert!(split_error("x abc\\").contains("trailing backslash"));
        assert!(split_error("x $HOME").contains("'$' at byte 2 would be expanded"));
        assert!(split_error("x \"$HOME\"").contains("would be expanded"));
        assert!(split_error("x `id`").contains("would be expanded"));
        for op in ["a | b", "a && b", "a; b", "a > log", "a < in", "(a)"] {
            assert!(split_error(op).contains("shell operator"), "{op}");
        }
        assert!(split_error("a\nb").contains("one command only"));
        assert!(split_error("a # note").contains("comment"));
        let e = split_error("PORT=3 node app.js");
        assert!(
            e.contains("variable assignment") && e.contains("--env PORT=3"),
            "{e}"
        );
    }

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

    #[test]
    fn a_runner_program_gets_the_sealed_source_after_the_listeners() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
        // Reports where the source is, whether it is complete and sealed, and which fds are
        // open; it never runs the runner itself.
        let script = r#"
import fcntl, hashlib, os
fd = int(os.environ["UWSGID_RUNNER_FD"])
src = os.pread(fd, os.fstat(fd).st_size, 0)
print("fd=%d" % fd)
print("sha=" + hashlib.sha256(src).hexdigest())
seals = fcntl.fcntl(fd, 1034)  # F_GET_SEALS
print("seals=%d" % seals)
try:
    os.pwrite(fd, b"x", 0)
    print("write=ok")
except OSError as e:
    print("write=refused")
def is_open(n):
    try:
        os.fstat(n)
        return True
    except OSError:
        return False
print("open=" + ",".join(str(n) for n in range(256) if is_open(n)))
"#;
        // The listeners sit crossed at 4 and 3, where the memfd would land if it were
        // created first at the lowest free number.
        let arrange = move || {
            // SAFETY: fcntl/dup2 on fds inherited from the parent, in the child before exec.
            unsafe {
                let a = libc::fcntl(a_fd, libc::F_DUPFD, 100);
                let b = libc::fcntl(b_fd, libc::F_DUPFD, 100);
                if a < 0 || b < 0 || libc::dup2(a, 4) < 0 || libc::dup2(b, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(5);
            }
            Ok(())
        };
        let mut spec = python(script);
        spec.runner = true;
        let child = spawn_worker(
            spec,
            vec![(4, "a".into()), (3, "b".into())],
            "@notify-name".into(),
            arrange,
        );
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sha = std::process::Command::new("sha256sum")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/uwsgid_wsgi.py"
            ))
            .output()
            .unwrap();
        let sha = String::from_utf8_lossy(&sha.stdout);
        let sha = sha.split_whitespace().next().unwrap();
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "fd=5".to_string(),
                format!("sha={sha}"),
                format!("seals={seals}"),
                "write=refused".into(),
                "open=0,1,2,3,4,5".into(),
            ]
        );
    }

    #[test]
    fn notify_datagrams_parse_like_sd_notify() {
        let m = parse_notify(7, b"READY=1\nSTATUS=serving 4 threads\nMAINPID=1\n");
        assert_eq!(
            m,
            NotifyMessage {
                pid: 7,
                ready: true,
                stopping: false,
                status: Some("serving 4 threads".into()),
                reloading: false,
                slot: None,
                generation: None,
            }
        );
        let m = parse_notify(7, b"STOPPING=1\nSTATUS=a=b\nSTATUS=last\xff");
        assert!(m.stopping && !m.ready);
        assert_eq!(m.status.as_deref(), Some("last\u{fffd}"));
        let m = parse_notify(7, b"READY=0\nRELOADING=1\ngarbage\n\nREADY");
        assert!(!m.ready && m.reloading && m.status.is_none());
        let m = parse_notify(7, b"READY=1\nUWSGID_SLOT=3\nUWSGID_GENERATION=12\n");
        assert_eq!((m.slot, m.generation), (Some(3), Some(12)));
        let m = parse_notify(7, b"UWSGID_SLOT=x\nUWSGID_GENERATION=-1");
        assert_eq!((m.slot, m.generation), (None, None));
        assert_eq!(
            parse_notify(3, b""),
            NotifyMessage {
                pid: 3,
                ..Default::default()
            }
        );
    }

    static UNIQUE: AtomicUsize = AtomicUsize::new(0);

    fn unique(what: &str) -> String {
        format!(
            "uwsgid-test-{what}-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A scratch directory removed on drop.
    struct TempDir {
        path: PathBuf,
    }

    impl TempDir {
        fn new() -> TempDir {
            let path = std::env::temp_dir().join(unique("dir"));
            std::fs::create_dir_all(&path).unwrap();
            TempDir { path }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    fn send_datagram(to: &str, payload: &[u8]) {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let addr = SocketAddr::from_abstract_name(to.strip_prefix('@').unwrap()).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(payload, &addr)
            .unwrap();
    }

    /// Not a test: the sender half of `notify_pid_comes_from_credentials`, run in a child
    /// process (this test binary, re-executed) so the datagram comes from another pid.
    #[test]
    #[ignore = "helper run by notify_pid_comes_from_credentials"]
    fn notify_sender_helper() {
        if let Ok(to) = std::env::var("UWSGID_TEST_NOTIFY_TO") {
            send_datagram(&to, b"MAINPID=1\nREADY=1\nSTATUS=from the helper");
        }
    }

    fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis() as u64).unwrap();
        poll(&mut fds, ms).unwrap() > 0
    }

    #[test]
    fn notify_pid_comes_from_credentials() {
        let name = format!("@{}", unique("notify"));
        let sock = bind_notify_socket(&name).unwrap();
        assert_eq!(recv_notify(&sock).unwrap(), None, "nothing queued yet");

        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "exec::tests::notify_sender_helper",
                "--quiet",
            ])
            .env("UWSGID_TEST_NOTIFY_TO", &name)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let helper_pid = helper.id() as i32;
        assert!(helper.wait().unwrap().success());
        assert!(wait_readable(&sock, Duration::from_secs(5)));
        let msg = recv_notify(&sock).unwrap().expect("a datagram");
        assert_eq!(
            msg.pid, helper_pid,
            "pid from SCM_CREDENTIALS, not MAINPID=1"
        );
        assert!(msg.ready);
        assert_eq!(msg.status.as_deref(), Some("from the helper"));

        // Oversized datagrams are dropped whole; the next one is read.
        send_datagram(&name, &[b'x'; NOTIFY_MAX + 10]);
        send_datagram(&name, b"STOPPING=1");
        let msg = recv_notify(&sock).unwrap().expect("the second datagram");
        assert_eq!(msg.pid, std::process::id() as i32);
        assert!(msg.stopping);
        assert_eq!(recv_notify(&sock).unwrap(), None);
    }

    #[test]
    fn notify_socket_names_are_checked() {
        assert!(bind_notify_socket("@").is_err());
        assert!(bind_notify_socket("").is_err());
        let dir = TempDir::new();
        let path = dir.path.join("notify.sock");
        let path = path.to_str().unwrap();
        let _sock = bind_notify_socket(path).unwrap();
        let e = bind_notify_socket(path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains(path), "{e}");
    }

    /// Spawn `argv` with `exec_worker` run from `pre_exec`, the way the master will. `arrange`
    /// runs first in the child to place fds, as the master's own fd layout might.
    fn spawn_worker(
        spec: ExecSpec,
        listeners: Vec<(RawFd, String)>,
        notify: String,
        arrange: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> Child {
        let mut cmd = Command::new("/nonexistent/never-run-by-std");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec; exec_worker is written for
        // that context (glibc keeps malloc usable after fork).
        unsafe {
            cmd.pre_exec(move || {
                arrange()?;
                Err(exec_worker(&spec, &listeners, &notify, 7, 3))
            });
        }
        cmd.spawn().unwrap()
    }

    fn python(script: &str) -> ExecSpec {
        ExecSpec {
            argv: vec!["python3".into(), "-c".into(), script.into()],
            env: vec![("UWSGID_TEST_FOO".into(), "bar".into())],
            cwd: None,
            runner: false,
        }
    }

    #[test]
    fn workers_get_listeners_and_systemd_variables() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
        let script = r#"
import os, socket
for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "UWSGID_WORKER_ID",
          "UWSGID_GENERATION", "UWSGID_TEST_FOO"):
    print("%s=%s" % (k, os.environ.get(k)))
print("pid=%d" % os.getpid())
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("open=" + ",".join(str(fd) for fd in range(256) if is_open(fd)))
for fd in (3, 4):
    s = socket.socket(fileno=fd)
    print("fd%d=%d inheritable=%s" % (fd, s.getsockname()[1], os.get_inheritable(fd)))
    s.detach()
"#;
        // In the child: the listener for fd 3 sits at 4 and the one for fd 4 at 3 (crossed),
        // and a stray fd 20 without close-on-exec must not reach the program.
        let arrange = move || {
            // SAFETY: fcntl/dup2 on fds inherited from the parent, in the child before exec.
            // Both listeners are first copied out of the way (F_DUPFD never replaces an open
            // fd), since either may itself sit at 3, 4 or 20 in this multi-threaded test.
            unsafe {
                let a = libc::fcntl(a_fd, libc::F_DUPFD, 100);
                let b = libc::fcntl(b_fd, libc::F_DUPFD, 100);
                if a < 0
                    || b < 0
                    || libc::dup2(a, 20) < 0
                    || libc::dup2(a, 4) < 0
                    || libc::dup2(b, 3) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        };
        let child = spawn_worker(
            python(script),
            vec![(4, "127.0.0.1:1".into()), (3, "b".into())],
            "@notify-name".into(),
            arrange,
        );
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        let a_port = a.local_addr().unwrap().port();
        let b_port = b.local_addr().unwrap().port();
        assert_eq!(
            lines,
            [
                "LISTEN_FDS=2".to_string(),
                format!("LISTEN_PID={pid}"),
                "LISTEN_FDNAMES=127.0.0.1_1:b".into(),
                "NOTIFY_SOCKET=@notify-name".into(),
                "UWSGID_WORKER_ID=7".into(),
                "UWSGID_GENERATION=3".into(),
                "UWSGID_TEST_FOO=bar".into(),
                format!("pid={pid}"),
                "open=0,1,2,3,4".into(),
                format!("fd3={a_port} inheritable=True"),
                format!("fd4={b_port} inheritable=True"),
            ]
        );
    }

    // ---- the bundled WSGI runner, driven end to end through exec_worker --------------------

    const APP: &str = r#"
import os, sys, time
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    if path == "/boom":
        raise RuntimeError("boom from the app")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part%d;" % i for i in range(3))
    if path == "/env":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "HTTP_X_TEST",
                "REMOTE_PORT")
        text = " ".join("%s=%s" % (k, environ.get(k)) for k in keys)
        text += " LISTEN_FDS=%s" % os.environ.get("LISTEN_FDS")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"#;

    /// A runner worker on its own loopback listener, killed (SIGKILL) on drop.
    struct Runner {
        child: Child,
        port: u16,
        notify: OwnedFd,
        _dir: TempDir,
        _listener: TcpListener,
    }

    impl Runner {
        fn start(app: &str, args: &[&str]) -> Runner {
            let dir = TempDir::new();
            std::fs::write(dir.path.join("app.py"), app).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let notify_name = format!("@{}", unique("runner"));
            let notify = bind_notify_socket(&notify_name).unwrap();
            let mut argv: Vec<String> = vec!["python3".into(), "{runner}".into()];
            argv.push("--wsgi-file".into());
            argv.push(dir.path.join("app.py").to_str().unwrap().into());
            argv.extend(args.iter().map(|a| a.to_string()));
            let (argv, runner) = crate::runner::expand(argv);
            let spec = ExecSpec {
                argv,
                env: vec![],
                cwd: None,
                runner,
            };
            let listeners = vec![(listener.as_raw_fd(), format!("127.0.0.1:{port}"))];
            let child = spawn_worker(spec, listeners, notify_name, || Ok(()));
            Runner {
                child,
                port,
                notify,
                _dir: dir,
                _listener: listener,
            }
        }

        fn pid(&self) -> i32 {
            self.child.id() as i32
        }

        /// The next notify message from this worker, or None if it exited first.
        fn next_notify(&mut self, timeout: Duration) -> Option<NotifyMessage> {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Some(msg) = recv_notify(&self.notify).unwrap() {
                    if msg.pid == self.pid() {
                        return Some(msg);
                    }
                    continue;
                }
                if self.child.try_wait().unwrap().is_some() {
                    return None;
                }
                wait_readable(&self.notify, Duration::from_millis(50));
            }
            panic!("no notify message from the runner within {timeout:?}");
        }

        fn wait_ready(&mut self) -> NotifyMessage {
            let msg = self.next_notify(Duration::from_secs(20));
            match msg {
                Some(m) if m.ready => m,
                other => panic!("runner not ready: {other:?}\n{}", self.stderr_after_kill()),
            }
        }

        fn stderr_after_kill(&mut self) -> String {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let mut err = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = pipe.read_to_string(&mut err);
            }
            err
        }

        fn connect(&self) -> Client {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            Client {
                reader: BufReader::new(stream.try_clone().unwrap()),
                stream,
            }
        }

        fn signal(&self, sig: nix::sys::signal::Signal) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
        }

        /// Wait for the worker's exit (bounded); its exit code and stderr.
        fn finish(&mut self, timeout: Duration) -> (Option<i32>, String) {
            let deadline = Instant::now() + timeout;
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "runner still alive after {timeout:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut err = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                pipe.read_to_string(&mut err).unwrap();
            }
            (status.code(), err)
        }
    }

    impl Drop for Runner {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    struct Client {
        stream: TcpStream,
        reader: BufReader<TcpStream>,
    }

    #[derive(Debug)]
    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            let found = self
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name));
            found.map(|(_, v)| v.as_str())
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    impl Client {
        fn send(&mut self, raw: &str) {
            self.stream.write_all(raw.as_bytes()).unwrap();
        }

        fn get(&mut self, path: &str) -> Response {
            self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
            self.response(false)
        }

        /// Read one response (Content-Length, chunked, or up to EOF).
        fn response(&mut self, head_only: bool) -> Response {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
            let status = line[9..12].parse().unwrap();
            let mut headers = Vec::new();
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.to_string(), v.trim().to_string()));
            }
            let mut resp = Response {
                status,
                headers,
                body: Vec::new(),
            };
            if head_only {
                return resp;
            }
            if let Some(len) = resp.header("content-length") {
                let mut body = vec![0; len.parse().unwrap()];
                self.reader.read_exact(&mut body).unwrap();
                resp.body = body;
            } else if resp.header("transfer-encoding") == Some("chunked") {
                loop {
                    line.clear();
                    self.reader.read_line(&mut line).unwrap();
                    let size = usize::from_str_radix(line.trim(), 16).unwrap();
                    let mut chunk = vec![0; size + 2];
                    self.reader.read_exact(&mut chunk).unwrap();
                    if size == 0 {
                        break;
                    }
                    resp.body.extend_from_slice(&chunk[..size]);
                }
            } else {
                self.reader.read_to_end(&mut resp.body).unwrap();
            }
            resp
        }

        /// True if the server closed the connection (EOF) within the read timeout.
        fn closed_by_server(&mut self) -> bool {
            let mut buf = [0u8; 1];
            matches!(self.reader.read(&mut buf), Ok(0))
        }
    }

    #[test]
    fn runner_serves_http_1_1() {
        let mut runner = Runner::start(APP, &["--threads", "4"]);
        let ready = runner.wait_ready();
        assert!(
            ready.status.as_deref().unwrap_or("").contains("127.0.0.1_"),
            "{ready:?}"
        );

        // Keep-alive: several requests on one connection, seen from one client port.
        let mut c = runner.connect();
        let first = c.get("/env?q=1");
        assert_eq!(first.status, 200);
        let text = first.text();
        assert!(
            text.contains("REQUEST_METHOD=GET PATH_INFO=/env QUERY_STRING=q=1"),
            "{text}"
        );
        assert!(text.contains("SERVER_PROTOCOL=HTTP/1.1"), "{text}");
        assert!(
            text.contains("LISTEN_FDS=None"),
            "runner must unset LISTEN_*: {text}"
        );
        let port = c.stream.local_addr().unwrap().port();
        assert!(text.contains(&format!("REMOTE_PORT={port}")), "{text}");
        assert_eq!(c.get("/").text(), "hello");
        // Percent-decoding of PATH_INFO, and a custom header.
        c.send("GET /%65nv HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n");
        let text = c.response(false).text();
        assert!(
            text.contains("PATH_INFO=/env") && text.contains("HTTP_X_TEST=yes"),
            "{text}"
        );
        // Pipelined requests are answered in order.
        c.send("GET /?1 HTTP/1.1\r\nHost: t\r\n\r\nGET /env?2 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response(false).text(), "hello");
        assert!(c.response(false).text().contains("QUERY_STRING=2"));
        // Bodies: Content-Length and chunked; streamed (chunked) responses; HEAD.
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
        assert_eq!(c.response(false).text(), "abcde");
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(c.response(false).text(), "abcde");
        let streamed = c.get("/stream");
        assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
        assert_eq!(streamed.text(), "part0;part1;part2;");
        c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        let head = c.response(true);
        assert_eq!(head.header("content-length"), Some("5"));
        // An unread body is skipped, keeping the connection usable.
        c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
        assert_eq!(c.response(false).text(), "hello");
        // Connection: close is honoured.
        c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let last = c.response(false);
        assert_eq!(last.header("connection"), Some("close"));
        assert!(c.closed_by_server());

        // HTTP/1.0 without keep-alive: body delimited, then closed.
        let mut c = runner.connect();
        c.send("GET / HTTP/1.0\r\n\r\n");
        assert_eq!(c.response(false).text(), "hello");
        assert!(c.closed_by_server());

        // Garbage gets 400 and a close; an application exception gets 500 and a traceback.
        let mut c = runner.connect();
        c.send("NOT HTTP AT ALL\r\n\r\n");
        assert_eq!(c.response(false).status, 400);
        let mut c = runner.connect();
        c.send(
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(c.response(false).status, 400);
        let mut c = runner.connect();
        assert_eq!(c.get("/boom").status, 500);
        // The worker survives all of this.
        assert_eq!(runner.connect().get("/").status, 200);

        runner.signal(nix::sys::signal::Signal::SIGTERM);
        let (code, stderr) = runner.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("RuntimeError: boom from the app"),
            "{stderr}"
        );
    }

    #[test]
    fn runner_serves_others_while_a_request_is_slow() {
        let mut runner = Runner::start(APP, &[]);
        runner.wait_ready();
        let mut slow = runner.connect();
        slow.send("GET /sleep?2 HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(runner.connect().get("/").status, 200);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(slow.response(false).status, 200);
    }

    #[test]
    fn runner_drains_on_sigterm() {
        let mut runner = Runner::start(APP, &[]);
        runner.wait_ready();
        let mut idle = runner.connect();
        assert_eq!(idle.get("/").status, 200);
        let mut slow = runner.connect();
        slow.send("GET /sleep?1 HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        runner.signal(nix::sys::signal::Signal::SIGTERM);

        let stopping = runner
            .next_notify(Duration::from_secs(5))
            .expect("STOPPING=1");
        assert!(stopping.stopping, "{stopping:?}");
        assert!(
            idle.closed_by_server(),
            "idle keep-alive connection closed at once"
        );
        assert!(signalled.elapsed() < Duration::from_millis(800));
        let resp = slow.response(false);
        assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
        assert_eq!(resp.header("connection"), Some("close"));
        let (code, stderr) = runner.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("drained after SIGTERM"), "{stderr}");
    }

    fn startup_failure(app: Option<&str>, args: &[&str]) -> String {
        let mut runner = Runner::start(app.unwrap_or(""), args);
        if app.is_none() {
            std::fs::remove_file(runner._dir.path.join("app.py")).unwrap();
        }
        let msg = runner.next_notify(Duration::from_secs(20));
        assert_eq!(msg, None, "no READY from a runner that cannot start");
        let (code, stderr) = runner.finish(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{stderr}");
        stderr
    }

    #[test]
    fn runner_startup_errors_exit_1_before_ready() {
        let err = startup_failure(Some("def app(e, s):\n    pass\n"), &[]);
        assert!(
            err.contains("defines no callable named 'application'"),
            "{err}"
        );
        let err = startup_failure(Some("def app(e, s):\n    pass\n"), &["--callable", "nope"]);
        assert!(err.contains("no callable named 'nope'"), "{err}");
        let err = startup_failure(Some("def application(:\n"), &[]);
        assert!(err.contains("syntax error at"), "{err}");
        let err = startup_failure(Some("import no_such_module_here\n"), &[]);
        assert!(
            err.contains("ModuleNotFoundError raised while loading"),
            "{err}"
        );
        let err = startup_failure(Some("application = 3\n"), &[]);
        assert!(
            err.contains("'application' is a int, not a callable"),
            "{err}"
        );
    }
}
