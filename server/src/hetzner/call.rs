//! One call to Hetzner: the request with the time left before its
//! deadline, bounded retries of what Hetzner's own client retries (honouring
//! `RateLimit-Reset`), the budget read from every answer, error documents
//! read so the operator sees Hetzner's code, message and correlation id,
//! and actions followed until they end.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, IgnoredAny};

use super::wire::{Action, ErrorAnswer, OneAction};
use super::{ApiError, Hetzner, Kind, Method, FIRST_POLL, MAX_ATTEMPTS, MAX_BODY};
use crate::time::unix_now;

impl Hetzner {
    /// Follow an action until it leaves `running`, polling the global
    /// `/actions/{id}` (resource-local action URLs are deprecated): first
    /// after `FIRST_POLL`, then at doubling intervals up to 2 s.
    pub(super) fn wait_action(&self, action: Option<Action>, deadline: Instant) -> Result<(), ApiError> {
        let Some(mut action) = action else { return Ok(()) };
        let mut pause = FIRST_POLL;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let (code, message) = action.error.map(|e| (e.code, e.message)).unwrap_or_default();
                    return Err(ApiError::ActionFailed { code, message });
                }
                "running" => {}
                other => return Err(malformed(&format!("action status {other:?}"))),
            }
            if Instant::now() + pause >= deadline {
                return Err(ApiError::ActionUnconfirmed { id: action.id });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            let path = format!("/actions/{}", action.id);
            action = self.call::<OneAction>(Kind::Poll, Method::Get, &path, deadline)?.action;
        }
    }

    /// One API call with bounded retries of transient errors, its answer
    /// read as `T`.
    pub(super) fn call<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let result = self.call_retrying(kind, method, path, deadline);
        // Hetzner answered unless it could not be reached, failed, refused
        // the token or throttled: a missing record or a refused value is an
        // answer.
        let failure = match &result {
            Ok(_) => None,
            Err(ApiError::Api { status, .. }) if !matches!(status, 401 | 403 | 429 | 500..) => None,
            Err(e) => Some(e.to_string()),
        };
        *self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
        result
    }

    /// Why the last call to Hetzner failed; `None` when it succeeded (or
    /// none was made).
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn call_retrying<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.budget.count(kind, unix_now());
            let (result, reset_at) = self.call_once(method, path, deadline);
            let err = match result.and_then(|text| parse_answer::<T>(&text, 200)) {
                Ok(doc) => return Ok(doc),
                Err(err) => err,
            };
            if !err.is_transient() || attempt >= MAX_ATTEMPTS {
                return Err(err);
            }
            let backoff = Duration::from_millis(500 << (attempt - 1));
            let pause = match (err.code(), reset_at) {
                ("rate_limit_exceeded", Some(reset)) => Duration::from_secs(reset.saturating_sub(unix_now()).max(1)),
                _ => backoff,
            };
            if Instant::now() + pause >= deadline {
                return Err(err);
            }
            log::warn!("hetzner: {method} {path}: {err}; retrying in {}s", pause.as_secs_f32());
            std::thread::sleep(pause);
        }
    }

    /// One request: the body of a 2xx answer, or the error; and the
    /// `RateLimit-Reset` of the answer.
    fn call_once(&self, method: Method<'_>, path: &str, deadline: Instant) -> (Result<String, ApiError>, Option<u64>) {
        let mut resp = match self.send(method, path, deadline) {
            Ok(r) => r,
            Err(e) => {
                self.count("transport");
                return (Err(ApiError::Transport(e.to_string())), None);
            }
        };
        let status = resp.status().as_u16();
        self.count(match status {
            200..=299 => "success",
            300..=399 => "redirect",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        });
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let reset_at = header("ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = header("ratelimit-remaining").and_then(|v| v.parse::<i64>().ok()) {
            let budget = &self.budget;
            if let Some(limit) = header("ratelimit-limit").and_then(|v| v.parse::<i64>().ok()).filter(|&l| l > 0) {
                budget.limit.store(limit, Ordering::Relaxed);
            }
            budget.reset.store(reset_at.unwrap_or(0), Ordering::Relaxed);
            budget.seen.store(unix_now(), Ordering::Relaxed);
            budget.remaining.store(n.max(0), Ordering::Relaxed);
        }
        let correlation_id = header("x-correlation-id");
        if (300..400).contains(&status) {
            let location = header("location").unwrap_or_default();
            return (Err(ApiError::Redirect { status, location }), reset_at);
        }
        let text = match resp.body_mut().with_config().limit(MAX_BODY).read_to_string() {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_) | ureq::Error::Io(_)) => {
                return (Err(ApiError::Transport(format!("the answer to {method} {path} broke off"))), reset_at)
            }
            Err(e) => {
                return (Err(ApiError::Malformed { status, detail: format!("an unreadable body ({e})") }), reset_at)
            }
        };
        if (200..300).contains(&status) {
            return (Ok(text), reset_at);
        }
        let err = match parse_answer::<ErrorAnswer>(&text, status) {
            Ok(ErrorAnswer::Hetzner { error }) => ApiError::Api {
                status,
                code: Some(error.code).filter(|c| !c.is_empty()).unwrap_or_else(|| format!("http_{status}")),
                message: escape_remote(&error.message),
                correlation_id: correlation_id.map(|c| escape_remote(&c)),
            },
            Ok(ErrorAnswer::Other(_)) => {
                ApiError::Api { status, code: format!("http_{status}"), message: String::new(), correlation_id }
            }
            Err(e) => e,
        };
        (Err(err), reset_at)
    }

    /// Send one request, with the time left before `deadline` (at most
    /// `HETZNER_TIMEOUT`) as its timeout.
    fn send(
        &self,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let timeout = Some(left.min(self.timeout));
        let auth = format!("Bearer {}", self.token.expose());
        match method {
            Method::Get => {
                let rq = self.agent.get(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth).header("Accept", "application/json").call()
            }
            Method::Delete => {
                let rq = self.agent.delete(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth).header("Accept", "application/json").call()
            }
            Method::Post(body) => {
                let rq = self.agent.post(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(body.to_string())
            }
        }
    }
}

/// Text from Hetzner as it may be logged: control characters (a newline
/// would start a forged log line) and non-ASCII as `\xNN`/`\u{..}`, at most
/// 300 characters.
pub(super) fn escape_remote(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(300) {
        match c {
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    out
}

/// Read an answer body as `T`; a body that is not JSON, or JSON of another
/// shape, is `Malformed` (with the start of the body, never more).
pub(super) fn parse_answer<T: DeserializeOwned>(text: &str, status: u16) -> Result<T, ApiError> {
    serde_json::from_str::<T>(text).map_err(|e| {
        if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            ApiError::Malformed { status, detail: format!("an unexpected document ({e})") }
        } else {
            let start: String = text.chars().take(40).collect();
            ApiError::Malformed { status, detail: format!("a body that is not JSON (starts with {start:?})") }
        }
    })
}

pub(super) fn malformed(detail: &str) -> ApiError {
    ApiError::Malformed { status: 200, detail: format!("an unexpected document ({detail})") }
}
