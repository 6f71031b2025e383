//! The HTTP/1.x connection rules of a worker that reads bodies and hands every field to an
//! application (the native Python worker, `uwsgid-python`): a request head with all its
//! fields, body framing (`Content-Length`, strict chunked), and the checks on a response's
//! status line and fields.
//!
//! Pure and free of I/O: the caller owns the socket, the buffers and the deadlines. The head
//! is judged by the built-in worker's own code in [`crate::http`] ([`http::split_head`]: NUL
//! and bare CR refused anywhere, UTF-8 only, the request line judged as soon as it is whole,
//! HTTP/0.9 refused, target forms, a limit counting leading blank lines; [`http::field`] and
//! [`http::Fields`]: strict tokens, no obs-fold, `Content-Length`, one valid `Host`, required on
//! HTTP/1.1, `Connection`), plus what reading bodies needs: `Transfer-Encoding: chunked`
//! (HTTP/1.1 only, never with `Content-Length`), `Expect: 100-continue`, no control character
//! in a value, at most [`MAX_HEADERS`] fields.
//!
//! Chunk sizes are 1 to 16 hexadecimal digits and nothing else (no sign, prefix, blank or
//! underscore: what `int(x, 16)` would take is a smuggling risk behind a proxy that reads it
//! otherwise); every line of the chunked framing ends with CRLF; chunk extensions are skipped;
//! trailer fields are read and dropped, within the same limit as a head.

use crate::http;

/// Header fields a request may carry at most.
pub const MAX_HEADERS: usize = 100;

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (0 when absent).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head; field names and values borrow the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The fields in order, names as sent, values without surrounding blanks.
    pub fields: Vec<(&'a str, &'a str)>,
    pub keep_alive: bool,
    pub framing: Framing,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
    /// Bytes of the head, including leading blank lines and the final blank line.
    pub head_len: usize,
}

/// What [`parse_head`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse<'a> {
    Incomplete,
    Complete(Head<'a>),
    /// The status to answer (then close) and why.
    Invalid(u16, &'static str),
}

/// An RFC 9110 token (methods, field names): [`crate::http::is_token`].
pub use crate::http::is_token;

/// Parse a request head at the start of `buf`, at most `max_head` bytes long.
///
/// The head's framing, request line and the common fields are the built-in worker's own
/// checks ([`http::split_head`], [`http::field`], [`http::Fields`]); what is added here is
/// what a server that reads bodies and hands every field to an application needs.
pub fn parse_head(buf: &[u8], max_head: usize) -> HeadParse<'_> {
    let raw = match http::split_head(buf, max_head) {
        Ok(Some(h)) => h,
        Ok(None) => return HeadParse::Incomplete,
        Err((status, why)) => return HeadParse::Invalid(status, why),
    };
    let mut common = http::Fields::new(raw.minor);
    let mut fields = Vec::new();
    let mut chunked = false;
    let mut expect = false;
    for line in raw.field_lines() {
        if fields.len() >= MAX_HEADERS {
            return HeadParse::Invalid(431, "too many header fields");
        }
        let (name, value) = match http::field(line) {
            Ok(f) => f,
            Err((status, why)) => return HeadParse::Invalid(status, why),
        };
        let value = value.trim_matches([' ', '\t']);
        // The application sees every value: no control character reaches it.
        if value.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) {
            return HeadParse::Invalid(400, "control character in a header value");
        }
        if let Err((status, why)) = common.see(name, value) {
            return HeadParse::Invalid(status, why);
        }
        if name.eq_ignore_ascii_case("content-length") && value.len() > 19 {
            return HeadParse::Invalid(400, "malformed Content-Length");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if raw.minor == 0 {
                return HeadParse::Invalid(400, "Transfer-Encoding in an HTTP/1.0 request");
            }
            if !value.eq_ignore_ascii_case("chunked") || chunked {
                return HeadParse::Invalid(501, "only Transfer-Encoding: chunked is supported");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case("100-continue") {
                expect = true;
            } else {
                return HeadParse::Invalid(417, "unsupported Expect");
            }
        }
        fields.push((name, value));
    }
    if let Err((status, why)) = common.finish() {
        return HeadParse::Invalid(status, why);
    }
    if chunked && common.content_length.is_some() {
        return HeadParse::Invalid(400, "both Transfer-Encoding and Content-Length");
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::Length(common.content_length.unwrap_or(0))
    };
    let has_body = framing != Framing::Length(0);
    HeadParse::Complete(Head {
        method: raw.method,
        target: raw.target,
        minor: raw.minor,
        fields,
        keep_alive: common.keep_alive,
        framing,
        expect_continue: expect && raw.minor == 1 && has_body,
        head_len: raw.head_len,
    })
}

/// What the chunked decoder expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of a size line (`digits` so far, `size` their value).
    Size {
        digits: u8,
        size: u64,
    },
    /// Inside a chunk extension, up to CRLF.
    Ext {
        size: u64,
    },
    /// The LF ending a size line.
    SizeLf {
        size: u64,
    },
    /// `left` bytes of chunk data.
    Data {
        left: u64,
    },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer line (or the final empty line when `empty`).
    Trailer {
        empty: bool,
        cr: bool,
    },
    Done,
}

/// A request body's decoder: feed it received bytes, it says which of them are body data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    state: Chunk,
    chunked: bool,
    /// Identity: bytes left; chunked: bytes of framing read (for the trailer limit).
    left: u64,
    /// Bytes of trailer section read so far.
    trailer: usize,
    max_trailer: usize,
}

/// One step of [`BodyDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// `used` input bytes were consumed; of them, `data` (a range of the input) is body data.
    Data {
        used: usize,
        data: std::ops::Range<usize>,
    },
    /// The body is complete; `used` bytes of the input were part of it.
    End { used: usize },
    /// Malformed framing: answer 400 and close.
    Invalid(&'static str),
}

impl BodyDecoder {
    /// A decoder for `framing`; trailer sections longer than `max_trailer` are refused.
    pub fn new(framing: Framing, max_trailer: usize) -> BodyDecoder {
        match framing {
            Framing::Length(n) => BodyDecoder {
                state: if n == 0 { Chunk::Done } else { Chunk::DataCr },
                chunked: false,
                left: n,
                trailer: 0,
                max_trailer,
            },
            Framing::Chunked => BodyDecoder {
                state: Chunk::Size { digits: 0, size: 0 },
                chunked: true,
                left: 0,
                trailer: 0,
                max_trailer,
            },
        }
    }

    /// True once the whole body was read.
    pub fn done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Body bytes still expected for a `Content-Length` body (None if chunked).
    pub fn remaining(&self) -> Option<u64> {
        (!self.chunked).then_some(self.left)
    }

    /// Decode from the start of `input`: at most one run of data per call, so the caller can
    /// hand it over before asking for more. Never consumes bytes past the body's end.
    pub fn decode(&mut self, input: &[u8]) -> Decoded {
        if self.state == Chunk::Done {
            return Decoded::End { used: 0 };
        }
        if !self.chunked {
            let n = (self.left.min(input.len() as u64)) as usize;
            self.left -= n as u64;
            if self.left == 0 {
                self.state = Chunk::Done;
            }
            return Decoded::Data {
                used: n,
                data: 0..n,
            };
        }
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Chunk::Size { digits, size } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Decoded::Invalid("chunk size too large");
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.state = Chunk::Size {
                            digits: digits + 1,
                            size: size << 4 | v,
                        };
                    }
                    b';' if digits > 0 => self.state = Chunk::Ext { size },
                    b'\r' if digits > 0 => self.state = Chunk::SizeLf { size },
                    _ => return Decoded::Invalid("malformed chunk size"),
                },
                Chunk::Ext { size } => match b {
                    b'\r' => self.state = Chunk::SizeLf { size },
                    b'\n' | 0 => return Decoded::Invalid("malformed chunk extension"),
                    _ => {
                        self.trailer += 1;
                        if self.trailer > self.max_trailer {
                            return Decoded::Invalid("chunk extension too long");
                        }
                    }
                },
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return Decoded::Invalid("chunk size line without CRLF");
                    }
                    self.state = if size == 0 {
                        Chunk::Trailer {
                            empty: true,
                            cr: false,
                        }
                    } else {
                        Chunk::Data { left: size }
                    };
                }
                Chunk::Data { left } => {
                    let n = left.min((input.len() - i) as u64) as usize;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { left }
                    };
                    return Decoded::Data {
                        used: i + n,
                        data: i..i + n,
                    };
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Decoded::Invalid("chunk data not followed by CRLF");
                    }
                    self.state = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Decoded::Invalid("chunk data not followed by CRLF");
                    }
                    self.state = Chunk::Size { digits: 0, size: 0 };
                }
                Chunk::Trailer { empty, cr } => {
                    self.trailer += 1;
                    if self.trailer > self.max_trailer {
                        return Decoded::Invalid("trailer section too large");
                    }
                    match (b, cr) {
                        (b'\r', false) => {
                            self.state = Chunk::Trailer { empty, cr: true };
                        }
                        (b'\n', true) if empty => {
                            self.state = Chunk::Done;
                            return Decoded::End { used: i + 1 };
                        }
                        (b'\n', true) => {
                            self.state = Chunk::Trailer {
                                empty: true,
                                cr: false,
                            }
                        }
                        (b'\r' | b'\n' | 0, _) | (_, true) => {
                            return Decoded::Invalid("malformed trailer field")
                        }
                        _ => {
                            self.state = Chunk::Trailer {
                                empty: false,
                                cr: false,
                            }
                        }
                    }
                }
                Chunk::Done => return Decoded::End { used: i },
            }
            i += 1;
        }
        Decoded::Data {
            used: i,
            data: i..i,
        }
    }
}

/// Check a response status line's text (`"200 OK"`): three digits from 100 to 999, a space,
/// then a reason with no control character (CR, LF, NUL...). The error says what is wrong.
pub fn check_status(status: &str) -> Result<u16, &'static str> {
    let b = status.as_bytes();
    if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || b[3] != b' ' {
        return Err("a status is three digits, a space and a reason phrase (\"200 OK\")");
    }
    if b.iter().any(|&c| c < b' ' && c != b'\t' || c == 0x7f) {
        return Err("control character (CR, LF, NUL...) in the status");
    }
    let code = (b[0] - b'0') as u16 * 100 + (b[1] - b'0') as u16 * 10 + (b[2] - b'0') as u16;
    if code < 100 {
        return Err("a status code is 100 to 999");
    }
    Ok(code)
}

/// Check one response header field: a token name and a value without CR, LF, NUL or other
/// control characters (tab allowed), so no field can split the response.
pub fn check_field(name: &str, value: &str) -> Result<(), &'static str> {
    if !is_token(name) {
        return Err("a header name is a token (letters, digits, !#$%&'*+-.^_`|~)");
    }
    if value.bytes().any(|c| c < b' ' && c != b'\t' || c == 0x7f) {
        return Err("control character (CR, LF, NUL...) in a header value");
    }
    Ok(())
}

/// Fields a server sets itself, never passed on from the application (RFC 9110 §7.6.1).
pub fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

/// Statuses whose responses never have a body.
pub fn bodyless_status(code: u16) -> bool {
    code < 200 || code == 204 || code == 304
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> Head<'_> {
        match parse_head(raw, 8192) {
            HeadParse::Complete(h) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn invalid(raw: &[u8]) -> u16 {
        match parse_head(raw, 8192) {
            HeadParse::Invalid(s, _) => s,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn heads() {
        let h = complete(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1 \r\n\r\n");
        assert_eq!((h.method, h.target, h.minor), ("POST", "/a?b", 1));
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(h.fields[2], ("X-A", "1"));
        assert!(h.keep_alive);
        let h = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = complete(
            b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.expect_continue);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", 8192),
            HeadParse::Incomplete
        );
    }

    #[test]
    fn refused_heads() {
        for (raw, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \u{b2}\r\n\r\n".as_bytes(),
                400,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
        ] {
            assert_eq!(invalid(raw), status, "{raw:?}");
        }
        assert_eq!(invalid(&[b'a'; 9000]), 431);
        assert_eq!(invalid(&b"\r\n".repeat(5000)), 431);
    }

    fn decode_all(
        framing: Framing,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), &'static str> {
        let mut d = BodyDecoder::new(framing, 1024);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut fed = step.min(input.len());
        loop {
            match d.decode(&input[pos..fed]) {
                Decoded::Data { used, data } => {
                    out.extend_from_slice(&input[pos + data.start..pos + data.end]);
                    pos += used;
                    if d.done() {
                        return Ok((out, pos));
                    }
                    if used == 0 || pos == fed {
                        if fed == input.len() {
                            return Err("incomplete");
                        }
                        fed = (fed + step).min(input.len());
                    }
                }
                Decoded::End { used } => return Ok((out, pos + used)),
                Decoded::Invalid(why) => return Err(why),
            }
        }
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (data, used) = decode_all(Framing::Chunked, body, step).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(&body[used..], b"NEXT", "step {step}");
        }
        for bad in [
            &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"1_0\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert!(decode_all(Framing::Chunked, bad, 3).is_err(), "{bad:?}");
        }
        let (data, used) = decode_all(Framing::Length(3), b"abcdef", 2).unwrap();
        assert_eq!((data.as_slice(), used), (&b"abc"[..], 3));
    }

    #[test]
    fn response_checks() {
        assert_eq!(check_status("200 OK"), Ok(200));
        assert!(check_status("200 OK\r\nX: y").is_err());
        assert!(check_status("20 OK").is_err());
        assert!(check_status("200").is_err());
        assert!(check_field("X-A", "b\tc").is_ok());
        assert!(check_field("X-A", "b\r\nSet-Cookie: x").is_err());
        assert!(check_field("X A", "b").is_err());
        assert!(check_field("X-A", "a\0").is_err());
    }
}
