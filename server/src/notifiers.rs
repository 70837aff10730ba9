//! Where notifications go: ntfy (`NTFY_*`) and the services of
//! `NOTIFY_URLS`, written in Shoutrrr's URL syntax so that a URL a user
//! already has for Watchtower or another Shoutrrr program works here
//! unchanged (<https://containrrr.dev/shoutrrr/v0.8/services/overview/>).
//!
//! Each target turns a message into the HTTP requests its service
//! documents, as data (`Outgoing`): the notifier sends them, and the tests
//! check them against each service's documented shape. A target's `label`
//! names the service and its host, never a token.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::json;

use crate::env::Secret;

/// What a message is about (the `kind` of the generic webhook, the tags of
/// ntfy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A host's record was created or changed (`NOTIFY_ON_CHANGE`).
    Change,
    UpdateFailed,
    /// An authenticated request that looks like a misconfigured client.
    Rejected,
    /// A host silent for `LOST_CONNECTION_TIMEOUT`.
    Lost,
    Back,
    /// A record changed outside the server, found by the reconcile.
    Drift,
    AcmeFailed,
    /// The server's own HTTPS certificate.
    Certificate,
    KeyFile,
    StateReset,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Change => "change",
            Event::UpdateFailed => "update_failed",
            Event::Rejected => "rejected",
            Event::Lost => "lost",
            Event::Back => "back",
            Event::Drift => "drift",
            Event::AcmeFailed => "acme_failed",
            Event::Certificate => "certificate",
            Event::KeyFile => "key_file",
            Event::StateReset => "state_reset",
        }
    }

    /// ntfy's tags (emoji shortcodes).
    fn tags(self) -> &'static str {
        match self {
            Event::Change => "globe_with_meridians",
            Event::Lost => "rotating_light",
            Event::Back => "white_check_mark",
            Event::Certificate => "lock",
            _ => "warning",
        }
    }
}

/// ntfy priorities, the scale every message uses; each service maps them
/// to its own.
pub const HIGH: u8 = 4;
pub const DEFAULT: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
    pub priority: u8,
    pub event: Event,
    /// The host it is about, if one.
    pub host: Option<String>,
}

/// One HTTP `POST`, as a service documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub enum NtfyAuth {
    None,
    Basic { username: String, password: Secret },
    Token(Secret),
}

#[derive(Debug, Clone)]
pub enum Target {
    /// `POST {server}/{topic}`, title, priority and tags as headers
    /// (<https://docs.ntfy.sh/publish/>).
    Ntfy { topic_url: String, auth: NtfyAuth },
    /// `generic+https://…`: a JSON `POST` of title, message, priority, host
    /// and kind to the URL as given.
    Generic { url: Secret },
    /// `POST {server}/message` with the application token
    /// (<https://gotify.net/docs/pushmsg>).
    Gotify { base: String, token: Secret },
    /// Execute Webhook
    /// (<https://discord.com/developers/docs/resources/webhook#execute-webhook>).
    Discord { id: String, token: Secret },
    /// Incoming webhook (<https://api.slack.com/messaging/webhooks>).
    Slack { path: Secret },
    /// `sendMessage` once per chat (<https://core.telegram.org/bots/api#sendmessage>).
    Telegram { token: Secret, chats: Vec<String> },
    /// Messages API (<https://pushover.net/api>).
    Pushover { token: Secret, user: Secret },
}

/// The longest message a target is sent: Discord takes 2000 characters,
/// Telegram 4096, Pushover 1024 (title 250); longer text is cut.
const MAX_TEXT: usize = 1000;

impl Target {
    /// The service and its host, for logs and errors; never a secret.
    pub fn label(&self) -> String {
        let host = |url: &str| crate::env::url_host(url).to_string();
        match self {
            Target::Ntfy { topic_url, .. } => format!("ntfy ({})", host(topic_url)),
            Target::Generic { url } => format!("generic ({})", host(url.expose())),
            Target::Gotify { base, .. } => format!("gotify ({})", host(base)),
            Target::Discord { .. } => "discord".into(),
            Target::Slack { .. } => "slack".into(),
            Target::Telegram { .. } => "telegram".into(),
            Target::Pushover { .. } => "pushover".into(),
        }
    }

    /// The requests that deliver `m`.
    pub fn requests(&self, m: &Message) -> Vec<Outgoing> {
        let json = |url: String, body: serde_json::Value| Outgoing {
            url,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string(),
        };
        let text = || cut(&format!("{}\n{}", m.title, m.body), MAX_TEXT);
        match self {
            Target::Ntfy { topic_url, auth } => vec![ntfy_request(topic_url, auth, m)],
            Target::Generic { url } => vec![json(
                url.expose().to_string(),
                json!({"title": m.title, "message": m.body, "priority": m.priority,
                       "host": m.host, "kind": m.event.as_str()}),
            )],
            Target::Gotify { base, token } => {
                // Gotify's priorities: 0-10; 5 and up pop up on Android.
                let priority = if m.priority >= HIGH { 8 } else { 5 };
                let mut out =
                    json(format!("{base}/message"), json!({"title": m.title, "message": m.body, "priority": priority}));
                out.headers.push(("X-Gotify-Key", token.expose().to_string()));
                vec![out]
            }
            Target::Discord { id, token } => vec![json(
                format!("https://discord.com/api/webhooks/{id}/{}", token.expose()),
                json!({"content": cut(&format!("**{}**\n{}", m.title, m.body), MAX_TEXT)}),
            )],
            Target::Slack { path } => vec![json(
                format!("https://hooks.slack.com/services/{}", path.expose()),
                json!({"text": cut(&format!("*{}*\n{}", m.title, m.body), MAX_TEXT)}),
            )],
            Target::Telegram { token, chats } => chats
                .iter()
                .map(|chat| {
                    json(
                        format!("https://api.telegram.org/bot{}/sendMessage", token.expose()),
                        json!({"chat_id": chat, "text": text()}),
                    )
                })
                .collect(),
            Target::Pushover { token, user } => vec![pushover_request(token, user, m)],
        }
    }
}

/// ntfy: the body is the message; title, priority, tags and login in
/// headers.
fn ntfy_request(topic_url: &str, auth: &NtfyAuth, m: &Message) -> Outgoing {
    let mut headers = vec![
        ("Title", header_safe(&m.title)),
        ("Priority", m.priority.to_string()),
        ("Tags", m.event.tags().to_string()),
    ];
    match auth {
        NtfyAuth::None => {}
        NtfyAuth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push(("Authorization", format!("Basic {encoded}")));
        }
        NtfyAuth::Token(t) => headers.push(("Authorization", format!("Bearer {}", t.expose()))),
    }
    Outgoing { url: topic_url.to_string(), headers, body: m.body.clone() }
}

/// Pushover: a form with the app's token and the user's key.
fn pushover_request(token: &Secret, user: &Secret, m: &Message) -> Outgoing {
    // Pushover's priorities: -2..2; 1 bypasses quiet hours.
    let priority = if m.priority >= HIGH { "1" } else { "0" };
    let mut body = String::new();
    for (k, v) in [
        ("token", token.expose()),
        ("user", user.expose()),
        ("title", &cut(&m.title, 250)),
        ("message", &cut(&m.body, MAX_TEXT)),
        ("priority", priority),
    ] {
        let sep = if body.is_empty() { "" } else { "&" };
        let _ = write!(body, "{sep}{k}={}", form_encode(v));
    }
    Outgoing {
        url: "https://api.pushover.net/1/messages.json".into(),
        headers: vec![("Content-Type", "application/x-www-form-urlencoded".into())],
        body,
    }
}

/// `NOTIFY_URLS`: comma-separated Shoutrrr URLs (`telegram://…?chats=a,b`
/// keeps its commas). Each error names the entry
/// with its secret parts hidden.
pub fn parse_urls(list: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    // A comma also separates Telegram's chats: a piece without `://`
    // belongs to the entry before it.
    let mut entries: Vec<String> = Vec::new();
    for piece in list.split(',') {
        match entries.last_mut() {
            Some(last) if !piece.contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => entries.push(piece.to_string()),
        }
    }
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match parse(entry) {
            Ok(t) => targets.push(t),
            Err(why) => errors.push(format!("NOTIFY_URLS entry {:?}: {why}", hide(entry))),
        }
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(errors.join("\n"))
    }
}

/// An entry as it may be printed: user information, the path and the query
/// hidden (any of them may hold a token).
pub fn hide(entry: &str) -> String {
    let (scheme, authority, rest) = crate::env::url_parts(entry);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let at = if authority.contains('@') { "***@" } else { "" };
    let rest = if rest.is_empty() || rest == "/" { "" } else { "/***" };
    format!("{scheme}{at}{host}{rest}")
}

/// The parts of `scheme://userinfo@host/path?query`.
struct Parts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    path: &'a str,
    query: Vec<(&'a str, &'a str)>,
}

fn parts(rest: &str) -> Parts<'_> {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Some(a), Some(b)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let query = query.split('&').filter(|q| !q.is_empty()).map(|q| q.split_once('=').unwrap_or((q, ""))).collect();
    Parts { user: user.filter(|u| !u.is_empty()), password: password.filter(|p| !p.is_empty()), host, path, query }
}

impl Parts<'_> {
    fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v)
    }

    /// `disabletls=yes` asks for plain HTTP.
    fn scheme(&self) -> &'static str {
        match self.query("disabletls").map(str::to_ascii_lowercase).as_deref() {
            Some("yes" | "true" | "1") => "http",
            _ => "https",
        }
    }
}

fn secret(value: &str) -> Result<Secret, String> {
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
    if decoded.is_empty() || decoded.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token is empty or not one word".into());
    }
    Ok(Secret::new(decoded))
}

fn valid_host(host: &str) -> Result<(), String> {
    let bare = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)) {
        return Err("it names no server host".into());
    }
    Ok(())
}

fn parse(entry: &str) -> Result<Target, String> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err("not a URL (scheme://…)".into());
    };
    let p = parts(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "generic+https" | "generic+http" => {
            valid_host(p.host)?;
            Ok(Target::Generic { url: Secret::new(format!("{}://{rest}", &scheme[8..])) })
        }
        "generic" => {
            valid_host(p.host)?;
            let path = rest.split_once('?').map_or(rest, |(a, _)| a);
            Ok(Target::Generic { url: Secret::new(format!("{}://{path}", p.scheme())) })
        }
        "gotify" => {
            valid_host(p.host)?;
            let path = p.path.trim_end_matches('/');
            let (sub, token) = path.rsplit_once('/').unwrap_or(("", ""));
            let token = secret(token).map_err(|_| "the application token is missing (gotify://host/TOKEN)")?;
            Ok(Target::Gotify { base: format!("{}://{}{sub}", p.scheme(), p.host), token })
        }
        "ntfy" => ntfy(&p),
        "discord" => {
            let token = secret(p.user.unwrap_or_default()).map_err(|_| "the token is missing (discord://TOKEN@ID)")?;
            let id = p.host;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the webhook id after @ must be digits (discord://TOKEN@WEBHOOKID)".into());
            }
            Ok(Target::Discord { id: id.to_string(), token })
        }
        "slack" => slack(&p),
        "telegram" => telegram(&p),
        "pushover" => {
            let token = secret(p.password.unwrap_or_default())
                .map_err(|_| "the API token is missing (pushover://shoutrrr:APITOKEN@USERKEY)")?;
            let user = secret(p.host).map_err(|_| "the user key is missing (pushover://shoutrrr:APITOKEN@USERKEY)")?;
            Ok(Target::Pushover { token, user })
        }
        other => Err(format!(
            "unknown service {other:?}; use generic+https, gotify, ntfy, discord, slack, telegram or pushover"
        )),
    }
}

/// `ntfy://[user:password@]host/topic[?scheme=http]`.
fn ntfy(p: &Parts<'_>) -> Result<Target, String> {
    valid_host(p.host)?;
    let topic = p.path.trim_matches('/');
    if topic.is_empty() || topic.contains('/') {
        return Err("the topic is missing (ntfy://host/TOPIC)".into());
    }
    let scheme = match p.query("scheme") {
        Some("http") => "http",
        Some("https") | None => "https",
        Some(_) => return Err("scheme= must be http or https".into()),
    };
    let auth = match (p.user, p.password) {
        (None, None) => NtfyAuth::None,
        (None, Some(token)) => NtfyAuth::Token(secret(token)?),
        (Some(u), Some(pw)) => NtfyAuth::Basic { username: u.to_string(), password: secret(pw)? },
        (Some(_), None) => return Err("a user name without a password".into()),
    };
    Ok(Target::Ntfy { topic_url: format!("{scheme}://{}/{topic}", p.host), auth })
}

/// `slack://hook:T-B-X@webhook` (Shoutrrr 0.7+) or `slack://T/B/X`.
fn slack(p: &Parts<'_>) -> Result<Target, String> {
    let path = match (p.user, p.password) {
        (Some("hook"), Some(token)) => token.replace('-', "/"),
        (None, None) => format!("{}{}", p.host, p.path),
        (Some(_), _) => return Err("only webhooks are supported (slack://hook:TOKEN@webhook)".into()),
        _ => String::new(),
    };
    let pieces: Vec<&str> = path.trim_matches('/').split('/').collect();
    if pieces.len() != 3 || pieces.iter().any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err("the webhook token must have three parts (slack://hook:T000-B000-XXXX@webhook)".into());
    }
    Ok(Target::Slack { path: Secret::new(pieces.join("/")) })
}

/// `telegram://TOKEN@telegram?chats=@channel,12345`.
fn telegram(p: &Parts<'_>) -> Result<Target, String> {
    let token = match (p.user, p.password) {
        (Some(id), Some(key)) => secret(&format!("{id}:{key}"))?,
        _ => return Err("the bot token is missing (telegram://TOKEN@telegram?chats=…)".into()),
    };
    let chats: Vec<String> = p
        .query("chats")
        .unwrap_or_default()
        .split(',')
        .map(|c| percent_encoding::percent_decode_str(c).decode_utf8_lossy().trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    if chats.is_empty() {
        return Err("no chats= given (telegram://TOKEN@telegram?chats=@channel,12345)".into());
    }
    Ok(Target::Telegram { token, chats })
}

pub use dyndns_common::heartbeat::describe;

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Header values must be one line of visible ASCII.
fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            title: "dyndns: update of home.example.com failed".into(),
            body: "home.example.com A 192.0.2.1: Hetzner did not answer".into(),
            priority: HIGH,
            event: Event::UpdateFailed,
            host: Some("home.example.com".into()),
        }
    }

    fn one(url: &str) -> Outgoing {
        let targets = parse_urls(url).expect("parses");
        let mut out = targets[0].requests(&message());
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn body(o: &Outgoing) -> serde_json::Value {
        serde_json::from_str(&o.body).expect("json body")
    }

    #[test]
    fn discord_is_an_execute_webhook_call() {
        let o = one("discord://tok-en_1@123456789");
        assert_eq!(o.url, "https://discord.com/api/webhooks/123456789/tok-en_1");
        assert_eq!(o.headers, vec![("Content-Type", "application/json".to_string())]);
        let content = body(&o)["content"].as_str().expect("content").to_string();
        assert!(content.starts_with("**dyndns: update of home.example.com failed**\nhome.example.com A"), "{content}");
    }

    #[test]
    fn slack_is_an_incoming_webhook_in_both_url_forms() {
        for url in ["slack://hook:T000-B111-XXXyyy@webhook", "slack://T000/B111/XXXyyy"] {
            let o = one(url);
            assert_eq!(o.url, "https://hooks.slack.com/services/T000/B111/XXXyyy", "{url}");
            assert!(body(&o)["text"].as_str().expect("text").starts_with("*dyndns: update"), "{url}");
        }
    }

    #[test]
    fn telegram_sends_one_message_per_chat() {
        let targets =
            parse_urls("telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@mychannel,-100123")
                .expect("parses");
        let out = targets[0].requests(&message());
        assert_eq!(out.len(), 2);
        for (o, chat) in out.iter().zip(["@mychannel", "-100123"]) {
            assert_eq!(o.url, "https://api.telegram.org/bot110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage");
            assert_eq!(body(o)["chat_id"], chat);
            assert!(body(o)["text"].as_str().expect("text").contains("Hetzner did not answer"));
        }
    }

    #[test]
    fn pushover_posts_the_documented_form_fields() {
        let o = one("pushover://shoutrrr:azGDORePK8gMaC0QOYAMyEEuzJnyUi@uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
        assert_eq!(o.url, "https://api.pushover.net/1/messages.json");
        assert_eq!(o.headers, vec![("Content-Type", "application/x-www-form-urlencoded".to_string())]);
        assert!(o.body.starts_with(
            "token=azGDORePK8gMaC0QOYAMyEEuzJnyUi&user=uQiRzpo4DXghDmr9QzzfQu27cmVRsG&title=dyndns%3A%20update"
        ));
        assert!(o.body.ends_with("&priority=1"), "{}", o.body);
    }

    #[test]
    fn gotify_generic_and_ntfy_urls_point_at_their_servers() {
        let g = one("gotify://gotify.example.com:8443/sub/path/AzyoeNS.D4iJLVa?disabletls=yes");
        assert_eq!(g.url, "http://gotify.example.com:8443/sub/path/message");
        assert!(g.headers.contains(&("X-Gotify-Key", "AzyoeNS.D4iJLVa".to_string())));
        assert_eq!(body(&g)["priority"], 8);
        let w = one("generic+https://hooks.example.com/dyn?x=1");
        assert_eq!(w.url, "https://hooks.example.com/dyn?x=1");
        assert_eq!(body(&w)["kind"], "update_failed");
        assert_eq!(body(&w)["host"], "home.example.com");
        let n = one("ntfy://:tk_abc@ntfy.example.com/dyn?scheme=http");
        assert_eq!(n.url, "http://ntfy.example.com/dyn");
        assert!(n.headers.contains(&("Authorization", "Bearer tk_abc".to_string())));
        assert!(n.headers.contains(&("Tags", "warning".to_string())));
    }

    #[test]
    fn a_url_that_cannot_work_is_named_with_its_secret_hidden() {
        for (url, why) in [
            ("matrix://user:pass@host/room", "unknown service"),
            ("gotify://gotify.example.com/", "application token"),
            ("discord://@123", "token is missing"),
            ("discord://secrettoken@not-digits", "digits"),
            ("telegram://1:secretkey@telegram", "chats="),
            ("pushover://shoutrrr:@user", "API token"),
            ("slack://xoxb:secretbot@C0123", "only webhooks"),
            ("ntfy://ntfy.example.com/", "topic"),
            ("https://example.com", "unknown service"),
            ("nonsense", "not a URL"),
        ] {
            let e = parse_urls(&format!("{url},generic+https://ok.example.com")).expect_err(url);
            assert!(e.starts_with("NOTIFY_URLS entry ") && e.contains(why), "{url}: {e}");
            for secret in ["pass", "secrettoken", "secretkey", "secretbot"] {
                assert!(!e.contains(secret), "{url}: {e}");
            }
        }
    }
}
