//! The benchmark's reference: the same (patched) tiny_http as the server,
//! one thread per connection, answering every request with a fixed
//! dyndns2 line — the most this stack can do. `bare-tiny-http ADDR`
//! prints its address and serves until killed. Never shipped.

use std::sync::Arc;

/// The server's own allocator (`server/alloc`), so that the reference and
/// the server differ only by what the server does per request.
#[global_allocator]
static ALLOCATOR: dyndns_alloc::Sharded = dyndns_alloc::Sharded::new();

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = std::net::TcpListener::bind(&addr).expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let limits = tiny_http::Limits {
        max_body: 4096,
        timeout: Some(std::time::Duration::from_secs(10)),
        max_connections: 512,
        ..tiny_http::Limits::default()
    };
    let handler: tiny_http::Handler = Arc::new(|rq: tiny_http::Request| {
        let response = tiny_http::Response::from_data(&b"nochg 192.0.2.2"[..]);
        let _ = rq.respond(response);
    });
    let _server = tiny_http::Server::with_limits(listener, limits, Some(handler)).expect("serve");
    loop {
        std::thread::park();
    }
}
