//! A small, strict HTTP/1.x request-head parser for the built-in workers.
//!
//! Pure and allocation-free: it looks at a byte buffer and says `Incomplete`, `Complete` with
//! borrowed fields and the head's length, or `Invalid` with the status to answer. Limits are the
//! caller's (`max_head`). Request bodies are supported by `Content-Length` only; chunked request
//! bodies are refused with 501, which is allowed for a server that does not implement them.
//!
//! RFC 9112 rules enforced here: the request line is judged as soon as it is complete (an
//! HTTP/0.9 `GET /` line gets its 505 at once, not at the head timeout); the target is
//! origin-form (`/path`), absolute-form (`http://host/path`, served as its path, see
//! [`origin_form`]), `*` for OPTIONS or authority-form for CONNECT; an HTTP/1.1 request needs
//! exactly one `Host` field, and no request may carry two (400).
//!
//! The pieces every worker that reads request heads shares are public: [`split_head`] (the
//! head's framing and request line, everything above up to the fields), [`field`] (one field
//! line) and [`Fields`] (`Content-Length`, `Host`, `Connection`). The built-in worker's
//! [`parse`] and the native Python worker's `crate::conn::parse_head` are both made of them.

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub keep_alive: bool,
    pub content_length: usize,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    Incomplete,
    Complete(Request<'a>),
    Invalid(u16, &'static str),
}

pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// An RFC 9110 token (methods, field names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The method, target and minor version of a request line, or the status and reason to
/// refuse it with.
fn check_request_line(line: &str) -> Result<(&str, &str, u8), (u16, &'static str)> {
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        (Some(m), Some(t), None, None) if is_token(m) && t.starts_with('/') => {
            return Err((505, "HTTP/0.9 is not supported; send HTTP/1.0 or HTTP/1.1"))
        }
        _ => return Err((400, "malformed request line")),
    };
    if !is_token(method) {
        return Err((400, "malformed method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err((400, "malformed request target"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Err((505, "HTTP version not supported")),
        _ => return Err((400, "malformed HTTP version")),
    };
    let form_ok = if target.starts_with('/') {
        true
    } else if target == "*" {
        method == "OPTIONS"
    } else if method == "CONNECT" {
        !target.contains('/')
    } else {
        absolute_parts(target).is_some()
    };
    if !form_ok {
        return Err((400, "malformed request target"));
    }
    Ok((method, target, minor))
}

/// `(authority, path and query)` of an absolute-form `http://` or `https://` target.
fn absolute_parts(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // A userinfo part is deprecated for http(s) (RFC 9110 §4.2.4); a host is required.
    if authority.is_empty() || authority.contains('@') || !valid_host(authority) {
        return None;
    }
    Some((authority, path))
}

/// The characters a `Host` value (uri-host [":" port]) may contain.
fn valid_host(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// The origin-form (`/path?query`) of a request target as the router sees it: an
/// absolute-form target (`http://host/path?q`) becomes its path and query (`/` if it has no
/// path), as RFC 9112 §3.2.2 asks of a server; other targets are returned unchanged.
pub fn origin_form(target: &str) -> std::borrow::Cow<'_, str> {
    match absolute_parts(target) {
        None => target.into(),
        Some((_, path)) => {
            let path = path.split_once('#').map_or(path, |(p, _)| p);
            if path.starts_with('/') {
                path.into()
            } else {
                format!("/{path}").into()
            }
        }
    }
}

/// A request head whose framing and request line passed every check: the blank lines before
/// it and the limit, NUL, bare CR and UTF-8, the request line (method, target form, version).
#[derive(Debug, PartialEq, Eq)]
pub struct RawHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The field lines (LF-separated, each maybe ending with CR; the blank line last).
    pub field_text: &'a str,
    /// Bytes of the head, including leading blank lines and the final blank line.
    pub head_len: usize,
}

impl<'a> RawHead<'a> {
    /// The field lines, without their line ends, up to the blank line.
    pub fn field_lines(&self) -> impl Iterator<Item = &'a str> {
        self.field_text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .take_while(|l| !l.is_empty())
    }
}

/// The head at the start of `buf` (at most `max_head` bytes): `Ok(None)` while incomplete,
/// the status and reason to refuse it with.
pub fn split_head(buf: &[u8], max_head: usize) -> Result<Option<RawHead<'_>>, (u16, &'static str)> {
    // Tolerate blank lines before a request (RFC 9112 §2.2).
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let rest = &buf[skip..];
    // Judge the request line as soon as it is whole: a line that can never start a valid head
    // (HTTP/0.9, garbage) is answered now, not at the head timeout. It is judged first whether
    // or not the rest of the head has arrived, so the answer does not depend on how the
    // bytes were split into reads.
    // Only a line within the head limit is judged, so a line completed past the limit gets
    // the same 431 in one read as in many.
    let window = &rest[..rest.len().min(max_head.saturating_sub(skip))];
    if let Some(nl) = window.iter().position(|&b| b == b'\n') {
        if let Parse::Invalid(status, why) = parse_line_only(&rest[..nl]) {
            return Err((status, why));
        }
    }
    // The skipped blank lines count toward the limit: else a client sending only CRLFs would
    // be `Incomplete` forever while the caller's buffer grows.
    let end = match find_head_end(rest) {
        Some(end) => end,
        None if buf.len() > max_head => return Err((431, "request header fields too large")),
        None => return Ok(None),
    };
    if skip + end > max_head {
        return Err((431, "request header fields too large"));
    }
    let head_bytes = &rest[..end];
    // RFC 9112 §2.2 and RFC 9110 §5.5: a bare CR or a NUL is invalid anywhere in the head.
    if head_bytes.contains(&0) {
        return Err((400, "NUL byte in request head"));
    }
    if head_bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && head_bytes.get(i + 1) != Some(&b'\n'))
    {
        return Err((400, "bare CR in request head"));
    }
    let Ok(head) = std::str::from_utf8(head_bytes) else {
        return Err((400, "request head is not valid UTF-8"));
    };
    let (line, field_text) = head.split_once('\n').unwrap_or((head, ""));
    let (method, target, minor) = check_request_line(line.strip_suffix('\r').unwrap_or(line))?;
    Ok(Some(RawHead {
        method,
        target,
        minor,
        field_text,
        head_len: skip + end,
    }))
}

/// One field line: its name (a token) and its value without surrounding blanks.
pub fn field(line: &str) -> Result<(&str, &str), (u16, &'static str)> {
    match line.split_once(':') {
        Some((n, v)) if is_token(n) => Ok((n, v.trim())),
        _ => Err((400, "malformed header field")),
    }
}

/// The fields every worker judges alike, seen one by one: `Content-Length` (digits only,
/// repeated only with the same value), `Host` (at most one, valid characters; required on
/// HTTP/1.1 by [`Fields::finish`]) and `Connection` (`close` ends the connection after the
/// response; `keep-alive` keeps an HTTP/1.0 one).
#[derive(Debug)]
pub struct Fields {
    pub keep_alive: bool,
    pub content_length: Option<u64>,
    hosts: u32,
    minor: u8,
    closed: bool,
}

impl Fields {
    pub fn new(minor: u8) -> Fields {
        Fields {
            keep_alive: minor == 1,
            content_length: None,
            hosts: 0,
            minor,
            closed: false,
        }
    }

    /// Look at one field (other names are ignored here); the refusal if it is bad.
    pub fn see(&mut self, name: &str, value: &str) -> Result<(), (u16, &'static str)> {
        if name.eq_ignore_ascii_case("content-length") {
            let n = match value.parse::<u64>() {
                Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err((400, "malformed Content-Length")),
            };
            if self.content_length.is_some_and(|c| c != n) {
                return Err((400, "conflicting Content-Length"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err((400, "more than one Host header field"));
            }
            if !valid_host(value) {
                return Err((400, "malformed Host header field"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    self.closed = true;
                    self.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !self.closed {
                    self.keep_alive = true;
                }
            }
        }
        Ok(())
    }

    /// After the last field: RFC 9112 §3.2, an HTTP/1.1 request without Host gets a 400
    /// (HTTP/1.0 may omit it).
    pub fn finish(&self) -> Result<(), (u16, &'static str)> {
        if self.minor == 1 && self.hosts == 0 {
            return Err((400, "HTTP/1.1 request without a Host header field"));
        }
        Ok(())
    }
}

/// Parse a request head at the start of `buf`.
pub fn parse(buf: &[u8], max_head: usize) -> Parse<'_> {
    let head = match split_head(buf, max_head) {
        Ok(Some(h)) => h,
        Ok(None) => return Parse::Incomplete,
        Err((status, why)) => return Parse::Invalid(status, why),
    };
    let mut fields = Fields::new(head.minor);
    for line in head.field_lines() {
        let (name, value) = match field(line) {
            Ok(f) => f,
            Err((status, why)) => return Parse::Invalid(status, why),
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Invalid(501, "chunked request bodies are not supported");
        }
        if let Err((status, why)) = fields.see(name, value) {
            return Parse::Invalid(status, why);
        }
    }
    if let Err((status, why)) = fields.finish() {
        return Parse::Invalid(status, why);
    }
    Parse::Complete(Request {
        method: head.method,
        target: head.target,
        minor: head.minor,
        keep_alive: fields.keep_alive,
        content_length: fields.content_length.unwrap_or(0) as usize,
        head_len: head.head_len,
    })
}

/// The verdict on a complete first line alone (`line` without its LF): `Invalid` if no head
/// starting with it can be valid, else `Incomplete`.
fn parse_line_only(line: &[u8]) -> Parse<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&0) {
        return Parse::Invalid(400, "NUL byte in request head");
    }
    if line.contains(&b'\r') {
        return Parse::Invalid(400, "bare CR in request head");
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Parse::Invalid(400, "request head is not valid UTF-8");
    };
    match check_request_line(text) {
        Ok(_) => Parse::Incomplete,
        Err((status, why)) => Parse::Invalid(status, why),
    }
}

/// The reason phrase of the statuses the workers send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_get() {
        let Parse::Complete(r) = parse(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\nrest", 8192) else {
            panic!()
        };
        assert_eq!(
            (r.method, r.target, r.minor, r.keep_alive),
            ("GET", "/x?y=1", 1, true)
        );
        assert_eq!(r.head_len, 32);
    }

    #[test]
    fn connection_rules() {
        let Parse::Complete(r) = parse(b"GET / HTTP/1.0\r\n\r\n", 8192) else {
            panic!()
        };
        assert!(!r.keep_alive);
        let Parse::Complete(r) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192)
        else {
            panic!()
        };
        assert!(r.keep_alive);
        let Parse::Complete(r) = parse(b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n", 8192)
        else {
            panic!()
        };
        assert!(!r.keep_alive);
    }

    #[test]
    fn incomplete_and_invalid() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost:", 8192), Parse::Incomplete);
        assert!(matches!(
            parse(b"GARBAGE\r\n\r\n", 8192),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/2.0\r\n\r\n", 8192),
            Parse::Invalid(505, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 8192),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(parse(&[b'a'; 9000], 8192), Parse::Invalid(431, _)));
        assert!(matches!(
            parse(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                8192
            ),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 8192),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(
            parse(b"\xff / HTTP/1.1\r\n\r\n", 8192),
            Parse::Invalid(400, _)
        ));
    }

    /// Found by the `http` fuzz target: a CR not followed by LF inside a header field was
    /// accepted (`t:\r:` parsed as a field named `t`).
    #[test]
    fn bare_cr_and_nul_are_refused() {
        for raw in [
            &b"T / HTTP/1.1\nt:\r:\n\n"[..],
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, 8192), Parse::Invalid(400, _)),
                "{raw:?} -> {:?}",
                parse(raw, 8192)
            );
        }
    }

    /// Found by the `http` fuzz target: leading blank lines did not count toward the limit, so
    /// a client sending only CRLFs stayed `Incomplete` however much it sent.
    #[test]
    fn leading_blank_lines_count_toward_the_limit() {
        let flood = b"\r\n".repeat(5000);
        assert!(matches!(parse(&flood, 8192), Parse::Invalid(431, _)));
        let mut late = b"\r\n".repeat(4090);
        late.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(parse(&late, 8192), Parse::Invalid(431, _)));
        assert!(matches!(
            parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 8192),
            Parse::Complete(Request { head_len: 31, .. })
        ));
    }

    #[test]
    fn never_panics_on_prefixes() {
        let req = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc";
        for n in 0..req.len() {
            let _ = parse(&req[..n], 64);
            let _ = parse(&req[n..], 64);
        }
    }

    /// RFC 9112 §3.2.2: a server must accept absolute-form targets; the router sees the path.
    #[test]
    fn absolute_form_targets_are_accepted_and_routed_by_their_path() {
        for (raw, target) in [
            (
                &b"GET http://x/pid HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                "http://x/pid",
            ),
            (
                b"GET HTTPS://x:8000/a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTPS://x:8000/a?b=1",
            ),
            (b"GET http://x HTTP/1.0\r\n\r\n", "http://x"),
        ] {
            let Parse::Complete(r) = parse(raw, 8192) else {
                panic!("{raw:?} -> {:?}", parse(raw, 8192))
            };
            assert_eq!(r.target, target);
        }
        assert_eq!(origin_form("http://x/pid"), "/pid");
        assert_eq!(origin_form("HTTPS://x:8000/a?b=1"), "/a?b=1");
        assert_eq!(origin_form("http://x"), "/");
        assert_eq!(origin_form("http://x?q=1"), "/?q=1");
        assert_eq!(origin_form("/plain?x"), "/plain?x");
        for raw in [
            &b"GET ftp://x/a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://u@x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, 8192), Parse::Invalid(400, _)),
                "{raw:?} -> {:?}",
                parse(raw, 8192)
            );
        }
        assert!(matches!(
            parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 8192),
            Parse::Complete(_)
        ));
    }

    /// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for two Host lines, and for a
    /// malformed Host value; HTTP/1.0 may omit it.
    #[test]
    fn host_is_required_once_on_http_1_1() {
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, 8192), Parse::Invalid(400, _)),
                "{raw:?} -> {:?}",
                parse(raw, 8192)
            );
        }
        for raw in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        ] {
            assert!(matches!(parse(raw, 8192), Parse::Complete(_)), "{raw:?}");
        }
    }

    /// A complete request line that can never start a valid head is refused before the rest
    /// of the head arrives: an HTTP/0.9 `GET /` waited for the 10 s head timeout.
    #[test]
    fn a_bad_request_line_is_judged_as_soon_as_it_is_complete() {
        assert!(matches!(parse(b"GET /\r\n", 8192), Parse::Invalid(505, _)));
        assert!(matches!(parse(b"GET /\n", 8192), Parse::Invalid(505, _)));
        assert!(matches!(
            parse(b"\r\nGET /x\r\n", 8192),
            Parse::Invalid(505, _)
        ));
        assert!(matches!(
            parse(b"GARBAGE\r\n", 8192),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/2.0\r\n", 8192),
            Parse::Invalid(505, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n", 8192),
            Parse::Incomplete
        ));
        assert!(matches!(parse(b"GET /", 8192), Parse::Incomplete));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n", 8192),
            Parse::Incomplete
        ));
    }
}
