//! `uwsgid-python`: uwsgid's native Python worker. CPython is embedded (pyo3, linked against the
//! system's shared libpython 3), the requests are read, framed and answered by Rust code of the
//! uwsgid library ([`uwsgid::conn`]), and only the application runs in Python.
//!
//! The master runs this program exactly as it runs the bundled stdlib runner (`python3 -c
//! BOOTSTRAP OPTIONS…`, the runner's source in the memfd named by `UWSGID_RUNNER_FD`): `-c`
//! and the bootstrap are skipped and the memfd closed (the same source is built in), then
//! the runner's options follow. Start-up, application loading, the preload zygote (`--zygote`,
//! `--standby`: `load`, `fork SLOT GENERATION`, the double fork, `READY=1`) are the runner's own
//! Python code, loaded from the same source the master embeds ([`uwsgid::runner::SOURCE`]),
//! so both programs speak one protocol; this binary replaces the runner's `Server` class with
//! [`server::Server`]. Options of its own, taken before the runner sees the rest:
//! `--home DIR` (a virtualenv: its `bin/python` becomes the interpreter's program name, so
//! `sys.prefix` and `site-packages` are the venv's; its Python version must be the linked one).
//!
//! The zygote's double fork is native ([`fork_worker`], `_uwsgid.fork_worker`, used by the
//! runner's `fork_worker` when it exists): the middle child runs no Python at all (it forks and
//! leaves), and the worker waits for its re-parenting on a pidfd of the middle instead of
//! polling, so a reload's workers do not queue behind one another's sleeps.

mod server;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyList;

const PROG: &str = "uwsgid-python";

/// One line on stderr in one write (see `server::log`).
fn log(message: &str) {
    use std::io::Write;
    let line = format!("{PROG}[{}]: {message}\n", std::process::id());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The interpreter whose prefix and `site-packages` the embedded one uses when no `--home` is
/// given: the one the build linked (`PYO3_PYTHON`, `/usr/bin/python3` by the workspace's
/// `.cargo/config.toml`).
const BUILD_PYTHON: Option<&str> = option_env!("PYO3_PYTHON");

/// Why the worker cannot start: each names the option or the step, and the fix. Fatal: printed
/// and the worker exits (the master logs the failed start).
#[derive(Debug)]
enum StartError {
    /// `--home` as the last argument.
    HomeWithoutValue,
    /// `--home DIR` without `bin/python3`.
    NotAVenv(PathBuf),
    /// The virtualenv's Python version is not the linked one.
    VenvVersion {
        home: PathBuf,
        venv: String,
        linked: String,
        python: PathBuf,
    },
    /// The program name holds a NUL byte, or CPython refused it.
    ProgramName(PathBuf),
    /// `Py_InitializeFromConfig` failed.
    Interpreter,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::HomeWithoutValue => f.write_str("--home needs a directory (a virtualenv)"),
            StartError::NotAVenv(home) => write!(
                f,
                "--home {}: no bin/python3 there; give a virtualenv's directory",
                home.display()
            ),
            StartError::VenvVersion {
                home,
                venv,
                linked,
                python,
            } => write!(
                f,
                "--home {}: the virtualenv is Python {venv}, uwsgid-python embeds Python \
                 {linked}: make the virtualenv with that Python, or run the stdlib runner with \
                 --python {}",
                home.display(),
                python.display()
            ),
            StartError::ProgramName(p) => {
                write!(f, "cannot set the program name {}", p.display())
            }
            StartError::Interpreter => f.write_str("the Python interpreter could not start"),
        }
    }
}

impl std::error::Error for StartError {}

/// `--home DIR` taken out of `args`; an error names the problem.
fn take_home(args: &mut Vec<OsString>) -> Result<Option<PathBuf>, StartError> {
    let mut home = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--home" {
            let v = args.get(i + 1).ok_or(StartError::HomeWithoutValue)?;
            home = Some(PathBuf::from(v));
            args.drain(i..i + 2);
        } else if let Some(v) = a.strip_prefix("--home=") {
            home = Some(PathBuf::from(v));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(home)
}

/// The program name for a virtualenv `home`, checked against the linked Python version.
fn venv_program(home: &Path) -> Result<PathBuf, StartError> {
    let python = ["python3", "python"]
        .iter()
        .map(|n| home.join("bin").join(n))
        .find(|p| p.exists())
        .ok_or_else(|| StartError::NotAVenv(home.to_path_buf()))?;
    let cfg = std::fs::read_to_string(home.join("pyvenv.cfg")).unwrap_or_default();
    // SAFETY: Py_GetVersion returns a static string and may be called before initialisation.
    let version = unsafe { std::ffi::CStr::from_ptr(pyo3::ffi::Py_GetVersion()) };
    let version = version.to_string_lossy();
    let linked: String = version
        .split(' ')
        .next()
        .unwrap_or("")
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    for line in cfg.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let k = k.trim();
        if k == "version" || k == "version_info" {
            let v = v.trim();
            let short: Vec<&str> = v.split('.').take(2).collect();
            if short.join(".") != linked {
                return Err(StartError::VenvVersion {
                    home: home.to_path_buf(),
                    venv: v.to_string(),
                    linked,
                    python,
                });
            }
        }
    }
    Ok(python)
}

/// Start the interpreter: no signal handlers of its own (the worker takes signals from a
/// signalfd), the program name of the linked or the virtualenv's interpreter.
fn start_python(program: Option<&Path>) -> Result<(), StartError> {
    // SAFETY: called once, first thing, before any other Python API; the config is
    // initialised by PyConfig_InitPythonConfig and cleared after use.
    unsafe {
        let mut config = std::mem::MaybeUninit::<pyo3::ffi::PyConfig>::zeroed();
        pyo3::ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        if let Some(p) = program {
            let c = CString::new(p.as_os_str().as_bytes())
                .map_err(|_| StartError::ProgramName(p.to_path_buf()))?;
            let status = pyo3::ffi::PyConfig_SetBytesString(
                &mut config,
                &mut config.program_name,
                c.as_ptr(),
            );
            if pyo3::ffi::PyStatus_Exception(status) != 0 {
                pyo3::ffi::PyConfig_Clear(&mut config);
                return Err(StartError::ProgramName(p.to_path_buf()));
            }
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(&config);
        pyo3::ffi::PyConfig_Clear(&mut config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            return Err(StartError::Interpreter);
        }
        // Let other threads take the GIL: pyo3's `with_gil` attaches them as needed.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// `_uwsgid.fork_worker(master)`: the zygote's double fork. In the zygote it returns the
/// middle child's pid (for the caller to reap); in the worker it returns 0, once the worker is
/// the child of `master` (re-parented when the middle left) with `PR_SET_PDEATHSIG` set.
///
/// Python's fork protocol is kept (`PyOS_BeforeFork` before, `PyOS_AfterFork_Parent` in the
/// zygote, `PyOS_AfterFork_Child` in the worker) and both forks are glibc's, so `at_fork`
/// hooks of Python and of C libraries run as with `os.fork`. The middle child touches no
/// Python state: it forks the worker and `_exit`s, its pages never copied by a write.
#[pyfunction]
fn fork_worker(master: i32) -> PyResult<i32> {
    // SAFETY: called with the GIL held (a #[pyfunction]), as PyOS_BeforeFork requires.
    unsafe { pyo3::ffi::PyOS_BeforeFork() };
    // SAFETY: the zygote is single-threaded (it starts no thread); Python is prepared above.
    let middle = unsafe { libc::fork() };
    if middle != 0 {
        let err = std::io::Error::last_os_error();
        // SAFETY: the parent side of the fork protocol, GIL held.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() };
        if middle < 0 {
            return Err(pyo3::exceptions::PyOSError::new_err(format!("fork: {err}")));
        }
        return Ok(middle);
    }
    // The middle child: no Python; fork the worker and leave.
    // SAFETY: getpid and fork in a single-threaded child; _exit runs no destructor.
    unsafe {
        let me = libc::getpid();
        let worker = libc::fork();
        if worker < 0 {
            // The zygote is single-threaded: allocating here is safe.
            log(&format!(
                "zygote: cannot fork a worker: {}",
                std::io::Error::last_os_error()
            ));
            libc::_exit(1);
        }
        if worker > 0 {
            libc::_exit(0);
        }
        // The worker: wait until the master is our parent, then die with it.
        if !wait_reparented(me, master) {
            libc::_exit(1); // the master is gone
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != master {
            libc::_exit(1);
        }
        pyo3::ffi::PyOS_AfterFork_Child();
    }
    Ok(0)
}

/// In a worker whose parent is the `middle` child: true once the parent is `master` (the
/// middle exited and the master, a child subreaper, adopted us), false if the master is gone
/// or 5 s passed. The middle's exit is awaited on a pidfd (it becomes readable after the
/// re-parenting); where pidfds are missing, the parent is polled every 0.2 ms.
fn wait_reparented(middle: i32, master: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // SAFETY: pidfd_open takes a pid and flags; the fd returned is ours (closed below).
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, middle, 0) } as i32;
    let mut seen_exit = false;
    loop {
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        if parent == master || parent != middle {
            if pidfd >= 0 {
                // SAFETY: our pidfd, closed once.
                unsafe { libc::close(pidfd) };
            }
            return parent == master;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        if pidfd >= 0 && !seen_exit {
            let mut p = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; readable once the middle has exited.
            seen_exit =
                unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 5000) as i32) } > 0;
        } else {
            // No pidfd, or readable yet not re-parented (never seen): look again shortly.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The runner module, with [`server::Server`] in place of its own server.
fn load_runner(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let native = PyModule::new(py, "_uwsgid")?;
    server::register(&native)?;
    native.add_function(pyo3::wrap_pyfunction!(fork_worker, &native)?)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("_uwsgid", &native)?;
    let code = CString::new(uwsgid::runner::SOURCE)?;
    let runner = PyModule::from_code(py, &code, c"<uwsgid-wsgi>", c"uwsgid_wsgi")?;
    runner.setattr(
        "__source__",
        pyo3::types::PyBytes::new(py, uwsgid::runner::SOURCE.as_bytes()),
    )?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("uwsgid_wsgi", &runner)?;
    runner.setattr("PROG", PROG)?;
    runner.setattr("Server", native.getattr("Server")?)?;
    Ok(runner)
}

fn run(args: Vec<String>) -> i32 {
    Python::with_gil(|py| {
        let result = (|| -> PyResult<i32> {
            let runner = load_runner(py)?;
            let argv = PyList::new(
                py,
                [PROG.to_string()]
                    .iter()
                    .chain(args.iter())
                    .collect::<Vec<_>>(),
            )?;
            py.import("sys")?.setattr("argv", argv)?;
            let code = runner.getattr("main")?.call1((PyList::new(py, &args)?,))?;
            Ok(code.extract::<Option<i32>>()?.unwrap_or(0))
        })();
        let code = match result {
            Ok(code) => code,
            Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => e
                .value(py)
                .getattr("code")
                .ok()
                .and_then(|c| c.extract::<Option<i32>>().ok())
                .flatten()
                .unwrap_or(0),
            Err(e) => {
                log("error: internal error in the worker");
                e.display(py);
                1
            }
        };
        for stream in ["stdout", "stderr"] {
            if let Ok(s) = py.import("sys").and_then(|m| m.getattr(stream)) {
                let _ = s.call_method0("flush");
            }
        }
        code
    })
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // The master runs us as it runs python3 with the bundled runner: `-c BOOTSTRAP` first (or
    // a runner script's path), and the runner's source in a memfd named by UWSGID_RUNNER_FD.
    // Neither is used here (the same source is built in): the fd is closed so that forked
    // workers and the application do not inherit it.
    if args.first().is_some_and(|a| a == "-c") {
        args.drain(..2.min(args.len()));
    } else if args.first().is_some_and(|a| a.as_bytes().ends_with(b".py")) {
        args.remove(0);
    }
    if let Some(fd) = std::env::var_os(uwsgid::runner::FD_VAR) {
        if let Ok(fd) = fd.to_string_lossy().parse::<i32>() {
            if fd > 2 {
                // SAFETY: the fd the master opened for the runner's source, used by nobody.
                unsafe {
                    libc::close(fd);
                }
            }
        }
        std::env::remove_var(uwsgid::runner::FD_VAR);
    }
    let home = match take_home(&mut args) {
        Ok(h) => h,
        Err(e) => {
            log(&format!("error: {e}"));
            std::process::exit(2);
        }
    };
    let program = match &home {
        Some(h) => match venv_program(h) {
            Ok(p) => Some(p),
            Err(e) => {
                log(&format!("error: {e}"));
                std::process::exit(1);
            }
        },
        None => BUILD_PYTHON.map(PathBuf::from).filter(|p| p.exists()),
    };
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // SAFETY: a disposition change before any thread exists; sends use MSG_NOSIGNAL, and
    // sendfile to a closed peer must fail with EPIPE rather than kill the worker.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if let Err(e) = start_python(program.as_deref()) {
        log(&format!("error: {e}"));
        std::process::exit(1);
    }
    let code = run(args);
    // No interpreter finalisation: threads of the application may still run, and nothing is
    // left to flush (run() flushed Python's streams).
    // SAFETY: leaving the process; _exit runs no destructor that could touch Python.
    unsafe { libc::_exit(code) }
}
