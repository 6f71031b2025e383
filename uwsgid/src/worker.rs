//! The built-in worker: a forked copy of uwsgid serving HTTP/1.1 on the inherited listeners.
//!
//! One epoll loop per worker, non-blocking sockets, many connections at once (keep-alive,
//! pipelined requests answered in order, `/sleep` as a timer rather than a blocked thread).
//! Counters go to the worker's scoreboard cell with plain atomic stores.
//!
//! Signals arrive through a signalfd: SIGHUP drains (stop accepting, finish requests in flight,
//! answer with `Connection: close`, close idle connections, exit 0 once none is left); SIGTERM,
//! SIGINT and SIGQUIT exit at once; SIGTSTP and SIGWINCH re-read the instance's pause flag.
//! Pausing stops accepting (the kernel queues new connections in the backlog) and drains the
//! open connections like a graceful stop does, without exiting. [`PARK_SIGNAL`] from the master
//! (`--auto-snapshot`) parks: drain like SIGHUP without closing the listeners, then stop
//! ourselves (`SIGSTOP`) once no connection is left; after the SIGCONT that follows, pending
//! signals are read first (a stop retires us), then we accept again, through the standby
//! epoll set (`Worker::epolls`: ahead of the generation that replaced us), and say `READY=1`.
//!
//! Timeouts, so that no client holds a worker's connection slot forever: a request head must
//! arrive within [`HEAD_TIMEOUT`] of its first byte, an idle keep-alive connection is closed
//! after [`IDLE_TIMEOUT`], a response that makes no progress for [`WRITE_TIMEOUT`] is dropped.
//! While draining (or paused, or parking) idle connections are closed by [`idle_deadline`]: a
//! connection with no request yet keeps [`HEAD_TIMEOUT`] from its accept, a keep-alive one
//! gets [`DRAIN_GRACE`] from the drain's start to send its next request (answered with
//! `Connection: close`); the master's mercy bounds it all.
//!
//! Memory per connection is bounded whatever the client does: static files are streamed from
//! the open file (`sendfile`, or `pread` into a [`FILE_CHUNK`] buffer where the kernel cannot),
//! never read whole; unread input stops being read at [`MAX_INBUF`]; pipelined requests stop
//! being answered while [`OUT_HIGH_WATER`] bytes of answers wait for a client that does not
//! read, and resume once it has.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{self, Parse};
use crate::scoreboard::{self, Cell, Scoreboard};

pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// What a draining worker gives an idle keep-alive connection, from the drain's start (or
/// from its last answer, if later), to send its next request, which is then answered with
/// `Connection: close`: closing it earlier races with a client that is sending, which then
/// gets a reset or an EOF instead of an answer. 2 s covers a client that sends back to back
/// but is scheduled late on a loaded machine, and the short think time of a proxy's pooled
/// connection, while a reload with truly idle clients still ends within about 2 s (the
/// master's `--worker-reload-mercy`, 60 s by default, bounds it anyway). See [`idle_deadline`].
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// When a connection with nothing in progress (no partial head, no answer being sent) is
/// closed: `last` (its last activity) + `idle_limit` (the keep-alive timeout) normally.
/// While the worker drains (since `closing_since`) it is never later than that, and never
/// sooner than [`DRAIN_GRACE`] after the drain started (or after `last`, if later); a
/// connection that has not sent its first request yet (`accepted`: when) keeps its request
/// head deadline, [`HEAD_TIMEOUT`] from its accept, as a client that connected just before
/// the drain may be about to send. The same rule in every worker kind (the native Python
/// worker, the stdlib runner's copy in `python/uwsgid_wsgi.py`).
pub fn idle_deadline(
    last: Instant,
    idle_limit: Duration,
    accepted: Option<Instant>,
    closing_since: Option<Instant>,
) -> Instant {
    let normal = last + idle_limit;
    let Some(since) = closing_since else {
        return normal;
    };
    let grace = since.max(last) + DRAIN_GRACE;
    let keep = match accepted {
        Some(at) => grace.max(at + HEAD_TIMEOUT),
        None => grace,
    };
    keep.min(normal)
}

/// Whether bytes wait unread on socket `fd` (a request that arrived after the loop last
/// looked): an idle connection is not closed under them, which would reset it.
pub fn has_input(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: peeking at most one byte into a local; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            fd,
            &mut byte as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// Connections one worker holds at most; beyond it the worker stops accepting until one
/// closes, and new connections wait in the backlog for a worker with room.
pub const MAX_CONNECTIONS: usize = 10_000;
/// After accept fails for lack of fds or memory, the worker stops accepting this long.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one "pausing accepts" log line this often; the others are counted in the next one.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 8192;
const MAX_BODY: usize = 1 << 20;
/// Unread input a connection may buffer: one largest request and some. Past it the worker
/// stops reading that connection until it has answered what it holds.
pub const MAX_INBUF: usize = MAX_HEAD + MAX_BODY + 65536;
/// Answers queued for a client that is not reading, beyond which no further pipelined request
/// of that connection is answered until the queue has drained.
pub const OUT_HIGH_WATER: usize = 64 << 10;
/// The buffer a static file is copied through where `sendfile` cannot be used.
pub const FILE_CHUNK: usize = 64 << 10;
/// File bytes sent to one connection before the loop turns to the others.
const FLUSH_BUDGET: u64 = 1 << 20;
const MAX_SLEEP_MS: u64 = 600_000;
/// The most one `/alloc?mb=N` demo request allocates.
const MAX_ALLOC_MB: usize = 512;
const SIGNAL_TOKEN: u64 = u64::MAX;
/// Connections a worker that starts draining takes from each listener's backlog before it
/// closes its copies (see the SIGHUP branch of `Worker::handle_signals`).
const DRAIN_ACCEPT: usize = 16;
/// The master's "park" signal (`master::snapshot::PARK_SIGNAL`).
pub const PARK_SIGNAL: i32 = libc::SIGTTOU;
const LISTENER_BASE: u64 = 1 << 40;

/// What a built-in worker needs to know.
pub struct WorkerSetup<'a> {
    pub id: u32,
    pub generation: u64,
    pub listeners: Vec<RawFd>,
    pub board: &'a Scoreboard,
    pub cell: usize,
    pub demo_routes: bool,
    pub check_static: Option<PathBuf>,
    pub notify_addr: Option<String>,
    /// The `--logto` file, reopened when the master's log epoch changes.
    pub logto: Option<PathBuf>,
    /// The log epoch when the master forked us (of the fd 2 we inherited).
    pub log_epoch: u32,
    /// Which listeners speak the uwsgi protocol, and its limits.
    pub uwsgi: UwsgiSetup,
    /// Static maps, request log ([`crate::options`]).
    pub serve: crate::options::ServeOptions,
    /// `--auto-snapshot`: keep a standby registration of the listeners (see `Worker::epolls`).
    pub standby: bool,
}

/// The uwsgi side of a worker: listeners that speak it (nginx's `uwsgi_pass`), the TCP peers
/// besides loopback that may use them (`--uwsgi-allow`) and the largest vars block
/// (`--buffer-size`). A uwsgi connection carries one request: the answer is a plain HTTP
/// response, then the worker closes it (nginx's uwsgi upstream never reuses one).
#[derive(Clone, Debug, Default)]
pub struct UwsgiSetup {
    pub listeners: Vec<RawFd>,
    pub allow: Vec<(std::net::IpAddr, u8)>,
    pub buffer_size: usize,
}

impl UwsgiSetup {
    pub fn of(listeners: &[crate::listener::Listener], config: &crate::cli::Config) -> UwsgiSetup {
        UwsgiSetup {
            listeners: listeners
                .iter()
                .filter(|l| l.proto() == crate::cli::Proto::Uwsgi)
                .map(|l| l.raw())
                .collect(),
            allow: config.uwsgi_allow.clone(),
            buffer_size: config.buffer_size,
        }
    }
}

/// The IP address of a peer, if it is an IP socket.
fn peer_ip(storage: &libc::sockaddr_storage) -> Option<std::net::IpAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

enum Pending {
    /// Nothing running; reading the next request.
    None,
    /// A `/sleep` request that answers at `until`.
    Sleep { until: Instant, ms: u64 },
}

/// What follows a response head.
enum Body {
    Bytes(Vec<u8>),
    /// An open regular file and how many of its bytes to send.
    File(std::fs::File, u64),
}

/// A static file being streamed after the queued bytes of `Conn::out`.
struct FileBody {
    file: std::fs::File,
    /// Next offset to send, and the end (the file's length when the response started).
    pos: u64,
    end: u64,
    /// False once `sendfile` refused this file or socket: copy through `out` with `pread`.
    sendfile: bool,
}

struct Conn {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Streamed after `out` is sent; further answers wait until it is done.
    body: Option<FileBody>,
    /// The request being answered is HEAD: the head only, with the body's length.
    head_only: bool,
    pending: Pending,
    /// When the current request's first byte arrived, if one is partly read.
    head_started: Option<Instant>,
    /// When the current request started being served (for counters).
    served_since: Option<Instant>,
    /// The same in epoch microseconds, and its `METHOD URI`: the scoreboard shows the
    /// oldest request in flight (the one `--harakiri` judges).
    started_us: u64,
    line: String,
    last_activity: Instant,
    /// When it was accepted, while it has not sent its first request (see [`idle_deadline`]).
    fresh: Option<Instant>,
    close_after_write: bool,
    /// The request being answered, for its log line (only while request logging is on).
    log: Option<crate::reqlog::RequestInfo>,
    /// The connection's current epoll interest.
    interest: u32,
    keep_alive: bool,
    /// Accepted on a uwsgi listener: requests are uwsgi packets, one per connection.
    uwsgi: bool,
}

impl Conn {
    /// Output is queued or a file is still being streamed.
    fn writing(&self) -> bool {
        self.out_pos < self.out.len() || self.body.is_some()
    }
}

const READ_INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

struct Worker<'a> {
    setup: WorkerSetup<'a>,
    /// Two epoll sets; we wait in `epolls[active]`. With `--auto-snapshot` the other one, the
    /// standby, holds a registration of each listener made at our start, which nobody
    /// waits in: an exclusive wake-up passes over it, and after a park our SIGCONT makes it
    /// the active set, so new connections come to us before the generation that replaced
    /// us (registered after us in each listener's wait queue) while it retires.
    epolls: [OwnedFd; 2],
    active: usize,
    /// The standby set holds the listeners.
    standby: bool,
    /// Epoll may have handed us a listener's wake-up in this turn (see `run`).
    woken: bool,
    signals: OwnedFd,
    /// The master that forked us: stop and drain signals count only from it.
    master_pid: i32,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    accepting: bool,
    draining: bool,
    paused: bool,
    /// Told to park (`--auto-snapshot`, `master::snapshot`): accepting nothing, finishing
    /// the requests in flight, then stopping itself until a rollback's SIGCONT.
    parking: bool,
    /// Since when the worker drains, pauses or parks ([`Worker::closing`]).
    closing_since: Option<Instant>,
    pid: u32,
    log_epoch: u32,
    open_conns: usize,
    /// Accepting is suspended until then (accept failed with EMFILE, ENFILE, ENOMEM...).
    accept_retry: Option<Instant>,
    /// When "pausing accepts" was last logged, and how many such lines were left out since.
    accept_logged: Option<Instant>,
    accept_unlogged: u64,
    reqlog: crate::reqlog::Log,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn epoll_ctl(epoll: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: ev is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) }).map(|_| ())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A parsed head (HTTP or uwsgi) whose body is in `inbuf`: `(method, target, keep_alive,
/// consumed)`; `None` while the body is still arriving; a 413 for a body over the limit.
#[allow(clippy::type_complexity)]
fn body_ready(
    inbuf: &[u8],
    req: &http::Request<'_>,
) -> Option<Result<(String, String, bool, usize), (u16, &'static str)>> {
    if req.content_length > MAX_BODY {
        return Some(Err((413, "request body larger than 1 MiB")));
    }
    if inbuf.len() < req.head_len + req.content_length {
        return None;
    }
    Some(Ok((
        req.method.to_string(),
        req.target.to_string(),
        req.keep_alive,
        req.head_len + req.content_length,
    )))
}

/// Run a built-in worker; never returns.
pub fn run(setup: WorkerSetup<'_>) -> ! {
    let code = match Worker::new(setup).and_then(|mut w| w.serve()) {
        Ok(()) => 0,
        Err(e) => {
            crate::log!("worker failed: {e}");
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and destructors inherited from the master.
    unsafe { libc::_exit(code) }
}

/// Whether epoll may have handed this worker a listener's wake-up that no other worker got,
/// judged from one batch of events (their tokens, in order; `full`: the batch filled the
/// buffer, so more may be queued): a drain read in it then takes the listeners' backlog.
/// Only a listener's event before the stop signal's counts: one after it is not ours, since
/// the signal woke us and took us off the set's waiters, so epoll passed over us for that
/// connection (noting it ready here too) and woke the next worker waiting (a rollback's
/// restored worker, which a drain taking the backlog would have robbed).
pub fn listener_wake_is_ours(
    tokens: impl Iterator<Item = u64>,
    is_listener: impl Fn(u64) -> bool,
    signal: u64,
    full: bool,
) -> bool {
    if full {
        return true;
    }
    for t in tokens {
        if t == signal {
            return false;
        }
        if is_listener(t) {
            return true;
        }
    }
    false
}

/// Whether a worker acts on signal `sig` sent by `from`: SIGTERM, SIGINT, SIGHUP and SIGQUIT
/// only when the master sent them (a signal to the whole process group, or from the terminal,
/// reaches the master too, and it decides), or once the master is gone (`parent` is no longer
/// it). Every other signal is acted on whoever sent it.
pub fn acts_on(sig: i32, from: i32, master: i32, parent: i32) -> bool {
    let stop = matches!(
        sig,
        libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT | PARK_SIGNAL
    );
    !stop || from == master || parent != master
}

impl<'a> Worker<'a> {
    fn new(setup: WorkerSetup<'a>) -> io::Result<Worker<'a>> {
        let mut set = crate::sys::managed_signals();
        // SAFETY: removing SIGCHLD from our local set; workers have no children.
        unsafe {
            libc::sigdelset(&mut set, libc::SIGCHLD);
        }
        let signals = crate::sys::signalfd(&set)?;
        let new_set = || -> io::Result<OwnedFd> {
            // SAFETY: epoll_create1 returns a new fd that we own.
            let epoll =
                unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
            let (ep, sfd) = (epoll.as_raw_fd(), signals.as_raw_fd());
            epoll_ctl(
                ep,
                libc::EPOLL_CTL_ADD,
                sfd,
                libc::EPOLLIN as u32,
                SIGNAL_TOKEN,
            )?;
            Ok(epoll)
        };
        let epolls = [new_set()?, new_set()?];
        let reqlog = crate::reqlog::Log::new(&setup.serve.reqlog);
        let standby = setup.standby;
        let mut worker = Worker {
            setup,
            epolls,
            active: 0,
            standby: false,
            woken: true,
            signals,
            // SAFETY: getppid cannot fail; a built-in worker is forked by the master itself.
            master_pid: unsafe { libc::getppid() },
            conns: Vec::new(),
            free: Vec::new(),
            accepting: false,
            draining: false,
            paused: false,
            parking: false,
            closing_since: None,
            pid: std::process::id(),
            log_epoch: 0,
            open_conns: 0,
            accept_retry: None,
            accept_logged: None,
            accept_unlogged: 0,
            reqlog,
        };
        // A reopen the master did since it forked us is followed now (its SIGCONT may have
        // come before we read the epoch).
        worker.log_epoch = worker.setup.log_epoch;
        worker.check_log();
        worker.paused = worker.setup.board.paused();
        if standby {
            worker.register_standby();
        }
        if !worker.paused {
            worker.start_accepting()?;
        }
        Ok(worker)
    }

    /// The set we wait in.
    fn ep(&self) -> RawFd {
        self.epolls[self.active].as_raw_fd()
    }

    /// Register the listeners in the standby set (see `Worker::epolls`).
    fn register_standby(&mut self) {
        let standby = self.epolls[1 - self.active].as_raw_fd();
        let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        let mut ok = !self.setup.listeners.is_empty();
        for (i, &fd) in self.setup.listeners.iter().enumerate() {
            if let Err(e) = epoll_ctl(
                standby,
                libc::EPOLL_CTL_ADD,
                fd,
                events,
                LISTENER_BASE + i as u64,
            ) {
                crate::log!("listener {i}: standby epoll: {e}");
                ok = false;
            }
        }
        self.standby = ok;
    }

    /// Accept again after a park: through the standby set when there is one (its
    /// registrations date from our start), which the set we leave becomes for a next park.
    /// No connection is registered in the set we leave: a worker parks holding none.
    fn resume_accepting(&mut self) -> io::Result<()> {
        if !self.standby || !self.may_accept() {
            return self.start_accepting();
        }
        self.active = 1 - self.active;
        self.accepting = true;
        self.register_standby();
        Ok(())
    }

    fn cell(&self) -> &Cell {
        self.setup.board.cell(self.setup.cell)
    }

    /// Not accepting, and nothing keeps us from it.
    fn may_accept(&self) -> bool {
        !(self.accepting
            || self.draining
            || self.paused
            || self.parking
            || self.accept_retry.is_some()
            || self.open_conns >= MAX_CONNECTIONS)
    }

    fn start_accepting(&mut self) -> io::Result<()> {
        if !self.may_accept() {
            return Ok(());
        }
        for (i, &fd) in self.setup.listeners.iter().enumerate() {
            let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
            epoll_ctl(
                self.ep(),
                libc::EPOLL_CTL_ADD,
                fd,
                events,
                LISTENER_BASE + i as u64,
            )?;
        }
        self.accepting = true;
        Ok(())
    }

    fn stop_accepting(&mut self) {
        if !self.accepting {
            return;
        }
        for &fd in &self.setup.listeners {
            let _ = epoll_ctl(self.ep(), libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
        self.accepting = false;
    }

    fn notify_ready(&self) {
        let Some(addr) = &self.setup.notify_addr else {
            return;
        };
        let message = format!(
            "READY=1\nSTATUS=built-in worker {} generation {}",
            self.setup.id, self.setup.generation
        );
        if let Err(e) = crate::notify::send(addr, message.as_bytes()) {
            crate::log!("cannot tell the master we are ready: {e}");
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        self.cell().state.store(scoreboard::IDLE, Relaxed);
        self.notify_ready();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            // Request lines of the last turn, in one write.
            self.reqlog.flush();
            if self.draining && self.live_conns() == 0 {
                return Ok(());
            }
            if self.parking && self.live_conns() == 0 {
                self.park()?;
                // A stop read after the SIGCONT: exit at the top of the loop.
                continue;
            }
            let timeout = self.next_timeout();
            // SAFETY: events is a valid buffer of the given length.
            let n = unsafe {
                libc::epoll_wait(self.ep(), events.as_mut_ptr(), events.len() as i32, timeout)
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            self.woken = listener_wake_is_ours(
                events[..n as usize].iter().map(|e| e.u64),
                |t| t >= LISTENER_BASE,
                SIGNAL_TOKEN,
                n as usize == events.len(),
            );
            for ev in &events[..n as usize] {
                let (token, flags) = (ev.u64, ev.events);
                if token == SIGNAL_TOKEN {
                    self.handle_signals()?;
                } else if token >= LISTENER_BASE {
                    self.accept((token - LISTENER_BASE) as usize);
                } else {
                    self.conn_event(token as usize, flags);
                }
            }
            self.run_timers();
        }
    }

    fn live_conns(&self) -> usize {
        self.open_conns
    }

    /// Follow the master to a reopened or rotated log file.
    fn check_log(&mut self) {
        let epoch = self.setup.board.header().log_epoch.load(Relaxed);
        if epoch == self.log_epoch {
            return;
        }
        self.log_epoch = epoch;
        if let Some(path) = &self.setup.logto {
            if let Err(e) = crate::log::redirect_to(path) {
                crate::log!("cannot reopen the log: {e}");
            }
        }
    }

    fn handle_signals(&mut self) -> io::Result<()> {
        while let Some((sig, from)) = crate::sys::read_signal(self.signals.as_raw_fd())? {
            // SAFETY: getppid cannot fail.
            let parent = unsafe { libc::getppid() };
            if !acts_on(sig, from, self.master_pid, parent) {
                crate::log!("signal {sig} from pid {from} ignored: the master decides (it got it too, if sent to the group)");
                continue;
            }
            // Whatever woke us, follow a reopened log first, so the lines this signal makes
            // (paused, resumed, counters) go to the current file even if the SIGCONT that
            // announced the reopen is read after it.
            self.check_log();
            match sig {
                libc::SIGHUP if !self.draining => {
                    self.draining = true;
                    self.stop_accepting();
                    // What waits in the backlog now is taken and served before our copies
                    // close when the wake-up of a connection may have gone to us alone (an
                    // event of this turn, before this signal, that `accept` would find no
                    // listener for): no other worker would be woken for it.
                    if self.woken {
                        for index in 0..self.setup.listeners.len() {
                            self.accept_some(index, DRAIN_ACCEPT);
                        }
                    }
                    // Our copies of the listeners are no longer needed; the master keeps its own
                    // (so the standby registrations would outlive our copies: they go first).
                    if std::mem::take(&mut self.standby) {
                        let standby = self.epolls[1 - self.active].as_raw_fd();
                        for &fd in &self.setup.listeners {
                            let _ = epoll_ctl(standby, libc::EPOLL_CTL_DEL, fd, 0, 0);
                        }
                    }
                    for fd in std::mem::take(&mut self.setup.listeners) {
                        // SAFETY: closing our inherited listener fds, which nothing else here uses.
                        unsafe {
                            libc::close(fd);
                        }
                    }
                    self.mark_keepalive_closing();
                }
                PARK_SIGNAL if !self.draining && !self.parking => {
                    self.parking = true;
                    self.stop_accepting();
                    self.mark_keepalive_closing();
                }
                libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => {
                    self.reqlog.flush();
                    // SAFETY: immediate exit, as a brutal stop asks.
                    unsafe { libc::_exit(0) }
                }
                libc::SIGWINCH => {
                    crate::log!("SIGWINCH: woken up, re-checking flags");
                    self.check_pause()?
                }
                libc::SIGTSTP => self.check_pause()?,
                libc::SIGCONT => self.check_pause()?,
                libc::SIGUSR1 | libc::SIGUSR2 => {
                    let cell = self.cell();
                    crate::log!(
                        "requests {} in flight {} current {:?}",
                        cell.requests.load(Relaxed),
                        cell.in_flight.load(Relaxed),
                        cell.request()
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_pause(&mut self) -> io::Result<()> {
        let paused = self.setup.board.paused();
        if paused == self.paused {
            return Ok(());
        }
        self.paused = paused;
        if paused {
            crate::log!("paused: accepting nothing until resumed");
            self.stop_accepting();
            self.mark_keepalive_closing();
        } else {
            crate::log!("resumed");
            if !self.closing() {
                self.closing_since = None;
            }
            self.start_accepting()?;
        }
        Ok(())
    }

    /// While draining or paused, connections answer their next response with
    /// `Connection: close`, and idle ones are closed by [`idle_deadline`] (from now).
    fn mark_keepalive_closing(&mut self) {
        self.closing_since.get_or_insert_with(Instant::now);
        for c in self.conns.iter_mut().flatten() {
            c.keep_alive = false;
        }
    }

    fn closing(&self) -> bool {
        self.draining || self.paused || self.parking
    }

    /// Parked for the snapshot: no connection is left and nothing is accepted; stop until
    /// the master's SIGCONT (a rollback restores us, or a stop signal sent before it retires
    /// us: the signals are read before accepting again).
    fn park(&mut self) -> io::Result<()> {
        self.reqlog.flush();
        self.cell().state.store(scoreboard::IDLE, Relaxed);
        // Woken by the SIGCONT, we wait for the CPU instead of preempting the master
        // while it wakes the rest of the snapshot (`sys::set_batch`).
        crate::sys::set_batch(0, true);
        // SAFETY: raise only sends a signal to ourselves.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
        crate::sys::set_batch(0, false);
        // Stopped, we waited for nothing: a stop read now takes no listener's wake-up.
        self.woken = false;
        self.parking = false;
        if !self.closing() {
            self.closing_since = None;
        }
        self.handle_signals()?;
        self.resume_accepting()?;
        // The master retires our slot's current worker once it hears this.
        if self.accepting {
            self.notify_ready();
        }
        Ok(())
    }

    fn accept(&mut self, index: usize) {
        // Parking: a connection epoll woke us for before the listeners left our set is still
        // taken (the wakeup went to us alone) and served; it holds the park until answered.
        let forced = if self.parking { 1 } else { 0 };
        self.accept_some(index, forced);
    }

    /// Accept on listener `index` while we accept (64 at most), or `forced` connections
    /// even when we do not (a park or a drain taking what its wake-up left to it).
    fn accept_some(&mut self, index: usize, forced: usize) {
        let Some(&lfd) = self.setup.listeners.get(index) else {
            return;
        };
        let uwsgi = self.setup.uwsgi.listeners.contains(&lfd);
        for i in 0..64.max(forced) {
            if !(self.accepting || i < forced) {
                return;
            }
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut peer_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: accept4 on our listener, writing at most `peer_len` bytes of the peer's
            // address into `peer`; a new fd is returned that we own.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    &mut peer as *mut _ as *mut libc::sockaddr,
                    &mut peer_len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = io::Error::last_os_error();
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    // The listener stays readable: stop polling it for a while rather than spin.
                    self.log_accept_pause(&err);
                    self.stop_accepting();
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                }
                return;
            }
            // SAFETY: fd was just returned by accept4.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if uwsgi {
                // The protocol has no authentication: TCP peers other than loopback only when
                // --uwsgi-allow names them (Unix sockets are guarded by their file mode).
                if let Some(ip) = peer_ip(&peer) {
                    if !crate::uwsgi_proto::peer_allowed(ip, &self.setup.uwsgi.allow) {
                        self.cell().bad_requests.fetch_add(1, Relaxed);
                        crate::log!(
                            "uwsgi: refused a connection from {ip}: only loopback peers may \
                             speak uwsgi unless --uwsgi-allow names them"
                        );
                        continue;
                    }
                }
            }
            // TCP_NODELAY comes from the listener (`listener::finish`).
            let conn = Conn {
                fd,
                inbuf: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                body: None,
                head_only: false,
                pending: Pending::None,
                head_started: None,
                served_since: None,
                started_us: 0,
                line: String::new(),
                last_activity: Instant::now(),
                fresh: Some(Instant::now()),
                close_after_write: false,
                log: None,
                interest: READ_INTEREST,
                keep_alive: !self.closing() && !uwsgi,
                uwsgi,
            };
            let idx = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let raw = conn.fd.as_raw_fd();
            self.conns[idx] = Some(conn);
            self.open_conns += 1;
            if self.open_conns >= MAX_CONNECTIONS {
                self.stop_accepting();
            }
            if epoll_ctl(
                self.ep(),
                libc::EPOLL_CTL_ADD,
                raw,
                READ_INTEREST,
                idx as u64,
            )
            .is_err()
            {
                self.close(idx);
            }
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(conn) = self.conns[idx].take() {
            if conn.served_since.is_some() {
                self.end_in_flight(conn.started_us);
            }
            self.free.push(idx);
            self.open_conns -= 1;
            if self.open_conns + 1 == MAX_CONNECTIONS {
                let _ = self.start_accepting();
            }
        }
    }

    fn conn_event(&mut self, idx: usize, flags: u32) {
        let Some(Some(conn)) = self.conns.get(idx) else {
            return;
        };
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & hangup != 0 && conn.interest & libc::EPOLLIN as u32 == 0 {
            // Not reading (its input buffer is full), and the peer is gone: nothing to finish.
            self.close(idx);
            return;
        }
        if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32 != 0
            && !self.read_conn(idx)
        {
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 && self.flush(idx) {
            // Pipelined requests may have waited behind the output.
            self.process(idx);
        }
    }

    /// Read what is available and serve complete requests; false if the connection closed.
    fn read_conn(&mut self, idx: usize) -> bool {
        let mut buf = [0u8; 16384];
        loop {
            let conn = self.conns[idx].as_mut().expect("live connection");
            let room = MAX_INBUF.saturating_sub(conn.inbuf.len()).min(buf.len());
            if room == 0 {
                // Full: stop reading until the requests held are answered (`set_interest`).
                break;
            }
            // SAFETY: reading into our stack buffer, at most its length.
            let n = unsafe {
                libc::read(
                    conn.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    room,
                )
            };
            if n > 0 {
                if conn.inbuf.is_empty() && conn.head_started.is_none() {
                    conn.head_started = Some(Instant::now());
                }
                conn.inbuf.extend_from_slice(&buf[..n as usize]);
                conn.last_activity = Instant::now();
                continue;
            }
            if n == 0 {
                // Peer closed its side: finish what is queued only if it can still be delivered.
                let c = self.conns[idx].as_ref().expect("live connection");
                if !c.writing() && matches!(c.pending, Pending::None) {
                    self.close(idx);
                    return false;
                }
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            self.cell().read_errors.fetch_add(1, Relaxed);
            self.close(idx);
            return false;
        }
        self.process(idx)
    }

    /// Serve every complete request in the buffer, in order, sending as we go; false if the
    /// connection was closed.
    fn process(&mut self, idx: usize) -> bool {
        loop {
            let waits_for_output = self.answer_buffered(idx);
            if !self.flush(idx) {
                return false;
            }
            let conn = self.conns[idx].as_ref().expect("live connection");
            // Answers stopped for a client that was not reading, and it now has read them all.
            if !waits_for_output || conn.writing() {
                break;
            }
        }
        let conn = self.conns[idx].as_mut().expect("live connection");
        if conn.inbuf.is_empty() {
            conn.head_started = None;
            // An idle keep-alive connection does not keep a large request's buffer.
            if conn.inbuf.capacity() > 64 << 10 {
                conn.inbuf = Vec::new();
            }
        }
        self.set_interest(idx);
        true
    }

    /// Answer the complete requests in the buffer, in order, until one is pending (`/sleep`),
    /// the connection is to close, or output waits (a file is being streamed, or
    /// [`OUT_HIGH_WATER`] bytes are queued). True if it stopped for output.
    fn answer_buffered(&mut self, idx: usize) -> bool {
        loop {
            let conn = self.conns[idx].as_mut().expect("live connection");
            if !matches!(conn.pending, Pending::None)
                || conn.close_after_write
                || conn.inbuf.is_empty()
            {
                return false;
            }
            if conn.body.is_some() || conn.out.len() - conn.out_pos > OUT_HIGH_WATER {
                return true;
            }
            let log_on = self.reqlog.any();
            let parsed = if conn.uwsgi {
                match crate::uwsgi_proto::parse(&conn.inbuf, self.setup.uwsgi.buffer_size) {
                    crate::uwsgi_proto::Parse::Incomplete => return false,
                    crate::uwsgi_proto::Parse::Invalid(status, why) => Err((status, why)),
                    crate::uwsgi_proto::Parse::Complete(packet) => match packet.request() {
                        Err(e) => Err(e),
                        Ok(req) => match body_ready(&conn.inbuf, &req) {
                            None => return false,
                            Some(r) => {
                                if log_on && r.is_ok() {
                                    // The request log reads a head: the one nginx was sent.
                                    let mut head = format!(
                                        "{} {} {}\r\n",
                                        req.method,
                                        req.target,
                                        packet.get("SERVER_PROTOCOL").unwrap_or("HTTP/1.0")
                                    );
                                    for (k, v) in packet.headers() {
                                        head.push_str(&format!("{k}: {v}\r\n"));
                                    }
                                    conn.log = Some(crate::reqlog::RequestInfo::from_head(
                                        head.as_bytes(),
                                        req.method,
                                        req.target,
                                        req.content_length,
                                    ));
                                }
                                r
                            }
                        },
                    },
                }
            } else {
                match http::parse(&conn.inbuf, MAX_HEAD) {
                    Parse::Incomplete => return false,
                    Parse::Invalid(status, why) => Err((status, why)),
                    Parse::Complete(req) => match body_ready(&conn.inbuf, &req) {
                        None => return false,
                        Some(r) => {
                            if log_on && r.is_ok() {
                                conn.log = Some(crate::reqlog::RequestInfo::from_head(
                                    &conn.inbuf[..req.head_len],
                                    req.method,
                                    req.target,
                                    req.content_length,
                                ));
                            }
                            r
                        }
                    },
                }
            };
            if let (true, Err((status, why))) = (conn.uwsgi, &parsed) {
                crate::log!("uwsgi: refused a request ({status}): {why}");
            }
            self.begin_in_flight(idx);
            let conn = self.conns[idx].as_mut().expect("live connection");
            conn.served_since = Some(Instant::now());
            conn.head_started = None;
            conn.fresh = None;
            match parsed {
                Err((status, why)) => {
                    self.cell().bad_requests.fetch_add(1, Relaxed);
                    let conn = self.conns[idx].as_mut().expect("live connection");
                    conn.inbuf.clear();
                    conn.keep_alive = false;
                    conn.head_only = false;
                    self.respond(idx, status, "text/plain", format!("{why}\n").into_bytes());
                }
                Ok((method, target, keep_alive, consumed)) => {
                    let conn = self.conns[idx].as_mut().expect("live connection");
                    conn.inbuf.drain(..consumed);
                    conn.keep_alive &= keep_alive;
                    conn.head_only = method == "HEAD";
                    conn.line = format!("{method} {target}");
                    let started_us = conn.started_us;
                    let oldest = started_us == self.cell().request_start_us.load(Relaxed);
                    if oldest {
                        let conn = self.conns[idx].as_ref().expect("live connection");
                        self.cell().set_request(conn.line.as_bytes());
                    }
                    self.route(idx, &method, &target);
                }
            }
        }
    }

    /// Poll a connection for input unless its buffer is full, and for output while any waits.
    fn set_interest(&mut self, idx: usize) {
        let conn = self.conns[idx].as_mut().expect("live connection");
        let mut want = 0;
        if conn.inbuf.len() < MAX_INBUF {
            want |= READ_INTEREST;
        }
        if conn.writing() {
            want |= libc::EPOLLOUT as u32;
        }
        if want != conn.interest {
            conn.interest = want;
            let raw = conn.fd.as_raw_fd();
            let _ = epoll_ctl(self.ep(), libc::EPOLL_CTL_MOD, raw, want, idx as u64);
        }
    }

    /// One "pausing accepts" line per [`ACCEPT_LOG_EVERY`] at most, with the count of the
    /// ones left out: at the fd limit accept fails every [`ACCEPT_RETRY`].
    fn log_accept_pause(&mut self, err: &io::Error) {
        let now = Instant::now();
        if self
            .accept_logged
            .is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_EVERY)
        {
            self.accept_unlogged += 1;
            return;
        }
        let left_out = std::mem::take(&mut self.accept_unlogged);
        let since = match (left_out, self.accept_logged) {
            (0, _) | (_, None) => String::new(),
            (n, Some(t)) => format!(
                " ({n} more since the last such line, {}s ago)",
                now.duration_since(t).as_secs()
            ),
        };
        self.accept_logged = Some(now);
        crate::log!("accept: {err}; pausing accepts for {ACCEPT_RETRY:?}{since}");
    }

    /// A request of connection `idx` starts being served; the first in flight sets the
    /// scoreboard's start (its text follows once the head is parsed).
    fn begin_in_flight(&mut self, idx: usize) {
        let us = now_us();
        if let Some(conn) = self.conns[idx].as_mut() {
            conn.started_us = us;
            conn.line.clear();
        }
        let cell = self.cell();
        if cell.in_flight.fetch_add(1, Relaxed) == 0 {
            cell.request_start_us.store(us, Relaxed);
            cell.state.store(scoreboard::BUSY, Relaxed);
        }
    }

    /// A request that started at `started_us` is done (its connection no longer counts as
    /// serving). If it was the oldest in flight, the scoreboard moves on to the next oldest,
    /// so a long chain of overlapping requests never looks like one stuck request.
    fn end_in_flight(&self, started_us: u64) {
        let cell = self.cell();
        if cell.in_flight.fetch_sub(1, Relaxed) == 1 {
            cell.request_start_us.store(0, Relaxed);
            cell.state.store(scoreboard::IDLE, Relaxed);
        } else if started_us == cell.request_start_us.load(Relaxed) {
            let oldest = self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.served_since.is_some())
                .min_by_key(|c| c.started_us);
            if let Some(c) = oldest {
                cell.request_start_us.store(c.started_us, Relaxed);
                cell.set_request(c.line.as_bytes());
            }
        }
    }

    fn route(&mut self, idx: usize, method: &str, target: &str) {
        let target = http::origin_form(target);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if method != "GET" && method != "HEAD" {
            return self.respond(idx, 405, "text/plain", b"method not allowed\n".to_vec());
        }
        // Static files first, as uWSGI checks its maps before the app.
        match crate::static_map::lookup(&self.setup.serve, self.setup.check_static.as_deref(), path)
        {
            crate::static_map::Lookup::Found(f) => {
                self.cell().static_requests.fetch_add(1, Relaxed);
                let body = Body::File(f.file, f.len);
                return self.respond_full(idx, 200, f.ctype, body, &f.headers);
            }
            crate::static_map::Lookup::Refused => {
                return self.respond(idx, 403, "text/plain", b"forbidden\n".to_vec())
            }
            crate::static_map::Lookup::NotFound => {}
        }
        if self.setup.demo_routes {
            match path {
                "/" => return self.respond(idx, 200, "text/plain", b"Hello World".to_vec()),
                "/pid" => {
                    return self.respond(idx, 200, "text/plain", self.pid.to_string().into_bytes())
                }
                "/fault" if crate::fault::worker_route() => return,
                "/alloc" => {
                    // Grow this worker's resident memory by N MB (pages written, kept until
                    // the worker exits): for --reload-on-rss/--reload-on-pss tests.
                    let mb = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("mb="))
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(MAX_ALLOC_MB);
                    let kept: &'static mut [u8] = Vec::leak(vec![1u8; mb << 20]);
                    std::hint::black_box(&kept);
                    let body = format!("allocated {mb} MB\n").into_bytes();
                    return self.respond(idx, 200, "text/plain", body);
                }
                "/sleep" => {
                    let ms = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("ms="))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        .min(MAX_SLEEP_MS);
                    let conn = self.conns[idx].as_mut().expect("live connection");
                    conn.pending = Pending::Sleep {
                        until: Instant::now() + Duration::from_millis(ms),
                        ms,
                    };
                    return;
                }
                _ => {}
            }
        }
        if path == "/" {
            let page = format!(
                "<!doctype html>\n<title>uwsgid</title>\n<h1>uwsgid is serving</h1>\n<p>worker {} (pid {}), generation {}</p>\n",
                self.setup.id, self.pid, self.setup.generation
            );
            return self.respond(idx, 200, "text/html; charset=utf-8", page.into_bytes());
        }
        self.respond(idx, 404, "text/plain", b"not found\n".to_vec())
    }

    fn respond(&mut self, idx: usize, status: u16, ctype: &str, body: Vec<u8>) {
        self.respond_with(idx, status, ctype, Body::Bytes(body));
    }

    /// Queue a response: the head and a small body in `out`, a file to be streamed after it.
    fn respond_with(&mut self, idx: usize, status: u16, ctype: &str, body: Body) {
        self.respond_full(idx, status, ctype, body, "")
    }

    /// [`Self::respond_with`] with extra header lines (each ending in CRLF).
    fn respond_full(&mut self, idx: usize, status: u16, ctype: &str, body: Body, extra: &str) {
        let closing = self.closing();
        let conn = self.conns[idx].as_mut().expect("live connection");
        let keep = conn.keep_alive && !closing;
        let len = match &body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, len) => *len,
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nServer: uwsgid\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n{extra}{}\r\n",
            http::reason(status),
            if keep { "" } else { "Connection: close\r\n" }
        );
        if conn.out_pos >= conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        }
        conn.out.extend_from_slice(head.as_bytes());
        let mut bytes = head.len() as u64;
        if !conn.head_only {
            bytes += len;
            match body {
                Body::Bytes(b) => conn.out.extend_from_slice(&b),
                Body::File(file, end) => {
                    conn.body = Some(FileBody {
                        file,
                        pos: 0,
                        end,
                        sendfile: true,
                    })
                }
            }
        }
        if !keep {
            conn.close_after_write = true;
        }
        let micros = conn
            .served_since
            .take()
            .map(|t| t.elapsed().as_micros() as u64)
            .unwrap_or(0);
        conn.last_activity = Instant::now();
        let log = conn.log.take();
        let fd = conn.fd.as_raw_fd();
        let body_bytes = bytes - head.len() as u64;
        let started_us = conn.started_us;
        self.cell().finish_request(bytes, micros);
        self.end_in_flight(started_us);
        if let Some(req) = log {
            self.log_request(&req, fd, status, &head, body_bytes, micros);
        }
    }

    fn log_request(
        &mut self,
        req: &crate::reqlog::RequestInfo,
        fd: RawFd,
        status: u16,
        head: &str,
        body_bytes: u64,
        micros: u64,
    ) {
        let addr = crate::reqlog::peer_addr(fd);
        let out = crate::reqlog::Outcome {
            status,
            head_bytes: head.len() as u64,
            body_bytes,
            response_headers: head.matches("\r\n").count().saturating_sub(2),
            micros,
            addr: &addr,
            pid: self.pid,
            wid: self.setup.id,
            requests: self.cell().requests.load(Relaxed),
        };
        self.reqlog.record(req, &out);
    }

    /// Write queued output, then the file being streamed; false if the connection was closed.
    /// Stops at EAGAIN, or after [`FLUSH_BUDGET`] file bytes so that other connections get
    /// their turn (the connection stays polled for output).
    fn flush(&mut self, idx: usize) -> bool {
        let mut budget = FLUSH_BUDGET;
        loop {
            let conn = self.conns[idx].as_mut().expect("live connection");
            let fd = conn.fd.as_raw_fd();
            let sent = if conn.out_pos < conn.out.len() {
                let rest = &conn.out[conn.out_pos..];
                // SAFETY: writing from our buffer; MSG_NOSIGNAL avoids SIGPIPE.
                let n = unsafe {
                    libc::send(
                        fd,
                        rest.as_ptr() as *const libc::c_void,
                        rest.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    conn.out_pos += n as usize;
                }
                n
            } else if let Some(body) = conn.body.as_mut() {
                if body.pos >= body.end {
                    conn.body = None;
                    continue;
                }
                if budget == 0 {
                    self.set_interest(idx);
                    return true;
                }
                let want = (body.end - body.pos).min(budget);
                if body.sendfile {
                    let mut offset = body.pos as libc::off_t;
                    // SAFETY: sendfile from our open file to our socket; the kernel updates
                    // `offset`, a local we own. SIGPIPE is ignored in uwsgid (inherited from
                    // the master), so a peer that went away gives EPIPE.
                    let n = unsafe {
                        libc::sendfile(fd, body.file.as_raw_fd(), &mut offset, want as usize)
                    };
                    match n {
                        n if n > 0 => {
                            body.pos += n as u64;
                            budget = budget.saturating_sub(n as u64);
                            conn.last_activity = Instant::now();
                            continue;
                        }
                        0 => {
                            // The file shrank under us: the promised length cannot be sent.
                            self.close(idx);
                            return false;
                        }
                        _ => {
                            let err = io::Error::last_os_error();
                            if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
                                body.sendfile = false;
                                continue;
                            }
                            -1
                        }
                    }
                } else {
                    // Copy one chunk through `out` (empty here), then send it as queued output.
                    let chunk = want.min(FILE_CHUNK as u64) as usize;
                    conn.out.clear();
                    conn.out.resize(chunk, 0);
                    conn.out_pos = 0;
                    // SAFETY: reading at most `chunk` bytes into our buffer of that length.
                    let n = unsafe {
                        libc::pread(
                            body.file.as_raw_fd(),
                            conn.out.as_mut_ptr() as *mut libc::c_void,
                            chunk,
                            body.pos as libc::off_t,
                        )
                    };
                    if n <= 0 {
                        // Shrunk, or unreadable: the promised length cannot be sent.
                        self.close(idx);
                        return false;
                    }
                    conn.out.truncate(n as usize);
                    body.pos += n as u64;
                    budget = budget.saturating_sub(n as u64);
                    continue;
                }
            } else {
                break;
            };
            if sent >= 0 {
                conn.last_activity = Instant::now();
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if err.kind() == io::ErrorKind::WouldBlock {
                self.set_interest(idx);
                return true;
            }
            self.cell().write_errors.fetch_add(1, Relaxed);
            self.close(idx);
            return false;
        }
        let conn = self.conns[idx].as_mut().expect("live connection");
        conn.out.clear();
        conn.out_pos = 0;
        if conn.close_after_write && matches!(conn.pending, Pending::None) {
            // SAFETY: half-close so the client reads our whole response before the FIN.
            unsafe {
                libc::shutdown(conn.fd.as_raw_fd(), libc::SHUT_WR);
            }
            self.close(idx);
            return false;
        }
        self.set_interest(idx);
        true
    }
    fn next_timeout(&self) -> i32 {
        let now = Instant::now();
        let mut next: Option<Instant> = self.accept_retry;
        for c in self.conns.iter().flatten() {
            let d = self.deadline(c);
            next = Some(next.map_or(d, |n| n.min(d)));
        }
        match next {
            None => -1,
            Some(d) => d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1,
        }
    }

    fn deadline(&self, c: &Conn) -> Instant {
        if let Pending::Sleep { until, .. } = c.pending {
            return until;
        }
        if c.writing() {
            return c.last_activity + WRITE_TIMEOUT;
        }
        if let Some(t) = c.head_started {
            return t + HEAD_TIMEOUT;
        }
        let since = self.closing_since.filter(|_| self.closing());
        idle_deadline(c.last_activity, IDLE_TIMEOUT, c.fresh, since)
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.accept_retry.is_some_and(|t| now >= t) {
            self.accept_retry = None;
            let _ = self.start_accepting();
        }
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_ref() else {
                continue;
            };
            if self.deadline(c) > now {
                continue;
            }
            match c.pending {
                Pending::Sleep { ms, .. } => {
                    let conn = self.conns[idx].as_mut().expect("live connection");
                    conn.pending = Pending::None;
                    self.respond(
                        idx,
                        200,
                        "text/plain",
                        format!("slept {ms} ms\n").into_bytes(),
                    );
                    if self.flush(idx) {
                        self.process(idx);
                    }
                }
                Pending::None => {
                    if c.head_started.is_some() && !c.writing() {
                        // A slow or stalled request head: answer 408 and close.
                        self.begin_in_flight(idx);
                        let conn = self.conns[idx].as_mut().expect("live connection");
                        conn.served_since = Some(Instant::now());
                        conn.line = "(request head timed out)".into();
                        conn.keep_alive = false;
                        conn.head_only = false;
                        conn.inbuf.clear();
                        self.respond(idx, 408, "text/plain", b"request head timed out\n".to_vec());
                        self.flush(idx);
                    } else if has_input(c.fd.as_raw_fd()) {
                        // A request arrived since epoll looked: served at the next turn
                        // (epoll reports it at once), not reset by closing under it.
                        continue;
                    } else {
                        self.close(idx);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod signal_tests {
    use super::acts_on;

    #[test]
    fn stop_signals_count_only_from_the_master_while_it_lives() {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            assert!(acts_on(sig, 10, 10, 10), "from the master");
            assert!(
                !acts_on(sig, 99, 10, 10),
                "from another process of the group"
            );
            assert!(!acts_on(sig, 0, 10, 10), "from the kernel (the terminal)");
            assert!(acts_on(sig, 99, 10, 1), "the master is gone");
        }
        assert!(acts_on(libc::SIGUSR1, 99, 10, 10));
        assert!(acts_on(libc::SIGWINCH, 0, 10, 10));
    }

    #[test]
    fn a_listener_wake_is_ours_only_before_the_signal_or_in_a_full_batch() {
        use super::listener_wake_is_ours as ours;
        let (sig, l) = (u64::MAX, 1u64 << 40);
        let is_l = |t: u64| t == l;
        assert!(ours([l, sig].into_iter(), is_l, sig, false));
        assert!(!ours([sig, l].into_iter(), is_l, sig, false));
        assert!(!ours([7, sig].into_iter(), is_l, sig, false));
        assert!(ours([sig].into_iter(), is_l, sig, true));
    }
}

#[cfg(test)]
mod drain_tests {
    use super::{idle_deadline, DRAIN_GRACE, HEAD_TIMEOUT, IDLE_TIMEOUT};
    use std::time::{Duration, Instant};

    #[test]
    fn not_draining_the_idle_timeout_alone_counts() {
        let t = Instant::now();
        assert_eq!(idle_deadline(t, IDLE_TIMEOUT, None, None), t + IDLE_TIMEOUT);
        assert_eq!(
            idle_deadline(t, IDLE_TIMEOUT, Some(t), None),
            t + IDLE_TIMEOUT
        );
    }

    #[test]
    fn a_keep_alive_connection_gets_the_grace_from_the_drain_start() {
        let t = Instant::now();
        // Idle for 10 s when the drain starts: the grace counts from the drain.
        let since = t + Duration::from_secs(10);
        assert_eq!(
            idle_deadline(t, IDLE_TIMEOUT, None, Some(since)),
            since + DRAIN_GRACE
        );
        // Answered (keep-alive) after the drain started: from that answer.
        let last = since + Duration::from_millis(300);
        assert_eq!(
            idle_deadline(last, IDLE_TIMEOUT, None, Some(since)),
            last + DRAIN_GRACE
        );
        // Never later than the keep-alive timeout would have closed it.
        let since = t + IDLE_TIMEOUT - Duration::from_millis(100);
        assert_eq!(
            idle_deadline(t, IDLE_TIMEOUT, None, Some(since)),
            t + IDLE_TIMEOUT
        );
    }

    #[test]
    fn a_connection_without_a_request_keeps_its_head_deadline() {
        let t = Instant::now();
        let since = t + Duration::from_millis(50);
        assert_eq!(
            idle_deadline(t, IDLE_TIMEOUT, Some(t), Some(since)),
            t + HEAD_TIMEOUT
        );
        // Accepted long before the drain: still the grace from the drain's start.
        let since = t + Duration::from_secs(20);
        assert_eq!(
            idle_deadline(t, IDLE_TIMEOUT, Some(t), Some(since)),
            since + DRAIN_GRACE
        );
        // A short keep-alive timeout (the Python runner's option) still bounds it.
        let short = Duration::from_secs(1);
        assert_eq!(idle_deadline(t, short, Some(t), Some(t)), t + short);
    }
}
