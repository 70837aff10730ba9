//! Small fakes of the services the server notifies and pings, answering as
//! each documents:
//! - a generic webhook: any `POST`, `200`;
//! - Gotify (<https://gotify.net/api-docs>, `POST /message`): the
//!   application token in `X-Gotify-Key` (or `?token=`), a JSON body with
//!   `message` required; `401` with Gotify's error document for a wrong
//!   token, `400` without a message, else the message as created;
//! - Healthchecks (<https://healthchecks.io/docs/http_api/>): `/{uuid}`,
//!   `/{uuid}/start`, `/{uuid}/fail`, `GET` or `POST`, answering `OK`
//!   (`404` "OK (not found)" for another uuid);
//! - Uptime Kuma's push monitor (`GET /api/push/{token}?status=up|down&msg=…`):
//!   `{"ok":true}`, or `{"ok":false,"msg":"Monitor not found or not active."}`
//!   (404) for another token.
//!
//! Every request is recorded; a fake can be told to fail (500) or to hang
//! for a while first.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Webhook,
    Gotify { token: &'static str },
    Healthchecks { uuid: &'static str },
    UptimeKuma { token: &'static str },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the fake answered.
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct FakeService {
    base: String,
    rx: Mutex<Receiver<Recorded>>,
    failing: Arc<AtomicUsize>,
    hang_ms: Arc<AtomicU64>,
}

impl FakeService {
    pub fn start(service: Service) -> FakeService {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind fake service");
        let base = format!("http://{}", server.server_addr().to_ip().expect("ip"));
        let (tx, rx) = mpsc::channel();
        let failing = Arc::new(AtomicUsize::new(0));
        let hang_ms = Arc::new(AtomicU64::new(0));
        let (fail, hang) = (Arc::clone(&failing), Arc::clone(&hang_ms));
        let server = Arc::new(server);
        for _ in 0..4 {
            let (server, tx, fail, hang) = (Arc::clone(&server), tx.clone(), Arc::clone(&fail), Arc::clone(&hang));
            std::thread::spawn(move || {
                for mut rq in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = rq.as_reader().read_to_string(&mut body);
                    let mut seen = Recorded {
                        method: rq.method().to_string(),
                        url: rq.url().to_string(),
                        headers: rq.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect(),
                        body,
                        status: 0,
                    };
                    std::thread::sleep(Duration::from_millis(hang.load(Ordering::SeqCst)));
                    let (status, answer) = if fail.load(Ordering::SeqCst) > 0 {
                        fail.fetch_sub(1, Ordering::SeqCst);
                        (500, "internal error".to_string())
                    } else {
                        answer(service, &seen)
                    };
                    seen.status = status;
                    let _ = rq.respond(tiny_http::Response::from_string(answer).with_status_code(status));
                    let _ = tx.send(seen);
                }
            });
        }
        FakeService { base, rx: Mutex::new(rx), failing, hang_ms }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The host and port, for URLs with another scheme (`gotify://…`).
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Fail the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// Answer every request only after `d`.
    pub fn hang(&self, d: Duration) {
        self.hang_ms.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The next request, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Recorded> {
        self.rx.lock().expect("lock").recv_timeout(timeout).ok()
    }

    /// The next request whose path starts with `prefix`, skipping others.
    pub fn next_matching(&self, prefix: &str, timeout: Duration) -> Option<Recorded> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(std::time::Instant::now())?;
            let r = self.next(left)?;
            if r.url.starts_with(prefix) {
                return Some(r);
            }
        }
    }
}

fn answer(service: Service, rq: &Recorded) -> (u16, String) {
    let path = rq.url.split('?').next().unwrap_or_default();
    match service {
        Service::Webhook => (200, String::new()),
        Service::Gotify { token } => {
            let given = rq.header("X-Gotify-Key").map(str::to_string).or_else(|| {
                rq.url.split_once("token=").map(|(_, t)| t.split('&').next().unwrap_or_default().to_string())
            });
            if path != "/message" && !path.ends_with("/message") {
                return (404, r#"{"error":"Not Found","errorCode":404,"errorDescription":"page not found"}"#.into());
            }
            if given.as_deref() != Some(token) {
                return (
                    401,
                    r#"{"error":"Unauthorized","errorCode":401,"errorDescription":"you need to provide a valid access token or user credentials to access this api"}"#.into(),
                );
            }
            let doc = rq.json();
            if doc["message"].as_str().is_none_or(str::is_empty) {
                return (
                    400,
                    r#"{"error":"Bad Request","errorCode":400,"errorDescription":"Field 'message' is required"}"#
                        .into(),
                );
            }
            let created = serde_json::json!({"id": 1, "appid": 1, "message": doc["message"], "title": doc["title"],
                "priority": doc["priority"], "date": "2026-12-05T08:00:00Z"});
            (200, created.to_string())
        }
        Service::Healthchecks { uuid } => {
            let rest = path.trim_start_matches('/');
            let known = rest == uuid || rest == format!("{uuid}/start") || rest == format!("{uuid}/fail");
            if known {
                (200, "OK".into())
            } else {
                (404, "OK (not found)".into())
            }
        }
        Service::UptimeKuma { token } => {
            if path == format!("/api/push/{token}") {
                (200, r#"{"ok":true}"#.into())
            } else {
                (404, r#"{"ok":false,"msg":"Monitor not found or not active."}"#.into())
            }
        }
    }
}
