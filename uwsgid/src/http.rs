//! A small, strict HTTP/1.x request-head parser for the built-in workers.
//!
//! Pure and allocation-free: it looks at a byte buffer and says `Incomplete`, `Complete` with
//! borrowed fields and the head's length, or `Invalid` with the status to answer. Limits are the
//! caller's (`max_head`). Request bodies are supported by `Content-Length` only; chunked request
//! bodies are refused with 501, which is allowed for a server that does not implement them.

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

fn find_head_end(buf: &[u8]) -> Option<usize> {
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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse a request head at the start of `buf`.
pub fn parse(buf: &[u8], max_head: usize) -> Parse<'_> {
    // Tolerate blank lines before a request (RFC 9112 §2.2).
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let rest = &buf[skip..];
    // The skipped blank lines count toward the limit: else a client sending only CRLFs would
    // be `Incomplete` forever while the caller's buffer grows.
    let end = match find_head_end(rest) {
        Some(end) => end,
        None if buf.len() > max_head => {
            return Parse::Invalid(431, "request header fields too large")
        }
        None => return Parse::Incomplete,
    };
    if skip + end > max_head {
        return Parse::Invalid(431, "request header fields too large");
    }
    let head_bytes = &rest[..end];
    // RFC 9112 §2.2 and RFC 9110 §5.5: a bare CR or a NUL is invalid anywhere in the head.
    if head_bytes.contains(&0) {
        return Parse::Invalid(400, "NUL byte in request head");
    }
    if head_bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && head_bytes.get(i + 1) != Some(&b'\n'))
    {
        return Parse::Invalid(400, "bare CR in request head");
    }
    let head = match std::str::from_utf8(head_bytes) {
        Ok(h) => h,
        Err(_) => return Parse::Invalid(400, "request head is not valid UTF-8"),
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Parse::Invalid(400, "malformed request line"),
    };
    if !is_token(method) {
        return Parse::Invalid(400, "malformed method");
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Parse::Invalid(400, "malformed request target");
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Parse::Invalid(505, "HTTP version not supported"),
        _ => return Parse::Invalid(400, "malformed HTTP version"),
    };
    let mut keep_alive = minor == 1;
    let mut content_length: Option<usize> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) if is_token(n) => (n, v.trim()),
            _ => return Parse::Invalid(400, "malformed header field"),
        };
        if name.eq_ignore_ascii_case("content-length") {
            let n = match value.parse::<usize>() {
                Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Parse::Invalid(400, "malformed Content-Length"),
            };
            if content_length.is_some_and(|c| c != n) {
                return Parse::Invalid(400, "conflicting Content-Length");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Invalid(501, "chunked request bodies are not supported");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    Parse::Complete(Request {
        method,
        target,
        minor,
        keep_alive,
        content_length: content_length.unwrap_or(0),
        head_len: skip + end,
    })
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
        let Parse::Complete(r) = parse(b"GET / HTTP/1.1\nConnection: close\n\n", 8192) else {
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
        late.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(parse(&late, 8192), Parse::Invalid(431, _)));
        assert!(matches!(
            parse(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 8192),
            Parse::Complete(Request { head_len: 22, .. })
        ));
    }

    #[test]
    fn never_panics_on_prefixes() {
        let req = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc";
        for n in 0..req.len() {
            let _ = parse(&req[..n], 64);
            let _ = parse(&req[n..], 64);
        }
    }
}
