//! Reading one stats document: connect, (for `--stats-http`) send a GET, read to EOF, parse.
//!
//! Every read is bounded by a deadline, and a refused connection or a missing socket is its own
//! error kind ([`FetchError::Unreachable`]) so that `--wait` can treat the few milliseconds in
//! which a re-executing master has no stats server as "still reloading". A malformed or
//! truncated document is an error that says where it broke, never a panic.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::stats::StatsDocument;

use crate::exit::{CtlError, Exit};
use crate::target::{Endpoint, StatsAddr};

/// Largest document accepted (a uWSGI instance with many workers and cores is a few MB).
const MAX_DOCUMENT: usize = 64 << 20;

#[derive(Debug)]
pub enum FetchError {
    /// Nobody listens: connection refused, or the socket file is absent.
    Unreachable(String),
    /// Connected, but the exchange failed or the document is malformed.
    Broken(String),
}

impl FetchError {
    pub fn message(&self) -> &str {
        match self {
            FetchError::Unreachable(m) | FetchError::Broken(m) => m,
        }
    }

    pub fn into_ctl(self) -> CtlError {
        let exit = match self {
            FetchError::Unreachable(_) => Exit::Stats,
            FetchError::Broken(_) => Exit::Stats,
        };
        CtlError::new(exit, self.message().to_string())
    }
}

fn unreachable_kind(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED) | Some(libc::ENOENT) | Some(libc::ECONNRESET)
    ) || e.kind() == io::ErrorKind::NotFound
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(addr: &StatsAddr, timeout: Duration) -> io::Result<Box<dyn Stream>> {
    match &addr.endpoint {
        Endpoint::Tcp(a) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for sa in a.to_socket_addrs()? {
                match TcpStream::connect_timeout(&sa, timeout) {
                    Ok(s) => {
                        s.set_read_timeout(Some(timeout))?;
                        s.set_write_timeout(Some(timeout))?;
                        let _ = s.set_nodelay(true);
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Ok(Box::new(s))
        }
        Endpoint::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let s = UnixStream::connect_addr(&sa)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Ok(Box::new(s))
        }
    }
}

/// Fetch the raw document bytes from `addr` within `timeout`.
pub fn fetch_raw(addr: &StatsAddr, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout).map_err(|e| {
        if unreachable_kind(&e) {
            FetchError::Unreachable(format!(
                "stats {addr}: {e}; the instance is not running, or not started with --stats {addr}"
            ))
        } else {
            FetchError::Broken(format!("stats {addr}: connecting: {e}"))
        }
    })?;
    if addr.http {
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
            .map_err(|e| FetchError::Broken(format!("stats {addr}: sending the request: {e}")))?;
    }
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 64 << 10];
    loop {
        if Instant::now() > deadline {
            return Err(FetchError::Broken(format!(
                "stats {addr}: no complete document within {:.1}s; is it a stats server?",
                timeout.as_secs_f64()
            )));
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_DOCUMENT {
                    return Err(FetchError::Broken(format!(
                        "stats {addr}: document larger than {} MiB; is it a stats server?",
                        MAX_DOCUMENT >> 20
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(FetchError::Broken(format!(
                    "stats {addr}: no complete document within {:.1}s; is it a stats server{}?",
                    timeout.as_secs_f64(),
                    if addr.http {
                        ""
                    } else {
                        " (for an HTTP one use http://ADDR)"
                    }
                )))
            }
            Err(e) if unreachable_kind(&e) && buf.is_empty() => {
                return Err(FetchError::Unreachable(format!("stats {addr}: {e}")))
            }
            Err(e) => return Err(FetchError::Broken(format!("stats {addr}: reading: {e}"))),
        }
    }
    if addr.http {
        return strip_http(addr, buf);
    }
    Ok(buf)
}

fn strip_http(addr: &StatsAddr, buf: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(FetchError::Broken(format!(
            "stats {addr}: the HTTP answer has no end of headers"
        )));
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(FetchError::Broken(format!(
            "stats {addr}: HTTP answer {status:?}, expected 200"
        )));
    }
    Ok(buf[end + 4..].to_vec())
}

/// Parse document bytes (lossy UTF-8: uWSGI copies request variables raw into `vars`).
pub fn parse(addr: &dyn std::fmt::Display, raw: &[u8]) -> Result<StatsDocument, FetchError> {
    let text = String::from_utf8_lossy(raw);
    if text.trim().is_empty() {
        return Err(FetchError::Broken(format!(
            "stats {addr}: the server sent an empty document; is it a stats server?"
        )));
    }
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        let hint = if e.is_eof() {
            "the document is truncated: the server closed the connection early"
        } else {
            "the document is malformed; is it a uWSGI or uwsgid stats server?"
        };
        FetchError::Broken(format!("stats {addr}: {hint} ({e})"))
    })?;
    defuse_control_chars(&mut value);
    serde_json::from_value(value).map_err(|e| {
        FetchError::Broken(format!(
            "stats {addr}: the document is malformed: it does not have the stats schema ({e})"
        ))
    })
}

/// Replace control characters in every string with `?`: what a stats server says is shown on
/// a terminal, and must not be able to move the cursor or change its settings. (`--json`
/// passes the raw document through, where JSON escaping already makes them inert.)
fn defuse_control_chars(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.chars().any(char::is_control) => {
            *s = s
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(defuse_control_chars),
        serde_json::Value::Object(map) => map.values_mut().for_each(defuse_control_chars),
        _ => {}
    }
}

/// Fetch and parse.
pub fn fetch(addr: &StatsAddr, timeout: Duration) -> Result<(StatsDocument, Vec<u8>), FetchError> {
    let raw = fetch_raw(addr, timeout)?;
    let doc = parse(addr, &raw)?;
    Ok((doc, raw))
}

#[cfg(test)]
mod defuse_tests {
    #[test]
    fn escape_sequences_from_a_server_never_reach_the_terminal() {
        let raw = br#"{"version":"2.0\u001b[2J","workers":[{"id":1,"status":"idle\u0007"}],"uwsgid":{"last_error":"bad\u001b]0;title\u0007"}}"#;
        let doc = super::parse(&"test", raw).unwrap();
        assert_eq!(doc.version, "2.0?[2J");
        assert_eq!(doc.workers[0].status, "idle?");
        let err = doc.uwsgid.unwrap().last_error.unwrap();
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        let addr = "x";
        let e = parse(&addr, b"").unwrap_err();
        assert!(e.message().contains("empty document"), "{}", e.message());
        let e = parse(&addr, b"{\"version\":\"2.0\",\"workers\":[{\"id\":1,").unwrap_err();
        assert!(e.message().contains("truncated"), "{}", e.message());
        let e = parse(&addr, b"<html>").unwrap_err();
        assert!(e.message().contains("malformed"), "{}", e.message());
        let e = parse(&addr, b"{\"workers\":\"many\"}").unwrap_err();
        assert!(e.message().contains("malformed"), "{}", e.message());
        let doc = parse(
            &addr,
            b"{\"version\":\"2.0.31\",\"workers\":[{\"id\":1,\"pid\":5}]}",
        )
        .unwrap();
        assert_eq!(doc.workers[0].pid, 5);
        // Invalid UTF-8 inside a string is tolerated.
        let doc = parse(&addr, b"{\"cwd\":\"/a\xff\"}").unwrap();
        assert!(doc.cwd.starts_with("/a"));
    }
}
