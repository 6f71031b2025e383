//! The `uwsgi` target: `uwsgid::uwsgi_proto::parse` and `Packet::request`.
//!
//! Besides "never panics": parsing is deterministic; `Incomplete` only while the input is
//! shorter than the header plus an announced block within the limit (a peer cannot make a
//! worker buffer more than `--buffer-size`); a complete packet's head fits the input and the
//! limit, parses alike from its own bytes and at no shorter prefix, and re-encodes to the same
//! bytes; a request head derived from it has a token method, a clean target, no keep-alive.

use uwsgid::uwsgi_proto::{self, Parse, HEADER_LEN};

pub fn seeds() -> Vec<Vec<u8>> {
    let get = uwsgi_proto::encode(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/x?a=1"),
        ("QUERY_STRING", "a=1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_COOKIE", "a=1"),
        ("HTTP_COOKIE", "b=2"),
    ])
    .unwrap();
    let mut post = uwsgi_proto::encode(&[
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/p"),
        ("CONTENT_LENGTH", "3"),
        ("UWSGI_FILE", "/tmp/x.py"),
    ])
    .unwrap();
    post.extend_from_slice(b"abc");
    vec![
        get,
        post,
        vec![0, 0, 0, 0],
        vec![100, 0, 0, 0],
        vec![0, 1, 16, 0],
    ]
}

pub const TOKENS: &[&[u8]] = &[
    b"\x00",
    b"\xff\xff",
    b"\x0e\x00REQUEST_METHOD",
    b"\x03\x00GET",
    b"\x0b\x00REQUEST_URI",
    b"\x01\x00/",
    b"\x0e\x00CONTENT_LENGTH",
    b"\x0f\x00SERVER_PROTOCOL",
    b"\x08\x00HTTP/1.1",
    b"HTTP_",
];

fn check(data: &[u8], limit: usize) -> String {
    let parsed = uwsgi_proto::parse(data, limit);
    assert_eq!(parsed, uwsgi_proto::parse(data, limit), "deterministic");
    match parsed {
        Parse::Incomplete => {
            if data.len() >= HEADER_LEN {
                let size = u16::from_le_bytes([data[1], data[2]]) as usize;
                assert!(
                    size <= limit,
                    "Incomplete with {size} announced over {limit}"
                );
                assert!(
                    data.len() < HEADER_LEN + size,
                    "Incomplete with the block present"
                );
            }
            "incomplete".into()
        }
        Parse::Invalid(status, why) => {
            assert!(matches!(status, 400 | 431 | 501), "status {status}");
            assert!(!why.is_empty());
            format!("invalid {status} {why}")
        }
        Parse::Complete(p) => {
            let h = p.head_len;
            assert!(h <= data.len() && h <= HEADER_LEN + limit);
            assert_eq!((p.modifier1, p.modifier2), (0, 0));
            let head = &data[..h];
            assert_eq!(
                uwsgi_proto::parse(head, limit),
                uwsgi_proto::parse(data, limit)
            );
            assert!(!matches!(
                uwsgi_proto::parse(&head[..h - 1], limit),
                Parse::Complete(_)
            ));
            assert_eq!(
                uwsgi_proto::encode(&p.vars).as_deref(),
                Some(head),
                "re-encodes to the same bytes"
            );
            for (k, v) in &p.vars {
                assert!(!k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic()));
                assert!(!v.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n'));
            }
            let _ = p.headers().count();
            match p.request() {
                Ok(r) => {
                    assert!(!r.method.is_empty() && r.method.is_ascii());
                    assert!(!r.target.is_empty());
                    assert!(r.target.bytes().all(|b| b > b' ' && b != 0x7f));
                    assert!(!r.keep_alive && r.minor <= 1 && r.head_len == h);
                    format!("request body={}", r.content_length > 0)
                }
                Err((status, _)) => {
                    assert!(matches!(status, 400 | 501 | 505));
                    format!("refused {status}")
                }
            }
        }
    }
}

pub fn run(data: &[u8]) -> String {
    let sig = check(data, uwsgi_proto::DEFAULT_BUFFER_SIZE);
    check(data, 16);
    check(data, uwsgi_proto::MAX_VARS);
    sig
}
