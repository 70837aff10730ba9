//! The server process on the open internet: each attack of the red-team
//! pass against the real binary, on loopback, in bounded loops. Every test
//! checks that the process is still up and answering afterwards.

use crate::common::Proc;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{http, proc_status, scratch, spawn_dry_run, threads};

/// A dry-run server, killed on drop.
struct Server {
    child: Proc,
    addr: String,
    /// Kept until the server is dropped (removed then).
    dir: tempfile::TempDir,
}

impl Server {
    fn start(tag: &str, extra: &[(&str, &str)]) -> Server {
        let dir = scratch(tag);
        let (child, addr) = spawn_dry_run(dir.path(), extra);
        Server { child, addr, dir }
    }

    fn key(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("keys")).expect("keys");
        text.split_whitespace().nth(1).expect("key").to_string()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/healthz` answers 200, and quickly.
    #[track_caller]
    fn assert_healthy(&mut self, within: Duration) {
        assert!(self.child.try_wait().expect("wait").is_none(), "the server process died");
        let started = Instant::now();
        let answer = http(&self.addr, "GET /healthz HTTP/1.0\r\n\r\n");
        assert!(status(&answer) == 200 && answer.ends_with("ok"), "{answer:?}");
        assert!(started.elapsed() < within, "/healthz took {:?}", started.elapsed());
    }

    /// An update of home.example.com to `ip` through dyndns2.
    fn update(&self, ip: &str) -> String {
        let key = self.key();
        http(
            &self.addr,
            &format!("GET /nic/update?hostname=home.example.com&myip={ip}&user=home&pass={key} HTTP/1.0\r\n\r\n"),
        )
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a raw answer, 0 when there is none.
fn status(answer: &str) -> u16 {
    let answer = answer.strip_prefix("HTTP/1.1 100 Continue\r\n\r\n").unwrap_or(answer);
    answer.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Send `bytes`, say that nothing more comes, and read the answer until
/// the server closes. (Without the shutdown, the server reads what is left
/// of a refused request for up to a second before it closes.)
fn exchange(mut stream: TcpStream, bytes: &[u8]) -> String {
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    read_answer(stream)
}

/// Read until the server closes, sending nothing more.
fn read_answer(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_huge_declared_body_is_refused_without_allocating_it() {
    let mut server = Server::start("huge-body", &[]);
    let answer = exchange(
        server.connect(),
        b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{",
    );
    assert!(status(&answer) == 413, "{answer:?}");
    // A body just over the bound, sent whole, is refused the same way.
    let body = "x".repeat(5000);
    let answer = exchange(
        server.connect(),
        format!("POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{body}").as_bytes(),
    );
    assert!(status(&answer) == 413, "{answer:?}");
    // A chunked body that grows past the bound too.
    let chunk = format!("1000\r\n{}\r\n", "y".repeat(4096));
    let answer = exchange(
        server.connect(),
        format!("POST /update HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n")
            .as_bytes(),
    );
    assert!(status(&answer) == 413, "{answer:?}");
    server.assert_healthy(Duration::from_secs(1));
    assert!(proc_status(server.pid(), "VmHWM:") < 32 * 1024, "peak RSS grew");
}

#[test]
fn ambiguous_body_lengths_are_refused() {
    let mut server = Server::start("ambiguous", &[]);
    for head in [
        "Content-Length: ten\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let answer = exchange(server.connect(), format!("POST /update HTTP/1.1\r\n{head}\r\nhello").as_bytes());
        assert!(status(&answer) == 400, "{head:?} → {answer:?}");
    }
    // A coding that is not chunked would pass an undecoded body on.
    let answer =
        exchange(server.connect(), b"POST /update HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello");
    assert!(status(&answer) == 501, "{answer:?}");
    server.assert_healthy(Duration::from_secs(1));
}

#[test]
fn oversized_request_lines_and_headers_are_refused() {
    let mut server = Server::start("heads", &[]);
    let method = "A".repeat(9000);
    let answer = exchange(server.connect(), format!("{method} / HTTP/1.1\r\n\r\n").as_bytes());
    assert!(status(&answer) == 414, "{:?}", &answer[..answer.len().min(80)]);

    let big = format!("X-Big: {}\r\n", "b".repeat(17_000));
    let answer = exchange(server.connect(), format!("GET /healthz HTTP/1.1\r\n{big}\r\n").as_bytes());
    assert!(status(&answer) == 431, "{answer:?}");

    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = exchange(server.connect(), format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert!(status(&answer) == 431, "{answer:?}");

    // 3 MiB of method, sent by a thread that does not care about the reset.
    let mut stream = server.connect();
    let writer = {
        let mut w = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let chunk = vec![b'M'; 64 * 1024];
            for _ in 0..48 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = writer.join();
    server.assert_healthy(Duration::from_secs(1));
    assert!(proc_status(server.pid(), "VmHWM:") < 32 * 1024, "a 3 MiB request line was buffered");
}

#[test]
fn control_characters_in_the_request_cannot_forge_log_lines() {
    let dir = scratch("forge-log");
    let log = dir.path().join("server.log");
    let log_str = log.display().to_string();
    let (child, addr) = spawn_dry_run(dir.path(), &[("LOG_FILE", log_str.as_str())]);
    let mut server = Server { child, addr, dir };
    for request in [
        "GET\n2026-11-25T06:10:42Z\t[ERROR]\tforged /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz\n2026-11-25T06:10:43Z [ERROR] forged HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nUser-Agent: a\x1b[31mred\n2026-11-25T06:10:44Z [ERROR] forged\r\n\r\n",
        "GET\x1b[2J /healthz HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(server.connect(), request.as_bytes());
        assert!(status(&answer) == 400, "{request:?} → {answer:?}");
    }
    // A user agent with quotes and backslashes is escaped, not cut loose.
    let answer = http(&server.addr, "GET /healthz HTTP/1.0\r\nUser-Agent: x\" host=evil \\\r\n\r\n");
    assert!(answer.ends_with("ok"), "{answer}");
    server.assert_healthy(Duration::from_secs(1));
    // The log is written by its own thread: wait for the last line.
    let expected = r#"agent="x\" host=evil \\""#;
    let until = Instant::now() + Duration::from_secs(5);
    let mut text = std::fs::read_to_string(&log).expect("log");
    while !text.contains(expected) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        text = std::fs::read_to_string(&log).expect("log");
    }
    for line in text.lines() {
        assert!(line.starts_with("20") && line.contains("] "), "a line the server did not write: {line:?}");
        assert!(!line.contains("forged") && !line.contains('\x1b'), "{line:?}");
    }
    assert!(text.contains(expected), "{text}");
}

#[test]
fn slow_and_stalled_clients_do_not_stop_other_answers() {
    let mut server = Server::start("slow", &[("CLIENT_TIMEOUT", "2")]);
    // Bodies announced and never sent, in every framing tiny_http had a
    // special case for; 12 of each, more than the 8 workers of old.
    let heads = [
        "POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
        "POST /update HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /update HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n",
        "POST /update HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2000\r\n\r\n",
    ];
    let mut stalled = Vec::new();
    for head in heads {
        for _ in 0..12 {
            let mut s = server.connect();
            s.write_all(head.as_bytes()).expect("write");
            stalled.push(s);
        }
    }
    // A slowloris: one byte of a head every 300 ms.
    let loris = server.connect();
    let loris_started = Instant::now();
    let dripper = {
        let mut w = loris.try_clone().expect("clone");
        std::thread::spawn(move || {
            for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(b"a".repeat(100).iter()) {
                if w.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        server.assert_healthy(Duration::from_millis(500));
    }
    let started = Instant::now();
    assert!(server.update("192.0.2.44").ends_with("good 192.0.2.44"));
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());

    // Each stalled request ends with 408 and a closed connection.
    for s in stalled {
        let answer = read_answer(s);
        assert_eq!(status(&answer), 408, "{answer:?}");
    }
    let answer = read_answer(loris.try_clone().expect("clone"));
    assert_eq!(status(&answer), 408, "{answer:?}");
    // CLIENT_TIMEOUT (2 s) plus the 1 s the server reads what is left
    // after answering; the drip alone would last 40 s. Generous for a busy
    // machine.
    assert!(loris_started.elapsed() < Duration::from_secs(10), "the slowloris lasted {:?}", loris_started.elapsed());
    let _ = loris.shutdown(std::net::Shutdown::Both);
    let _ = dripper.join();
    server.assert_healthy(Duration::from_secs(1));
}

#[test]
fn a_burst_of_new_connections_never_waits_for_busy_ones() {
    let server = Server::start("burst", &[("CLIENT_TIMEOUT", "4")]);
    // The race this guards against needs the right moment; five rounds.
    for _ in 0..5 {
        burst_round(&server);
    }
}

fn burst_round(server: &Server) {
    // Leave idle threads behind, as normal traffic does.
    let warm: Vec<_> = (0..20)
        .map(|_| {
            let addr = server.addr.clone();
            std::thread::spawn(move || http(&addr, "GET /healthz HTTP/1.0\r\n\r\n"))
        })
        .collect();
    for w in warm {
        assert!(w.join().expect("thread").ends_with("ok"));
    }
    // Then at once: 40 connections that will hold their threads (a head
    // that never ends), and 10 quick requests behind them.
    let mut held = Vec::new();
    let mut quick = Vec::new();
    for i in 0..50 {
        let mut s = server.connect();
        if i < 40 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
            held.push(s);
        } else {
            s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").expect("write");
            quick.push((Instant::now(), s));
        }
    }
    for (sent, s) in quick {
        let answer = read_answer(s);
        assert_eq!(status(&answer), 200, "{answer:?}");
        assert!(sent.elapsed() < Duration::from_secs(2), "a new connection waited {:?} for a thread", sent.elapsed());
    }
    drop(held);
}

#[test]
fn idle_connections_make_room_and_close_after_the_client_timeout() {
    let mut server = Server::start("idle", &[("CLIENT_TIMEOUT", "1"), ("MAX_CONNECTIONS", "100")]);
    let baseline = threads(server.pid());
    let idle: Vec<TcpStream> = (0..1000).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // A router's update still gets through: the connection idle for
    // longest made room for it.
    let started = Instant::now();
    let answer = server.update("192.0.2.9");
    assert!(answer.ends_with("good 192.0.2.9"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    server.assert_healthy(Duration::from_secs(1));
    let busy = threads(server.pid());
    // At most MAX_CONNECTIONS connection threads plus 16 idle ones kept for
    // reuse (tiny_http patch 8).
    assert!(busy <= baseline + 100 + 16, "{busy} threads with 1000 idle connections (baseline {baseline})");

    // The oldest were closed to make room; the rest close after CLIENT_TIMEOUT.
    let mut first = idle.into_iter();
    let mut oldest = first.next().expect("one");
    oldest.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    assert_eq!(oldest.read(&mut [0u8; 16]).unwrap_or(0), 0, "the oldest idle connection was closed");
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rest: Vec<TcpStream> = first.collect();
    let last = rest.pop().expect("last");
    last.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
    assert_eq!((&last).read(&mut [0u8; 16]).unwrap_or(0), 0, "idle connection still open");
    assert!(Instant::now() < deadline);
    drop(rest);
    // Their threads end; at most 16 stay for reuse (patch 8).
    let until = Instant::now() + Duration::from_secs(15);
    while threads(server.pid()) > baseline + 16 {
        assert!(Instant::now() < until, "threads stay at {}", threads(server.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_healthy(Duration::from_secs(1));
}

#[test]
fn unsupported_methods_get_405_with_allow_on_every_endpoint() {
    let mut server =
        Server::start("methods", &[("BASIC_AUTH_USERNAME", "admin"), ("BASIC_AUTH_PASSWORD", "a-long-password")]);
    for (path, allow) in [
        ("/status", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
        ("/ip", "GET, HEAD"),
        ("/healthz", "GET, HEAD"),
        ("/update", "POST"),
        ("/nic/update", "GET, POST"),
        ("/v3/update", "GET, POST"),
    ] {
        for method in ["PUT", "DELETE", "TRACE"] {
            let answer = http(&server.addr, &format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n"));
            assert!(status(&answer) == 405, "{method} {path} → {answer:?}");
            assert!(
                answer.to_ascii_lowercase().contains(&format!("allow: {}", allow.to_ascii_lowercase())),
                "{answer}"
            );
        }
    }
    // A method that is not one of HTTP's own is not implemented at all.
    let answer = http(&server.addr, "FROB /healthz HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert!(status(&answer) == 501, "{answer:?}");
    server.assert_healthy(Duration::from_secs(1));
}
