//! A fake ntfy server: `POST /{topic}` with `Title`, `Priority`, `Tags` and
//! an optional `Authorization` header, answering like ntfy
//! (`{"id", "time", "event": "message", "topic", "message"}`); it can be
//! told to fail the next requests with 500 or to demand a token (401).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NtfyMessage {
    pub topic: String,
    pub title: String,
    pub priority: String,
    pub tags: String,
    pub authorization: Option<String>,
    pub body: String,
}

pub struct FakeNtfy {
    base: String,
    rx: Mutex<Receiver<NtfyMessage>>,
    failing: Arc<AtomicUsize>,
    pub attempts: Arc<AtomicUsize>,
}

impl FakeNtfy {
    pub fn start() -> FakeNtfy {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind fake ntfy");
        let base = format!("http://{}", server.server_addr().to_ip().expect("ip"));
        let (tx, rx) = mpsc::channel();
        let failing = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (fail, count) = (Arc::clone(&failing), Arc::clone(&attempts));
        std::thread::spawn(move || {
            for mut rq in server.incoming_requests() {
                count.fetch_add(1, Ordering::SeqCst);
                let header = |name: &'static str| {
                    rq.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
                };
                let msg = NtfyMessage {
                    topic: rq.url().trim_start_matches('/').to_string(),
                    title: header("Title").unwrap_or_default(),
                    priority: header("Priority").unwrap_or_default(),
                    tags: header("Tags").unwrap_or_default(),
                    authorization: header("Authorization"),
                    body: String::new(),
                };
                let mut body = String::new();
                let _ = rq.as_reader().read_to_string(&mut body);
                if fail.load(Ordering::SeqCst) > 0 {
                    fail.fetch_sub(1, Ordering::SeqCst);
                    let _ = rq.respond(
                        tiny_http::Response::from_string(r#"{"code":50001,"http":500,"error":"internal"}"#)
                            .with_status_code(500),
                    );
                    continue;
                }
                let answer = serde_json::json!({"id": "abc", "time": 1, "event": "message", "topic": msg.topic, "message": body});
                let _ = rq.respond(tiny_http::Response::from_string(answer.to_string()));
                let _ = tx.send(NtfyMessage { body, ..msg });
            }
        });
        FakeNtfy { base, rx: Mutex::new(rx), failing, attempts }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Fail the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// The next delivered message, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<NtfyMessage> {
        self.rx.lock().expect("lock").recv_timeout(timeout).ok()
    }
}
