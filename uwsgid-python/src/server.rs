//! The native WSGI server: `_uwsgid.Server(app, listeners, args)`, used by the runner's code
//! in place of its own `Server`, and the objects a request sees (`wsgi.input`,
//! `start_response` and its `write`, `wsgi.file_wrapper`).
//!
//! Threads: `--threads N` OS threads share one epoll set (listeners, the signalfd, the
//! connections with `EPOLLONESHOT`). A thread that gets a connection's event owns it: it reads
//! what is there (no GIL), parses the head with [`uwsgid::conn::parse_head`], and only a
//! complete head makes it take the GIL and run the application. So silent and slow clients
//! hold no thread: a head must be complete within [`HEAD_TIMEOUT`] of its first byte (else
//! 408), an idle keep-alive connection is closed after `--keepalive-timeout`; both are swept by
//! whichever thread is awake. The GIL is released for every socket read and write (body
//! reads, `write()`, response chunks, sendfile). When every thread is busy nobody accepts, so
//! other workers take new clients.
//!
//! Listeners named `uwsgi=ADDR` (uwsgid's `--socket`, nginx's `uwsgi_pass`) speak the uwsgi
//! protocol: a connection's packet is judged by [`uwsgid::uwsgi_proto`] (the built-in worker's
//! parser) under the same rules and deadline as an HTTP head, its vars become the environ
//! (`Engine::environ_uwsgi`), the `CONTENT_LENGTH` body streams into `wsgi.input`, and the
//! answer is plain HTTP without chunking that ends with the connection. Refused packets are
//! answered and logged with the reason; TCP peers outside loopback need `--uwsgi-allow`
//! (`UWSGID_UWSGI_ALLOW`). `--buffer-size` bounds the vars block (and, given, HTTP heads);
//! `--limit-post` bodies on both protocols (413).
//!
//! SIGTERM and SIGHUP drain (stop accepting, close our listener copies, finish requests in
//! flight with `Connection: close`, close idle connections by the built-in worker's rule,
//! [`uwsgid::worker::idle_deadline`]: [`uwsgid::worker::DRAIN_GRACE`] from the drain's start
//! for a keep-alive one, [`HEAD_TIMEOUT`] from its accept for one with no request yet), then
//! the thread that finds the worker drained flushes Python's streams and exits 0 (the other
//! threads are not woken and joined first: the master's reload waits for this exit). The
//! master's park signal (`uwsgid::worker::PARK_SIGNAL`, `--auto-snapshot`) drains the same
//! way but keeps the listeners and, once idle, stops the process (SIGSTOP) until a
//! rollback's SIGCONT, after which it accepts through its standby epoll set (ahead of the
//! generation it replaces: [`Engine::resume_accepting`]) and says `READY=1`; a stop signal
//! read after it turns it into a drain. SIGINT and SIGQUIT exit at once (128 + signal). SIGUSR2 dumps every thread's
//! Python stack to the log (`faulthandler`); a fatal signal (SIGSEGV in a C extension) logs
//! the Python stacks before the worker dies.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use uwsgid::conn::{self, BodyDecoder, Decoded, Framing, HeadParse};
use uwsgid::scoreboard::{self, Cell, Scoreboard};
use uwsgid::uwsgi_proto;

/// A request head must be complete this long after its first byte (the built-in worker's).
pub const HEAD_TIMEOUT: Duration = uwsgid::worker::HEAD_TIMEOUT;
/// Longest request head (request line and fields) unless `--buffer-size` says otherwise.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunked trailer section.
const MAX_TRAILER: usize = 64 * 1024;
/// A body the application left unread is skipped up to this size to keep the connection.
const MAX_DISCARD: u64 = 1 << 20;
const RECV: usize = 64 * 1024;
const SIGNAL_TOKEN: u64 = u64::MAX;
const LISTENER_TOKEN: u64 = u64::MAX - 1024;
/// Connections accepted per listener wake-up (see `Engine::accept`).
const ACCEPT_BATCH: usize = 1;
/// Connections a worker that starts draining takes from each listener's backlog (see
/// `Engine::start_drain`).
const DRAIN_ACCEPT: usize = 16;
/// The timerfd that ends an accept pause (see [`Engine::yield_accepts`]).
const ACCEPT_TIMER_TOKEN: u64 = u64::MAX - 1;
/// How long after a rollback's SIGCONT a restored worker does not yield accepts (see
/// `Engine::yield_accepts`): the replaced generation retires 50 ms after it is back.
const NO_YIELD_AFTER_RESUME: Duration = Duration::from_secs(1);
/// A set's kick eventfd (see `Engine::kicks`).
const KICK_TOKEN: u64 = u64::MAX - 2;
/// An accept pause per connection held, and its longest.
const YIELD_PER_CONN: Duration = Duration::from_micros(200);
const YIELD_MAX: Duration = Duration::from_millis(2);
/// How often idle and stalled connections are looked at.
const SWEEP: Duration = Duration::from_millis(250);

/// One line on stderr in one write: `eprintln!` writes each piece of its format separately,
/// and the lines of workers started or drained together came out interleaved.
fn log(message: &str) {
    use std::io::Write;
    let line = format!("uwsgid-python[{}]: {message}\n", std::process::id());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn epoll_ctl(ep: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: ev is a valid epoll_event for the call.
    cvt(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(|_| ())
}

/// Wait until `fd` is readable (`POLLIN`) or writable, at most `timeout`.
fn wait_fd(fd: RawFd, events: i16, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 60_000) as i32) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Send every byte of `parts` in order (one `sendmsg` of what is left at a time), waiting at
/// most `timeout` for each progress.
fn send_all(fd: RawFd, parts: &[&[u8]], timeout: Duration) -> io::Result<u64> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        match send_once(fd, &skip_bytes(parts, sent)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLOUT, timeout)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total as u64)
}

/// One non-blocking `sendmsg` of `parts`: the bytes it took (WouldBlock if none).
fn send_once(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    let iov: Vec<libc::iovec> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    if iov.is_empty() {
        return Ok(0);
    }
    // SAFETY: msghdr over iovecs pointing into `parts`, alive for the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `parts` without their first `n` bytes.
fn skip_bytes<'a>(parts: &[&'a [u8]], mut n: usize) -> Vec<&'a [u8]> {
    let mut rest = Vec::with_capacity(parts.len());
    for p in parts {
        if n >= p.len() {
            n -= p.len();
        } else {
            rest.push(&p[n..]);
            n = 0;
        }
    }
    rest
}

impl Exchange {
    /// Send `parts` on the request's connection, counting them in `out_bytes`. A first
    /// non-blocking try is made with the GIL held: a small answer fits the socket's buffer at
    /// once, and releasing the GIL for it would hand the interpreter to another thread and
    /// make this request queue to take it back, for a call that never waits. What does not
    /// fit is sent with the GIL released. `check_over`: refuse once the request is over
    /// (a `write()` or a chunk after the exchange ended).
    fn send(
        self: &Arc<Self>,
        py: Python<'_>,
        parts: &[&[u8]],
        check_over: bool,
    ) -> Result<(), ExchangeError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        let io = match self.io.try_lock() {
            Ok(io) => Some(io),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut io) = io {
            if check_over && io.finished {
                return Err(ExchangeError::RequestOver { input: false });
            }
            match send_once(io.fd, parts) {
                Ok(n) => {
                    io.out_bytes += n as u64;
                    if n == total {
                        return Ok(());
                    }
                    sent = n;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    self.gone.store(true, SeqCst);
                    return Err(client_gone(e));
                }
            }
        }
        let rest = skip_bytes(parts, sent);
        py.allow_threads(|| {
            let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
            if check_over && sent == 0 && io.finished {
                return Err(ExchangeError::RequestOver { input: false });
            }
            match send_all(io.fd, &rest, io.timeout) {
                Ok(b) => {
                    io.out_bytes += b;
                    Ok(())
                }
                Err(e) => {
                    self.gone.store(true, SeqCst);
                    Err(client_gone(e))
                }
            }
        })
    }
}

/// Read what is there into `buf` (up to `max` more bytes); Ok(0) is EOF, WouldBlock if none.
fn recv_some(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: reading into the vector's spare capacity, then extending by what was written.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr() as *mut libc::c_void, want, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recv initialised n bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

/// Like [`recv_some`], waiting at most `timeout` for bytes.
fn recv_wait(fd: RawFd, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<usize> {
    loop {
        match recv_some(fd, buf, RECV) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(fd, libc::POLLIN, timeout)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// `Date:` text for now, cached per second and thread.
fn http_date() -> String {
    thread_local! {
        static CACHE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((-1, String::new())) };
    }
    // SAFETY: time(NULL) has no preconditions.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            // SAFETY: gmtime_r writes into our tm.
            let tm = unsafe {
                let mut tm: libc::tm = std::mem::zeroed();
                libc::gmtime_r(&now, &mut tm);
                tm
            };
            const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            c.1 = format!(
                "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
                DAYS[tm.tm_wday.rem_euclid(7) as usize],
                tm.tm_mday,
                MONTHS[tm.tm_mon.rem_euclid(12) as usize],
                tm.tm_year + 1900,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec
            );
            c.0 = now;
        }
        c.1.clone()
    })
}

fn simple_response(status: u16, message: &str) -> Vec<u8> {
    let reason = reason(status);
    let body = format!("{status} {reason}\n{message}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        http_date(),
        body.len()
    )
    .into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        417 => "Expectation Failed",
        s => uwsgid::http::reason(s),
    }
}

/// A str as latin-1 bytes (WSGI's native strings); None if a character is above U+00FF.
fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars()
        .map(|c| u8::try_from(c as u32).ok())
        .collect::<Option<Vec<u8>>>()
}

fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyAny> {
    // SAFETY: decoding a valid buffer; latin-1 decoding cannot fail except for memory, in
    // which case the null result becomes a panic-free empty string below.
    unsafe {
        let p = pyo3::ffi::PyUnicode_DecodeLatin1(
            b.as_ptr() as *const libc::c_char,
            b.len() as pyo3::ffi::Py_ssize_t,
            std::ptr::null(),
        );
        if p.is_null() {
            pyo3::ffi::PyErr_Clear();
            return PyString::new(py, "").into_any();
        }
        Bound::from_owned_ptr(py, p)
    }
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let h = |b: u8| (b as char).to_digit(16);
            if let (Some(a), Some(b)) = (h(raw[i + 1]), h(raw[i + 2])) {
                out.push((a * 16 + b) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------
// One request's shared state

/// The response as the application described it; locked only with the GIL held, and never
/// across a release of the GIL.
struct Resp {
    status: Option<(u16, Vec<u8>)>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    head_sent: bool,
    length: Option<u64>,
    written: u64,
    chunked: bool,
    bodyless: bool,
    keep: bool,
    head_only: bool,
    minor: u8,
}

/// The connection's bytes during a request; locked only with the GIL released.
struct Io {
    fd: RawFd,
    /// Raw bytes received and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet given to the application.
    data: Vec<u8>,
    dpos: usize,
    decoder: BodyDecoder,
    expect: bool,
    timeout: Duration,
    /// The request is over: the connection belongs to the server again.
    finished: bool,
    /// Reading failed (client gone, malformed framing): the connection cannot be kept.
    broken: Option<ExchangeError>,
    /// The body's framing was malformed (answered 400 if nothing was sent yet).
    bad_body: bool,
    /// `--limit-post`: the most body bytes the application may read (a chunked body longer
    /// than this is answered 413 if nothing was sent yet).
    limit: Option<u64>,
    /// Body bytes decoded so far.
    decoded: u64,
    too_large: bool,
    out_bytes: u64,
}

/// Why reading a request's body or sending its response failed. Runtime errors: the worker
/// logs them and closes the connection; the application sees them as `OSError`.
#[derive(Clone, Debug)]
enum ExchangeError {
    /// The request is over (`input`: it was `wsgi.input` that was read).
    RequestOver {
        input: bool,
    },
    WriteBeforeStart,
    /// The client went away (sending, or the `100 Continue`).
    ClientGone(Arc<io::Error>),
    ClosedMidBody,
    ReadingBody(Arc<io::Error>),
    /// The body's framing is malformed (the decoder's reason).
    BadBody(&'static str),
    /// A file sent with sendfile ended before its announced length.
    FileShort,
    /// The body grew past `--limit-post` (the limit in bytes).
    TooLarge(u64),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::RequestOver { input: true } => {
                f.write_str("the request is over: wsgi.input is closed")
            }
            ExchangeError::RequestOver { input: false } => f.write_str("the request is over"),
            ExchangeError::WriteBeforeStart => f.write_str("write() before start_response()"),
            ExchangeError::ClientGone(e) => write!(f, "client gone: {e}"),
            ExchangeError::ClosedMidBody => f.write_str("client closed mid-body"),
            ExchangeError::ReadingBody(e) => write!(f, "reading the body: {e}"),
            ExchangeError::BadBody(why) => write!(f, "bad request body: {why}"),
            ExchangeError::FileShort => f.write_str("the file ended before its announced length"),
            ExchangeError::TooLarge(limit) => {
                write!(f, "request body larger than --limit-post {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ExchangeError {}

impl From<ExchangeError> for PyErr {
    fn from(e: ExchangeError) -> PyErr {
        PyOSError::new_err(e.to_string())
    }
}

fn client_gone(e: io::Error) -> ExchangeError {
    ExchangeError::ClientGone(Arc::new(e))
}

struct Exchange {
    resp: Mutex<Resp>,
    io: Mutex<Io>,
    head_started: AtomicBool,
    gone: AtomicBool,
}

impl Io {
    /// Decode more body bytes into `data`; false at the end of the body.
    fn fill(&mut self, head_started: &AtomicBool) -> Result<bool, ExchangeError> {
        if self.finished {
            return Err(ExchangeError::RequestOver { input: true });
        }
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        loop {
            if self.decoder.done() {
                return Ok(false);
            }
            if self.raw.is_empty() {
                if self.expect {
                    self.expect = false;
                    if !head_started.load(SeqCst) {
                        send_all(self.fd, &[b"HTTP/1.1 100 Continue\r\n\r\n"], self.timeout)
                            .map_err(|e| self.fail(client_gone(e)))?;
                    }
                }
                match recv_wait(self.fd, &mut self.raw, self.timeout) {
                    Ok(0) => return Err(self.fail(ExchangeError::ClosedMidBody)),
                    Ok(_) => {}
                    Err(e) => return Err(self.fail(ExchangeError::ReadingBody(Arc::new(e)))),
                }
            }
            match self.decoder.decode(&self.raw) {
                Decoded::Data { used, data } => {
                    self.decoded += data.len() as u64;
                    if let Some(limit) = self.limit.filter(|&l| self.decoded > l) {
                        self.too_large = true;
                        return Err(self.fail(ExchangeError::TooLarge(limit)));
                    }
                    if self.dpos == self.data.len() {
                        self.data.clear();
                        self.dpos = 0;
                    }
                    self.data.extend_from_slice(&self.raw[data.clone()]);
                    self.raw.drain(..used);
                    if !data.is_empty() {
                        return Ok(true);
                    }
                }
                Decoded::End { used } => {
                    self.raw.drain(..used);
                    return Ok(false);
                }
                Decoded::Invalid(why) => {
                    self.bad_body = true;
                    return Err(self.fail(ExchangeError::BadBody(why)));
                }
            }
        }
    }

    fn fail(&mut self, why: ExchangeError) -> ExchangeError {
        self.broken = Some(why.clone());
        why
    }

    /// Up to `size` bytes (all if None), stopping after a newline if `line`.
    fn read(
        &mut self,
        size: Option<usize>,
        line: bool,
        hs: &AtomicBool,
    ) -> Result<Vec<u8>, ExchangeError> {
        let mut out = Vec::new();
        loop {
            let want = size.map_or(usize::MAX, |s| s - out.len());
            if want == 0 {
                return Ok(out);
            }
            let avail = &self.data[self.dpos..];
            if !avail.is_empty() {
                let mut n = avail.len().min(want);
                if line {
                    if let Some(nl) = avail[..n].iter().position(|&b| b == b'\n') {
                        n = nl + 1;
                        out.extend_from_slice(&avail[..n]);
                        self.dpos += n;
                        return Ok(out);
                    }
                }
                out.extend_from_slice(&avail[..n]);
                self.dpos += n;
                continue;
            }
            if !self.fill(hs)? {
                return Ok(out);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Python objects

/// `wsgi.input`: the request body, read on demand (Content-Length or chunked).
#[pyclass(module = "_uwsgid", name = "Input")]
struct Input {
    ex: Arc<Exchange>,
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok((n >= 0).then_some(n as usize))
        }
    }
}

impl Input {
    fn read_impl(&self, py: Python<'_>, size: Option<usize>, line: bool) -> PyResult<Vec<u8>> {
        let ex = self.ex.clone();
        py.allow_threads(move || {
            let mut io = ex.io.lock().unwrap_or_else(|p| p.into_inner());
            io.read(size, line, &ex.head_started)
        })
        .map_err(PyErr::from)
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.read_impl(py, size_arg(size)?, false)?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.read_impl(py, size_arg(size)?, true)?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let list = PyList::empty(py);
        let mut total = 0;
        loop {
            let v = self.read_impl(py, None, true)?;
            if v.is_empty() {
                return Ok(list);
            }
            total += v.len();
            list.append(PyBytes::new(py, &v))?;
            if hint.is_some_and(|h| total >= h) {
                return Ok(list);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let v = self.read_impl(py, None, true)?;
        Ok((!v.is_empty()).then(|| PyBytes::new(py, &v)))
    }
}

/// `start_response`; its `write` method is the `write()` callable it returns.
#[pyclass(module = "_uwsgid", name = "StartResponse")]
struct StartResponse {
    ex: Arc<Exchange>,
    draining: Arc<AtomicBool>,
}

/// Build the response head from `r`; `first_len` is the whole body's length when known now.
fn build_head(r: &mut Resp, first_len: Option<usize>, draining: bool) -> Vec<u8> {
    let (code, status) = r
        .status
        .clone()
        .unwrap_or((500, b"500 Internal Server Error".to_vec()));
    let no_body = conn::bodyless_status(code);
    r.bodyless = r.head_only || no_body;
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(&status);
    h.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in &r.headers {
        has_date |= name.eq_ignore_ascii_case(b"date");
        h.extend_from_slice(name);
        h.extend_from_slice(b": ");
        h.extend_from_slice(value);
        h.extend_from_slice(b"\r\n");
    }
    if !has_date {
        h.extend_from_slice(b"Date: ");
        h.extend_from_slice(http_date().as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    if r.length.is_none() && !no_body {
        if let Some(n) = first_len {
            r.length = Some(n as u64);
            h.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        } else if !r.bodyless {
            if r.minor == 1 {
                r.chunked = true;
                h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            } else {
                r.keep = false; // the end of the body is the end of the connection
            }
        }
    }
    if draining {
        r.keep = false;
    }
    if !r.keep {
        h.extend_from_slice(b"Connection: close\r\n");
    } else if r.minor == 0 {
        h.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    h.extend_from_slice(b"\r\n");
    r.head_sent = true;
    h
}

impl StartResponse {
    /// Send `data` as body bytes (the head first, if not sent yet).
    fn send(&self, py: Python<'_>, data: &[u8]) -> Result<(), ExchangeError> {
        let draining = self.draining.load(Relaxed);
        let (head, prefix, n, suffix) = {
            let mut r = self.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            if r.status.is_none() {
                return Err(ExchangeError::WriteBeforeStart);
            }
            let head = if r.head_sent {
                Vec::new()
            } else {
                self.ex.head_started.store(true, SeqCst);
                build_head(&mut r, None, draining)
            };
            let mut n = data.len();
            if r.bodyless {
                n = 0;
            } else if let Some(len) = r.length {
                let room = len.saturating_sub(r.written);
                if n as u64 > room {
                    n = room as usize;
                    r.keep = false;
                }
            }
            r.written += n as u64;
            let (prefix, suffix): (Vec<u8>, &[u8]) = if r.chunked && n > 0 {
                (format!("{n:x}\r\n").into_bytes(), b"\r\n")
            } else {
                (Vec::new(), b"")
            };
            (head, prefix, n, suffix)
        };
        if head.is_empty() && n == 0 {
            return Ok(());
        }
        self.ex
            .send(py, &[&head, &prefix, &data[..n], suffix], true)
    }
}

fn header_text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let s = obj.downcast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let s = s.to_str()?;
    latin1_bytes(s)
        .ok_or_else(|| PyValueError::new_err(format!("{what} {s:?} is not latin-1 (encode it)")))
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.borrow();
        {
            let r = this.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            match exc_info {
                Some(e) if !e.is_none() => {
                    if r.head_sent {
                        let value = e.get_item(1)?;
                        return Err(PyErr::from_value(value));
                    }
                }
                _ => {
                    if r.status.is_some() {
                        return Err(PyAssertionError::new_err(
                            "start_response() called a second time without exc_info",
                        ));
                    }
                }
            }
        }
        let status_b = header_text(status, "the status")?;
        let code = conn::check_status(&String::from_utf8_lossy(&status_b))
            .map_err(|e| PyValueError::new_err(format!("bad status {status}: {e}")))?;
        let list = headers.downcast::<PyList>().map_err(|_| {
            PyTypeError::new_err("response headers must be a list of (name, value) tuples")
        })?;
        let mut out = Vec::with_capacity(list.len());
        let mut length = None;
        let mut keep = true;
        for item in list.iter() {
            let t = item.downcast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {item}"
                ))
            })?;
            if t.len() != 2 {
                return Err(PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {t}"
                )));
            }
            let name = header_text(&t.get_item(0)?, "a header name")?;
            let value = header_text(&t.get_item(1)?, "a header value")?;
            let (n, v) = (
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&value),
            );
            conn::check_field(&n, &v)
                .map_err(|e| PyValueError::new_err(format!("bad response header {n:?}: {e}")))?;
            if conn::is_hop_by_hop(&n) {
                if n.eq_ignore_ascii_case("connection") && v.to_ascii_lowercase().contains("close")
                {
                    keep = false;
                }
                continue;
            }
            if n.eq_ignore_ascii_case("content-length") {
                let l: u64 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|_| v.trim().bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "bad Content-Length {v:?} from the application"
                        ))
                    })?;
                length = Some(l);
            }
            out.push((name, value));
        }
        {
            let mut r = this.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            r.status = Some((code, status_b));
            r.headers = out;
            r.length = length;
            r.keep &= keep;
        }
        slf.getattr(intern!(py, "write"))
    }

    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = body_bytes(data)?;
        self.send(py, bytes.as_bytes(py)).map_err(PyErr::from)
    }
}

/// A body chunk as bytes (bytes, or a copy of a bytearray); TypeError otherwise.
fn body_bytes<'py>(data: &Bound<'py, PyAny>) -> PyResult<Py<PyBytes>> {
    if let Ok(b) = data.downcast::<PyBytes>() {
        return Ok(b.clone().unbind());
    }
    if let Ok(b) = data.downcast::<pyo3::types::PyByteArray>() {
        return Ok(PyBytes::new(data.py(), &b.to_vec()).unbind());
    }
    Err(PyTypeError::new_err(format!(
        "WSGI body chunks must be bytes, not {}",
        data.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    )))
}

/// `wsgi.file_wrapper`: iterates over a file in blocks; the server sends a regular file it
/// wraps with `sendfile`.
#[pyclass(module = "_uwsgid", name = "FileWrapper")]
struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr(intern!(py, "close"))? {
            f.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The scoreboard

/// The master's scoreboard, mapped here so that stats show this worker's requests, avg_rt,
/// tx, busy/idle and the request in flight, as for built-in workers. The memfd is found among
/// the master's fds (`/proc/PPID/fd`, a link to `/memfd:uwsgid-scoreboard`); the cell is the
/// one the master reset with our pid, looked up until the master has adopted us (a forked
/// worker announces itself just before it serves).
struct Board {
    board: Scoreboard,
    cell: AtomicUsize,
    next_look: Mutex<()>,
    pid: i32,
    /// The requests in flight on our threads (start, request line): the cell shows the
    /// oldest, so that `--harakiri` judges the request that has run longest, not how long
    /// some thread has been busy (under steady load one always is).
    flight: Mutex<Vec<(u64, String)>>,
}

// SAFETY: the mapping is made of atomics only and lives as long as the Scoreboard; sharing it
// between threads is what it is for (the master and the workers share it across processes).
unsafe impl Send for Board {}
// SAFETY: as above: every access goes through atomics.
unsafe impl Sync for Board {}

impl Board {
    fn open() -> Option<Board> {
        // SAFETY: getppid has no preconditions.
        let master = unsafe { libc::getppid() };
        for entry in std::fs::read_dir(format!("/proc/{master}/fd"))
            .ok()?
            .flatten()
        {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if !target
                .to_string_lossy()
                .starts_with("/memfd:uwsgid-scoreboard")
            {
                continue;
            }
            let path = std::ffi::CString::new(entry.path().as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: opening a path we built; the new fd is ours.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return None;
            }
            // SAFETY: fd was just opened by us and is owned by nobody else.
            let board = Scoreboard::inherit(unsafe { OwnedFd::from_raw_fd(fd) }).ok()?;
            return Some(Board {
                board,
                cell: AtomicUsize::new(usize::MAX),
                next_look: Mutex::new(()),
                // SAFETY: getpid has no preconditions.
                pid: unsafe { libc::getpid() },
                flight: Mutex::new(Vec::new()),
            });
        }
        None
    }

    /// Our cell, once the master gave us one.
    fn cell(&self) -> Option<&Cell> {
        let i = self.cell.load(Relaxed);
        if i != usize::MAX {
            return Some(self.board.cell(i));
        }
        // Until the master has adopted us (it resets a cell with our pid when our first
        // notification arrives): a scan of the cells' pids, a few microseconds.
        let _one_at_a_time = self.next_look.try_lock().ok()?;
        let i = (0..scoreboard::CAPACITY)
            .find(|&i| self.board.cell(i).pid.load(Relaxed) == self.pid)?;
        self.cell.store(i, Relaxed);
        let cell = self.board.cell(i);
        if cell.in_flight.load(Relaxed) == 0 {
            cell.state.store(scoreboard::IDLE, Relaxed);
        }
        Some(cell)
    }

    /// Count a request in flight: its start (for [`Board::end`]), or `None` if there is no
    /// cell yet (then no `end`).
    fn begin(&self, line: &str) -> Option<u64> {
        let cell = self.cell()?;
        let start = now_us();
        let mut flight = self.flight.lock().unwrap_or_else(|p| p.into_inner());
        flight.push((start, line.to_string()));
        if cell.in_flight.fetch_add(1, Relaxed) == 0 {
            cell.request_start_us.store(start, Relaxed);
            cell.state.store(scoreboard::BUSY, Relaxed);
            cell.set_request(line.as_bytes());
        }
        Some(start)
    }

    /// The request begun at `start` ended; the cell shows the oldest one left.
    fn end(&self, start: u64, bytes: u64, micros: u64) {
        let i = self.cell.load(Relaxed);
        if i == usize::MAX {
            return;
        }
        let cell = self.board.cell(i);
        cell.finish_request(bytes, micros);
        let mut flight = self.flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = flight.iter().position(|(s, _)| *s == start) {
            flight.swap_remove(pos);
        }
        if cell.in_flight.fetch_sub(1, Relaxed) == 1 {
            cell.request_start_us.store(0, Relaxed);
            cell.state.store(scoreboard::IDLE, Relaxed);
        } else if let Some((oldest, line)) = flight.iter().min_by_key(|(s, _)| *s) {
            cell.request_start_us.store(*oldest, Relaxed);
            cell.set_request(line.as_bytes());
        }
    }

    fn bad_request(&self) {
        if let Some(cell) = self.cell() {
            cell.bad_requests.fetch_add(1, Relaxed);
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

// ---------------------------------------------------------------------------------------
// The server

struct Conn {
    fd: OwnedFd,
    buf: Vec<u8>,
    head_started: Option<Instant>,
    last: Instant,
    /// When it was accepted, while it has not sent its first request (the drain rule keeps
    /// its head deadline, `uwsgid::worker::idle_deadline`).
    fresh: Option<Instant>,
    peer: (String, String),
    local: (String, String),
    /// Accepted on a uwsgi listener: one packet, its body, one answer, closed.
    uwsgi: bool,
}

struct Slot {
    gen: u32,
    live: bool,
    conn: Option<Box<Conn>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
}

struct Engine {
    app: Py<PyAny>,
    errors: Py<PyAny>,
    file_wrapper: Py<PyAny>,
    /// Two epoll sets: the threads wait in `epolls[active]`. With `--auto-snapshot` the other
    /// one, the standby, holds a registration of each listener that nobody waits in, made
    /// when this worker started: a resumed snapshot makes it the active set and so takes new
    /// connections before the workers it replaces (see [`Engine::resume_accepting`]).
    epolls: [OwnedFd; 2],
    active: AtomicUsize,
    /// Per set, an eventfd made readable when the threads leave that set: it wakes each
    /// thread still waiting in it, which then waits in the active one.
    kicks: [OwnedFd; 2],
    /// The standby set holds the listeners.
    standby: AtomicBool,
    /// When a rollback's SIGCONT last made the standby set the active one.
    resumed_at: Mutex<Option<Instant>>,
    signals: OwnedFd,
    listeners: Mutex<Vec<(OwnedFd, (String, String))>>,
    accepting: Mutex<bool>,
    /// Accepts are yielded to the other workers until the timer fires (see `yield_accepts`).
    accept_timer: OwnedFd,
    accept_paused: AtomicBool,
    /// Other workers share the listeners (`UWSGID_PROCESSES` > 1).
    peers: bool,
    table: Mutex<Table>,
    draining: Arc<AtomicBool>,
    /// Since when `draining` is set (draining or parking): the sweep's idle rule counts from it.
    drain_since: Mutex<Option<Instant>>,
    /// Told to park (`--auto-snapshot`): draining without closing the listeners, then
    /// stopped (SIGSTOP) once idle, until the master's SIGCONT.
    /// [`PARK_NONE`], [`PARK_PARKING`] or [`PARK_STOPPING`]; `draining` changes with it
    /// under this lock.
    park: Mutex<u8>,
    /// Threads between accept4 and the connection's entry in the table.
    in_accept: AtomicUsize,
    /// Threads acting on events epoll returned (a listener's among them, maybe).
    in_events: AtomicUsize,
    /// A parking worker is about to stop itself: accept nothing more.
    stopping: AtomicBool,
    /// The drain has taken what was pending and closed our listener copies: from now on
    /// nothing new can be accepted, so once idle the worker may exit (see `maybe_sweep`).
    drain_closed: AtomicBool,
    drain_reason: Mutex<String>,
    exit: AtomicBool,
    busy: AtomicUsize,
    next_sweep: Mutex<Instant>,
    threads: usize,
    max_conns: usize,
    keepalive: Duration,
    timeout: Duration,
    log_requests: bool,
    board: Option<Board>,
    accept_batch: usize,
    /// Per listener (by index): speaks the uwsgi protocol (named `uwsgi=ADDR`).
    uwsgi_listeners: Vec<bool>,
    /// The largest uwsgi vars block (`--buffer-size`, uWSGI's 4096 by default).
    uwsgi_buffer: usize,
    /// TCP peers besides loopback that may speak uwsgi (`--uwsgi-allow`).
    uwsgi_allow: Vec<(std::net::IpAddr, u8)>,
    /// The longest HTTP request head (`--buffer-size` when given, else [`MAX_HEAD`]).
    head_max: usize,
    /// `--limit-post`: the largest request body.
    limit_post: Option<u64>,
}

/// `_uwsgid.Server(app, listeners, args)`: the runner's `Server`, natively.
#[pyclass(module = "_uwsgid", name = "Server")]
pub struct Server {
    app: Py<PyAny>,
    listeners: Mutex<Vec<(RawFd, String)>>,
    threads: usize,
    max_conns: usize,
    keepalive: f64,
    timeout: f64,
    log_requests: bool,
    buffer_size: Option<usize>,
    limit_post: Option<u64>,
    #[pyo3(get, set)]
    ready_extra: String,
}

#[pymethods]
impl Server {
    #[new]
    fn new(
        app: Py<PyAny>,
        listeners: &Bound<'_, PyAny>,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let mut fds = Vec::new();
        for item in listeners.try_iter()? {
            let item = item?;
            let sock = item.get_item(0)?;
            let name: String = item.get_item(1)?.extract()?;
            // The socket object gives its fd up: the server owns it from now on.
            let fd: RawFd = sock.call_method0("detach")?.extract()?;
            fds.push((fd, name));
        }
        let get = |k: &str| args.getattr(k);
        Ok(Server {
            app,
            listeners: Mutex::new(fds),
            threads: get("threads")?.extract::<usize>()?.max(1),
            max_conns: get("max_connections")?.extract::<usize>()?.max(1),
            keepalive: get("keepalive_timeout")?.extract()?,
            timeout: get("socket_timeout")?.extract()?,
            log_requests: get("log_requests")?.extract()?,
            buffer_size: get("buffer_size")?.extract()?,
            limit_post: get("limit_post")?.extract()?,
            ready_extra: String::new(),
        })
    }

    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let faulthandler = py.import("faulthandler")?;
        faulthandler.call_method0("enable")?;
        let kw = PyDict::new(py);
        kw.set_item("all_threads", true)?;
        faulthandler.call_method("register", (libc::SIGUSR2,), Some(&kw))?;
        let sys = py.import("sys")?;
        let errors = sys.getattr("stderr")?.unbind();
        let file_wrapper = py.get_type::<FileWrapper>().into_any().unbind();
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|p| p.into_inner()));
        let engine = Engine::new(
            self.app.clone_ref(py),
            errors,
            file_wrapper,
            listeners,
            self,
        )
        .map_err(|e| PyOSError::new_err(format!("cannot start serving: {e}")))?;
        let names: Vec<String> = engine
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, (h, p))| {
                if p.is_empty() {
                    h.clone()
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect();
        let names = names.join(", ");
        if let Ok(addr) = std::env::var("NOTIFY_SOCKET") {
            let msg = format!(
                "READY=1\nSTATUS=serving on {names} with {} threads{}",
                self.threads, self.ready_extra
            );
            if let Err(e) = uwsgid::notify::send(&addr, msg.as_bytes()) {
                log(&format!("cannot notify {addr}: {e}"));
            }
        }
        log(&format!(
            "ready: serving on {names} with {} threads (native)",
            self.threads
        ));
        // A forked worker is adopted (its cell reset with our pid) when the master reads the
        // announcement it sent before READY=1: nothing is accepted before that (briefly
        // waited for), so that every request is counted from the first. READY=1 is not held
        // back by this wait: the master reads both datagrams in order, and the listeners'
        // backlog keeps what arrives meanwhile.
        if let Some(b) = &engine.board {
            for _ in 0..2000 {
                if b.cell().is_some() {
                    break;
                }
                py.allow_threads(|| std::thread::sleep(Duration::from_micros(250)));
            }
        }
        engine.set_accepting(true);
        let engine = Arc::new(engine);
        py.allow_threads(|| {
            let mut handles = Vec::new();
            for i in 1..engine.threads {
                let e = engine.clone();
                match std::thread::Builder::new()
                    .name(format!("request-{i}"))
                    // One Python thread state for the thread's whole life (taken here, the GIL
                    // released at once): without it every request would make and drop one,
                    // and threading.local data (a framework's per-thread connections, caches)
                    // would vanish after each request.
                    .spawn(move || Python::with_gil(|py| py.allow_threads(|| e.thread_loop())))
                {
                    Ok(h) => handles.push(h),
                    Err(err) => log(&format!("cannot start thread {i}: {err}")),
                }
            }
            engine.thread_loop();
            for h in handles {
                let _ = h.join();
            }
        });
        let reason = engine
            .drain_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        log(&format!("drained after {reason}, exiting"));
        Ok(())
    }
}

/// The smallest head limit taken from `--buffer-size` (uwsgid refuses less at start-up).
const HEADER_MIN: usize = 64;

/// `UWSGID_UWSGI_ALLOW` (`IP/BITS,IP/BITS`, as uwsgid writes it); unreadable parts are skipped.
fn parse_allow(text: &str) -> Vec<(std::net::IpAddr, u8)> {
    text.split(',')
        .filter_map(|n| {
            let (ip, bits) = n.trim().split_once('/')?;
            Some((ip.parse().ok()?, bits.parse().ok()?))
        })
        .collect()
}

fn sockname(fd: RawFd, peer: bool) -> (String, String) {
    // SAFETY: sockaddr_storage is plain data; getsockname/getpeername fill at most len bytes.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = &mut ss as *mut _ as *mut libc::sockaddr;
        let r = if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        };
        if r < 0 {
            return (String::new(), String::new());
        }
        addr_text(&ss)
    }
}

fn addr_text(ss: &libc::sockaddr_storage) -> (String, String) {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            (ip.to_string(), u16::from_be(a.sin_port).to_string())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            (ip.to_string(), u16::from_be(a.sin6_port).to_string())
        }
        libc::AF_UNIX => {
            // SAFETY: the family says this is a sockaddr_un.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_un) };
            let path: Vec<u8> = a
                .sun_path
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            (String::from_utf8_lossy(&path).into_owned(), String::new())
        }
        _ => (String::new(), String::new()),
    }
}

/// What [`Engine::judge`] found at the start of a connection's buffer.
enum Judged {
    Incomplete,
    /// Refuse with this status (then close), and why.
    Invalid(u16, String),
    Ready,
}

/// One request, as the server needs it (the environ is built beside it).
struct Prepared {
    /// The response's HTTP minor version logic (0: no chunking, the end is the close).
    minor: u8,
    /// The request's version, for the log.
    log_minor: u8,
    head_only: bool,
    expect: bool,
    framing: Framing,
    keep_alive: bool,
    line: String,
    head_len: usize,
}

/// After an early refusal of a request whose body may be on its way (413): read and drop
/// what arrives for a moment (at most [`MAX_DISCARD`] bytes, 1 s), so that closing does not
/// reset the connection before the client has read the answer.
fn linger(fd: RawFd) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut dropped = 0u64;
    let mut buf = Vec::with_capacity(RECV);
    while dropped <= MAX_DISCARD {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        buf.clear();
        match recv_wait(fd, &mut buf, left) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n as u64,
        }
    }
}

enum After {
    /// Keep the connection: wait for its next bytes.
    Rearm,
    Close,
}

impl Engine {
    fn new(
        app: Py<PyAny>,
        errors: Py<PyAny>,
        file_wrapper: Py<PyAny>,
        listeners: Vec<(RawFd, String)>,
        s: &Server,
    ) -> io::Result<Engine> {
        // SAFETY: signal-set manipulation on a local set, then blocking it in this thread
        // (threads started later inherit the mask); the signalfd is ours.
        let signals = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGQUIT,
                uwsgid::worker::PARK_SIGNAL,
            ] {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            OwnedFd::from_raw_fd(cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
            ))?)
        };
        // SAFETY: a new timerfd we own.
        let accept_timer = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?)
        };
        let new_set = || -> io::Result<(OwnedFd, OwnedFd)> {
            // SAFETY: a new epoll fd and a new eventfd we own.
            let (ep, kick) = unsafe {
                (
                    OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?),
                    OwnedFd::from_raw_fd(cvt(libc::eventfd(
                        0,
                        libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
                    ))?),
                )
            };
            let add = |fd: RawFd, events: i32, token: u64| {
                epoll_ctl(
                    ep.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    fd,
                    events as u32,
                    token,
                )
            };
            // Edge-triggered: one thread is woken per signal (`on_signals` reads them all).
            // Level-triggered, the signal stayed ready until read, and epoll woke each of
            // the threads waiting in turn: a stop signal to 16 workers woke 128 threads
            // while the master was still sending them. (Both sets hold the signalfd and
            // the timer: epoll reports neither unless it is readable when harvested.)
            add(
                signals.as_raw_fd(),
                libc::EPOLLIN | libc::EPOLLET,
                SIGNAL_TOKEN,
            )?;
            add(accept_timer.as_raw_fd(), libc::EPOLLIN, ACCEPT_TIMER_TOKEN)?;
            // Level-triggered: once readable, it wakes every thread waiting in this set.
            add(kick.as_raw_fd(), libc::EPOLLIN, KICK_TOKEN)?;
            Ok((ep, kick))
        };
        let (ep0, kick0) = new_set()?;
        let (ep1, kick1) = new_set()?;
        let mut ls = Vec::new();
        let mut uwsgi_listeners = Vec::new();
        for (fd, name) in listeners {
            // SAFETY: the runner's socket gave this fd up to us (detach).
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let local = sockname(fd.as_raw_fd(), false);
            // uwsgid names its uwsgi listeners `uwsgi=ADDR` in LISTEN_FDNAMES.
            uwsgi_listeners.push(name.starts_with("uwsgi="));
            ls.push((fd, local));
        }
        let uwsgi_buffer = s
            .buffer_size
            .or_else(|| {
                std::env::var("UWSGID_BUFFER_SIZE")
                    .ok()
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(uwsgi_proto::DEFAULT_BUFFER_SIZE)
            .clamp(HEADER_MIN, uwsgi_proto::MAX_VARS);
        let uwsgi_allow = parse_allow(&std::env::var("UWSGID_UWSGI_ALLOW").unwrap_or_default());
        let e = Engine {
            app,
            errors,
            file_wrapper,
            epolls: [ep0, ep1],
            active: AtomicUsize::new(0),
            kicks: [kick0, kick1],
            standby: AtomicBool::new(false),
            resumed_at: Mutex::new(None),
            signals,
            listeners: Mutex::new(ls),
            accepting: Mutex::new(false),
            accept_timer,
            accept_paused: AtomicBool::new(false),
            peers: std::env::var("UWSGID_PROCESSES")
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > 1),
            table: Mutex::new(Table::default()),
            draining: Arc::new(AtomicBool::new(false)),
            drain_since: Mutex::new(None),
            park: Mutex::new(PARK_NONE),
            in_accept: AtomicUsize::new(0),
            in_events: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            drain_closed: AtomicBool::new(false),
            drain_reason: Mutex::new(String::new()),
            exit: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            next_sweep: Mutex::new(Instant::now() + SWEEP),
            threads: s.threads,
            max_conns: s.max_conns,
            keepalive: Duration::from_secs_f64(s.keepalive.max(0.001)),
            timeout: Duration::from_secs_f64(s.timeout.max(0.001)),
            log_requests: s.log_requests,
            board: Board::open(),
            accept_batch: ACCEPT_BATCH,
            uwsgi_listeners,
            uwsgi_buffer,
            uwsgi_allow,
            head_max: s.buffer_size.map_or(MAX_HEAD, |b| b.max(HEADER_MIN)),
            limit_post: s.limit_post.filter(|&l| l > 0),
        };
        if let Some(b) = &e.board {
            b.cell();
        }
        // Before any later generation exists (its workers register after us).
        if std::env::var_os("UWSGID_AUTO_SNAPSHOT").is_some_and(|v| v == "1") {
            e.register_standby();
        }
        Ok(e)
    }

    /// The set the threads wait in.
    fn ep(&self) -> RawFd {
        self.epolls[self.active.load(SeqCst)].as_raw_fd()
    }

    /// Register the listeners in the standby set, which nobody waits in: an exclusive
    /// wake-up passes over it (epoll wakes the first registration whose set has a thread
    /// waiting), so it takes nothing, and it keeps this worker's place in each listener's
    /// wait queue, ahead of every worker started after now.
    fn register_standby(&self) {
        let standby = self.epolls[1 - self.active.load(SeqCst)].as_raw_fd();
        let ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let mut ok = !ls.is_empty();
        for (i, (fd, _)) in ls.iter().enumerate() {
            let ev = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
            let token = LISTENER_TOKEN + i as u64;
            if let Err(e) = epoll_ctl(standby, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), ev, token) {
                log(&format!("listener {i}: standby epoll: {e}"));
                ok = false;
            }
        }
        self.standby.store(ok, SeqCst);
    }

    /// Leave the standby set's registrations (a drain: our listener copies close, but the
    /// registrations would live as long as the master's copies).
    fn drop_standby(&self, ls: &[(OwnedFd, (String, String))]) {
        if self.standby.swap(false, SeqCst) {
            let standby = self.epolls[1 - self.active.load(SeqCst)].as_raw_fd();
            for (fd, _) in ls {
                let _ = epoll_ctl(standby, libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
            }
        }
    }

    /// Accept again after a park. With a standby set, it becomes the active one: its
    /// registrations date from this worker's start, so epoll offers each new connection to
    /// us (and the rest of the snapshot) before the generation that replaced us, whose
    /// workers may not have read their stop signal yet (with a registration made now, they
    /// kept answering for milliseconds after our first answer). The threads still waiting
    /// in the old set are moved by its kick; it then becomes the standby for a next park.
    /// Parked workers hold no connection, so no connection is registered in the old set.
    fn resume_accepting(&self) {
        if !self.standby.load(SeqCst) {
            self.set_accepting(true);
            return;
        }
        {
            let mut acc = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
            if *acc || self.draining.load(SeqCst) || self.accept_paused.load(SeqCst) {
                drop(acc);
                self.set_accepting(true);
                return;
            }
            let old = self.active.load(SeqCst);
            let new = 1 - old;
            let mut buf = [0u8; 8];
            let one = 1u64.to_ne_bytes();
            // SAFETY: reading the new set's eventfd counter into an 8-byte buffer (it was
            // kicked when left), adding 1 to the old one's; both are our non-blocking fds.
            unsafe {
                libc::read(self.kicks[new].as_raw_fd(), buf.as_mut_ptr().cast(), 8);
            }
            self.active.store(new, SeqCst);
            *acc = true;
            *self.resumed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            // SAFETY: as above.
            unsafe {
                libc::write(self.kicks[old].as_raw_fd(), one.as_ptr().cast(), 8);
            }
        }
        // A thread not yet moved may take a connection from the new registration in the
        // old set: it accepts and serves it like any other (we accept).
        self.register_standby();
    }

    fn set_accepting(&self, on: bool) {
        let mut acc = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        if *acc == on || (on && (self.draining.load(SeqCst) || self.accept_paused.load(SeqCst))) {
            return;
        }
        let ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (fd, _)) in ls.iter().enumerate() {
            let r = if on {
                epoll_ctl(
                    self.ep(),
                    libc::EPOLL_CTL_ADD,
                    fd.as_raw_fd(),
                    (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
                    LISTENER_TOKEN + i as u64,
                )
            } else {
                epoll_ctl(self.ep(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
            };
            if let Err(e) = r {
                log(&format!("listener {i}: epoll: {e}"));
            }
        }
        *acc = on;
    }

    fn thread_loop(&self) {
        let max = if self.threads == 1 { 64 } else { 1 };
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; max];
        while !self.exit.load(SeqCst) {
            let tick = if self.draining.load(Relaxed) {
                50
            } else {
                SWEEP.as_millis() as i32
            };
            // SAFETY: events is a valid buffer of `max` entries.
            let n = unsafe { libc::epoll_wait(self.ep(), events.as_mut_ptr(), max as i32, tick) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log(&format!("epoll_wait: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            // Counted while this thread acts on what epoll gave it: a park waits for it.
            let busy_events = InAccept::enter(&self.in_events);
            // For a drain read in this batch (`Engine::start_drain`); another thread of
            // ours may hold a listener's wake-up too.
            let woken = self.threads > 1
                || uwsgid::worker::listener_wake_is_ours(
                    events[..n as usize].iter().map(|e| e.u64),
                    |t| (LISTENER_TOKEN..KICK_TOKEN).contains(&t),
                    SIGNAL_TOKEN,
                    n as usize == max,
                );
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token == SIGNAL_TOKEN {
                    self.on_signals(woken);
                } else if token == ACCEPT_TIMER_TOKEN {
                    self.resume_accepts();
                } else if token == KICK_TOKEN {
                    // This set was left: the next wait is in the active one.
                } else if token >= LISTENER_TOKEN {
                    self.accept((token - LISTENER_TOKEN) as usize);
                } else {
                    self.on_conn(token);
                }
            }
            drop(busy_events);
            self.maybe_sweep();
        }
    }

    /// `woken`: a drain takes what waits on the listeners first (see `Engine::start_drain`).
    fn on_signals(&self, woken: bool) {
        loop {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let (n, sig) = unsafe {
                let mut si: libc::signalfd_siginfo = std::mem::zeroed();
                let n = libc::read(
                    self.signals.as_raw_fd(),
                    &mut si as *mut _ as *mut libc::c_void,
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                );
                (n, si.ssi_signo as i32)
            };
            if n <= 0 {
                return;
            }
            match sig {
                libc::SIGINT | libc::SIGQUIT => {
                    // SAFETY: an immediate exit, as a brutal stop asks.
                    unsafe { libc::_exit(128 + sig) }
                }
                uwsgid::worker::PARK_SIGNAL => self.start_park(),
                libc::SIGTERM | libc::SIGHUP => self.start_drain(
                    if sig == libc::SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGHUP"
                    },
                    woken,
                ),
                _ => {}
            }
        }
    }

    /// The master's park signal: stop accepting (the listeners stay open), answer with
    /// `Connection: close`, and once idle stop ourselves ([`Engine::park`]).
    fn start_park(&self) {
        {
            let mut park = self.park.lock().unwrap_or_else(|p| p.into_inner());
            if self.draining.swap(true, SeqCst) {
                return;
            }
            *park = PARK_PARKING;
        }
        self.mark_drain_start();
        let mut acc = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        if *acc {
            let ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for (fd, _) in ls.iter() {
                let _ = epoll_ctl(self.ep(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
            }
            *acc = false;
        }
        drop(acc);
        // The listeners stay ours while parked: what is pending on them is served before we
        // stop (a probe of the rollback bench waited out its 2 s timeout without this).
        let listeners: Vec<(RawFd, (String, String))> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(fd, local)| (fd.as_raw_fd(), local.clone()))
            .collect();
        self.accept_pending(&listeners);
        *self.next_sweep.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Idle while parking: stop (every thread) until SIGCONT, then accept again unless a
    /// stop signal turned the park into a drain meanwhile.
    fn park(&self) {
        {
            let mut park = self.park.lock().unwrap_or_else(|p| p.into_inner());
            if *park != PARK_PARKING {
                return;
            }
            // `stopping` first, then the counts (accept reads them the other way round): a
            // thread that got a connection is seen, or sees `stopping` and leaves it queued.
            self.stopping.store(true, SeqCst);
            let idle = self.in_accept.load(SeqCst) == 0
                && self.in_events.load(SeqCst) == 0
                && self.busy.load(SeqCst) == 0
                && self.table.lock().unwrap_or_else(|p| p.into_inner()).live == 0;
            if !idle {
                self.stopping.store(false, SeqCst);
                return;
            }
            *park = PARK_STOPPING;
        }
        // To this thread (`raise` is `tgkill` on ourselves), not to the process: this thread
        // then takes the stop on its way out of the call and sleeps until the SIGCONT. With
        // `kill(getpid())` the kernel handed the stop to the main thread: this one came back
        // from `kill` still running, took the lines below for the resume (accepting again,
        // no longer draining), and a thread accepted and read a connection before the stop
        // reached it: that client waited unanswered as long as the snapshot stayed parked.
        // Woken by the SIGCONT, we wait for the CPU instead of preempting the master
        // while it wakes the rest of the snapshot (`uwsgid::sys::set_batch`).
        uwsgid::sys::set_batch_all(true);
        // SAFETY: raise only sends SIGSTOP to this thread of our own process.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
        uwsgid::sys::set_batch_all(false);
        let resumed = {
            let mut park = self.park.lock().unwrap_or_else(|p| p.into_inner());
            self.stopping.store(false, SeqCst);
            let r = *park == PARK_STOPPING;
            if r {
                *park = PARK_NONE;
                self.draining.store(false, SeqCst);
                *self.drain_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            r
        };
        if resumed {
            self.resume_accepting();
            // The master retires our slot's current worker once it hears this.
            if let Ok(addr) = std::env::var("NOTIFY_SOCKET") {
                let _ = uwsgid::notify::send(&addr, b"READY=1\nSTATUS=resumed by a rollback");
            }
        }
    }

    /// The drain (or park) starts now, unless it already had: the idle connections' grace
    /// counts from here (`maybe_sweep`).
    fn mark_drain_start(&self) {
        self.drain_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// `woken`: epoll may have given us a listener's wake-up that no other worker got; only
    /// then is what waits in the backlog taken and served here (else a connection queued for
    /// a restored worker of a rollback, woken and not yet running, went to this retiring one).
    fn start_drain(&self, why: &str, woken: bool) {
        // A stop while parking (or parked) turns the park into a drain.
        {
            let mut park = self.park.lock().unwrap_or_else(|p| p.into_inner());
            let was_parking = std::mem::replace(&mut *park, PARK_NONE) != PARK_NONE;
            if self.draining.swap(true, SeqCst) && !was_parking {
                return;
            }
        }
        self.mark_drain_start();
        *self.drain_reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        let taken = {
            let mut acc = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
            let mut ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            if *acc {
                for (fd, _) in ls.iter() {
                    let _ = epoll_ctl(self.ep(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
                }
                *acc = false;
            }
            self.drop_standby(&ls);
            // Our copies only (closed below): the master and other workers keep theirs.
            std::mem::take(&mut *ls)
        };
        let pending: Vec<(RawFd, (String, String))> = taken
            .iter()
            .map(|(fd, local)| (fd.as_raw_fd(), local.clone()))
            .collect();
        if woken {
            self.accept_pending(&pending);
        }
        drop(taken);
        if let Ok(addr) = std::env::var("NOTIFY_SOCKET") {
            let _ = uwsgid::notify::send(
                &addr,
                format!("STOPPING=1\nSTATUS=draining after {why}").as_bytes(),
            );
        }
        log(&format!(
            "{why}: draining, {} requests in flight",
            self.busy.load(SeqCst)
        ));
        // Only now may an idle worker exit: until here this thread could still accept (and
        // another thread's sweep, seeing `draining` and nothing in the table, exited under
        // the connection this one had just taken: its client read EOF, unanswered).
        self.drain_closed.store(true, SeqCst);
        *self.next_sweep.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Take and serve what waits on `listeners` (fd, address), at most [`DRAIN_ACCEPT`] each,
    /// right after they left our epoll set (a drain or a park). EPOLLEXCLUSIVE wakes one
    /// worker per new connection: if the wake-up went to us just before we stopped
    /// accepting, no other worker is woken for that connection, and with every client
    /// waiting on one it would stay in the backlog. Served like the requests in flight
    /// (answered with `Connection: close`).
    ///
    /// What waits is accepted first, then served: accepting one, serving it, then looking
    /// again took, from a client that reconnects at once, each next connection it made
    /// while we served (a rollback's current worker kept answering with the replaced code
    /// long after the snapshot was back).
    fn accept_pending(&self, listeners: &[(RawFd, (String, String))]) {
        for (i, (fd, local)) in listeners.iter().enumerate() {
            let uwsgi = self.uwsgi_listeners.get(i).copied().unwrap_or(false);
            // Held until every connection taken here is in the table (see `accept_from`).
            let held = InAccept::enter(&self.in_accept);
            let mut taken = Vec::new();
            while taken.len() < DRAIN_ACCEPT {
                match self.accept_one(*fd) {
                    Some(c) => taken.push(c),
                    None => break,
                }
            }
            for (cfd, ss) in taken {
                self.take(cfd, ss, local, uwsgi, InAccept::enter(&self.in_accept));
            }
            drop(held);
        }
    }

    fn accept(&self, index: usize) {
        // One connection per wake-up: the listener stays readable while more wait, and the
        // next one goes to whichever worker (or thread) waits first. Taking many at once let
        // one worker grab a burst of keep-alive clients while another sat idle.
        let uwsgi = self.uwsgi_listeners.get(index).copied().unwrap_or(false);
        // Counted before the listener's fd is read: a drain that closes the listeners then
        // waits for this thread (its accept4 may still take a connection from them).
        let _reading = InAccept::enter(&self.in_accept);
        for _ in 0..self.accept_batch {
            let lfd = {
                let ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
                match ls.get(index) {
                    Some((fd, local)) => (fd.as_raw_fd(), local.clone()),
                    None => return,
                }
            };
            if !self.accept_from(lfd.0, &lfd.1, uwsgi) {
                return;
            }
            self.yield_accepts();
        }
    }

    /// Accept one connection on listener `lfd` (its address `local`) and serve what it has;
    /// false when there was none to take (or no room), so the caller stops.
    fn accept_from(&self, lfd: RawFd, local: &(String, String), uwsgi: bool) -> bool {
        // Counted from before accept4 until the connection is in the table, so that a
        // drain or park never ends with a connection accepted but not yet seen.
        let guard = InAccept::enter(&self.in_accept);
        match self.accept_one(lfd) {
            Some((fd, ss)) => {
                self.take(fd, ss, local, uwsgi, guard);
                true
            }
            None => false,
        }
    }

    /// One accept4 on `lfd` (the caller holds an [`InAccept`]); `None` when there was none
    /// to take, or no room. While parking, a connection epoll handed us before the
    /// listeners left our set is still accepted and served (its wakeup went to us alone);
    /// only the instant the process stops itself refuses it.
    fn accept_one(&self, lfd: RawFd) -> Option<(OwnedFd, libc::sockaddr_storage)> {
        {
            if self.stopping.load(SeqCst) {
                return None;
            }
            if self.table.lock().unwrap_or_else(|p| p.into_inner()).live >= self.max_conns {
                self.set_accepting(false);
                return None;
            }
            // SAFETY: sockaddr_storage is plain data; accept4 returns a new fd we own.
            let (fd, ss) = unsafe {
                let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                let fd = libc::accept4(
                    lfd,
                    &mut ss as *mut _ as *mut libc::sockaddr,
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                );
                (fd, ss)
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    log(&format!("accept: {e}"));
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                return None;
            }
            // SAFETY: fd was just returned by accept4.
            Some((unsafe { OwnedFd::from_raw_fd(fd) }, ss))
        }
    }

    /// A connection `accept_one` took: into the table (then `guard` is dropped), and served
    /// at once when its request is there.
    fn take(
        &self,
        fd: OwnedFd,
        ss: libc::sockaddr_storage,
        local: &(String, String),
        uwsgi: bool,
        guard: InAccept<'_>,
    ) {
        {
            let peer = addr_text(&ss);
            if uwsgi && matches!(ss.ss_family as i32, libc::AF_INET | libc::AF_INET6) {
                // The uwsgi protocol has no authentication: TCP peers other than loopback
                // only when --uwsgi-allow names them (a Unix socket is guarded by its mode).
                let allowed = peer
                    .0
                    .parse()
                    .is_ok_and(|ip| uwsgi_proto::peer_allowed(ip, &self.uwsgi_allow));
                if !allowed {
                    log(&format!(
                        "uwsgi: refused a connection from {}: only loopback peers may speak \
                         uwsgi unless --uwsgi-allow names them",
                        peer.0
                    ));
                    return;
                }
            }
            // TCP_NODELAY comes from the listener (uwsgid's `listener::finish`).
            let raw = fd.as_raw_fd();
            let conn = Box::new(Conn {
                fd,
                buf: Vec::new(),
                head_started: None,
                last: Instant::now(),
                fresh: Some(Instant::now()),
                peer,
                local: local.clone(),
                uwsgi,
            });
            // A new connection is served at once by the accepting thread when it has bytes:
            // often the request is already there.
            let token = {
                let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
                let idx = match t.free.pop() {
                    Some(i) => i,
                    None => {
                        t.slots.push(Slot {
                            gen: 0,
                            live: false,
                            conn: None,
                        });
                        t.slots.len() - 1
                    }
                };
                t.live += 1;
                let s = &mut t.slots[idx];
                s.live = true;
                s.gen = s.gen.wrapping_add(1);
                (idx as u64) | ((s.gen as u64) << 32)
            };
            drop(guard);
            let mut conn = conn;
            match self.serve_conn(&mut conn) {
                After::Close => self.release(token, None),
                After::Rearm => {
                    self.release(token, Some(conn));
                    let ev = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
                    if epoll_ctl(self.ep(), libc::EPOLL_CTL_ADD, raw, ev, token).is_err() {
                        self.close_token(token);
                    }
                }
            }
        }
    }

    /// Let the other workers take the next connections for a moment when this one already
    /// holds several. With `EPOLLEXCLUSIVE` a connection wakes the first worker waiting on
    /// the listener, and a worker that is running finds the listener still readable: one
    /// worker could take most of a burst of keep-alive clients (29 of 32 was seen with 2
    /// workers on a loaded machine) and answer them 10x slower than the other. So a worker
    /// that keeps `k` connections after an accept takes its listeners out of its epoll set
    /// for `k x` [`YIELD_PER_CONN`] (at most [`YIELD_MAX`]): arrivals meanwhile wake the
    /// others, whatever is still queued after the pause is taken here, and the worker is
    /// put back at the end of the listener's wait queue. A connection answered and closed
    /// at once (`Connection: close`) leaves nothing held: no pause.
    fn yield_accepts(&self) {
        if !self.peers || self.draining.load(SeqCst) {
            return;
        }
        // Not while a rollback's replaced workers may still wait: a yield leaves the
        // listeners and registers them again, behind those workers in the wait queues, which
        // then took the connections (`resume_accepting`).
        let resumed = *self.resumed_at.lock().unwrap_or_else(|p| p.into_inner());
        if resumed.is_some_and(|t| t.elapsed() < NO_YIELD_AFTER_RESUME) {
            return;
        }
        let held = self.table.lock().unwrap_or_else(|p| p.into_inner()).live;
        if held == 0 {
            return;
        }
        let pause = (YIELD_PER_CONN * held as u32).min(YIELD_MAX);
        if self.accept_paused.swap(true, SeqCst) {
            return;
        }
        self.set_accepting(false);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: pause.as_nanos() as libc::c_long,
            },
        };
        // SAFETY: arming our timerfd with a valid itimerspec.
        let r = unsafe {
            libc::timerfd_settime(
                self.accept_timer.as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.resume_accepts();
        }
    }

    /// The accept pause is over: take the listeners back (unless draining or full).
    fn resume_accepts(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading the 8-byte expiration count of our non-blocking timerfd.
        unsafe {
            libc::read(
                self.accept_timer.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                8,
            )
        };
        self.accept_paused.store(false, SeqCst);
        if self.table.lock().unwrap_or_else(|p| p.into_inner()).live < self.max_conns {
            self.set_accepting(true);
        }
    }

    /// Put a connection back into its slot (owned by nobody), or free the slot if `None`.
    fn release(&self, token: u64, conn: Option<Box<Conn>>) {
        let idx = (token & 0xffff_ffff) as usize;
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match conn {
            Some(c) => t.slots[idx].conn = Some(c),
            None => {
                let s = &mut t.slots[idx];
                s.live = false;
                s.conn = None;
                s.gen = s.gen.wrapping_add(1);
                t.live -= 1;
                t.free.push(idx);
                drop(t);
                if !self.draining.load(Relaxed) {
                    self.set_accepting(true);
                }
            }
        }
    }

    /// Close the connection of `token` if nobody owns it now.
    fn close_token(&self, token: u64) {
        let idx = (token & 0xffff_ffff) as usize;
        let gen = (token >> 32) as u32;
        let conn = {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            match t.slots.get_mut(idx) {
                Some(s) if s.live && s.gen == gen && s.conn.is_some() => s.conn.take(),
                _ => None,
            }
        };
        if conn.is_some() {
            self.release(token, None);
        }
    }

    fn on_conn(&self, token: u64) {
        let idx = (token & 0xffff_ffff) as usize;
        let gen = (token >> 32) as u32;
        let conn = {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            match t.slots.get_mut(idx) {
                Some(s) if s.live && s.gen == gen => s.conn.take(),
                _ => None,
            }
        };
        let Some(mut conn) = conn else { return };
        let raw = conn.fd.as_raw_fd();
        match self.serve_conn(&mut conn) {
            After::Close => self.release(token, None),
            After::Rearm => {
                self.release(token, Some(conn));
                let ev = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
                if epoll_ctl(self.ep(), libc::EPOLL_CTL_MOD, raw, ev, token).is_err() {
                    self.close_token(token);
                }
            }
        }
    }

    /// Read what the connection has and serve every complete request in it.
    fn serve_conn(&self, conn: &mut Conn) -> After {
        let fd = conn.fd.as_raw_fd();
        let mut eof = false;
        loop {
            if conn.buf.len() > MAX_HEAD + RECV {
                break;
            }
            match recv_some(fd, &mut conn.buf, RECV) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.last = Instant::now();
                    if conn.head_started.is_none() {
                        conn.head_started = Some(conn.last);
                    }
                    if n < RECV {
                        break; // the socket is drained: spare the read that says EAGAIN
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return After::Close,
            }
        }
        loop {
            if conn.buf.is_empty() {
                conn.head_started = None;
                return if eof { After::Close } else { After::Rearm };
            }
            match self.judge(conn) {
                Judged::Incomplete => {
                    if eof && conn.uwsgi {
                        log(&format!(
                            "{}:{} uwsgi packet refused: truncated, the peer closed after {} bytes",
                            conn.peer.0,
                            conn.peer.1,
                            conn.buf.len()
                        ));
                    }
                    return if eof { After::Close } else { After::Rearm };
                }
                Judged::Invalid(status, why) => {
                    if let Some(b) = &self.board {
                        b.bad_request();
                    }
                    if conn.uwsgi || status == 413 || self.log_requests {
                        let what = if conn.uwsgi {
                            "uwsgi packet"
                        } else {
                            "request"
                        };
                        log(&format!(
                            "{}:{} {what} refused ({status}): {why}",
                            conn.peer.0, conn.peer.1
                        ));
                    }
                    let _ = send_all(fd, &[&simple_response(status, &why)], self.timeout);
                    // SAFETY: half-close, so the client reads the answer before the FIN.
                    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                    if status == 413 {
                        linger(fd);
                    }
                    return After::Close;
                }
                Judged::Ready => {
                    conn.fresh = None;
                    self.busy.fetch_add(1, SeqCst);
                    let keep = self.serve_request(conn);
                    self.busy.fetch_sub(1, SeqCst);
                    conn.last = Instant::now();
                    conn.head_started = (!conn.buf.is_empty()).then_some(conn.last);
                    if !keep || self.draining.load(SeqCst) && conn.buf.is_empty() {
                        if keep {
                            // A keep-alive answer while draining: the client may be sending
                            // its next request; it is served (with Connection: close) if it
                            // comes within uwsgid::worker::DRAIN_GRACE, by the sweep's rules.
                            return After::Rearm;
                        }
                        return After::Close;
                    }
                    if eof && conn.buf.is_empty() {
                        return After::Close;
                    }
                }
            }
        }
    }

    /// What the bytes at the start of `conn.buf` are: an HTTP head or a uwsgi packet, judged
    /// by the shared parsers ([`conn::parse_head`], [`uwsgi_proto::parse`] and
    /// [`uwsgi_proto::Packet::request`]), then `--limit-post` on a declared length.
    fn judge(&self, conn: &Conn) -> Judged {
        let length = if conn.uwsgi {
            match uwsgi_proto::parse(&conn.buf, self.uwsgi_buffer) {
                uwsgi_proto::Parse::Incomplete => return Judged::Incomplete,
                uwsgi_proto::Parse::Invalid(status, why) => {
                    return Judged::Invalid(status, why.to_string())
                }
                uwsgi_proto::Parse::Complete(p) => match p.request() {
                    Ok(r) => r.content_length as u64,
                    Err((status, why)) => return Judged::Invalid(status, why.to_string()),
                },
            }
        } else {
            match conn::parse_head(&conn.buf, self.head_max) {
                HeadParse::Incomplete => return Judged::Incomplete,
                HeadParse::Invalid(status, why) => return Judged::Invalid(status, why.to_string()),
                HeadParse::Complete(h) => match h.framing {
                    Framing::Length(n) => n,
                    Framing::Chunked => 0, // judged while it is read (Io::fill)
                },
            }
        };
        match self.limit_post {
            Some(limit) if length > limit => Judged::Invalid(
                413,
                format!("request body of {length} bytes is larger than --limit-post {limit}"),
            ),
            _ => Judged::Ready,
        }
    }

    /// The request at the start of `conn.buf` (judged [`Judged::Ready`]) and its environ.
    fn prepare<'py>(
        &self,
        py: Python<'py>,
        conn: &Conn,
    ) -> PyResult<Option<(Prepared, Bound<'py, PyDict>)>> {
        if conn.uwsgi {
            let uwsgi_proto::Parse::Complete(p) = uwsgi_proto::parse(&conn.buf, self.uwsgi_buffer)
            else {
                return Ok(None);
            };
            let Ok(req) = p.request() else {
                return Ok(None);
            };
            let environ = self.environ_uwsgi(py, conn, &p, &req)?;
            return Ok(Some((
                Prepared {
                    // The answer ends with the connection: no chunking, `Connection: close`.
                    minor: 0,
                    log_minor: req.minor,
                    head_only: req.method == "HEAD",
                    // nginx answers `Expect` itself; a uwsgi peer never waits for 100.
                    expect: false,
                    framing: Framing::Length(req.content_length as u64),
                    keep_alive: false,
                    line: format!("{} {}", req.method, req.target),
                    head_len: req.head_len,
                },
                environ,
            )));
        }
        let HeadParse::Complete(head) = conn::parse_head(&conn.buf, self.head_max) else {
            return Ok(None);
        };
        let environ = self.environ(py, conn, &head)?;
        Ok(Some((
            Prepared {
                minor: head.minor,
                log_minor: head.minor,
                head_only: head.method == "HEAD",
                expect: head.expect_continue,
                framing: head.framing,
                keep_alive: head.keep_alive,
                line: format!("{} {}", head.method, head.target),
                head_len: head.head_len,
            },
            environ,
        )))
    }

    /// Run the application for the complete head at the start of `conn.buf`; true if the
    /// connection may carry another request.
    fn serve_request(&self, conn: &mut Conn) -> bool {
        let started = Instant::now();
        let uwsgi = conn.uwsgi;
        Python::with_gil(|py| {
            let (prepared, environ) = match self.prepare(py, conn) {
                Ok(Some(p)) => p,
                Ok(None) => return false,
                Err(e) => {
                    log("internal error building the environ");
                    e.display(py);
                    return false;
                }
            };
            let Prepared {
                minor,
                log_minor,
                head_only,
                expect,
                framing,
                keep_alive,
                line,
                head_len,
            } = prepared;
            let counted = self.board.as_ref().and_then(|b| b.begin(&line));
            let raw = conn.buf.split_off(head_len);
            let ex = Arc::new(Exchange {
                resp: Mutex::new(Resp {
                    status: None,
                    headers: Vec::new(),
                    head_sent: false,
                    length: None,
                    written: 0,
                    chunked: false,
                    bodyless: false,
                    keep: keep_alive,
                    head_only,
                    minor,
                }),
                io: Mutex::new(Io {
                    fd: conn.fd.as_raw_fd(),
                    raw,
                    data: Vec::new(),
                    dpos: 0,
                    decoder: BodyDecoder::new(framing, MAX_TRAILER),
                    expect,
                    timeout: self.timeout,
                    finished: false,
                    broken: None,
                    bad_body: false,
                    limit: self.limit_post,
                    decoded: 0,
                    too_large: false,
                    out_bytes: 0,
                }),
                head_started: AtomicBool::new(false),
                gone: AtomicBool::new(false),
            });
            let status = self.run_app(py, &environ, &ex, &line);
            // Take the connection back: at once when the body was read (no I/O to do and
            // nobody else holds the bytes), else with the GIL released to skip the rest.
            let resp_keep = ex.resp.lock().unwrap_or_else(|p| p.into_inner()).keep;
            let quick = ex.io.try_lock().ok().and_then(|mut io| {
                if !io.decoder.done() {
                    return None;
                }
                io.finished = true;
                let keep = resp_keep && !ex.gone.load(SeqCst) && io.broken.is_none();
                Some((keep, std::mem::take(&mut io.raw), io.out_bytes))
            });
            let (keep, rest, out) = if let Some(q) = quick {
                q
            } else {
                let ex2 = ex.clone();
                py.allow_threads(move || {
                    let mut io = ex2.io.lock().unwrap_or_else(|p| p.into_inner());
                    // A uwsgi connection closes after its answer, but the body the app left
                    // unread is read first (up to MAX_DISCARD): closing on unread bytes would
                    // reset the connection under the answer.
                    let mut keep =
                        (resp_keep || uwsgi) && !ex2.gone.load(SeqCst) && io.broken.is_none();
                    if keep && !io.decoder.done() {
                        if io.expect {
                            keep = false; // the client waits for 100 before sending: close
                        } else {
                            // Skip what the application left unread, up to MAX_DISCARD.
                            let mut skipped = 0u64;
                            io.data.clear();
                            io.dpos = 0;
                            while keep && !io.decoder.done() {
                                match io.fill(&AtomicBool::new(true)) {
                                    Ok(_) => {
                                        skipped += io.data.len() as u64;
                                        io.data.clear();
                                        io.dpos = 0;
                                        if skipped > MAX_DISCARD {
                                            keep = false;
                                        }
                                    }
                                    Err(_) => keep = false,
                                }
                            }
                        }
                    }
                    io.finished = true;
                    (keep && resp_keep, std::mem::take(&mut io.raw), io.out_bytes)
                })
            };
            conn.buf = rest;
            if let (Some(b), Some(start)) = (&self.board, counted) {
                b.end(start, out, started.elapsed().as_micros() as u64);
            }
            if self.log_requests {
                log(&format!(
                    "{}:{} {line} HTTP/1.{log_minor} {status} {out} bytes {:.1} ms",
                    conn.peer.0,
                    conn.peer.1,
                    started.elapsed().as_secs_f64() * 1000.0
                ));
            }
            keep
        })
    }

    fn environ<'py>(
        &self,
        py: Python<'py>,
        conn: &Conn,
        head: &conn::Head<'_>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        // An absolute-form target (`http://host/p?q`) is served as its path, as the built-in
        // worker does.
        let origin = uwsgid::http::origin_form(head.target);
        let target = origin.as_bytes();
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        let path = &path[..path.iter().position(|&b| b == b'#').unwrap_or(path.len())];
        let query = &query[..query.iter().position(|&b| b == b'#').unwrap_or(query.len())];
        env.set_item(
            intern!(py, "REQUEST_METHOD"),
            latin1(py, head.method.as_bytes()),
        )?;
        env.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, &percent_decode(path)))?;
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            if head.minor == 1 {
                intern!(py, "HTTP/1.1")
            } else {
                intern!(py, "HTTP/1.0")
            },
        )?;
        let uri = latin1(py, head.target.as_bytes());
        env.set_item(intern!(py, "REQUEST_URI"), &uri)?;
        env.set_item(intern!(py, "RAW_URI"), &uri)?;
        let mut host = None;
        for &(name, value) in &head.fields {
            if name.contains('_') {
                continue; // indistinguishable from the dash form: dropped, as is usual
            }
            if name.eq_ignore_ascii_case("content-type") {
                env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value.as_bytes()))?;
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                if head.framing != Framing::Chunked {
                    env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value.as_bytes()))?;
                }
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                host = Some(value);
            }
            let mut key = String::with_capacity(5 + name.len());
            key.push_str("HTTP_");
            key.extend(name.chars().map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            }));
            let key = PyString::new(py, &key);
            let value_s = latin1(py, value.as_bytes());
            match env.get_item(&key)? {
                Some(prev) => {
                    let sep = if name.eq_ignore_ascii_case("cookie") {
                        "; "
                    } else {
                        ","
                    };
                    let joined = format!(
                        "{}{sep}{}",
                        prev.extract::<String>()?,
                        value_s.extract::<String>()?
                    );
                    env.set_item(key, joined)?
                }
                None => env.set_item(key, value_s)?,
            }
        }
        if conn.local.1.is_empty() {
            let h = host.unwrap_or("localhost");
            let name = if h.ends_with(']') {
                h
            } else {
                h.rsplit_once(':').map_or(h, |(n, _)| n)
            };
            env.set_item(intern!(py, "SERVER_NAME"), latin1(py, name.as_bytes()))?;
            env.set_item(intern!(py, "SERVER_PORT"), intern!(py, "80"))?;
        } else {
            env.set_item(intern!(py, "SERVER_NAME"), &conn.local.0)?;
            env.set_item(intern!(py, "SERVER_PORT"), &conn.local.1)?;
        }
        env.set_item(intern!(py, "REMOTE_ADDR"), &conn.peer.0)?;
        if !conn.peer.1.is_empty() {
            env.set_item(intern!(py, "REMOTE_PORT"), &conn.peer.1)?;
        }
        env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
        env.set_item(intern!(py, "wsgi.errors"), self.errors.bind(py))?;
        env.set_item(intern!(py, "wsgi.multithread"), self.threads > 1)?;
        env.set_item(intern!(py, "wsgi.multiprocess"), true)?;
        env.set_item(intern!(py, "wsgi.run_once"), false)?;
        env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        env.set_item(intern!(py, "wsgi.file_wrapper"), self.file_wrapper.bind(py))?;
        Ok(env)
    }

    /// The environ of a uwsgi packet: its vars as sent (latin-1 native strings; a repeated
    /// `HTTP_*` var joined as a repeated header is, with `,`, cookies with `; `; another
    /// repeated var keeps its first value), then what PEP 3333 requires and the sender left
    /// out. `UWSGI_*` vars are plain entries: nothing here acts on them.
    fn environ_uwsgi<'py>(
        &self,
        py: Python<'py>,
        conn: &Conn,
        packet: &uwsgi_proto::Packet<'_>,
        req: &uwsgid::http::Request<'_>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        for &(key, value) in &packet.vars {
            match key {
                // Not headers (PEP 3333): the body's type and length are CONTENT_*.
                "HTTP_CONTENT_TYPE" | "HTTP_CONTENT_LENGTH" => continue,
                // nginx's uwsgi_params sends them empty for a request without a body.
                "CONTENT_TYPE" | "CONTENT_LENGTH" if value.is_empty() => continue,
                _ => {}
            }
            let k = PyString::new(py, key);
            match env.get_item(&k)? {
                Some(prev) if key.starts_with("HTTP_") => {
                    let sep = if key == "HTTP_COOKIE" { "; " } else { "," };
                    let mut joined = prev.extract::<String>()?;
                    joined.push_str(sep);
                    joined.push_str(&latin1(py, value.as_bytes()).extract::<String>()?);
                    env.set_item(k, joined)?;
                }
                Some(_) => {}
                None => env.set_item(k, latin1(py, value.as_bytes()))?,
            }
        }
        let target = req.target.as_bytes();
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        let defaults: [(&Bound<'py, PyString>, Bound<'py, PyAny>); 9] = [
            (
                intern!(py, "SCRIPT_NAME"),
                intern!(py, "").clone().into_any(),
            ),
            (intern!(py, "PATH_INFO"), latin1(py, &percent_decode(path))),
            (intern!(py, "QUERY_STRING"), latin1(py, query)),
            (intern!(py, "REQUEST_URI"), latin1(py, target)),
            (
                intern!(py, "SERVER_PROTOCOL"),
                PyString::new(
                    py,
                    if req.minor == 1 {
                        "HTTP/1.1"
                    } else {
                        "HTTP/1.0"
                    },
                )
                .into_any(),
            ),
            (
                intern!(py, "SERVER_NAME"),
                PyString::new(
                    py,
                    if conn.local.1.is_empty() {
                        "localhost"
                    } else {
                        &conn.local.0
                    },
                )
                .into_any(),
            ),
            (
                intern!(py, "SERVER_PORT"),
                PyString::new(
                    py,
                    if conn.local.1.is_empty() {
                        "80"
                    } else {
                        &conn.local.1
                    },
                )
                .into_any(),
            ),
            (
                intern!(py, "REMOTE_ADDR"),
                PyString::new(py, &conn.peer.0).into_any(),
            ),
            (
                intern!(py, "REQUEST_METHOD"),
                latin1(py, req.method.as_bytes()),
            ),
        ];
        for (k, v) in defaults {
            if !env.contains(k)? {
                env.set_item(k, v)?;
            }
        }
        let https = packet
            .get("HTTPS")
            .is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1")
            || packet
                .get("REQUEST_SCHEME")
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        env.set_item(
            intern!(py, "wsgi.url_scheme"),
            if https {
                intern!(py, "https")
            } else {
                intern!(py, "http")
            },
        )?;
        env.set_item(intern!(py, "wsgi.errors"), self.errors.bind(py))?;
        env.set_item(intern!(py, "wsgi.multithread"), self.threads > 1)?;
        env.set_item(intern!(py, "wsgi.multiprocess"), true)?;
        env.set_item(intern!(py, "wsgi.run_once"), false)?;
        env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        env.set_item(intern!(py, "wsgi.file_wrapper"), self.file_wrapper.bind(py))?;
        Ok(env)
    }

    /// Call the application and send its response; the status sent (0 if none).
    fn run_app(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        ex: &Arc<Exchange>,
        line: &str,
    ) -> u16 {
        let input = match Bound::new(py, Input { ex: ex.clone() }) {
            Ok(i) => i,
            Err(_) => return 0,
        };
        if environ.set_item(intern!(py, "wsgi.input"), input).is_err() {
            return 0;
        }
        let sr = match Bound::new(
            py,
            StartResponse {
                ex: ex.clone(),
                draining: self.draining.clone(),
            },
        ) {
            Ok(s) => s,
            Err(_) => return 0,
        };
        let mut result: Option<Bound<'_, PyAny>> = None;
        let outcome = (|| -> PyResult<Result<(), ExchangeError>> {
            let r = self.app.bind(py).call1((environ, &sr))?;
            result = Some(r.clone());
            self.send_result(py, &r, &sr.borrow())
        })();
        let mut outcome = outcome;
        if let Some(r) = &result {
            match r.hasattr(intern!(py, "close")) {
                Ok(true) => {
                    if let Err(e) = r.call_method0(intern!(py, "close")) {
                        if outcome.is_ok() {
                            outcome = Err(e);
                        } else {
                            log(&format!("{line}: error in close() of the response"));
                            e.display(py);
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => outcome = Err(e),
            }
        }
        let code = ex
            .resp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .as_ref()
            .map_or(0, |s| s.0);
        match outcome {
            Ok(Ok(())) => code,
            Ok(Err(gone)) => {
                log(&format!("{line}: {gone}"));
                let mut r = ex.resp.lock().unwrap_or_else(|p| p.into_inner());
                r.keep = false;
                code
            }
            Err(e) => {
                log(&format!("{line}: application error"));
                e.display(py);
                let head_sent = {
                    let mut r = ex.resp.lock().unwrap_or_else(|p| p.into_inner());
                    r.keep = false;
                    r.head_sent
                };
                if head_sent {
                    return code; // the response is cut: the connection closes
                }
                ex.head_started.store(true, SeqCst);
                let ex2 = ex.clone();
                py.allow_threads(move || {
                    let io = ex2.io.lock().unwrap_or_else(|p| p.into_inner());
                    // A malformed body is the client's fault, whatever the app made of it.
                    let broken = || {
                        io.broken
                            .as_ref()
                            .map(|b| b.to_string())
                            .unwrap_or_default()
                    };
                    let (status, why) = if io.too_large {
                        (413, broken())
                    } else if io.bad_body {
                        (400, broken())
                    } else {
                        (500, "the application raised an exception".to_string())
                    };
                    let _ = send_all(io.fd, &[&simple_response(status, &why)], io.timeout);
                    if status == 413 {
                        // SAFETY: half-close of the connection we serve; it closes next.
                        unsafe { libc::shutdown(io.fd, libc::SHUT_WR) };
                        linger(io.fd);
                    }
                    status
                })
            }
        }
    }

    /// Send the iterable `result`; Ok(Err(why)) if the client went away.
    fn send_result(
        &self,
        py: Python<'_>,
        result: &Bound<'_, PyAny>,
        sr: &StartResponse,
    ) -> PyResult<Result<(), ExchangeError>> {
        let draining = self.draining.load(Relaxed);
        // One bytes object: one write with a Content-Length.
        if let Ok(list) = result.downcast::<PyList>() {
            if list.len() == 1 {
                if let Ok(b) = list.get_item(0)?.downcast::<PyBytes>() {
                    let head = {
                        let mut r = sr.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
                        if r.status.is_some() && !r.head_sent {
                            sr.ex.head_started.store(true, SeqCst);
                            Some(build_head(&mut r, Some(b.as_bytes().len()), draining))
                        } else {
                            None
                        }
                    };
                    if let Some(head) = head {
                        return Ok(self.finish_single(py, sr, head, b.as_bytes()));
                    }
                }
            }
        }
        if let Ok(fw) = result.downcast::<FileWrapper>() {
            if let Some(r) = self.try_sendfile(py, fw, sr)? {
                return Ok(r);
            }
        }
        for item in result.try_iter()? {
            let item = item?;
            let bytes = body_bytes(&item)?;
            let data = bytes.as_bytes(py);
            let head_sent = sr
                .ex
                .resp
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .head_sent;
            if data.is_empty() && head_sent || data.is_empty() {
                continue;
            }
            if let Err(e) = sr.send(py, data) {
                return Ok(Err(e));
            }
        }
        // The end: a head if none was sent, the last chunk if chunked.
        let (head, tail, short) = {
            let mut r = sr.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            if r.status.is_none() {
                return Err(PyAssertionError::new_err(
                    "the application returned without calling start_response()",
                ));
            }
            let head = if r.head_sent {
                Vec::new()
            } else {
                sr.ex.head_started.store(true, SeqCst);
                build_head(&mut r, Some(0), draining)
            };
            let tail: &[u8] = if r.chunked { b"0\r\n\r\n" } else { b"" };
            let short = match r.length {
                Some(l) if !r.bodyless && r.written < l => {
                    r.keep = false;
                    Some((r.written, l))
                }
                _ => None,
            };
            (head, tail, short)
        };
        if let Some((w, l)) = short {
            log(&format!(
                "the application sent {w} of the {l} bytes it announced; closing"
            ));
        }
        if head.is_empty() && tail.is_empty() {
            return Ok(Ok(()));
        }
        Ok(sr.ex.send(py, &[&head, tail], false))
    }

    fn finish_single(
        &self,
        py: Python<'_>,
        sr: &StartResponse,
        head: Vec<u8>,
        body: &[u8],
    ) -> Result<(), ExchangeError> {
        let bodyless = {
            let mut r = sr.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            let bodyless = r.bodyless;
            let mut n = body.len() as u64;
            if let Some(l) = r.length {
                if n > l {
                    n = l;
                    r.keep = false;
                } else if n < l && !bodyless {
                    r.keep = false;
                }
            }
            r.written = n;
            (bodyless, n as usize)
        };
        let body = if bodyless.0 {
            &body[..0]
        } else {
            &body[..bodyless.1]
        };
        sr.ex.send(py, &[&head, body], false)
    }

    /// Send a wrapped regular file with sendfile; None to iterate over it instead.
    fn try_sendfile(
        &self,
        py: Python<'_>,
        fw: &Bound<'_, FileWrapper>,
        sr: &StartResponse,
    ) -> PyResult<Option<Result<(), ExchangeError>>> {
        let f = fw.borrow().filelike.clone_ref(py);
        let f = f.bind(py);
        let Ok(fileno) = f.call_method0(intern!(py, "fileno")) else {
            return Ok(None);
        };
        let Ok(file_fd) = fileno.extract::<RawFd>() else {
            return Ok(None);
        };
        // SAFETY: fstat fills our stat struct.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(file_fd, &mut st) != 0 {
                return Ok(None);
            }
            st
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(None);
        }
        let offset: i64 = match f.call_method0(intern!(py, "tell")) {
            Ok(t) => t.extract().unwrap_or(0),
            // SAFETY: lseek on a valid fd.
            Err(_) => unsafe { libc::lseek(file_fd, 0, libc::SEEK_CUR) }.max(0),
        };
        let size = (st.st_size - offset).max(0) as u64;
        let draining = self.draining.load(Relaxed);
        let (head, count) = {
            let mut r = sr.ex.resp.lock().unwrap_or_else(|p| p.into_inner());
            if r.status.is_none() || r.head_sent {
                return Ok(None);
            }
            let count = r.length.map_or(size, |l| l.min(size));
            sr.ex.head_started.store(true, SeqCst);
            let head = build_head(&mut r, Some(count as usize), draining);
            if r.length.is_some_and(|l| l > count) {
                r.keep = false;
            }
            r.written = count;
            let count = if r.bodyless { 0 } else { count };
            (head, count)
        };
        let ex = sr.ex.clone();
        Ok(Some(py.allow_threads(move || {
            let mut io = ex.io.lock().unwrap_or_else(|p| p.into_inner());
            let fd = io.fd;
            let timeout = io.timeout;
            let fail = |e: io::Error| {
                ex.gone.store(true, SeqCst);
                client_gone(e)
            };
            io.out_bytes += send_all(fd, &[&head], timeout).map_err(fail)?;
            let mut off: libc::off_t = offset;
            let mut left = count;
            while left > 0 {
                // SAFETY: sendfile from the application's open file to our socket.
                let n =
                    unsafe { libc::sendfile(fd, file_fd, &mut off, left.min(1 << 30) as usize) };
                if n > 0 {
                    left -= n as u64;
                    io.out_bytes += n as u64;
                    continue;
                }
                if n == 0 {
                    // The file shrank: the connection cannot carry a short body.
                    ex.gone.store(true, SeqCst);
                    return Err(ExchangeError::FileShort);
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        wait_fd(fd, libc::POLLOUT, timeout).map_err(fail)?
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(fail(e)),
                }
            }
            Ok(())
        })))
    }

    fn maybe_sweep(&self) {
        let now = Instant::now();
        {
            let Ok(mut next) = self.next_sweep.try_lock() else {
                return;
            };
            if now < *next {
                return;
            }
            *next = now
                + if self.draining.load(Relaxed) {
                    Duration::from_millis(25)
                } else {
                    SWEEP
                };
        }
        let draining = self.draining.load(SeqCst);
        let since = if draining {
            let mut since = self.drain_since.lock().unwrap_or_else(|p| p.into_inner());
            Some(*since.get_or_insert(now))
        } else {
            None
        };
        let mut expired = Vec::new();
        let live = {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            for (idx, s) in t.slots.iter_mut().enumerate() {
                let Some(c) = &s.conn else { continue };
                let stalled = c
                    .head_started
                    .is_some_and(|h| now.duration_since(h) >= HEAD_TIMEOUT);
                // A request that arrived since epoll looked is not closed under (a reset):
                // its event is on the way.
                let idle = c.buf.is_empty()
                    && now >= uwsgid::worker::idle_deadline(c.last, self.keepalive, c.fresh, since)
                    && !uwsgid::worker::has_input(c.fd.as_raw_fd());
                if stalled || idle {
                    let token = (idx as u64) | ((s.gen as u64) << 32);
                    expired.push((token, s.conn.take(), stalled));
                }
            }
            t.live
        };
        for (token, conn, stalled) in expired {
            if let (Some(c), true) = (&conn, stalled) {
                if c.uwsgi {
                    log(&format!(
                        "{}:{} uwsgi packet refused (408): incomplete after {} s ({} bytes)",
                        c.peer.0,
                        c.peer.1,
                        HEAD_TIMEOUT.as_secs(),
                        c.buf.len()
                    ));
                }
                let reply = simple_response(408, "request head timed out");
                // SAFETY: a non-blocking best-effort send on the connection we hold.
                unsafe {
                    libc::send(
                        c.fd.as_raw_fd(),
                        reply.as_ptr() as *const libc::c_void,
                        reply.len(),
                        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                    );
                    libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_WR);
                }
            }
            drop(conn);
            self.release(token, None);
        }
        // `in_accept` before the table's count: a connection accepted meanwhile is either
        // still counted there or already in the table.
        if draining && live == 0 && self.busy.load(SeqCst) == 0 && self.in_accept.load(SeqCst) == 0
        {
            // In this order: the drain closed the listeners, then no thread holds a listener
            // fd (`accept` counts itself before reading one), then the table is empty. A
            // thread still in `start_drain` (accepting what was pending) keeps us alive.
            let closed = self.drain_closed.load(SeqCst);
            let accepting = self.in_accept.load(SeqCst);
            let live_now = self.table.lock().unwrap_or_else(|p| p.into_inner()).live;
            // Never the park lock while holding the table's (`park` takes them the other way).
            let park = *self.park.lock().unwrap_or_else(|p| p.into_inner());
            let still_draining = self.draining.load(SeqCst);
            if live_now == 0 && park != PARK_NONE {
                self.park();
            } else if live_now == 0 && still_draining && closed && accepting == 0 {
                self.exit.store(true, SeqCst);
                self.exit_drained();
            }
        }
    }

    /// Drained (no connection, no request): leave now, from this thread. The other threads
    /// wait in `epoll_wait` holding nothing; waking and joining each first only delayed the
    /// exit the master waits for to complete a reload. What `run`'s caller would do next is
    /// done here: Python's streams flushed, `_exit(0)`.
    fn exit_drained(&self) -> ! {
        let reason = self
            .drain_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Never expected: a connection accepted and not answered would be cut by the exit.
        let held = self.table.lock().unwrap_or_else(|p| p.into_inner()).live;
        let accepting = self.in_accept.load(SeqCst);
        if held > 0 || accepting > 0 {
            log(&format!(
                "drained after {reason}, but exiting with {held} connection(s) held and \
                 {accepting} thread(s) accepting: their clients are cut unanswered (a bug)"
            ));
        }
        log(&format!("drained after {reason}, exiting"));
        yield_cpu();
        Python::with_gil(|py| {
            for stream in ["stdout", "stderr"] {
                if let Ok(s) = py.import("sys").and_then(|m| m.getattr(stream)) {
                    let _ = s.call_method0("flush");
                }
            }
        });
        // SAFETY: leaving the process; _exit runs no destructor that could touch Python.
        unsafe { libc::_exit(0) }
    }
}

/// A drained worker's last act, its exit (the kernel tearing down a Python process, 0.7 to
/// 1 ms of CPU), yields the CPU to the processes that serve: every thread of ours goes to
/// the lowest priority (nice 19; `setpriority` on Linux sets one thread), then the CPU is
/// yielded once. A rollback retires 16 workers at once while the snapshot's workers wake:
/// their exits, at the priority of the stop signal's wake-up, ran in the window in which the
/// woken workers (and a client's next connection) waited for the CPU, and each had preempted
/// the master while it was still sending the others their signals (a `kill` took up to 1.2 ms
/// in the master that way). Measured interleaved on the shared 2-core machine, 16 workers:
/// 9.6 ms median with this, 17.1 with the yield alone, 15.5 with neither this nor the
/// rollback's stop-first order (`master::snapshot`) and the edge-triggered signalfd. The
/// cost: on a busy machine the exit, which the master waits for to complete a reload, can
/// take tens of milliseconds more (nothing is left for it to serve).
fn yield_cpu() {
    // SAFETY: setpriority on one of our own threads (0: this one); lowering needs no
    // privilege.
    uwsgid::sys::each_thread(|tid| unsafe {
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    });
    // SAFETY: sched_yield has no arguments; its result does not matter here.
    unsafe {
        libc::sched_yield();
    }
}

/// `Engine::park`: not parking; told to park (draining, listeners kept); stopping itself.
const PARK_NONE: u8 = 0;
const PARK_PARKING: u8 = 1;
const PARK_STOPPING: u8 = 2;

/// One thread inside [`Engine::accept`] (see `Engine::in_accept`).
struct InAccept<'a>(&'a AtomicUsize);

impl<'a> InAccept<'a> {
    fn enter(n: &'a AtomicUsize) -> InAccept<'a> {
        n.fetch_add(1, SeqCst);
        InAccept(n)
    }
}

impl Drop for InAccept<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Add the native classes to the `_uwsgid` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Server>()?;
    m.add_class::<Input>()?;
    m.add_class::<StartResponse>()?;
    m.add_class::<FileWrapper>()?;
    Ok(())
}
