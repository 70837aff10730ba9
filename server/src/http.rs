//! The tiny_http shell around `handlers`: every connection has its own
//! thread, which reads a request within the limits below, views it as a
//! `Req` (borrowing from tiny_http's request; only the body is owned), calls `handle` with panics caught (one bad request becomes
//! a 500, not a dead thread), writes the `Reply` with a `Content-Length`
//! (never chunked: ddclient cannot read chunked bodies) and logs one line.
//!
//! Bounded by construction (tiny_http patches 2–6, `server/tiny_http/PATCHES.md`):
//! a request must arrive whole within `CLIENT_TIMEOUT` of the connection
//! becoming idle; head, header count and body have fixed caps; at most
//! `MAX_CONNECTIONS` connections are open, and at the cap the one idle for
//! longest is closed to make room. A request waiting on Hetzner holds only
//! its own connection.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::app::App;
use crate::handlers::{self, MAX_BODY};
use crate::message::{LogContext, Reply, Req};

/// Longest request line (method, target, version); longer gets 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most bytes of all header lines together; more gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields; more gets 431.
pub const MAX_HEADERS: usize = 100;

/// The listening server. Dropping it closes idle connections and stops
/// accepting; requests in hand are finished by their threads.
pub struct Listener {
    /// Plain HTTP and/or HTTPS; their connections in one table, so
    /// `MAX_CONNECTIONS` bounds both together.
    servers: Vec<tiny_http::Server>,
}

impl Listener {
    /// Serve `app` on `plain` (HTTP) and `tls` (HTTPS) until dropped.
    pub fn start(
        plain: Option<std::net::TcpListener>,
        tls: Option<(std::net::TcpListener, tiny_http::TlsConfig)>,
        app: &Arc<App>,
    ) -> std::io::Result<Listener> {
        let limits = tiny_http::Limits {
            max_request_line: MAX_REQUEST_LINE,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            max_body: MAX_BODY,
            timeout: Some(app.config.client_timeout),
            max_connections: app.config.max_connections,
        };
        let app = Arc::clone(app);
        let handler: tiny_http::Handler = Arc::new(move |rq| serve(&app, rq));
        let mut servers: Vec<tiny_http::Server> = Vec::new();
        let sockets = plain.map(|p| (p, None)).into_iter().chain(tls.map(|(s, c)| (s, Some(c))));
        for (socket, config) in sockets {
            let server =
                tiny_http::Server::with_tls(socket, limits.clone(), Some(handler.clone()), config, servers.first())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            servers.push(server);
        }
        Ok(Listener { servers })
    }

    /// Stop taking requests: no new connection is served, idle ones are
    /// closed, those with a request in hand close once it is answered.
    pub fn stop_accepting(&self) {
        self.servers.iter().for_each(tiny_http::Server::close_idle);
    }

    /// Connections open now (idle or busy; one table for all listeners).
    pub fn open(&self) -> usize {
        self.servers.first().map_or(0, tiny_http::Server::num_open)
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.servers.first().map_or(0, tiny_http::Server::num_busy)
    }

    /// Are the accept threads still running? (They end only at shutdown or
    /// if one panicked.)
    pub fn accepting(&self) -> bool {
        self.servers.iter().all(tiny_http::Server::accepting)
    }
}

/// Run `handler` with panics caught: a panic becomes a 500 (and one log
/// line with the request), not a dead connection thread.
fn answer(req: &Req, handler: impl FnOnce(&Req, &mut LogContext) -> Reply) -> (Reply, LogContext) {
    let mut context = LogContext::default();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req, &mut context)));
    let reply = caught.unwrap_or_else(|_| Reply::text(500, "internal error"));
    (reply, context)
}

fn serve(app: &App, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let body = read_body(&mut rq);
    let req = view(&rq, body);
    let (reply, context) = answer(&req, |req, context| handlers::handle(app, req, context));
    // Formatted once, by the logger, on this thread (see `logging`).
    let level = if reply.status >= 500 { log::Level::Warn } else { log::Level::Info };
    log::log!(
        level,
        "{} {} {} {}ms host={} agent=\"{}\"",
        Escaped(&req.method, 16),
        Escaped(&req.path, 100),
        reply.status,
        started.elapsed().as_millis(),
        Escaped(context.host.as_deref().unwrap_or("-"), 200),
        Escaped(req.header("user-agent").unwrap_or("-"), 80),
    );
    drop(req);
    let mut response = tiny_http::Response::from_data(reply.body.into_bytes()).with_status_code(reply.status);
    if let Some(h) = content_type(reply.content_type) {
        response.add_header(h);
    }
    for (name, value) in reply.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("writing the answer failed: {e}");
    }
}

/// The `Content-Type` header, parsed once per type (every answer has one).
fn content_type(value: &'static str) -> Option<tiny_http::Header> {
    static CACHE: std::sync::OnceLock<Vec<(&'static str, tiny_http::Header)>> = std::sync::OnceLock::new();
    let known = CACHE.get_or_init(|| {
        ["text/plain; charset=utf-8", "application/json"]
            .into_iter()
            .filter_map(|v| Some((v, tiny_http::Header::from_bytes(&b"Content-Type"[..], v.as_bytes()).ok()?)))
            .collect()
    });
    match known.iter().find(|(v, _)| *v == value) {
        Some((_, h)) => Some(h.clone()),
        None => tiny_http::Header::from_bytes(&b"Content-Type"[..], value.as_bytes()).ok(),
    }
}

/// The request headers any handler reads, in lower case; the others are
/// not copied (fewer allocations on every request).
const USED_HEADERS: &[&str] =
    &["authorization", "x-pre-shared-key", "content-type", "accept", "user-agent", "x-forwarded-for", "x-real-ip"];

/// The body, read first: it is already in memory, at most MAX_BODY bytes
/// (the layer below answered 413 to anything larger without reading it).
fn read_body(rq: &mut tiny_http::Request) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = rq.as_reader().read_to_end(&mut body);
    body
}

/// The request as the handlers see it, borrowing from tiny_http's.
fn view(rq: &tiny_http::Request, body: Vec<u8>) -> Req<'_> {
    let (path, query) = Req::split_target(rq.url());
    let mut headers = Vec::with_capacity(4);
    for h in rq.headers() {
        if let Some(name) = USED_HEADERS.iter().find(|n| h.field.as_str().as_str().eq_ignore_ascii_case(n)) {
            headers.push((*name, h.value.as_str()));
        }
    }
    // Methods are case-sensitive: the parser answers 501 to any but the
    // standard ones, so `head` never passes for `HEAD` (patch 14).
    let method = Cow::Borrowed(rq.method().as_str());
    Req { method, path, query, headers, body, peer: rq.remote_addr().map(SocketAddr::ip) }
}

/// Client text in a log line: at most `max` characters, printable ASCII
/// only (anything else as `\xNN`/`\u{…}`, quotes and backslashes escaped),
/// so that no request can write a line of its own into the log.
pub struct Escaped<'a>(pub &'a str, pub usize);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The usual case, written in one piece: short plain ASCII.
        let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
        if self.0.len() <= self.1 && self.0.bytes().all(|b| plain(&b)) {
            return f.write_str(self.0);
        }
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(self.1) {
            match c {
                ' '..='~' if c != '"' && c != '\\' => f.write_char(c)?,
                '"' | '\\' => write!(f, "\\{c}")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_500_and_keeps_its_log_context() {
        let req = Req { method: "GET".into(), path: "/x".into(), ..Req::default() };
        let (reply, context) = answer(&req, |_, context| {
            context.host = Some("home.example.com".into());
            panic!("a bug in a handler")
        });
        assert_eq!((reply.status, reply.body.as_str()), (500, "internal error"));
        assert_eq!(context.host.as_deref(), Some("home.example.com"));
        let (reply, _) = answer(&req, |_, _| Reply::text(200, "ok"));
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn client_text_cannot_break_a_log_line() {
        assert_eq!(Escaped("GET\n2026 [ERROR] forged", 100).to_string(), "GET\\x0a2026 [ERROR] forged");
        assert_eq!(Escaped("a\"b\\c\t\x1b[31m", 100).to_string(), "a\\\"b\\\\c\\x09\\x1b[31m");
        assert_eq!(Escaped("ü", 100).to_string(), "\\xfc");
        assert_eq!(Escaped("€", 100).to_string(), "\\u{20ac}");
        assert_eq!(Escaped(&"x".repeat(500), 3).to_string(), "xxx…");
    }
}
