//! The stats server: one JSON document per connection, served without ever blocking the master.
//!
//! On accept the document is rendered at once into the client's buffer and written
//! non-blocking; what does not fit in the socket buffer is written as the client reads. A client
//! that reads nothing is dropped at its deadline; at most [`MAX_CLIENTS`] are served at once.
//! While that many are connected, or while `accept` fails for want of fds or memory (then for
//! [`ACCEPT_RETRY`]), the master stops polling the listener ([`StatsServer::wants_accept`]), so
//! the clients in excess wait in the backlog instead of waking the master in a loop. With
//! `--stats-http` the server first waits (same deadline) for the request line, then answers with
//! a minimal HTTP/1.0 response chosen by its path ([`Route`]): `/metrics` (Prometheus text) and
//! the health routes `/health`, `/livez`, `/readyz` (rendered by [`crate::metrics`]); any other
//! path gets the stats document, as before routes existed (uwsgitop asks for `/`). Every answer
//! comes from the document taken when the client was accepted. Clients still being served when the master re-executes are
//! finished by a forked helper ([`StatsServer::finish_in_background`]), so none sees a short
//! document; the listener itself is inherited.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::stats::StatsDocument;

use crate::cli::StatsAddr;

/// Well under the usual 1024-fd limit, with the master's own fds beside them.
pub const MAX_CLIENTS: usize = 512;
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// After `accept` failed for want of fds or memory, wait this long before trying again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The longest request head read for its request line; past it the path is what was read.
pub const MAX_REQUEST: usize = 4096;

/// What an HTTP-mode client asked for, from its request line's path (query string ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Any other path: the stats JSON document.
    Stats,
    /// `/health`: readiness, for load balancers (same answer as `/readyz`).
    Health,
    /// `/livez`: liveness.
    Livez,
    /// `/readyz`: readiness.
    Readyz,
    /// `/metrics`: Prometheus text format 0.0.4.
    Metrics,
}

impl Route {
    /// The route of a request head (at least its first line). Anything unparsable is
    /// [`Route::Stats`], which is what every request got before routes existed.
    pub fn of_request(head: &[u8]) -> Route {
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            return Route::Stats;
        };
        if method != b"GET" && method != b"HEAD" {
            return Route::Stats;
        }
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        match path {
            b"/health" => Route::Health,
            b"/livez" => Route::Livez,
            b"/readyz" => Route::Readyz,
            b"/metrics" => Route::Metrics,
            _ => Route::Stats,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Route::Stats => "/",
            Route::Health => "/health",
            Route::Livez => "/livez",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
        }
    }
}

/// The stats document as served: pretty JSON and a newline.
pub fn stats_json(doc: &StatsDocument) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The whole HTTP/1.0 response for a request head. Pure but for the clock and the master's
/// RSS read for `/metrics`.
pub fn http_response(head: &[u8], doc: &StatsDocument) -> Vec<u8> {
    let route = Route::of_request(head);
    let (code, content_type, body) = match route {
        Route::Stats => (200, "application/json", stats_json(doc)),
        Route::Metrics => {
            let workers: Vec<i64> = doc.workers.iter().map(|w| w.pid).collect();
            let host = crate::metrics::Host::now(doc.pid as i32, &workers);
            (
                200,
                crate::metrics::CONTENT_TYPE,
                crate::metrics::render(doc, &host).into_bytes(),
            )
        }
        Route::Health | Route::Livez | Route::Readyz => {
            let (code, body) = crate::metrics::health(doc, route.path());
            (code, "application/json", body.into_bytes())
        }
    };
    let reason = if code == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let mut r = format!(
        "HTTP/1.0 {code} {reason}\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-store\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head.starts_with(b"HEAD ") {
        r.extend_from_slice(&body);
    }
    r
}

struct Client {
    fd: OwnedFd,
    out: Vec<u8>,
    pos: usize,
    deadline: Instant,
    /// HTTP mode: still waiting for the request line; the document to answer from.
    awaiting_request: Option<Rc<StatsDocument>>,
    /// HTTP mode: the request head read so far (up to [`MAX_REQUEST`]).
    request: Vec<u8>,
}

pub struct StatsServer {
    pub addr: StatsAddr,
    pub http: bool,
    listener: OwnedFd,
    clients: Vec<Client>,
    pub created_path: Option<PathBuf>,
    /// `accept` ran out of fds or memory: leave the listener alone until then.
    retry_at: Option<Instant>,
}

/// Why `--stats ADDR` cannot be bound; each names the address and the fix. Fatal at startup,
/// logged at a reload that changes it.
#[derive(Debug)]
pub enum Error {
    /// A Unix socket path holds something that is not a socket.
    NotASocket(PathBuf),
    /// A Unix socket path is being served by another process.
    InUse(PathBuf),
    /// Binding or setting up the socket failed.
    Io(StatsAddr, io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotASocket(p) => write!(
                f,
                "--stats {}: exists and is not a socket; remove it",
                p.display()
            ),
            Error::InUse(p) => write!(
                f,
                "--stats {}: another process is serving stats there",
                p.display()
            ),
            Error::Io(addr, e) => write!(f, "--stats {addr}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl StatsServer {
    pub fn bind(addr: &StatsAddr, http: bool, backlog: i32) -> Result<StatsServer, Error> {
        let fail = |e: io::Error| Error::Io(addr.clone(), e);
        let (fd, created_path): (OwnedFd, _) = match addr {
            StatsAddr::Tcp(a) => (std::net::TcpListener::bind(a).map_err(fail)?.into(), None),
            StatsAddr::Unix(p) => {
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if !m.file_type().is_socket() {
                        return Err(Error::NotASocket(p.clone()));
                    }
                    if std::os::unix::net::UnixStream::connect(p).is_ok() {
                        return Err(Error::InUse(p.clone()));
                    }
                    let _ = std::fs::remove_file(p);
                }
                (
                    std::os::unix::net::UnixListener::bind(p)
                        .map_err(fail)?
                        .into(),
                    Some(p.clone()),
                )
            }
        };
        // SAFETY: listen on our own socket to set the backlog.
        unsafe {
            libc::listen(fd.as_raw_fd(), backlog);
        }
        crate::sys::set_nonblocking(fd.as_raw_fd()).map_err(fail)?;
        crate::sys::set_cloexec(fd.as_raw_fd(), true).map_err(fail)?;
        Ok(StatsServer {
            addr: addr.clone(),
            http,
            listener: fd,
            clients: Vec::new(),
            created_path,
            retry_at: None,
        })
    }

    pub fn inherit(
        addr: StatsAddr,
        http: bool,
        listener: OwnedFd,
        created_path: Option<PathBuf>,
    ) -> io::Result<StatsServer> {
        crate::listener::check_listening(listener.as_raw_fd())?;
        Ok(StatsServer {
            addr,
            http,
            listener,
            clients: Vec::new(),
            created_path,
            retry_at: None,
        })
    }

    pub fn raw(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    pub fn into_raw(self) -> RawFd {
        self.listener.into_raw_fd()
    }

    /// Whether the master should poll the listener now: false while [`MAX_CLIENTS`] are being
    /// served or after `accept` ran out of resources, so a full server never spins the loop.
    pub fn wants_accept(&self, now: Instant) -> bool {
        self.clients.len() < MAX_CLIENTS && !matches!(self.retry_at, Some(t) if now < t)
    }

    /// Accept waiting clients and start answering each from the document `render()` returns
    /// (called at most once per wake-up, only if a client was accepted).
    pub fn accept(&mut self, mut render: impl FnMut() -> StatsDocument) {
        let mut doc: Option<Rc<StatsDocument>> = None;
        let mut json: Option<Vec<u8>> = None;
        while self.clients.len() < MAX_CLIENTS {
            // SAFETY: accept4 on our listener; we own the returned fd.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        // Logged when it starts, not at every retry.
                        if self.retry_at.is_none() {
                            crate::log!(
                                "stats server: cannot accept ({}); retrying in {} ms",
                                io::Error::last_os_error(),
                                ACCEPT_RETRY.as_millis()
                            );
                        }
                        self.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                        break;
                    }
                    _ => break,
                }
            }
            // SAFETY: fd was just returned by accept4.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            self.retry_at = None;
            // One document serves every client accepted in the same wake-up.
            let d = doc.get_or_insert_with(|| Rc::new(render())).clone();
            let (out, awaiting_request) = if self.http {
                // Answered once the request line says which route.
                (Vec::new(), Some(d))
            } else {
                (json.get_or_insert_with(|| stats_json(&d)).clone(), None)
            };
            let mut client = Client {
                fd,
                out,
                pos: 0,
                deadline: Instant::now() + CLIENT_DEADLINE,
                awaiting_request,
                request: Vec::new(),
            };
            if client.awaiting_request.is_none() && !write_some(&mut client) {
                continue;
            }
            self.clients.push(client);
        }
    }

    /// Just before the master re-executes: hand the clients still being served to a forked
    /// child that finishes them (within their deadlines) and exits, so the re-exec neither
    /// waits for them nor cuts their documents short. The new image reaps the child as an
    /// unknown one. If the fork fails they are cut, as an exec alone would.
    pub fn finish_in_background(&mut self) {
        if self.clients.is_empty() {
            return;
        }
        let master = std::process::id() as i32;
        match crate::sys::fork() {
            Ok(crate::sys::Fork::Child) => {
                if !crate::sys::die_with_parent(master) {
                    // SAFETY: the master is gone; leave at once.
                    unsafe { libc::_exit(0) }
                }
                crate::sys::set_process_name("uwsgid:stats");
                let keep: Vec<RawFd> = self.clients.iter().map(|c| c.fd.as_raw_fd()).collect();
                crate::sys::close_fds_except(&keep);
                while !self.clients.is_empty() {
                    let mut fds = self.poll_fds();
                    let wait = self
                        .next_deadline()
                        .map_or(0, |d| {
                            d.saturating_duration_since(Instant::now()).as_millis()
                        })
                        .min(i32::MAX as u128) as i32
                        + 1;
                    if crate::sys::poll(&mut fds, wait).is_err() {
                        break;
                    }
                    self.service(&fds);
                }
                // SAFETY: leave without running the master's destructors.
                unsafe { libc::_exit(0) }
            }
            Ok(crate::sys::Fork::Parent(_)) | Err(_) => self.clients.clear(),
        }
    }

    /// Poll entries for the clients still being served.
    pub fn poll_fds(&self) -> Vec<libc::pollfd> {
        self.clients
            .iter()
            .map(|c| libc::pollfd {
                fd: c.fd.as_raw_fd(),
                events: if c.awaiting_request.is_some() {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                },
                revents: 0,
            })
            .collect()
    }

    /// Progress clients whose poll entries fired; drop finished and expired ones.
    pub fn service(&mut self, ready: &[libc::pollfd]) {
        let now = Instant::now();
        self.clients.retain_mut(|c| {
            let fired = ready
                .iter()
                .any(|p| p.fd == c.fd.as_raw_fd() && p.revents != 0);
            if fired {
                if c.awaiting_request.is_some() {
                    let mut buf = [0u8; MAX_REQUEST];
                    let room = MAX_REQUEST - c.request.len();
                    // SAFETY: reading the client's request into our buffer, at most its size.
                    let n = unsafe {
                        libc::read(
                            c.fd.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            room,
                        )
                    };
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                        return now < c.deadline;
                    }
                    // EOF or an error before anything was said: nobody to answer.
                    if n < 0 || (n == 0 && c.request.is_empty()) {
                        return false;
                    }
                    c.request.extend_from_slice(&buf[..n as usize]);
                    let line_done = c.request.contains(&b'\n');
                    if !line_done && n > 0 && c.request.len() < MAX_REQUEST {
                        return now < c.deadline;
                    }
                    if let Some(doc) = c.awaiting_request.take() {
                        c.out = http_response(&c.request, &doc);
                    }
                }
                if !write_some(c) {
                    return false;
                }
            }
            now < c.deadline
        });
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .map(|c| c.deadline)
            .chain(self.retry_at.filter(|&t| t > Instant::now()))
            .min()
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

/// Write what the socket takes; false when the client is done (all written, or an error).
fn write_some(c: &mut Client) -> bool {
    while c.pos < c.out.len() {
        let rest = &c.out[c.pos..];
        // SAFETY: writing from our buffer; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe {
            libc::send(
                c.fd.as_raw_fd(),
                rest.as_ptr() as *const libc::c_void,
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        c.pos += n as usize;
    }
    // SAFETY: half-close so the reader sees EOF right after the document.
    unsafe {
        libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_WR);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_picks_the_route_and_anything_else_is_the_document() {
        let r = |s: &str| Route::of_request(s.as_bytes());
        assert_eq!(r("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Health);
        assert_eq!(r("GET /livez HTTP/1.0\r\n"), Route::Livez);
        assert_eq!(r("GET /readyz?verbose=1 HTTP/1.1\r\n"), Route::Readyz);
        assert_eq!(r("HEAD /metrics HTTP/1.1\n"), Route::Metrics);
        for other in [
            "GET / HTTP/1.1\r\n",
            "GET /stats HTTP/1.1\r\n",
            "POST /health HTTP/1.1\r\n",
            "GET /healthz HTTP/1.1\r\n",
            "GET",
            "",
            "\u{1}\u{2}garbage",
        ] {
            assert_eq!(r(other), Route::Stats, "{other:?}");
        }
    }

    fn split(resp: &[u8]) -> (String, String) {
        let text = String::from_utf8(resp.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn responses_carry_status_type_and_length() {
        let doc = StatsDocument {
            pid: std::process::id() as i64,
            ..Default::default()
        };
        let (head, body) = split(&http_response(b"GET / HTTP/1.1\r\n", &doc));
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/json"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(common::stats::parse(&body).is_ok());

        let (head, body) = split(&http_response(b"GET /metrics HTTP/1.1\r\n", &doc));
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("# TYPE uwsgid_generation gauge"));

        // A document without uwsgid's keys and no workers: not ready.
        let (head, body) = split(&http_response(b"GET /health HTTP/1.1\r\n", &doc));
        assert!(
            head.starts_with("HTTP/1.0 503 Service Unavailable"),
            "{head}"
        );
        assert!(body.contains("\"unavailable\""));
        let (head, _) = split(&http_response(b"GET /livez HTTP/1.1\r\n", &doc));
        assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");

        let (head, body) = split(&http_response(b"HEAD /health HTTP/1.1\r\n", &doc));
        assert!(head.contains("Content-Length: ") && !head.contains("Content-Length: 0"));
        assert_eq!(body, "");
    }
}
