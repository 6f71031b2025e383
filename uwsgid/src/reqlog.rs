//! Request log lines of built-in workers, as uWSGI writes them.
//!
//! By default one line per request in the shape of uWSGI's default request line (tools that
//! parse uWSGI logs read it):
//!
//! `[pid: PID|app: 0|req: N/N] ADDR () {H vars in B bytes} [CTIME] METHOD URI => generated
//! BODY bytes in MS msecs (PROTO STATUS) RH headers in RB bytes (1 switches on core 0)`
//!
//! where N is the worker's request count (uWSGI's second N is the instance's; a built-in worker
//! knows its own only), H and B are the request's header count and head size (uWSGI counts the
//! CGI variables it built), CTIME is the local time the request started. Written raw, without
//! the instance log's timestamp prefix, as uWSGI does.
//!
//! `--logformat` replaces it with text in which `%(name)` is replaced: `method uri proto status
//! addr host uagent referer user size rsize hsize headers cl msecs micros secs time epoch ctime
//! ltime pid wid`. An unknown name (uWSGI's application-set variables) becomes empty.
//!
//! Lines are not written as they happen: the worker appends them to one buffer and writes it
//! once per event-loop turn (and before the buffer grows past [`FLUSH_AT`]), so a burst of
//! pipelined or concurrent requests costs one `write`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Write the buffer once it holds this much, without waiting for the end of the turn.
pub const FLUSH_AT: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A parsed `--logformat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format(Vec<Part>);

impl Format {
    pub fn parse(text: &str) -> Format {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut lit = String::new();
        while let Some(i) = rest.find("%(") {
            let after = &rest[i + 2..];
            match after.find(')') {
                Some(j)
                    if after[..j]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    lit.push_str(&rest[..i]);
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(after[..j].to_string()));
                    rest = &after[j + 1..];
                }
                _ => {
                    lit.push_str(&rest[..i + 2]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Format(parts)
    }
}

/// What the request head says, for the log (taken only when logging).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub method: String,
    pub uri: String,
    pub proto: String,
    pub host: String,
    pub uagent: String,
    pub referer: String,
    pub headers: usize,
    pub head_len: usize,
    pub content_length: usize,
    pub started: Option<SystemTime>,
}

impl RequestInfo {
    /// From the raw head (request line, fields, blank line).
    pub fn from_head(head: &[u8], method: &str, uri: &str, content_length: usize) -> RequestInfo {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n").map(|l| l.trim_end_matches('\n'));
        let first = lines
            .by_ref()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let proto = first
            .rsplit(' ')
            .next()
            .filter(|p| p.starts_with("HTTP/"))
            .unwrap_or("HTTP/0.9")
            .to_string();
        let mut info = RequestInfo {
            method: method.to_string(),
            uri: uri.to_string(),
            proto,
            head_len: head.len(),
            content_length,
            started: Some(SystemTime::now()),
            ..RequestInfo::default()
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            info.headers += 1;
            let value = value.trim();
            if name.eq_ignore_ascii_case("host") {
                info.host = value.to_string();
            } else if name.eq_ignore_ascii_case("user-agent") {
                info.uagent = value.to_string();
            } else if name.eq_ignore_ascii_case("referer") {
                info.referer = value.to_string();
            }
        }
        info
    }
}

/// The response side of one request.
pub struct Outcome<'a> {
    pub status: u16,
    pub head_bytes: u64,
    pub body_bytes: u64,
    pub response_headers: usize,
    pub micros: u64,
    pub addr: &'a str,
    pub pid: u32,
    pub wid: u32,
    pub requests: u64,
}

/// Append one line for `req` and `out` to `buf`.
pub fn append(buf: &mut Vec<u8>, format: Option<&Format>, req: &RequestInfo, out: &Outcome<'_>) {
    use std::fmt::Write;
    let mut line = String::with_capacity(200);
    let started = req.started.unwrap_or_else(SystemTime::now);
    match format {
        // The JSON master log (`--log-format json`): the request as one object too.
        None if crate::log::format() == crate::log::Format::Json => {
            use crate::log::Field;
            let message = format!("{} {} {} {}", req.method, req.uri, req.proto, out.status);
            let fields = [
                ("method", Field::from(req.method.as_str())),
                ("uri", Field::from(req.uri.as_str())),
                ("proto", Field::from(req.proto.as_str())),
                ("status", Field::from(u32::from(out.status))),
                ("size", Field::from(out.body_bytes)),
                ("msecs", Field::from(out.micros / 1000)),
                ("addr", Field::from(out.addr)),
                ("requests", Field::from(out.requests)),
            ];
            line = crate::log::request_json(&fields, &message);
        }
        None => {
            let _ = write!(
                line,
                "[pid: {}|app: 0|req: {n}/{n}] {} () {{{} vars in {} bytes}} [{}] {} {} => \
                 generated {} bytes in {} msecs ({} {}) {} headers in {} bytes (1 switches on \
                 core 0)",
                out.pid,
                out.addr,
                req.headers,
                req.head_len,
                ctime(started),
                req.method,
                req.uri,
                out.body_bytes,
                out.micros / 1000,
                req.proto,
                out.status,
                out.response_headers,
                out.head_bytes,
                n = out.requests,
            );
        }
        Some(Format(parts)) => {
            for p in parts {
                match p {
                    Part::Text(t) => line.push_str(t),
                    Part::Var(v) => var(&mut line, v, req, out, started),
                }
            }
        }
    }
    line.retain(|c| c != '\n' && c != '\r');
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
}

fn var(line: &mut String, name: &str, req: &RequestInfo, out: &Outcome<'_>, started: SystemTime) {
    use std::fmt::Write;
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let _ = match name {
        "method" => write!(line, "{}", req.method),
        "uri" => write!(line, "{}", req.uri),
        "proto" => write!(line, "{}", req.proto),
        "host" => write!(line, "{}", req.host),
        "uagent" => write!(line, "{}", req.uagent),
        "referer" => write!(line, "{}", req.referer),
        "addr" => write!(line, "{}", out.addr),
        "status" => write!(line, "{}", out.status),
        "size" => write!(line, "{}", out.head_bytes + out.body_bytes),
        "rsize" => write!(line, "{}", out.body_bytes),
        "hsize" => write!(line, "{}", out.head_bytes),
        "headers" => write!(line, "{}", out.response_headers),
        "cl" => write!(line, "{}", req.content_length),
        "msecs" => write!(line, "{}", out.micros / 1000),
        "micros" => write!(line, "{}", out.micros),
        "secs" => write!(line, "{:.6}", out.micros as f64 / 1e6),
        "time" => write!(line, "{}", unix(started)),
        "epoch" => write!(line, "{}", unix(SystemTime::now())),
        "ctime" => write!(line, "{}", ctime(started)),
        "ltime" => write!(line, "{}", ltime(started)),
        "pid" => write!(line, "{}", out.pid),
        "wid" => write!(line, "{}", out.wid),
        _ => Ok(()),
    };
}

fn local(t: SystemTime) -> libc::tm {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as libc::time_t;
    // SAFETY: a zeroed tm is valid; localtime_r fills it from our time_t.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Tue Dec  1 22:14:27 2026`, local time (as ctime(3), without its newline).
pub fn ctime(t: SystemTime) -> String {
    let tm = local(t);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.rem_euclid(7) as usize],
        MONTHS[tm.tm_mon.rem_euclid(12) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

/// `01/Dec/2026:22:14:27 +0000`, local time (Apache's access log).
pub fn ltime(t: SystemTime) -> String {
    let tm = local(t);
    let off = tm.tm_gmtoff / 60;
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon.rem_euclid(12) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60
    )
}

/// A worker's request log: what to log and the lines waiting for the end of the turn.
pub struct Log {
    config: crate::options::ReqLog,
    format: Option<Format>,
    buf: Vec<u8>,
}

impl Log {
    pub fn new(config: &crate::options::ReqLog) -> Log {
        Log {
            format: config.format.as_deref().map(Format::parse),
            config: config.clone(),
            buf: Vec::new(),
        }
    }

    /// Could a request be logged (so its head is worth reading)?
    pub fn any(&self) -> bool {
        self.config.any()
    }

    /// Queue the line of a finished request, if its status is logged.
    pub fn record(&mut self, req: &RequestInfo, out: &Outcome<'_>) {
        if self.config.wants(out.status) {
            append(&mut self.buf, self.format.as_ref(), req, out);
            if self.buf.len() >= FLUSH_AT {
                self.flush();
            }
        }
    }

    /// Write the queued lines to the log (fd 2) in one `write` where it takes them all.
    pub fn flush(&mut self) {
        let mut done = 0;
        while done < self.buf.len() {
            let rest = &self.buf[done..];
            // SAFETY: writing our buffer to fd 2, at most its length.
            let n = unsafe { libc::write(2, rest.as_ptr() as *const libc::c_void, rest.len()) };
            if n > 0 {
                done += n as usize;
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                break; // the log is gone or full: drop the lines rather than stall serving
            }
        }
        self.buf.clear();
    }
}

/// The peer address of a connected socket, as text (`-` if unknown, the path for Unix).
pub fn peer_addr(fd: std::os::fd::RawFd) -> String {
    // SAFETY: a zeroed sockaddr_storage is valid; getpeername writes at most `len` bytes.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return "-".into();
        }
        match ss.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(&ss as *const _ as *const libc::sockaddr_in);
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).to_string()
            }
            libc::AF_INET6 => {
                let a = &*(&ss as *const _ as *const libc::sockaddr_in6);
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).to_string()
            }
            _ => "-".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome<'static> {
        Outcome {
            status: 404,
            head_bytes: 80,
            body_bytes: 10,
            response_headers: 3,
            micros: 2500,
            addr: "127.0.0.1",
            pid: 42,
            wid: 2,
            requests: 7,
        }
    }

    #[test]
    fn default_and_custom_lines() {
        let head = b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\nReferer: r\r\n\r\n";
        let req = RequestInfo::from_head(head, "GET", "/x?y=1", 0);
        assert_eq!(
            (req.proto.as_str(), req.host.as_str(), req.headers),
            ("HTTP/1.1", "h", 3)
        );
        let mut buf = Vec::new();
        append(&mut buf, None, &req, &outcome());
        let line = String::from_utf8(buf).unwrap();
        assert!(
            line.starts_with("[pid: 42|app: 0|req: 7/7] 127.0.0.1 () {3 vars in 62 bytes} ["),
            "{line}"
        );
        assert!(
            line.ends_with(
                "] GET /x?y=1 => generated 10 bytes in 2 msecs (HTTP/1.1 404) 3 headers in 80 \
                 bytes (1 switches on core 0)\n"
            ),
            "{line}"
        );
        let f = Format::parse("%(method) %(uri) %(status) %(size) %(wid) %(nope)|%(host) %( 100%");
        let mut buf = Vec::new();
        append(&mut buf, Some(&f), &req, &outcome());
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "GET /x?y=1 404 90 2 |h %( 100%\n"
        );
    }
}
