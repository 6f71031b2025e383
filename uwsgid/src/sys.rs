//! Thin, safe wrappers over the Linux calls uwsgid needs and std does not offer.
//!
//! The general-purpose `unsafe` wrappers live here; `unsafe` is also used, each block with its
//! `// SAFETY:` reason, where a call belongs to one place: the fork-child fence
//! (`master/spawn.rs`), the daemonize and launcher pipe (`master/files.rs`), the scoreboard's
//! shared memory, the notify socket, the exec path and the workers' own I/O. Everything returns `io::Result` and takes or returns owned fds where ownership moves.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Signals the master and the built-in workers take through a signalfd (blocked for normal
/// delivery). SIGSEGV, SIGFPE, SIGBUS and SIGILL stay unblocked: they are synchronous.
pub fn managed_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write into the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGURG,
            libc::SIGTSTP,
            libc::SIGWINCH,
            libc::SIGCHLD,
            libc::SIGALRM,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGCONT,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Block the managed signals for this thread; pending ones stay pending for a signalfd.
pub fn block_managed_signals() -> io::Result<()> {
    let set = managed_signals();
    // SAFETY: set is a valid sigset; the old mask is not wanted.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Unblock every signal and restore default dispositions (for exec'd worker programs).
pub fn reset_signals_for_exec() {
    // SAFETY: plain signal-mask and disposition changes in a freshly forked child.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// A non-blocking, close-on-exec signalfd for `set`.
pub fn signalfd(set: &libc::sigset_t) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new fd; set is valid; the returned fd is owned by us.
    let fd = cvt(unsafe { libc::signalfd(-1, set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read one pending signal from a signalfd: `Ok(None)` when none is pending.
pub fn read_signal(fd: RawFd) -> io::Result<Option<(i32, i32)>> {
    // SAFETY: signalfd_siginfo is plain data; we read exactly its size into it.
    unsafe {
        let mut info: libc::signalfd_siginfo = std::mem::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size);
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(err);
        }
        if n as usize != size {
            return Ok(None);
        }
        Ok(Some((info.ssi_signo as i32, info.ssi_pid as i32)))
    }
}

/// Ignore SIGPIPE: writes to closed peers return EPIPE instead.
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// A fatal fault's handler, in two parts.
///
/// 1. Async-signal-safe: the fault may have struck inside the allocator or while a lock was
///    held, so the first thing written is a fixed message built in a stack buffer (no
///    allocation, no lock) with `write(2)`: `!!! uwsgid process PID got NAME !!!`.
/// 2. Best effort: a backtrace needs the allocator and the unwinder, which a fault inside them
///    would deadlock. An `alarm(2)` of [`BACKTRACE_BOUND_S`] seconds (SIGALRM unblocked, default
///    action) bounds it: at worst the process dies by SIGALRM instead of hanging unseen.
///
/// Then the default action is restored and the signal raised again, so the process dies by it.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let name: &[u8] = if sig == libc::SIGSEGV {
        b"Segmentation Fault"
    } else if sig == libc::SIGFPE {
        b"Floating Point Exception"
    } else if sig == libc::SIGBUS {
        b"Bus Error"
    } else {
        b"Illegal Instruction"
    };
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    let mut buf = [0u8; 96];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            if len < buf.len() {
                buf[len] = b;
                len += 1;
            }
        }
    };
    push(b"!!! uwsgid process ");
    let mut digits = [0u8; 10];
    let (mut n, mut i) = (pid, digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push(&digits[i..]);
    push(b" got ");
    push(name);
    push(b" !!!\n");
    // SAFETY: write(2) of a stack buffer we own is async-signal-safe; so are signal,
    // sigemptyset/sigaddset on a local set, pthread_sigmask and alarm.
    unsafe {
        libc::write(2, buf.as_ptr() as *const libc::c_void, len);
        libc::signal(libc::SIGALRM, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::alarm(BACKTRACE_BOUND_S);
    }
    // Best effort from here on (see above): this allocates.
    let trace = std::backtrace::Backtrace::force_capture();
    let text = format!("*** backtrace of {pid} ***\n{trace}\n*** end of backtrace ***\n");
    // SAFETY: writing a buffer we own to stderr, then restoring the default action and
    // re-raising so the process dies by the signal (core dump where enabled).
    unsafe {
        libc::write(2, text.as_ptr() as *const libc::c_void, text.len());
        libc::alarm(0);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// How long the best-effort backtrace of a fatal fault may take before SIGALRM ends it.
const BACKTRACE_BOUND_S: libc::c_uint = 2;

/// SIGSEGV/SIGFPE/SIGBUS/SIGILL: log a backtrace, then die by the signal.
pub fn install_fatal_handlers() {
    // An alternate stack, so a stack overflow still gets its message and backtrace.
    let size = 256 * 1024;
    let stack: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
    // SAFETY: the leaked buffer lives for the rest of the process (and is copied into forked
    // workers with the rest of memory).
    unsafe {
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&ss, std::ptr::null_mut());
    }
    for sig in [libc::SIGSEGV, libc::SIGFPE, libc::SIGBUS, libc::SIGILL] {
        // SAFETY: installing a handler function with the C ABI; SA_RESETHAND makes a second
        // fault inside the handler fatal at once.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Fork. The caller must be single-threaded (the master is, by design).
pub enum Fork {
    Parent(i32),
    Child,
}

pub fn fork() -> io::Result<Fork> {
    // SAFETY: the master is single-threaded, so the child holds no lock another thread owned.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// Ask the kernel to SIGKILL us when our parent dies; returns false if the parent already
/// changed (it died between fork and now).
pub fn die_with_parent(parent: i32) -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::getppid() == parent
    }
}

/// Set this process's name as shown by `ps -o comm` and /proc/PID/stat (15 bytes at most).
pub fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on an fd number; an invalid fd yields EBADF.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        cvt(libc::fcntl(fd, libc::F_SETFD, flags))?;
    }
    Ok(())
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd number; an invalid fd yields EBADF.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Close every fd above 2 except `keep` (used in a freshly forked worker).
///
/// With `close_range(2)` (Linux 5.9): one call per gap between the kept fds, no `/proc`
/// lookup and no directory buffer (a 32 KiB allocation in a child copies the master's heap
/// pages it touches). Older kernels: the fds listed in `/proc/self/fd`.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut kept: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first: RawFd = 3;
    for &k in kept.iter().chain([RawFd::MAX].iter()) {
        if k > first {
            let last = if k == RawFd::MAX {
                u32::MAX
            } else {
                (k - 1) as u32
            };
            // SAFETY: close_range only closes fds; the range skips every fd in `keep`, and
            // this fresh child uses none of the others.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last, 0u32) };
            if ret != 0 {
                return close_listed_fds_except(keep);
            }
        }
        first = k.saturating_add(1);
    }
}

/// [`close_fds_except`] without `close_range`: the fds `/proc/self/fd` lists.
fn close_listed_fds_except(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing fds this fresh child inherited and will not use; the fd used to
            // read /proc/self/fd is already closed.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// Redirect fd 0 to /dev/null.
pub fn stdin_from_devnull() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0, which we own as a process.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when another process holds it.
pub fn try_lock(fd: RawFd) -> io::Result<bool> {
    // SAFETY: flock on an fd number.
    let ret = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Send a signal; ESRCH is not an error (the worker is already gone).
pub fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: kill has no memory effects; pid > 0 targets exactly one process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Put thread `tid` (0: the calling thread) under `SCHED_BATCH` (`batch`) or back under
/// `SCHED_OTHER`. A batch thread woken does not preempt the one running on its CPU: a
/// rollback's master sends its SIGCONTs and stop signals without being preempted by each
/// worker it wakes (it was, 32 times, and the last SIGCONT left it 5 ms after the first).
/// The same owner needs no privilege either way; the nice value is kept.
pub fn set_batch(tid: i32, batch: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_setscheduler reads our local param; tid names one thread (or us).
    unsafe {
        libc::sched_setscheduler(tid, policy, &param);
    }
}

/// Call `f` with the id of every thread of this process (`/proc/self/task`), or with 0 (the
/// calling thread) where that cannot be read.
pub fn each_thread(mut f: impl FnMut(i32)) {
    match std::fs::read_dir("/proc/self/task") {
        Ok(tasks) => {
            for t in tasks.flatten() {
                if let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) {
                    f(tid);
                }
            }
        }
        Err(_) => f(0),
    }
}

/// [`set_batch`] for every thread of this process.
pub fn set_batch_all(batch: bool) {
    each_thread(|tid| set_batch(tid, batch));
}

/// Reap one exited child without blocking: `(pid, raw status)`.
pub fn reap_one() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: waitpid writes into our local status.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid > 0 {
        Some((pid, status))
    } else {
        None
    }
}

/// Reap one exited child, or see one that stopped, without blocking: `(pid, raw status)`
/// (`WIFSTOPPED` tells the two apart; a parking worker stops itself, see `master::snapshot`).
pub fn reap_or_stopped() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: waitpid writes into our local status.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
    if pid > 0 {
        Some((pid, status))
    } else {
        None
    }
}

/// Describe a wait status the way an operator wants to read it.
pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        format!("wait status {status}")
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGURG => "SIGURG",
        libc::SIGWINCH => "SIGWINCH",
        _ => "signal",
    }
}

/// `poll` over `fds` with a timeout in ms (-1 = forever); EINTR is reported as zero events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid slice of pollfd for its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

/// `execve(path, argv, envp)`; returns only on failure.
pub fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: all pointers are NUL-terminated strings kept alive by the caller's slices, and
    // both arrays end with a null pointer.
    unsafe {
        libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
    }
    io::Error::last_os_error()
}

/// Resident and virtual size of a process in bytes, from /proc/PID/statm.
pub fn memory_of(pid: i32) -> (u64, u64) {
    let page = 4096;
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let vsz = it.next().unwrap_or(0) * page;
    let rss = it.next().unwrap_or(0) * page;
    (rss, vsz)
}

/// Current user and group ids.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid never fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Pending bytes in a TCP listener's accept queue and its backlog, from TCP_INFO.
pub fn listen_queue(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: getsockopt writes at most `len` bytes into our tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let ret = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        );
        if ret != 0 || info.tcpi_state != 10 {
            // 10 = TCP_LISTEN
            return None;
        }
        Some((info.tcpi_unacked as u64, info.tcpi_sacked as u64))
    }
}

/// Raise the soft limit on open files to the hard limit (workers hold one fd per client).
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit write and read a local rlimit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A cheap identity of a file's content on disk: device, inode, size and modification time.
/// A package upgrade replaces the file (new inode) or rewrites it (new mtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl FileStamp {
    /// The stamp of `program` (symlinks followed), looked up in `PATH` when it has no `/`.
    pub fn of_program(program: &str) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let path = if program.contains('/') {
            std::path::PathBuf::from(program)
        } else {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(program))
                .find(|p| p.is_file())?
        };
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        })
    }
}

/// A connected pair of Unix stream sockets, close-on-exec; the first (ours) is non-blocking.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds that we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by socketpair.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(ours.as_raw_fd())?;
    Ok((ours, theirs))
}

/// Adopt an fd named by a previous image: check that it is open, make it close-on-exec again
/// and own it. `what` names it in the error.
pub fn take_fd(fd: RawFd, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the fd's flags; a closed fd fails with EBADF.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{what}: inherited fd {fd} is not open"),
        ));
    }
    set_cloexec(fd, true)?;
    // SAFETY: the handoff names this fd as ours and it is open; taken once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Become a child subreaper: orphaned descendants (workers double-forked by a zygote) are
/// re-parented to us, so we can reap them. It survives execve; setting it again costs nothing.
pub fn set_child_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// SIGKILL `pid`, an unreaped child of ours (so neither its pid nor its group id can have been
/// reused), and its whole process group if it leads one: exec workers and zygotes do (see
/// `master::spawn`), so the program's own children die with it.
pub fn kill_group(pid: i32) {
    // SAFETY: getpgid and kill have no memory effects.
    if pid > 0 && unsafe { libc::getpgid(pid) } == pid {
        // SAFETY: as above; -pid is the group that child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    kill(pid, libc::SIGKILL);
}

/// SIGKILL the process group `group` (not ours, not init's).
pub fn kill_process_group(group: i32) {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let ours = unsafe { libc::getpgrp() };
    if group > 1 && group != ours {
        // SAFETY: kill has no memory effects; the caller names the group of an unreaped child
        // of ours, so its id cannot have been reused.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// The live (not zombie) children of `parent` with their process groups, from /proc.
pub fn children_of(parent: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID PGRP ...": COMM ends at the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().take(3).collect();
        if let [state, ppid, pgrp] = f[..] {
            if state != "Z" && ppid.parse() == Ok(parent) {
                out.push((pid, pgrp.parse().unwrap_or(0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child (the test process keeps its own fds): the kept fds and 0-2 stay
    /// open, every other one is closed, whatever the order and duplicates of `keep`.
    #[test]
    fn close_fds_except_keeps_only_what_it_is_given() {
        // SAFETY: the child only opens, closes and inspects fds, then leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: fcntl(F_GETFD) only reads the fd's flags.
            let alive = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
            // SAFETY: opening /dev/null read-only.
            let open = || unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            let (a, b, c) = (open(), open(), open());
            // SAFETY: dup2 onto a high fd number this child does not use otherwise.
            let far = unsafe { libc::dup2(a, 900) };
            let std_before: Vec<bool> = (0..3).map(alive).collect();
            close_fds_except(&[c, b, c, 1]);
            let std_after: Vec<bool> = (0..3).map(alive).collect();
            let ok = !alive(a) && alive(b) && alive(c) && far == 900 && !alive(far);
            // SAFETY: leave the child without running the test harness's destructors.
            unsafe { libc::_exit(if ok && std_before == std_after { 0 } else { 1 }) }
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child saw the wrong fds open: status {status}"
        );
    }
}
