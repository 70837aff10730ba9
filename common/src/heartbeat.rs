//! Heartbeats to a monitoring service, for the server and the agent alike:
//! `HEALTHCHECKS_URL` (a Healthchecks.io ping URL, hosted or self-hosted)
//! and `UPTIME_KUMA_URL` (an Uptime Kuma push URL). The requests are built
//! here as data (`Monitor::ping`) and sent by `send` with the ureq agent
//! each program configures.
//!
//! - Healthchecks (<https://healthchecks.io/docs/http_api/>): `POST` to
//!   `{url}/start` when a run starts, `{url}` on success and `{url}/fail`
//!   on failure; the body (up to 100 kB) is kept as the ping's log, so it
//!   carries the reason.
//! - Uptime Kuma's push monitor: `GET {…/api/push/TOKEN}?status=up|down&msg=…&ping=`;
//!   the query Uptime Kuma shows with the URL is replaced by ours.
//!
//! Both URLs hold a secret (the check's UUID, the push token): `label`
//! names the service and its host only.

use crate::env::{url_host, Env, Secret};

/// `HEALTHCHECKS_URL` and `UPTIME_KUMA_URL` (or their `_FILE`s), each
/// problem recorded in `env`.
pub fn monitors(env: &mut Env<'_>) -> Vec<Monitor> {
    let mut out = Vec::new();
    if let Some(url) = env.secret("HEALTHCHECKS_URL") {
        match Monitor::healthchecks(url.expose()) {
            Ok(m) => out.push(m),
            Err(e) => env.error(e),
        }
    }
    if let Some(url) = env.secret("UPTIME_KUMA_URL") {
        match Monitor::uptime_kuma(url.expose()) {
            Ok(m) => out.push(m),
            Err(e) => env.error(e),
        }
    }
    out
}

#[derive(Debug, Clone)]
pub enum Monitor {
    Healthchecks(Secret),
    UptimeKuma(Secret),
}

/// What a heartbeat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat<'a> {
    /// The program (or one run) starts.
    Start,
    /// All is well; a short note.
    Up(&'a str),
    /// Something is wrong: why.
    Down(&'a str),
}

/// One request of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// `true`: `POST` with `body`; `false`: `GET`.
    pub post: bool,
    pub url: String,
    pub body: String,
}

/// The longest reason sent (Healthchecks keeps 100 kB; Uptime Kuma shows a
/// line).
const MAX_MESSAGE: usize = 500;

impl Monitor {
    /// `HEALTHCHECKS_URL`: an http(s) URL with a path (the check's UUID, or
    /// a project's ping key and a slug).
    pub fn healthchecks(url: &str) -> Result<Monitor, String> {
        let (base, _) = split(url);
        if !is_http(url) || path_of(base).trim_matches('/').is_empty() {
            return Err(format!(
                "HEALTHCHECKS_URL={:?} is not a ping URL; copy it from the check, e.g. https://hc-ping.com/<uuid>",
                hidden(url)
            ));
        }
        Ok(Monitor::Healthchecks(Secret::new(url)))
    }

    /// `UPTIME_KUMA_URL`: Uptime Kuma's push URL, `…/api/push/TOKEN`.
    pub fn uptime_kuma(url: &str) -> Result<Monitor, String> {
        let (base, _) = split(url);
        let token = base.split_once("/api/push/").map(|(_, t)| t.trim_matches('/'));
        if !is_http(url) || token.is_none_or(|t| t.is_empty() || t.contains('/')) {
            return Err(format!(
                "UPTIME_KUMA_URL={:?} is not a push URL; copy it from the push monitor, e.g. https://kuma.example.com/api/push/<token>",
                hidden(url)
            ));
        }
        Ok(Monitor::UptimeKuma(Secret::new(url)))
    }

    /// The service and its host; never the secret part.
    pub fn label(&self) -> String {
        match self {
            Monitor::Healthchecks(url) => format!("healthchecks ({})", url_host(url.expose())),
            Monitor::UptimeKuma(url) => format!("uptime kuma ({})", url_host(url.expose())),
        }
    }

    pub fn ping(&self, beat: Beat<'_>) -> Ping {
        match self {
            Monitor::Healthchecks(url) => {
                let (base, query) = split(url.expose());
                let base = base.trim_end_matches('/');
                let (suffix, body) = match beat {
                    Beat::Start => ("/start", String::new()),
                    Beat::Up(note) => ("", cut(note)),
                    Beat::Down(why) => ("/fail", cut(why)),
                };
                Ping { post: true, url: format!("{base}{suffix}{query}"), body }
            }
            Monitor::UptimeKuma(url) => {
                let (base, _) = split(url.expose());
                let (status, msg) = match beat {
                    Beat::Start => ("up", "started".to_string()),
                    Beat::Up(note) => ("up", cut(note)),
                    Beat::Down(why) => ("down", cut(why)),
                };
                Ping {
                    post: false,
                    url: format!("{base}?status={status}&msg={}&ping=", encode(&msg)),
                    body: String::new(),
                }
            }
        }
    }
}

/// Send one ping with `agent` (the program's own client). The error never
/// quotes the URL: it holds the check's secret.
pub fn send(agent: &ureq::Agent, ping: &Ping) -> Result<(), String> {
    let sent = if ping.post {
        agent.post(&ping.url).header("Content-Type", "text/plain; charset=utf-8").send(ping.body.as_str())
    } else {
        agent.get(&ping.url).call()
    };
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status().as_u16())),
        Err(e) => Err(describe(&e)),
    }
}

/// Why a request failed, without the URL (BadUri and RequireHttpsOnly
/// would quote it, and a URL may hold a token).
pub fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection refused or unreachable".into(),
        ureq::Error::Io(io) => format!("{:?}", io.kind()),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => "TLS failed".into(),
        _ => "the request failed".into(),
    }
}

/// `(before the query, "?query" or "")`.
fn split(url: &str) -> (&str, &str) {
    match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    }
}

fn is_http(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && !url_host(url).is_empty()
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("", |i| &rest[i..])
}

/// Scheme and host only, for an error message.
fn hidden(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) if !url_host(url).is_empty() => format!("{scheme}://{}/***", url_host(url)),
        _ => "***".into(),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_MESSAGE).collect()
}

/// Query value encoding: everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_pings_start_success_and_fail_with_the_reason() {
        let m = Monitor::healthchecks("https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/").expect("url");
        let base = "https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
        assert_eq!(m.ping(Beat::Start), Ping { post: true, url: format!("{base}/start"), body: String::new() });
        assert_eq!(m.ping(Beat::Up("ok")).url, base);
        let fail = m.ping(Beat::Down("Hetzner did not answer"));
        assert_eq!(
            (fail.url.as_str(), fail.body.as_str()),
            (format!("{base}/fail").as_str(), "Hetzner did not answer")
        );
        // A slug URL keeps its query after the suffix.
        let slug = Monitor::healthchecks("https://hc.example.com/ping/key/dyndns?create=1").expect("url");
        assert_eq!(slug.ping(Beat::Start).url, "https://hc.example.com/ping/key/dyndns/start?create=1");
        assert_eq!(m.label(), "healthchecks (hc-ping.com)");
    }

    #[test]
    fn uptime_kuma_pushes_status_and_message_replacing_the_shown_query() {
        let m = Monitor::uptime_kuma("https://kuma.example.com/api/push/Xy12AbC?status=up&msg=OK&ping=").expect("url");
        let down = m.ping(Beat::Down("AAAA: no route & no luck"));
        assert!(!down.post);
        assert_eq!(
            down.url,
            "https://kuma.example.com/api/push/Xy12AbC?status=down&msg=AAAA%3A%20no%20route%20%26%20no%20luck&ping="
        );
        assert!(m.ping(Beat::Up("ok")).url.ends_with("?status=up&msg=ok&ping="));
        assert_eq!(m.label(), "uptime kuma (kuma.example.com)");
    }

    #[test]
    fn urls_that_cannot_work_are_refused_without_their_secret() {
        for bad in ["hc-ping.com/SeCrEt", "https://hc-ping.com/", "ftp://hc-ping.com/SeCrEt"] {
            let e = Monitor::healthchecks(bad).expect_err(bad);
            assert!(e.starts_with("HEALTHCHECKS_URL=") && !e.contains("SeCrEt"), "{e}");
        }
        for bad in ["https://kuma.example.com/", "https://kuma.example.com/api/push/", "kuma/api/push/SeCrEt"] {
            let e = Monitor::uptime_kuma(bad).expect_err(bad);
            assert!(e.starts_with("UPTIME_KUMA_URL=") && !e.contains("SeCrEt"), "{e}");
        }
    }
}
