//! The tiny_http shell around `handlers`: worker threads take requests off
//! the server, copy each into an owned `Req`, call `handle` with panics
//! caught (one bad request becomes a 500, not a dead worker), write the
//! `Reply` with a `Content-Length` (never chunked: ddclient cannot read
//! chunked bodies) and log one line per request.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::handlers::{self, Reply, Req, MAX_BODY};
use crate::App;

/// Worker threads answering requests. Updates wait on Hetzner for up to
/// `REQUEST_BUDGET`, so there are enough that slow writes of some hosts do
/// not hold up cached answers for others.
pub const WORKERS: usize = 8;

pub fn spawn_workers(
    server: &Arc<tiny_http::Server>,
    app: &Arc<App>,
    stopping: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..WORKERS)
        .map(|i| {
            let (server, app, stopping) = (Arc::clone(server), Arc::clone(app), Arc::clone(stopping));
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || loop {
                    match server.recv() {
                        Ok(rq) => serve(&app, rq),
                        Err(_) if stopping.load(Ordering::SeqCst) => break,
                        Err(e) => {
                            // tiny_http's accept thread has ended: no new
                            // connection will ever arrive. Better a restart by
                            // the supervisor than a server that looks alive.
                            log::error!("the listener failed ({e}); exiting so that the server is restarted");
                            app.save_state_if_dirty();
                            std::process::exit(1);
                        }
                    }
                })
                .unwrap_or_else(|e| panic!("cannot start a worker thread: {e}"))
        })
        .collect()
}

fn serve(app: &App, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let req = copy_request(&mut rq);
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handlers::handle(app, &req)))
        .unwrap_or_else(|_| Reply::text(500, "internal error"));
    let agent = req.header("user-agent").unwrap_or("-").chars().take(80).collect::<String>();
    let path: String = req.path.chars().take(100).collect();
    let line = format!(
        "{} {} {} {}ms host={} agent={agent:?}",
        req.method,
        path,
        reply.status,
        started.elapsed().as_millis(),
        reply.host.as_deref().unwrap_or("-"),
    );
    if reply.status >= 500 {
        log::warn!("{line}");
    } else {
        log::info!("{line}");
    }
    let mut response = tiny_http::Response::from_data(reply.body.into_bytes()).with_status_code(reply.status);
    for (name, value) in std::iter::once(("Content-Type", reply.content_type.to_string())).chain(reply.headers) {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("writing the answer failed: {e}");
    }
}

fn copy_request(rq: &mut tiny_http::Request) -> Req {
    let (path, query) = Req::split_target(rq.url());
    let headers = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
        .collect();
    let mut body = Vec::new();
    let read = rq.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body);
    let body_too_large = read.is_ok() && body.len() > MAX_BODY;
    body.truncate(MAX_BODY);
    Req {
        method: rq.method().as_str().to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
        body_too_large,
        peer: rq.remote_addr().map(|a| a.ip()),
    }
}
