//! `--daemonize LOG`: detach from the terminal, with the launcher waiting for the outcome.
//!
//! The launcher (the process the user ran) opens LOG itself, before forking, and writes a first
//! line to it. So an unusable log is refused on the terminal, with its cause, before anything
//! is bound or forked: a path that cannot be opened (no permission, a directory...), a FIFO with
//! no reader (the open never blocks: `ENXIO`), a FIFO whose reader is not reading, a device
//! that refuses writes (`/dev/full`: `ENOSPC`). The daemon inherits the open log on fds 1 and 2
//! (once open, a FIFO log blocks like any pipe: its reader must keep reading).
//!
//! The launcher then waits on a pipe for the daemon's report, written by
//! [`report_to_launcher`]: `ok PID` once the instance serves, or `error: WHY`, which it prints
//! and exits 1; EOF without a report means the daemon died before it could say why. Every
//! failure after the fork is reported through that pipe (it is set up before anything can
//! fail). While it waits the launcher blocks no signal: SIGINT, SIGTERM and SIGHUP end it at
//! once (the daemon, in its own session, carries on or fails by itself).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::SystemTime;

use crate::sys;

/// The write end of the pipe to the process that ran `uwsgid --daemonize` (-1 when none).
static LAUNCHER: AtomicI32 = AtomicI32::new(-1);

/// Tell a waiting `--daemonize` launcher how startup ended, once.
pub fn report_to_launcher(message: &str) {
    let fd = LAUNCHER.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: writing our message to the pipe we own, then closing it.
        unsafe {
            libc::write(fd, message.as_ptr() as *const libc::c_void, message.len());
            libc::close(fd);
        }
    }
}

/// Why `--daemonize LOG` is refused: each names the log file, the cause and the fix.
#[derive(Debug)]
pub enum Error {
    /// The log cannot be opened (`crate::log::open`'s error names the path).
    Open(std::io::Error),
    /// Its metadata cannot be read.
    Stat(PathBuf, std::io::Error),
    /// Neither a regular file, a FIFO nor a character device.
    Kind(PathBuf),
    /// A line cannot be written to it (a FIFO whose reader is not reading: `WouldBlock`).
    Write(PathBuf, std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Open(e) => write!(f, "--daemonize: {e}"),
            Error::Stat(p, e) => write!(f, "--daemonize: log file {}: {e}", p.display()),
            Error::Kind(p) => write!(
                f,
                "--daemonize: log file {}: not a regular file, FIFO or character device",
                p.display()
            ),
            Error::Write(p, e) => {
                write!(
                    f,
                    "--daemonize: log file {}: cannot write to it: ",
                    p.display()
                )?;
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    f.write_str("the FIFO's reader is not reading")?;
                } else {
                    write!(f, "{e}")?;
                }
                f.write_str("; give a writable log file")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Open(e) | Error::Stat(_, e) | Error::Write(_, e) => Some(e),
            Error::Kind(_) => None,
        }
    }
}

/// Open the log and prove it takes a line, without ever blocking; the error names the option,
/// the path, the cause and the fix.
pub fn open_log(log: &Path) -> Result<File, Error> {
    let file = crate::log::open(log).map_err(Error::Open)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Stat(log.to_path_buf(), e))?;
    let kind = meta.file_type();
    let fifo = std::os::unix::fs::FileTypeExt::is_fifo(&kind);
    if !(kind.is_file() || fifo || std::os::unix::fs::FileTypeExt::is_char_device(&kind)) {
        return Err(Error::Kind(log.to_path_buf()));
    }
    let line = match crate::log::format() {
        crate::log::Format::Json => crate::log::render_now(
            "daemonize",
            None,
            1,
            &[],
            "launcher: starting in the background",
        ),
        crate::log::Format::Text => format!(
            "{} uwsgid[{}] launcher: starting in the background\n",
            crate::log::timestamp(SystemTime::now()),
            std::process::id()
        ),
    };
    // Non-blocking for this one write, so that a FIFO whose reader is not reading is refused.
    let probe = crate::log::set_nonblocking(&file, true)
        .and_then(|()| (&file).write_all(line.as_bytes()))
        .and_then(|()| crate::log::set_nonblocking(&file, false));
    if let Err(e) = probe {
        return Err(Error::Write(log.to_path_buf(), e));
    }
    Ok(file)
}

/// Detach: the launcher waits until the instance serves (or failed to start) and exits with
/// that result, so `uwsgid --daemonize` never reports success for an instance that died.
/// Returns in the daemon, with the log on fds 1 and 2 and stdin on `/dev/null`.
pub fn daemonize(log: &Path) {
    let file = match open_log(log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("uwsgid: error: {e}");
            std::process::exit(1);
        }
    };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        eprintln!(
            "uwsgid: error: --daemonize: pipe: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    match sys::fork() {
        Err(e) => {
            eprintln!("uwsgid: error: --daemonize: fork: {e}");
            std::process::exit(1);
        }
        Ok(sys::Fork::Parent(child)) => wait_for_report(log, child, fds),
        Ok(sys::Fork::Child) => {}
    }
    // SAFETY: a new session, then a second fork so the daemon can never regain a terminal.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    match sys::fork() {
        Ok(sys::Fork::Child) => {}
        // SAFETY: the intermediate process leaves at once, without running destructors.
        _ => unsafe { libc::_exit(0) },
    }
    // From here on every failure reaches the launcher.
    LAUNCHER.store(fds[1], Ordering::Relaxed);
    sys::stdin_from_devnull();
    // SAFETY: dup2 of the open log onto the standard fds, which the process owns.
    let ok =
        unsafe { libc::dup2(file.as_raw_fd(), 1) >= 0 && libc::dup2(file.as_raw_fd(), 2) >= 0 };
    if !ok {
        let e = std::io::Error::last_os_error();
        report_to_launcher(&format!("error: --daemonize: log on stderr: {e}"));
        std::process::exit(1);
    }
}

/// The launcher's side: reap the intermediate child, read the daemon's report, exit with it.
fn wait_for_report(log: &Path, child: i32, fds: [i32; 2]) -> ! {
    // Killable while waiting: the managed signals were blocked for the master's signalfd,
    // which the launcher never reads.
    let set = sys::managed_signals();
    // SAFETY: unblocking signals of this thread; their dispositions are the defaults.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let mut text = Vec::new();
    // SAFETY: the launcher closes its write end, reaps the intermediate child and reads the
    // daemon's report to EOF into a buffer it owns.
    unsafe {
        libc::close(fds[1]);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(fds[0], buf.as_mut_ptr() as *mut libc::c_void, buf.len());
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break;
            }
            text.extend_from_slice(&buf[..n as usize]);
        }
    }
    let text = String::from_utf8_lossy(&text);
    if let Some(pid) = text.strip_prefix("ok ") {
        println!(
            "uwsgid: running in the background as pid {}, logging to {}",
            pid.trim(),
            log.display()
        );
        std::process::exit(0);
    }
    let why = text
        .strip_prefix("error: ")
        .unwrap_or("the daemon exited during startup before saying why");
    eprintln!("uwsgid: error: {why} (see {})", log.display());
    std::process::exit(1);
}
