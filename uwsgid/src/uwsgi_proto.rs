//! The uwsgi wire protocol (nginx's `uwsgi_pass`, uWSGI's `--socket`): a strict, pure parser.
//!
//! A request is one packet, then the body:
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | `modifier1`: 0 is a request (nginx's `uwsgi_modifier1`, default 0) |
//! | 2 | size of the vars block, little-endian (the body is not counted) |
//! | 1 | `modifier2`: 0 for requests |
//! | size | vars: repeated `u16 key length, key, u16 value length, value` (little-endian) |
//! | `CONTENT_LENGTH` | the body |
//!
//! The answer is a plain HTTP response, no framing. Only `modifier1` 0 / `modifier2` 0 is
//! served: the other values are uWSGI internals (signals, cache, RPC, subscriptions, reload
//! requests) that a server not implementing them must refuse. A vars block larger than the
//! caller's limit (`--buffer-size`, [`DEFAULT_BUFFER_SIZE`] like uWSGI; nginx itself never sends
//! more than 65535 bytes) is refused before it is read, so a peer cannot make a worker buffer
//! more than the limit.
//!
//! Vars are data, never instructions: `UWSGI_FILE`, `UWSGI_SCRIPT`, `UWSGI_MODULE`,
//! `UWSGI_CALLABLE`, `UWSGI_CHDIR`, `UWSGI_PYHOME`, `UWSGI_TOUCH_RELOAD`, `UWSGI_SETENV` and
//! every other name reach the application as plain environ entries (uWSGI loads code or
//! changes its state when a peer sends some of them; nothing here or in the workers looks at
//! them). The protocol has no authentication: who may connect is decided by the socket's file
//! mode (Unix) or the peer allow-list (TCP, loopback by default).
//!
//! [`Packet::request`] turns a packet into the same [`crate::http::Request`] head the HTTP parser
//! produces, so any worker that serves HTTP serves uwsgi packets too; [`Packet::headers`] gives
//! the request's header fields back from the `HTTP_*` vars, and [`Packet::vars`] are the
//! CGI/WSGI environ as sent.

use crate::http::Request;

/// The packet header's length.
pub const HEADER_LEN: usize = 4;
/// uWSGI's default `--buffer-size`: the largest vars block accepted.
pub const DEFAULT_BUFFER_SIZE: usize = 4096;
/// The largest vars block the format can describe (and nginx can send).
pub const MAX_VARS: usize = 65535;

/// One parsed packet: the header's modifiers and the vars, borrowed from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub modifier1: u8,
    pub modifier2: u8,
    /// Key/value pairs in the order sent (a key may repeat: nginx sends repeated headers so).
    pub vars: Vec<(&'a str, &'a str)>,
    /// Header plus vars block: where the body starts.
    pub head_len: usize,
}

/// The outcome of looking at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// More bytes are needed (never while the buffer already holds more than the limit).
    Incomplete,
    Complete(Packet<'a>),
    /// Refused: the HTTP status to answer and why (for the log).
    Invalid(u16, &'static str),
}

fn u16_at(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]) as usize)
}

/// A var name: printable ASCII without spaces (CGI names, `HTTP_*`, anything nginx's
/// `uwsgi_param` sets).
fn valid_key(k: &[u8]) -> bool {
    !k.is_empty() && k.iter().all(|&b| b.is_ascii_graphic())
}

/// A var value: any UTF-8 text without NUL, CR or LF (nothing that could split a line or an
/// environ entry).
fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
}

/// Parse one request packet at the start of `buf`, with `max_vars` the largest vars block
/// accepted (`--buffer-size`).
pub fn parse(buf: &[u8], max_vars: usize) -> Parse<'_> {
    if buf.len() < HEADER_LEN {
        return Parse::Incomplete;
    }
    let (modifier1, modifier2) = (buf[0], buf[3]);
    if modifier1 != 0 {
        return Parse::Invalid(
            501,
            "uwsgi packet with modifier1 other than 0: only requests are served",
        );
    }
    if modifier2 != 0 {
        return Parse::Invalid(
            501,
            "uwsgi packet with modifier2 other than 0: only requests are served",
        );
    }
    let size = u16_at(buf, 1).unwrap_or(0);
    if size > max_vars {
        return Parse::Invalid(
            431,
            "uwsgi vars block larger than --buffer-size; raise --buffer-size",
        );
    }
    if size == 0 {
        return Parse::Invalid(400, "uwsgi packet with an empty vars block");
    }
    let head_len = HEADER_LEN + size;
    let Some(block) = buf.get(HEADER_LEN..head_len) else {
        return Parse::Incomplete;
    };
    let mut vars = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let Some(klen) = u16_at(block, at) else {
            return Parse::Invalid(400, "uwsgi vars block ends inside a key length");
        };
        let Some(key) = block.get(at + 2..at + 2 + klen) else {
            return Parse::Invalid(400, "uwsgi var key runs past the vars block");
        };
        at += 2 + klen;
        let Some(vlen) = u16_at(block, at) else {
            return Parse::Invalid(400, "uwsgi vars block ends inside a value length");
        };
        let Some(value) = block.get(at + 2..at + 2 + vlen) else {
            return Parse::Invalid(400, "uwsgi var value runs past the vars block");
        };
        at += 2 + vlen;
        if !valid_key(key) {
            return Parse::Invalid(400, "uwsgi var with an empty or non-printable name");
        }
        if !valid_value(value) {
            return Parse::Invalid(400, "uwsgi var value holds NUL, CR or LF");
        }
        let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value)) else {
            return Parse::Invalid(400, "uwsgi var is not valid UTF-8");
        };
        vars.push((key, value));
    }
    Parse::Complete(Packet {
        modifier1,
        modifier2,
        vars,
        head_len,
    })
}

/// Vars that describe the request itself: sent twice with different values, the packet is
/// inconsistent and refused.
const SINGLE: &[&str] = &[
    "REQUEST_METHOD",
    "REQUEST_URI",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "HTTP_HOST",
    "HTTP_CONTENT_LENGTH",
    "HTTP_TRANSFER_ENCODING",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl<'a> Packet<'a> {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The request head the HTTP parser would have produced for the same request, or the
    /// status and reason to refuse it with. `keep_alive` is false: nginx's uwsgi upstream
    /// sends one request per connection and reads the response to its end.
    pub fn request(&self) -> Result<Request<'a>, (u16, &'static str)> {
        for key in SINGLE {
            let mut values = self.vars.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            if let Some(first) = values.next() {
                if values.any(|v| v != first) {
                    return Err((400, "uwsgi packet repeats a request var with another value"));
                }
            }
        }
        let method = self
            .get("REQUEST_METHOD")
            .ok_or((400, "uwsgi packet without REQUEST_METHOD"))?;
        if !is_token(method) {
            return Err((400, "uwsgi REQUEST_METHOD is not a token"));
        }
        // nginx's uwsgi_params sends REQUEST_URI (path and query as the client sent them);
        // without it, PATH_INFO stands for a request without a query.
        let target =
            match (self.get("REQUEST_URI"), self.get("PATH_INFO")) {
                (Some(uri), _) if !uri.is_empty() => uri,
                (_, Some(path)) if self.get("QUERY_STRING").unwrap_or("").is_empty() => path,
                _ => return Err((
                    400,
                    "uwsgi packet without REQUEST_URI (the upstream should include uwsgi_params)",
                )),
            };
        if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err((400, "uwsgi REQUEST_URI is malformed"));
        }
        let minor = match self.get("SERVER_PROTOCOL") {
            None | Some("HTTP/1.0") => 0,
            Some("HTTP/1.1") | Some("HTTP/2.0") | Some("HTTP/2") | Some("HTTP/3") => 1,
            Some(p) if p.starts_with("HTTP/") => {
                return Err((505, "uwsgi SERVER_PROTOCOL is an unsupported HTTP version"))
            }
            Some(_) => return Err((400, "uwsgi SERVER_PROTOCOL is not HTTP")),
        };
        // nginx reads a chunked request body whole and sends it on with its CONTENT_LENGTH,
        // passing the client's Transfer-Encoding along as HTTP_TRANSFER_ENCODING: the body is
        // framed by CONTENT_LENGTH alone (one request per connection, so nothing can be
        // smuggled past it). Without a length, the chunked body cannot be framed.
        if self.get("HTTP_TRANSFER_ENCODING").is_some()
            && self.get("CONTENT_LENGTH").unwrap_or("").is_empty()
        {
            return Err((
                501,
                "chunked request body without CONTENT_LENGTH: the upstream must send its length",
            ));
        }
        let content_length = match self.get("CONTENT_LENGTH") {
            None | Some("") => 0,
            Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v
                .parse::<usize>()
                .map_err(|_| (400, "uwsgi CONTENT_LENGTH is out of range"))?,
            Some(_) => return Err((400, "uwsgi CONTENT_LENGTH is not a number")),
        };
        Ok(Request {
            method,
            target,
            minor,
            keep_alive: false,
            content_length,
            head_len: self.head_len,
        })
    }

    /// The request's header fields, rebuilt from the vars: `HTTP_ACCEPT_LANGUAGE` becomes
    /// `accept-language`; `CONTENT_TYPE` and `CONTENT_LENGTH` become theirs. In packet order;
    /// a repeated header stays repeated.
    pub fn headers(&self) -> impl Iterator<Item = (String, &'a str)> + '_ {
        self.vars.iter().filter_map(|(k, v)| {
            let name = match *k {
                "CONTENT_TYPE" => "content-type".to_string(),
                "CONTENT_LENGTH" => "content-length".to_string(),
                k => k
                    .strip_prefix("HTTP_")?
                    .bytes()
                    .map(|b| match b {
                        b'_' => '-',
                        b => b.to_ascii_lowercase() as char,
                    })
                    .collect(),
            };
            Some((name, *v))
        })
    }
}

/// May a TCP peer at `ip` speak uwsgi? Loopback always may; others only when `allow` (from
/// `--uwsgi-allow`, address and prefix bits) names a network holding it. IPv4-mapped IPv6
/// addresses are judged as the IPv4 address they carry.
pub fn peer_allowed(ip: std::net::IpAddr, allow: &[(std::net::IpAddr, u8)]) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if ip.is_loopback() {
        return true;
    }
    allow.iter().any(|&(net, bits)| match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    })
}

/// Encode a request packet (for tests, fuzzing and clients); `None` if a key, a value or the
/// block does not fit the format's 16-bit lengths.
pub fn encode(vars: &[(&str, &str)]) -> Option<Vec<u8>> {
    let mut block = Vec::new();
    for (k, v) in vars {
        for part in [k.as_bytes(), v.as_bytes()] {
            let len = u16::try_from(part.len()).ok()?;
            block.extend_from_slice(&len.to_le_bytes());
            block.extend_from_slice(part);
        }
    }
    let size = u16::try_from(block.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + block.len());
    out.push(0);
    out.extend_from_slice(&size.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&block);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx_get() -> Vec<u8> {
        encode(&[
            ("QUERY_STRING", "a=1&b=2"),
            ("REQUEST_METHOD", "GET"),
            ("CONTENT_TYPE", ""),
            ("CONTENT_LENGTH", ""),
            ("REQUEST_URI", "/x?a=1&b=2"),
            ("PATH_INFO", "/x"),
            ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "50000"),
            ("SERVER_PORT", "8080"),
            ("SERVER_NAME", "localhost"),
            ("HTTP_HOST", "localhost:8080"),
            ("HTTP_COOKIE", "a=1"),
            ("HTTP_COOKIE", "b=2"),
            ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
        ])
        .unwrap()
    }

    #[test]
    fn an_nginx_request_parses_into_the_http_head() {
        let mut buf = nginx_get();
        let n = buf.len();
        buf.extend_from_slice(b"body after");
        let Parse::Complete(p) = parse(&buf, DEFAULT_BUFFER_SIZE) else {
            panic!("{:?}", parse(&buf, DEFAULT_BUFFER_SIZE))
        };
        assert_eq!(p.head_len, n);
        assert_eq!(p.get("QUERY_STRING"), Some("a=1&b=2"));
        let r = p.request().unwrap();
        assert_eq!(
            (r.method, r.target, r.minor, r.keep_alive, r.content_length),
            ("GET", "/x?a=1&b=2", 1, false, 0)
        );
        let headers: Vec<_> = p.headers().collect();
        assert!(headers.contains(&("x-forwarded-for".to_string(), "10.0.0.1")));
        assert_eq!(
            headers.iter().filter(|(k, _)| k == "cookie").count(),
            2,
            "{headers:?}"
        );
        assert!(headers.contains(&("content-type".to_string(), "")));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = nginx_get();
        for n in 0..buf.len() {
            assert_eq!(
                parse(&buf[..n], DEFAULT_BUFFER_SIZE),
                Parse::Incomplete,
                "{n}"
            );
        }
    }

    #[test]
    fn other_modifiers_are_refused() {
        let mut buf = nginx_get();
        for m in [5u8, 9, 17, 97, 98, 100, 110, 111, 173, 224, 255] {
            buf[0] = m;
            assert!(matches!(parse(&buf, 65535), Parse::Invalid(501, _)), "{m}");
        }
        buf[0] = 0;
        buf[3] = 1;
        assert!(matches!(parse(&buf, 65535), Parse::Invalid(501, _)));
        // Refused from the header alone, before the block arrives.
        assert!(matches!(
            parse(&[100, 0, 0, 0], 4096),
            Parse::Invalid(501, _)
        ));
    }

    #[test]
    fn the_buffer_size_bounds_the_vars_block_before_it_arrives() {
        let header = [0u8, 0x01, 0x10, 0]; // 4097 bytes announced
        assert!(matches!(parse(&header, 4096), Parse::Invalid(431, _)));
        assert_eq!(parse(&header, 8192), Parse::Incomplete);
        let big = "v".repeat(5000);
        let buf = encode(&[("REQUEST_METHOD", "GET"), ("HTTP_X", &big)]).unwrap();
        assert!(matches!(
            parse(&buf, DEFAULT_BUFFER_SIZE),
            Parse::Invalid(431, _)
        ));
        assert!(matches!(parse(&buf, MAX_VARS), Parse::Complete(_)));
        assert!(encode(&[("K", &"v".repeat(70000))]).is_none());
    }

    #[test]
    fn truncated_and_inconsistent_blocks_are_refused() {
        // size says 5, the block holds a key length of 10.
        assert!(matches!(
            parse(&[0, 5, 0, 0, 10, 0, b'a', b'b', b'c'], 4096),
            Parse::Invalid(400, _)
        ));
        // a key, then one byte of a value length.
        assert!(matches!(
            parse(&[0, 4, 0, 0, 1, 0, b'K', 3], 4096),
            Parse::Invalid(400, _)
        ));
        // value runs past the block.
        assert!(matches!(
            parse(&[0, 6, 0, 0, 1, 0, b'K', 9, 0, b'v'], 4096),
            Parse::Invalid(400, _)
        ));
        assert!(matches!(parse(&[0, 0, 0, 0], 4096), Parse::Invalid(400, _)));
        for bad in [
            encode(&[("", "x")]).unwrap(),
            encode(&[("A B", "x")]).unwrap(),
            encode(&[("K", "a\nb")]).unwrap(),
            encode(&[("K", "a\0b")]).unwrap(),
            encode(&[("K", "a\rb")]).unwrap(),
        ] {
            assert!(
                matches!(parse(&bad, 4096), Parse::Invalid(400, _)),
                "{bad:?}"
            );
        }
        let mut latin1 = encode(&[("K", "x")]).unwrap();
        *latin1.last_mut().unwrap() = 0xff;
        assert!(matches!(parse(&latin1, 4096), Parse::Invalid(400, _)));
    }

    fn request_of(vars: &[(&str, &str)]) -> Result<(String, usize), (u16, &'static str)> {
        let buf = encode(vars).unwrap();
        let Parse::Complete(p) = parse(&buf, MAX_VARS) else {
            panic!()
        };
        p.request()
            .map(|r| (r.target.to_string(), r.content_length))
    }

    #[test]
    fn request_rules() {
        assert_eq!(
            request_of(&[
                ("REQUEST_METHOD", "POST"),
                ("REQUEST_URI", "/p"),
                ("CONTENT_LENGTH", "12")
            ]),
            Ok(("/p".into(), 12))
        );
        assert_eq!(
            request_of(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/only")]),
            Ok(("/only".into(), 0))
        );
        for (vars, status) in [
            (&[("REQUEST_URI", "/")][..], 400),
            (&[("REQUEST_METHOD", "G T"), ("REQUEST_URI", "/")], 400),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("PATH_INFO", "/"),
                    ("QUERY_STRING", "a"),
                ],
                400,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("CONTENT_LENGTH", "-1"),
                ],
                400,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("CONTENT_LENGTH", "99999999999999999999999"),
                ],
                400,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("SERVER_PROTOCOL", "HTTP/0.9"),
                ],
                505,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("SERVER_PROTOCOL", "SPDY"),
                ],
                400,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("HTTP_TRANSFER_ENCODING", "chunked"),
                ],
                501,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", "/"),
                    ("CONTENT_LENGTH", "1"),
                    ("CONTENT_LENGTH", "2"),
                ],
                400,
            ),
            (
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_METHOD", "POST"),
                    ("REQUEST_URI", "/"),
                ],
                400,
            ),
        ] {
            assert_eq!(request_of(vars).map_err(|e| e.0), Err(status), "{vars:?}");
        }
        // nginx's form of a client's chunked body: whole, with its length.
        assert_eq!(
            request_of(&[
                ("REQUEST_METHOD", "POST"),
                ("REQUEST_URI", "/"),
                ("CONTENT_LENGTH", "5"),
                ("HTTP_TRANSFER_ENCODING", "chunked"),
            ]),
            Ok(("/".into(), 5))
        );
        // The same value twice is consistent.
        assert!(request_of(&[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/")
        ])
        .is_ok());
    }

    #[test]
    fn peers_outside_loopback_need_the_allow_list() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(peer_allowed(ip("127.0.0.1"), &[]));
        assert!(peer_allowed(ip("127.8.9.10"), &[]));
        assert!(peer_allowed(ip("::1"), &[]));
        assert!(peer_allowed(ip("::ffff:127.0.0.1"), &[]));
        assert!(!peer_allowed(ip("10.0.0.5"), &[]));
        assert!(!peer_allowed(ip("::ffff:10.0.0.5"), &[]));
        let lan = [(ip("10.0.0.0"), 8), (ip("fd00::"), 8)];
        assert!(peer_allowed(ip("10.200.0.5"), &lan));
        assert!(peer_allowed(ip("::ffff:10.0.0.5"), &lan));
        assert!(peer_allowed(ip("fd12::1"), &lan));
        assert!(!peer_allowed(ip("11.0.0.1"), &lan));
        assert!(!peer_allowed(ip("fe80::1"), &lan));
        let one = [(ip("192.0.2.7"), 32)];
        assert!(peer_allowed(ip("192.0.2.7"), &one));
        assert!(!peer_allowed(ip("192.0.2.8"), &one));
        let any = [(ip("0.0.0.0"), 0), (ip("::"), 0)];
        assert!(peer_allowed(ip("203.0.113.1"), &any));
        assert!(peer_allowed(ip("2001:db8::1"), &any));
    }

    /// The vars uWSGI acts on are plain data here: they parse as vars and change nothing about
    /// the request.
    #[test]
    fn uwsgi_control_vars_are_plain_data() {
        let vars = [
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/"),
            ("UWSGI_FILE", "/tmp/evil.py"),
            ("UWSGI_SCRIPT", "evil"),
            ("UWSGI_MODULE", "evil"),
            ("UWSGI_CALLABLE", "app"),
            ("UWSGI_CHDIR", "/"),
            ("UWSGI_PYHOME", "/tmp"),
            ("UWSGI_TOUCH_RELOAD", "/tmp/x"),
            ("UWSGI_SETENV", "LD_PRELOAD=/tmp/x.so"),
        ];
        let buf = encode(&vars).unwrap();
        let Parse::Complete(p) = parse(&buf, 4096) else {
            panic!()
        };
        assert_eq!(p.vars, vars);
        let r = p.request().unwrap();
        assert_eq!((r.method, r.target), ("GET", "/"));
        assert_eq!(p.headers().count(), 0);
    }
}
