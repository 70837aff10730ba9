//! How strictly the server reads HTTP/1.1, in one table: request bytes →
//! the status answered, and whether the connection is closed after it.
//! What matters behind a proxy that forwards raw bytes (RFC 9112): anything
//! two parsers could read differently is refused and the connection ends,
//! since nobody can know where the next request would start.

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{FakeHetzner, Setup};

/// How long an open connection is watched for its end: longer than the
/// server's one-second linger after a refusal, far shorter than its
/// `CLIENT_TIMEOUT` for idle keep-alive connections.
const WATCH: Duration = Duration::from_millis(2500);

struct Answer {
    status: u16,
    head: String,
    closed: bool,
}

fn exchange(addr: &str, bytes: &[u8]) -> Answer {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WATCH)).expect("timeout");
    conn.write_all(bytes).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => {
                return Answer { status: 0, head: format!("no answer, got {:?}", text(&got)), closed: false }
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = text(&got[..head_end]);
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while got.len() < head_end + length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let closed = match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("more than one answer to {:?}: {:?}", text(bytes), text(&buf[..n])),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => false,
        Err(_) => true,
    };
    Answer { status, head, closed }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n{body}").into_bytes()
}

const OPEN: bool = false;
const CLOSED: bool = true;

#[test]
fn the_parsers_strictness_in_one_table() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com").start();
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = r#"{"fqdn":"home.example.com"}"#;
    let n = body.len();
    let long_path = |line_len: usize| {
        let path = "/".to_string() + &"a".repeat(line_len - "GET  HTTP/1.1".len() - 1);
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    };
    let rows: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("a plain GET", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 200, OPEN),
        ("HTTP/1.0 needs no Host", b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(), 200, CLOSED),
        ("a JSON POST", post(&format!("Content-Length: {n}\r\n"), body), 401, OPEN),
        ("a chunked POST", post("Transfer-Encoding: chunked\r\n", &format!("{n:x}\r\n{body}\r\n0\r\n\r\n")), 401, OPEN),
        (
            "an obs-fold line",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n Transfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            CLOSED,
        ),
        ("an empty header name", b"GET /healthz HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n".to_vec(), 400, CLOSED),
        ("space before the colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(), 400, CLOSED),
        ("no Host in HTTP/1.1", b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(), 400, CLOSED),
        ("two Hosts", b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".to_vec(), 400, CLOSED),
        ("Content-Length +5", post("Content-Length: +27\r\n", body), 400, CLOSED),
        ("Content-Length as a list", post("Content-Length: 27, 27\r\n", body), 400, CLOSED),
        (
            "Content-Length beside chunked",
            post("Content-Length: 27\r\nTransfer-Encoding: chunked\r\n", body),
            400,
            CLOSED,
        ),
        ("two different Content-Lengths", post("Content-Length: 27\r\nContent-Length: 28\r\n", body), 400, CLOSED),
        ("chunk size +1b", post("Transfer-Encoding: chunked\r\n", &format!("+1b\r\n{body}\r\n0\r\n\r\n")), 400, CLOSED),
        (
            "chunk size in spaces",
            post("Transfer-Encoding: chunked\r\n", &format!(" 1b \r\n{body}\r\n0\r\n\r\n")),
            400,
            CLOSED,
        ),
        (
            "a bare LF in a chunk extension",
            post("Transfer-Encoding: chunked\r\n", &format!("1b;a\nb\r\n{body}\r\n0\r\n\r\n")),
            400,
            CLOSED,
        ),
        (
            "a chunk without its CRLF",
            post("Transfer-Encoding: chunked\r\n", &format!("1b\r\n{body}XX0\r\n\r\n")),
            400,
            CLOSED,
        ),
        ("chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 400, CLOSED),
        ("gzip, chunked (not decoded)", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501, CLOSED),
        ("a coding that is not chunked", post("Transfer-Encoding: gzip\r\n", ""), 501, CLOSED),
        (
            "chunked in HTTP/1.0",
            b"POST /update HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            CLOSED,
        ),
        ("lower-case head", b"head /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, CLOSED),
        ("an unknown method", b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, CLOSED),
        ("a fourth part in the request line", b"GET /healthz HTTP/1.1 x\r\nHost: x\r\n\r\n".to_vec(), 400, CLOSED),
        ("two spaces in the request line", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, CLOSED),
        ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505, CLOSED),
        ("the h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505, CLOSED),
        // Answered by the handler (path too long), not the parser: the connection stays.
        ("a request line of exactly 8192 bytes", long_path(8192), 414, OPEN),
        ("a request line of 8193 bytes", long_path(8193), 414, CLOSED),
    ];
    // Every row on its own connection, at once: an open one is watched for WATCH.
    let results: Vec<(String, Answer)> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .iter()
            .map(|(name, bytes, _, _)| {
                let addr = addr.clone();
                s.spawn(move || (name.to_string(), exchange(&addr, bytes)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("row")).collect()
    });
    let mut wrong = Vec::new();
    for ((name, _, status, closed), (_, got)) in rows.iter().zip(&results) {
        if got.status != *status || got.closed != *closed {
            wrong.push(format!(
                "{name}: wanted {status} {}, got {} {}\n{}",
                if *closed { "closed" } else { "open" },
                got.status,
                if got.closed { "closed" } else { "open" },
                got.head
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A `TE: chunked` request header never makes the answer chunked.
    let a = exchange(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nTE: chunked\r\n\r\n");
    assert_eq!(a.status, 200);
    let head = a.head.to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding") && head.contains("content-length: 2"), "{}", a.head);
}
