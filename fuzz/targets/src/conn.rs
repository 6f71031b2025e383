//! The `conn` target: `uwsgid::conn`, the connection and body state machine of the native
//! Python worker.
//!
//! - `parse_head` (limits 65536 and 64): deterministic; `Incomplete` never holds more than the
//!   limit; a complete head fits the input and the limit, has no NUL, at most
//!   [`conn::MAX_HEADERS`] fields, exactly one `Host` on HTTP/1.1, never both chunked framing
//!   and a `Content-Length`, and `expect_continue` only on HTTP/1.1 with a body.
//! - `BodyDecoder` on the bytes after the head (or on the whole input as a chunked body): the
//!   body and the bytes consumed are the same whether the input is fed at once, byte by byte,
//!   or in slices whose sizes the input chooses; nothing past the body's end is consumed; data
//!   ranges lie inside what was used; a chunked body's data is shorter than its framing.
//! - `check_status`/`check_field`: nothing accepted contains CR, LF or NUL.

use uwsgid::conn::{self, BodyDecoder, Decoded, Framing, HeadParse};

pub const CONN_TOKENS: &[&[u8]] = &[
    b"POST / HTTP/1.1\r\n",
    b"GET / HTTP/1.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n",
    b"ffffffffffffffff\r\n",
    b";ext=1",
    b"X-T: 1\r\n",
    b"0x5",
    b"\x00",
    b"\r",
];

pub fn conn_seeds() -> Vec<Vec<u8>> {
    [
        &b"POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloGET",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"200 OK",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// Feed `input` to a decoder for `framing` in slices of `step(i)` bytes; the body, the bytes
/// used, and how it ended.
fn decode(
    framing: Framing,
    input: &[u8],
    step: &dyn Fn(usize) -> usize,
) -> (Vec<u8>, usize, String) {
    let mut d = BodyDecoder::new(framing, 256);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut avail = step(0).min(input.len());
    let mut round = 0;
    loop {
        round += 1;
        assert!(
            round < 4 * input.len() + 16,
            "the decoder makes no progress"
        );
        let slice = &input[pos..avail];
        match d.decode(slice) {
            Decoded::Data { used, data } => {
                assert!(used <= slice.len(), "used {used} > fed {}", slice.len());
                assert!(
                    data.start <= data.end && data.end <= used,
                    "data {data:?} outside used {used}"
                );
                body.extend_from_slice(&slice[data]);
                pos += used;
                if d.done() {
                    return (body, pos, "end".into());
                }
                if pos == avail {
                    if avail == input.len() {
                        return (body, pos, "incomplete".into());
                    }
                    avail = (avail + step(round).max(1)).min(input.len());
                }
            }
            Decoded::End { used } => {
                assert!(used <= slice.len());
                assert!(d.done(), "End but not done");
                return (body, pos + used, "end".into());
            }
            Decoded::Invalid(why) => return (body, pos, format!("invalid {why}")),
        }
    }
}

fn check_body(framing: Framing, input: &[u8], sizes: &[u8]) -> String {
    // Byte by byte costs a call per byte: only on the first 4 KiB (heads are small anyway).
    let input = &input[..input.len().min(4096)];
    let whole = decode(framing, input, &|_| usize::MAX);
    let bytewise = decode(framing, input, &|_| 1);
    let chosen = decode(framing, input, &|i| {
        sizes
            .get(i % sizes.len().max(1))
            .map_or(3, |&b| b as usize % 17 + 1)
    });
    // An error is found at the same byte however the input is sliced; the body before it may
    // be handed over in more or fewer pieces, but it is the same bytes.
    for other in [&bytewise, &chosen] {
        assert_eq!(
            whole.2, other.2,
            "ending depends on how the input is sliced"
        );
        if whole.2 == "end" {
            assert_eq!(whole.1, other.1, "bytes used depend on the slicing");
            assert_eq!(whole.0, other.0, "body depends on the slicing");
        }
    }
    if let Framing::Length(n) = framing {
        assert!(whole.0.len() as u64 <= n);
        if whole.2 == "end" {
            assert_eq!(whole.0.len() as u64, n);
        }
    } else if whole.2 == "end" {
        assert!(whole.0.len() < whole.1, "chunked data without framing");
    }
    format!("{} {}", whole.2, whole.0.len().min(4))
}

fn check_head(buf: &[u8], max: usize) -> String {
    let parsed = conn::parse_head(buf, max);
    assert_eq!(
        parsed,
        conn::parse_head(buf, max),
        "parse_head is deterministic"
    );
    match parsed {
        HeadParse::Incomplete => {
            assert!(
                buf.len() <= max,
                "Incomplete holding {} > {max} bytes",
                buf.len()
            );
            "incomplete".into()
        }
        HeadParse::Invalid(status, why) => {
            assert!(
                matches!(status, 400 | 417 | 431 | 501 | 505),
                "status {status}"
            );
            assert!(!why.is_empty());
            format!("invalid {status} {why}")
        }
        HeadParse::Complete(h) => {
            assert!(h.head_len <= buf.len() && h.head_len <= max);
            assert!(!buf[..h.head_len].contains(&0), "NUL accepted");
            assert!(h.fields.len() <= conn::MAX_HEADERS);
            let hosts = h
                .fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
                .count();
            assert!(
                hosts <= 1 && (h.minor == 0 || hosts == 1),
                "{hosts} Host fields on 1.{}",
                h.minor
            );
            let has_cl = h
                .fields
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
            assert!(
                !(h.framing == Framing::Chunked && has_cl),
                "chunked with Content-Length"
            );
            if h.expect_continue {
                assert!(h.minor == 1 && h.framing != Framing::Length(0));
            }
            for (n, v) in &h.fields {
                assert!(conn::is_token(n));
                assert!(!v.contains(['\r', '\n', '\0']));
            }
            let sig = format!("complete {:?}", h.framing);
            let framing = h.framing;
            let rest = &buf[h.head_len..];
            let sizes = rest.get(..8).unwrap_or(rest).to_vec();
            format!("{sig} {}", check_body(framing, rest, &sizes))
        }
    }
}

pub fn conn(data: &[u8]) -> String {
    let sig = check_head(data, 65536);
    check_head(data, 64);
    let sizes = data.get(..4).unwrap_or(data).to_vec();
    let chunked = check_body(Framing::Chunked, data, &sizes);
    if let Ok(text) = std::str::from_utf8(data) {
        if conn::check_status(text).is_ok() {
            assert!(
                !text.contains(['\r', '\n', '\0']),
                "status with CR/LF/NUL accepted"
            );
        }
        let (name, value) = text.split_once(':').unwrap_or((text, ""));
        if conn::check_field(name, value).is_ok() {
            assert!(
                !format!("{name}{value}").contains(['\r', '\n', '\0']),
                "field with CR/LF/NUL accepted"
            );
        }
    }
    format!("{sig} | chunked {chunked}")
}
