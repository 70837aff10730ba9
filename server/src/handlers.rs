//! The endpoints, as plain functions of an owned request and the app.
//!
//! Nothing here touches a socket: `http` copies each tiny_http request into
//! a `Req`, calls `handle` and writes the `Reply` back. Authentication comes
//! before anything is done on the caller's behalf: an unauthenticated
//! request never reaches Hetzner and gets the same answer for a registered
//! and an unregistered host.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Cidr;
use crate::dyndns2::{self, Addresses, Answer, Params};
use crate::fqdn;
use crate::hetzner::RecordType;
use crate::keys;
use crate::monitor::human;
use crate::notify::{self, Message};
use crate::updater::{Outcome, UpdateError};
use crate::App;

/// Largest request body; a larger one is answered 413 without being read
/// (`http`).
pub const MAX_BODY: usize = 4096;
/// Longest path plus query; longer ones get 414 (20 host names and two
/// addresses fit in well under 2 KB).
pub const MAX_TARGET: usize = 4096;
/// The longest a client's request may wait for Hetzner, retries included.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(15);
/// Compared against when a host has no key, so an unknown host costs the
/// same time as a wrong key.
const NO_KEY: &str = "no-key-no-key-no-key-no-key-no-key-no-key-xx";

/// A request copied out of the HTTP library.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    /// Path without query, leading slashes collapsed (`//nic/update` → `/nic/update`).
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: Option<IpAddr>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Split a request target into normalized path and query.
    pub fn split_target(target: &str) -> (String, String) {
        // absolute-form (`http://host/path`) → origin-form
        let target = match target.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => rest.find('/').map_or("/", |i| &rest[i..]),
            _ => target,
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = format!("/{}", path.trim_start_matches('/'));
        (path, query.to_string())
    }

    /// `Authorization: Basic` credentials, if present and decodable.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = keys::base64_decode(encoded.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((user.to_string(), pass.to_string()))
    }

    /// The caller's address: when the peer is a trusted proxy, `X-Real-Ip`,
    /// else the first `X-Forwarded-For` entry; else the peer. IPv4-mapped
    /// IPv6 becomes IPv4.
    pub fn client_ip(&self, trusted: &[Cidr]) -> Option<IpAddr> {
        let peer = self.peer.map(|p| p.to_canonical());
        if !peer.is_some_and(|p| trusted.iter().any(|net| net.contains(p))) {
            return peer;
        }
        let from_header = |name: &str, first: bool| {
            let v = self.header(name)?;
            let v = if first { v.split(',').next()? } else { v };
            dyndns2::parse_ip(v).ok()
        };
        from_header("x-real-ip", false).or_else(|| from_header("x-forwarded-for", true)).or(peer)
    }
}

/// An answer to write back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// The host the request was about, for the request log line.
    pub host: Option<String>,
    /// The outcome of a successful JSON update (`created` …), for `/metrics`;
    /// other answers are counted by their status code.
    pub outcome: Option<&'static str>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            headers: Vec::new(),
            host: None,
            outcome: None,
        }
    }
    fn json(status: u16, body: &Value) -> Reply {
        Reply { content_type: "application/json", ..Reply::text(status, body.to_string()) }
    }
    fn json_error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({"error": message.into()}))
    }
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
    fn for_host(mut self, host: &str) -> Reply {
        self.host = Some(host.to_string());
        self
    }
    fn method_not_allowed(allow: &'static str, body: &str) -> Reply {
        Reply::text(405, body).with_header("Allow", allow)
    }
}

/// Route a request.
pub fn handle(app: &App, req: &Req) -> Reply {
    if req.path.len() + req.query.len() > MAX_TARGET {
        return Reply::text(414, "the request target is too long");
    }
    match req.path.as_str() {
        "/update" => {
            let reply = json_update(app, req);
            match reply.outcome {
                Some(outcome) => app.metrics.count("json", outcome),
                None => app.metrics.count("json", &reply.status.to_string()),
            }
            reply
        }
        "/nic/update" | "/v3/update" => {
            let reply = nic_update(app, req);
            for line in reply.body.lines() {
                app.metrics.count("dyndns2", line.split(' ').next().unwrap_or(""));
            }
            reply
        }
        "/status" | "/metrics" | "/ip" | "/healthz" if req.method != "GET" && req.method != "HEAD" => {
            Reply::method_not_allowed("GET, HEAD", "method not allowed")
        }
        "/status" => crate::status::status(app, req),
        "/metrics" => crate::status::metrics(app, req),
        "/ip" => match app.client_ip(req) {
            Some(ip) => Reply::text(200, ip.to_string()),
            None => Reply::text(500, "no client address"),
        },
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::text(404, "not found"),
    }
}

impl App {
    /// Does `presented` equal the key of `host`? Constant time, and the same
    /// work for a host without a key.
    fn key_ok(&self, host: &str, presented: &str) -> bool {
        let key = self.keys.get(host);
        keys::ct_eq(key.unwrap_or(NO_KEY).as_bytes(), presented.as_bytes()) && key.is_some()
    }

    pub(crate) fn admin_ok(&self, user: &str, pass: &str) -> bool {
        self.config.admin.as_ref().is_some_and(|a| {
            // Both compared, always, so timing does not tell which one was wrong.
            let user_ok = keys::ct_eq(a.username.as_bytes(), user.as_bytes());
            let pass_ok = keys::ct_eq(a.password.expose().as_bytes(), pass.as_bytes());
            user_ok & pass_ok
        })
    }

    fn client_ip(&self, req: &Req) -> Option<IpAddr> {
        req.client_ip(&self.config.trusted_proxies)
    }

    /// Refuse a source that failed to authenticate too often (`limiter`).
    fn refused(&self, source: Option<IpAddr>) -> Option<u64> {
        self.limiter.blocked(source?).map(|d| d.as_secs().max(1))
    }

    /// Count the outcome of an authentication attempt.
    fn auth_result(&self, source: Option<IpAddr>, ok: bool) {
        let Some(source) = source else { return };
        if ok {
            self.limiter.succeeded(source);
        } else if self.limiter.failed(source) {
            log::warn!(
                "{source}: {} failed authentications within {}s; refused for {}s",
                crate::limiter::MAX_FAILURES,
                crate::limiter::WINDOW.as_secs(),
                crate::limiter::BLOCK.as_secs()
            );
        }
    }

    fn registered(&self, host: &str) -> bool {
        self.config.registered.binary_search_by(|h| h.as_str().cmp(host)).is_ok()
    }
}

/// `POST /update` with `{"fqdn", "ip"?, "type"?}` and `X-Pre-Shared-Key`.
fn json_update(app: &App, req: &Req) -> Reply {
    if req.method != "POST" {
        return Reply::method_not_allowed("POST", "method not allowed; POST a JSON body");
    }
    let source = app.client_ip(req);
    if let Some(secs) = app.refused(source) {
        return Reply::json_error(
            429,
            format!("too many failed authentications from this address; try again in {secs} s"),
        )
        .with_header("Retry-After", secs.to_string());
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Reply::json_error(400, format!("the body is not valid JSON: {e}")),
    };
    let Some(obj) = body.as_object() else {
        return Reply::json_error(400, "the body must be a JSON object like {\"fqdn\": \"home.example.com\"}");
    };
    let name = match obj.get("fqdn").or_else(|| obj.get("url")) {
        Some(Value::String(s)) => s,
        Some(_) => return Reply::json_error(400, "\"fqdn\" must be a string"),
        None => return Reply::json_error(400, "missing \"fqdn\""),
    };
    let host = match fqdn::canonical(name) {
        Ok(h) => h,
        Err(e) => return Reply::json_error(400, format!("\"fqdn\" is not a host name: {e}")),
    };
    let explicit_ip = match obj.get("ip") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match dyndns2::parse_ip(s) {
            Ok(ip) => Some(ip),
            Err(e) => return Reply::json_error(400, format!("\"ip\": {e}")).for_host(&host),
        },
        Some(_) => return Reply::json_error(400, "\"ip\" must be a string").for_host(&host),
    };
    let wanted_type = match obj.get("type") {
        None | Some(Value::Null) => None,
        Some(other) => match other.as_str().and_then(RecordType::parse) {
            Some(t) => Some(t),
            None => {
                return Reply::json_error(400, format!("\"type\" must be \"A\" or \"AAAA\", not {other}"))
                    .for_host(&host)
            }
        },
    };

    let key_ok = req.header("x-pre-shared-key").is_some_and(|k| app.key_ok(&host, k.trim()));
    let admin_ok = req.basic_auth().is_some_and(|(u, p)| app.admin_ok(&u, &p));
    app.auth_result(source, key_ok || admin_ok);
    if !key_ok && !admin_ok {
        let message = if req.header("x-pre-shared-key").is_none() && req.header("authorization").is_none() {
            "missing X-Pre-Shared-Key header"
        } else {
            "wrong pre-shared key for this host"
        };
        return Reply::json_error(401, message).for_host(&host);
    }
    if !app.registered(&host) {
        misconfigured(app, &host, "nohost", format!("{host} authenticated but is not in REGISTERED_FQDNS"));
        return Reply::json_error(404, format!("{host} is not registered on this server (REGISTERED_FQDNS)"))
            .for_host(&host);
    }
    seen(app, &host);

    let Some(ip) = explicit_ip.or(source) else {
        return Reply::json_error(400, "no address given and none could be taken from the connection").for_host(&host);
    };
    let rtype = RecordType::of(ip);
    if let Some(wanted) = wanted_type.filter(|&w| w != rtype) {
        return Reply::json_error(400, format!("\"type\" is {wanted} but {ip} is an {rtype} address")).for_host(&host);
    }
    match update(app, &host, ip, Instant::now() + REQUEST_BUDGET) {
        Ok(outcome) => Reply {
            outcome: Some(outcome.as_str()),
            ..Reply::json(
                200,
                &json!({"status": outcome.as_str(), "fqdn": host, "type": rtype.as_str(), "ip": ip.to_string()}),
            )
        },
        Err(e @ UpdateError::TooManyWrites(wait)) => {
            Reply::json_error(429, e.to_string()).with_header("Retry-After", wait.as_secs().max(1).to_string())
        }
        Err(e) => Reply::json_error(if e.is_permanent() { 502 } else { 503 }, e.to_string()),
    }
    .for_host(&host)
}

/// dyndns2: `/nic/update`, `/v3/update`, `//nic/update`.
fn nic_update(app: &App, req: &Req) -> Reply {
    if req.method != "GET" && req.method != "POST" {
        return Reply::method_not_allowed("GET, POST", "badagent");
    }
    let mut params = Params::parse(&req.query);
    let form = req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if req.method == "POST" && form {
        params.extend(Params::parse(&String::from_utf8_lossy(&req.body)));
    }
    let source = app.client_ip(req);
    if app.refused(source).is_some() {
        // The protocol's own code for a client that is blocked.
        return lines(&[Answer::Abuse]);
    }
    let Some((user, pass)) = req.basic_auth().or_else(|| params.credentials()) else {
        return unauthorized();
    };

    let mut names = params.hostnames();
    if names.is_empty() {
        // Some clients send only the user name; accept it when it is a full name.
        match fqdn::canonical(&user) {
            Ok(h) if user.contains('.') => names.push(h),
            _ => return lines(&[Answer::NotFqdn]),
        }
    }
    if names.len() > dyndns2::MAX_HOSTS {
        return lines(&[Answer::NumHost]);
    }
    let hosts: Vec<Option<String>> = names.iter().map(|n| fqdn::canonical(n).ok()).collect();
    let log_host = hosts.iter().flatten().cloned().collect::<Vec<_>>().join(",");

    if !app.admin_ok(&user, &pass) {
        let user = user.trim().trim_end_matches('.').to_lowercase();
        let all_ok = hosts.iter().all(|h| {
            h.as_deref().is_some_and(|h| (user == h || user == fqdn::first_label(h)) && app.key_ok(h, pass.trim()))
        });
        app.auth_result(source, all_ok);
        if !all_ok {
            return Reply { host: Some(log_host), ..unauthorized() };
        }
    } else {
        app.auth_result(source, true);
    }

    let addresses = match params.addresses() {
        Ok(Some(a)) => a,
        Ok(None) => {
            let mut a = Addresses::default();
            if let Some(ip) = source {
                let _ = a.add(ip);
            }
            a
        }
        Err(e) => {
            log::warn!("dyndns2 update of {log_host}: {e}");
            for h in hosts.iter().flatten() {
                misconfigured(
                    app,
                    h,
                    "badip",
                    format!("{h} sent an address that cannot be used: {e}; fix the update URL"),
                );
            }
            return Reply { host: Some(log_host), ..lines(&vec![Answer::BadIp; hosts.len()]) };
        }
    };

    let deadline = Instant::now() + REQUEST_BUDGET;
    let answers: Vec<Answer> = hosts
        .iter()
        .map(|host| match host {
            None => Answer::NotFqdn,
            Some(h) if !app.registered(h) => {
                misconfigured(app, h, "nohost", format!("{h} authenticated but is not in REGISTERED_FQDNS"));
                Answer::NoHost
            }
            Some(h) => {
                seen(app, h);
                update_host(app, h, &addresses, deadline)
            }
        })
        .collect();
    Reply { host: Some(log_host), ..lines(&answers) }
}

/// Set every address of `addresses` on one host; one answer line.
fn update_host(app: &App, host: &str, addresses: &Addresses, deadline: Instant) -> Answer {
    let ips = addresses.list();
    if ips.is_empty() {
        return Answer::BadIp;
    }
    let mut changed = false;
    let mut failure: Option<UpdateError> = None;
    for &ip in &ips {
        match update(app, host, ip, deadline) {
            Ok(outcome) => changed |= outcome != Outcome::Unchanged,
            Err(e) => failure = Some(e),
        }
    }
    let list = ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",");
    match failure {
        // The protocol's code for a client that sends too much.
        Some(UpdateError::TooManyWrites(_)) => Answer::Abuse,
        Some(e) if e.is_permanent() => Answer::DnsErr,
        Some(_) => Answer::ServerError,
        None if changed => Answer::Good(list),
        None => Answer::NoChg(list),
    }
}

/// An authenticated report: the host is alive. Announces the end of an outage.
fn seen(app: &App, host: &str) {
    if let Some(outage) = app.hosts.seen(host) {
        log::info!("{host} is back online after {}", human(outage));
        app.notifier.send(Message {
            title: format!("{host} is back online"),
            body: format!("{host} reported again after {} of silence.", human(outage)),
            priority: notify::DEFAULT,
            tags: "white_check_mark",
        });
    }
}

/// Set one record and take note: host book, log, notifications.
fn update(app: &App, host: &str, ip: IpAddr, deadline: Instant) -> Result<Outcome, UpdateError> {
    let rtype = RecordType::of(ip);
    let result = app.updater.update(host, ip, deadline);
    match &result {
        Ok(outcome) => {
            app.hosts.set_error(host, None);
            app.notifier.clear(&format!("{host}|"));
            let announce = app.config.notify_on_change || app.config.debug;
            if announce && *outcome != Outcome::Unchanged {
                app.notifier.send(Message {
                    title: format!("{host} {rtype} is now {ip}"),
                    body: format!("{host}: {rtype} record {} {ip}.", outcome.as_str()),
                    priority: notify::DEFAULT,
                    tags: "globe_with_meridians",
                });
            }
        }
        Err(e) => {
            log::error!("update {host} {rtype} {ip}: {e}");
            app.hosts.set_error(host, Some(e.to_string()));
            app.notifier.send_once(
                &format!("{host}|{}", e.kind()),
                Message {
                    title: format!("dyndns: update of {host} failed"),
                    body: format!("{host} {rtype} {ip}: {e}"),
                    priority: notify::HIGH,
                    tags: "warning",
                },
            );
        }
    }
    result
}

/// An authenticated request that looks like a misconfigured client.
fn misconfigured(app: &App, host: &str, kind: &str, text: String) {
    app.hosts.set_error(host, Some(text.clone()));
    app.notifier.send_once(
        &format!("{host}|{kind}"),
        Message {
            title: format!("dyndns: rejected an update of {host}"),
            body: text,
            priority: notify::HIGH,
            tags: "warning",
        },
    );
}

fn lines(answers: &[Answer]) -> Reply {
    let body = answers.iter().map(Answer::to_string).collect::<Vec<_>>().join("\n");
    Reply::text(200, body)
}

fn unauthorized() -> Reply {
    Reply::text(401, Answer::BadAuth.to_string()).with_header("WWW-Authenticate", "Basic realm=\"dyndns\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalized() {
        assert_eq!(Req::split_target("//nic/update?hostname=a"), ("/nic/update".into(), "hostname=a".into()));
        assert_eq!(Req::split_target("/update"), ("/update".into(), String::new()));
        assert_eq!(Req::split_target("http://h:8080/nic/update?x"), ("/nic/update".into(), "x".into()));
        assert_eq!(Req::split_target("/a?b=c?d"), ("/a".into(), "b=c?d".into()));
    }

    #[test]
    fn client_address_prefers_proxy_headers_and_unmaps_ipv4() {
        let trusted = [Cidr::parse("192.0.2.0/24").expect("cidr")];
        let mut req = Req { peer: Some("::ffff:192.0.2.9".parse().expect("ip")), ..Req::default() };
        assert_eq!(req.client_ip(&trusted), Some("192.0.2.9".parse().expect("ip")));
        req.headers.push(("x-forwarded-for".into(), "198.51.100.1, 10.0.0.1".into()));
        assert_eq!(req.client_ip(&trusted), Some("198.51.100.1".parse().expect("ip")));
        req.headers.push(("x-real-ip".into(), "2001:db8::5".into()));
        assert_eq!(req.client_ip(&trusted), Some("2001:db8::5".parse().expect("ip")));
        // From a peer that is not a trusted proxy, the headers are ignored.
        assert_eq!(req.client_ip(&[]), Some("192.0.2.9".parse().expect("ip")));
    }

    #[test]
    fn basic_auth_is_decoded() {
        let req = Req {
            headers: vec![("authorization".into(), "Basic aG9tZTprZXk6d2l0aDpjb2xvbnM=".into())],
            ..Req::default()
        };
        assert_eq!(req.basic_auth(), Some(("home".into(), "key:with:colons".into())));
        let req = Req { headers: vec![("authorization".into(), "Bearer x".into())], ..Req::default() };
        assert_eq!(req.basic_auth(), None);
    }
}
