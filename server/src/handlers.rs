//! The endpoints, as plain functions of a request and the app.
//!
//! Nothing here touches a socket: `http` lends each tiny_http request as a
//! `Req`, calls `handle` and writes the `Reply` back. Authentication comes
//! before anything is done on the caller's behalf: an unauthenticated
//! request never reaches Hetzner and gets the same answer for a registered
//! and an unregistered host.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::acme;
use crate::app::{App, REQUEST_BUDGET};
use crate::auth::{Denied, Principal};
use crate::dyndns2::{self, Addresses, Answer, Params};
use crate::fqdn;
use crate::hostbook::Cause;
use crate::inspect;
use crate::lan::{self, Prefix};
use crate::message::{LogContext, Reply, Req};
use crate::metrics::Endpoint;
use crate::net::RecordType;
use crate::notify::ClientMistake;
use crate::pages;
use crate::updater::{Outcome, UpdateError};

/// Largest request body; a larger one is answered 413 without being read
/// (`http`).
pub const MAX_BODY: usize = 4096;
/// Longest path plus query; longer ones get 414 (20 host names and two
/// addresses fit in well under 2 KB).
pub const MAX_TARGET: usize = 4096;

/// Route a request.
pub fn handle(app: &App, req: &Req, log: &mut LogContext) -> Reply {
    if req.path.len() + req.query.len() > MAX_TARGET {
        return Reply::text(414, "the request target is too long");
    }
    match req.path.as_ref() {
        "/update" => {
            let (reply, outcome) = json_update(app, req, log);
            app.counters.count(Endpoint::Json, outcome.map_or_else(|| status_label(reply.status), Outcome::as_str));
            inspect(app, req, log, Endpoint::Json, &reply);
            reply
        }
        "/nic/update" | "/v3/update" => {
            let (reply, answers) = nic_update(app, req, log);
            for answer in &answers {
                app.counters.count(Endpoint::Dyndns2, answer.code());
            }
            inspect(app, req, log, Endpoint::Dyndns2, &reply);
            reply
        }
        "/present" | "/cleanup" => {
            let (reply, result) = acme::handle(app, req, log, req.path == "/present");
            app.counters.count(Endpoint::Acme, result);
            reply
        }
        "/status" | "/metrics" | "/ip" | "/healthz" if req.method != "GET" && req.method != "HEAD" => {
            Reply::method_not_allowed("GET, HEAD", "method not allowed")
        }
        "/status" => pages::status(app, req),
        "/metrics" => pages::metrics(app, req),
        "/ip" => match app.client_ip(req) {
            Some(ip) => Reply::text(200, ip.to_string()),
            None => Reply::text(500, "no client address"),
        },
        "/healthz" => Reply::text(200, "ok"),
        // Browsers ask for it with every status page: nothing, cached a day.
        "/favicon.ico" => Reply::text(204, "").with_header("Cache-Control", "max-age=86400"),
        _ => Reply::text(404, "not found"),
    }
}

/// Keep the request for the inspector of each registered host it named.
fn inspect(app: &App, req: &Req, log: &LogContext, endpoint: Endpoint, reply: &Reply) {
    let Some(named) = log.host.as_deref() else { return };
    if !named.split(',').any(|h| app.registered(h)) {
        return;
    }
    let addresses = || address_parameters(req, endpoint);
    let answer: std::borrow::Cow<'_, str> = if let Some(why) = &log.denied {
        format!("{} ({why})", reply.body.trim()).into()
    } else if reply.status != 200 && endpoint == Endpoint::Json {
        format!("{} {}", reply.status, reply.body).into()
    } else if reply.body.contains('\n') {
        reply.body.replace('\n', " | ").into()
    } else {
        reply.body.as_str().into()
    };
    let seen = inspect::Observed {
        at: crate::time::unix_now(),
        source: app.client_ip(req),
        peer: req.peer,
        agent: req.header("user-agent").unwrap_or(""),
        endpoint: endpoint.as_str(),
        hosts: named,
        addresses: &addresses,
        authenticated: log.authenticated.unwrap_or(false),
        answer: &answer,
    };
    app.inspector.record(named.split(',').filter(|h| app.registered(h)), &seen);
}

/// The address parameters a request sent, as text (never a credential).
fn address_parameters(req: &Req, endpoint: Endpoint) -> String {
    if endpoint == Endpoint::Json {
        let doc: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let fields: Vec<String> =
            ["ip", "type", "ipv6_prefix"].iter().filter_map(|k| doc.get(*k).map(|v| format!("{k}={v}"))).collect();
        return if fields.is_empty() { "none (the connection's address)".into() } else { fields.join(" ") };
    }
    let mut params = Params::parse(req.query);
    let form = String::from_utf8_lossy(&req.body);
    if req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        params.extend(Params::parse(&form));
    }
    let names = ["myip", "myipv4", "ip", "myipv6", "ipv6", "myip6", "ip6lanprefix"];
    let sent: Vec<String> =
        params.pairs().filter(|(k, _)| names.contains(k)).map(|(k, v)| format!("{k}={v}")).collect();
    if sent.is_empty() {
        "none (the connection's address)".into()
    } else {
        sent.join(" ")
    }
}

/// The status codes `/update` answers, as `/metrics` labels.
fn status_label(status: u16) -> &'static str {
    match status {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        429 => "429",
        502 => "502",
        503 => "503",
        _ => "other",
    }
}

/// The fields of a JSON update request.
struct JsonUpdate {
    host: String,
    ip: Option<IpAddr>,
    rtype: Option<RecordType>,
    /// `ipv6_prefix`: the router's delegated prefix (prefix mode).
    prefix: Option<Prefix>,
}

/// `POST /update` with `{"fqdn", "ip"?, "type"?}` and `X-Pre-Shared-Key`.
/// Returns the outcome too when the update was done.
fn json_update(app: &App, req: &Req, log: &mut LogContext) -> (Reply, Option<Outcome>) {
    if req.method != "POST" {
        return (Reply::method_not_allowed("POST", "method not allowed; POST a JSON body"), None);
    }
    let source = app.client_ip(req);
    let mut fields = match parse_json_update(&req.body) {
        Ok(f) => f,
        Err(text) => return (Reply::json_error(400, text), None),
    };
    let host = std::mem::take(&mut fields.host);
    log.host = Some(host.clone());

    // The host's key in its header, or Basic credentials (the admin's, or
    // the host's name and key as on the dyndns2 endpoint).
    let (principal, user) = match (req.header("x-pre-shared-key"), req.basic_auth()) {
        (Some(key), _) => (app.guard.authorize(source, &host, key, Some(&host)), None),
        (None, Some((user, pass))) => (app.guard.authorize(source, &user, &pass, Some(&host)), Some(user)),
        (None, None) => return (Reply::json_error(401, "missing X-Pre-Shared-Key header"), None),
    };
    log.authenticated = Some(principal.is_ok());
    if let Err(Denied::Wrong) = principal {
        log.denied = Some(match user {
            Some(user) => app.guard.why_wrong(&user, Some(&host)),
            None => "the X-Pre-Shared-Key is not this host's key".into(),
        });
    }
    match principal {
        Ok(Principal::Admin) => {}
        Ok(Principal::Host(h)) if h == host => {}
        Ok(Principal::Host(h)) => {
            return (Reply::json_error(403, format!("these credentials are {h}'s; they cannot update {host}")), None)
        }
        Err(Denied::Refused(secs)) => return (Reply::too_many_failures(secs), None),
        Err(Denied::Wrong) => return (Reply::json_error(401, "wrong pre-shared key for this host"), None),
    }
    if !app.registered(&host) {
        app.rejected(&host, ClientMistake::NoHost, format!("{host} authenticated but is not in REGISTERED_FQDNS"));
        return (Reply::json_error(404, format!("{host} is not registered on this server (REGISTERED_FQDNS)")), None);
    }
    if app.acme_only(&host) {
        let text = format!("{host} is in ACME_ONLY_HOSTS: it may write its ACME challenges, not an address");
        return (Reply::json_error(403, text), None);
    }
    app.host_reported(&host);

    let Some(ip) = fields.ip.or(source) else {
        return (Reply::json_error(400, "no address given and none could be taken from the connection"), None);
    };
    let rtype = RecordType::of(ip);
    if let Some(wanted) = fields.rtype.filter(|&w| w != rtype) {
        return (Reply::json_error(400, format!("\"type\" is {wanted} but {ip} is an {rtype} address")), None);
    }
    if let Some(text) = app.refuse_unreachable(&host, ip, fields.ip.is_none()) {
        return (Reply::json_error(422, text), None);
    }
    let deadline = Instant::now() + REQUEST_BUDGET;
    let cause = Cause::Report { endpoint: Endpoint::Json, source: app.client_ip(req) };
    let result = app.set_address(&host, ip, cause, deadline);
    let lan = fields.prefix.map(|prefix| app.set_prefix(&host, prefix, deadline));
    match result {
        Ok(outcome) if lan.is_none() => {
            // The usual answer, written directly (a `Value` tree costs a
            // dozen allocations); a canonical host name and an address need
            // no escaping. Keys in the order serde_json writes them.
            let body = format!(
                r#"{{"fqdn":"{host}","ip":"{ip}","status":"{}","type":"{}"}}"#,
                outcome.as_str(),
                rtype.as_str()
            );
            (Reply { content_type: "application/json", ..Reply::text(200, body) }, Some(outcome))
        }
        Ok(outcome) => {
            let mut body =
                json!({"status": outcome.as_str(), "fqdn": host, "type": rtype.as_str(), "ip": ip.to_string()});
            if let Some(lan) = lan {
                let list: Vec<Value> = lan
                    .iter()
                    .map(|r| match &r.result {
                        Ok(o) => json!({"fqdn": r.fqdn, "ip": r.ip.to_string(), "status": o.as_str()}),
                        Err(e) => {
                            json!({"fqdn": r.fqdn, "ip": r.ip.to_string(), "status": "error", "error": e.to_string()})
                        }
                    })
                    .collect();
                body["lan_hosts"] = Value::Array(list);
            }
            (Reply::json(200, &body), Some(outcome))
        }
        Err(e @ UpdateError::TooManyWrites(wait)) => {
            let retry = wait.as_secs().max(1).to_string();
            (Reply::json_error(429, e.to_string()).with_header("Retry-After", retry), None)
        }
        Err(e) => (Reply::json_error(if e.is_permanent() { 502 } else { 503 }, e.to_string()), None),
    }
}

/// A well-formed request body, borrowed where it can be: the common case
/// costs no `Value` tree and few allocations.
#[derive(serde::Deserialize)]
struct JsonBody<'a> {
    #[serde(borrow, default)]
    fqdn: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    rtype: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    ipv6_prefix: Option<std::borrow::Cow<'a, str>>,
}

/// Read the JSON body; `Err` is the message of a 400 answer.
fn parse_json_update(body: &[u8]) -> Result<JsonUpdate, String> {
    // Fast path for the usual body; anything unusual (no "fqdn" string, a
    // field of another type, a bad value) takes the path below, which
    // words every error.
    if let Ok(JsonBody { fqdn: Some(name), ip, rtype, ipv6_prefix: None }) =
        serde_json::from_slice::<JsonBody<'_>>(body)
    {
        let host = fqdn::canonical(&name);
        let ip = match ip.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => dyndns2::parse_ip(text).map(Some),
        };
        let rtype = match rtype.as_deref() {
            None => Some(None),
            Some(text) => RecordType::parse(text).map(Some),
        };
        if let (Ok(host), Ok(ip), Some(rtype)) = (host, ip, rtype) {
            return Ok(JsonUpdate { host, ip, rtype, prefix: None });
        }
    }
    parse_json_update_slowly(body)
}

fn parse_json_update_slowly(body: &[u8]) -> Result<JsonUpdate, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object like {\"fqdn\": \"home.example.com\"}".into());
    };
    let name = match obj.get("fqdn").or_else(|| obj.get("url")) {
        Some(Value::String(s)) => s,
        Some(_) => return Err("\"fqdn\" must be a string".into()),
        None => return Err("missing \"fqdn\"".into()),
    };
    let host = fqdn::canonical(name).map_err(|e| format!("\"fqdn\" is not a host name: {e}"))?;
    Ok(JsonUpdate { host, ip: json_ip(obj)?, rtype: json_type(obj)?, prefix: json_prefix(obj)? })
}

fn json_prefix(obj: &Map<String, Value>) -> Result<Option<Prefix>, String> {
    match obj.get("ipv6_prefix") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => lan::parse_prefix(s).map(Some).map_err(|e| format!("\"ipv6_prefix\": {e}")),
        Some(_) => Err("\"ipv6_prefix\" must be a string like \"2001:db8:1:200::/56\"".into()),
    }
}

fn json_ip(obj: &Map<String, Value>) -> Result<Option<IpAddr>, String> {
    match obj.get("ip") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => dyndns2::parse_ip(s).map(Some).map_err(|e| format!("\"ip\": {e}")),
        Some(_) => Err("\"ip\" must be a string".into()),
    }
}

fn json_type(obj: &Map<String, Value>) -> Result<Option<RecordType>, String> {
    match obj.get("type") {
        None | Some(Value::Null) => Ok(None),
        Some(other) => match other.as_str().and_then(RecordType::parse) {
            Some(t) => Ok(Some(t)),
            None => Err(format!("\"type\" must be \"A\" or \"AAAA\", not {other}")),
        },
    }
}

/// dyndns2: `/nic/update`, `/v3/update`, `//nic/update`. Returns the answer
/// lines too, for `/metrics`.
fn nic_update(app: &App, req: &Req, log: &mut LogContext) -> (Reply, Vec<Answer>) {
    if req.method != "GET" && req.method != "POST" {
        return (Reply::method_not_allowed("GET, POST", "badagent"), Vec::new());
    }
    let form = req.method == "POST"
        && req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form_text = if form { String::from_utf8_lossy(&req.body) } else { std::borrow::Cow::Borrowed("") };
    let mut params = Params::parse(req.query);
    params.extend(Params::parse(&form_text));
    let source = app.client_ip(req);
    let answers = match dyndns2_answers(app, req, &params, source, log) {
        Ok(answers) => answers,
        Err(answer) => vec![answer],
    };
    let reply = if answers == [Answer::BadAuth] {
        Reply::text(401, Answer::BadAuth.to_string()).with_header("WWW-Authenticate", "Basic realm=\"dyndns\"")
    } else {
        let mut body = String::with_capacity(32 * answers.len());
        for (i, answer) in answers.iter().enumerate() {
            if i > 0 {
                body.push('\n');
            }
            let _ = write!(body, "{answer}");
        }
        Reply::text(200, body)
    };
    (reply, answers)
}

/// One answer per requested host, or one answer for the whole request.
fn dyndns2_answers(
    app: &App,
    req: &Req,
    params: &Params<'_>,
    source: Option<IpAddr>,
    log: &mut LogContext,
) -> Result<Vec<Answer>, Answer> {
    let (user, pass) = req.basic_auth().or_else(|| params.credentials()).ok_or(Answer::BadAuth)?;
    let hosts = requested_hosts(params, &user)?;
    log.host = Some(match hosts.as_slice() {
        [Some(one)] => one.clone(),
        _ => hosts.iter().flatten().map(String::as_str).collect::<Vec<_>>().join(","),
    });
    log.authenticated = Some(false);
    if let Err(answer) = authenticate(app, &user, &pass, &hosts, source) {
        if answer == Answer::BadAuth {
            let target = hosts.first().and_then(Option::as_deref);
            log.denied = Some(app.guard.why_wrong(&user, target));
        }
        return Err(answer);
    }
    log.authenticated = Some(true);
    let bad_request = |text: &dyn Fn(&str) -> String| {
        log::warn!("dyndns2 update of {}: {}", log.host.as_deref().unwrap_or(""), text("the request"));
        for h in hosts.iter().flatten() {
            app.rejected(h, ClientMistake::BadIp, text(h));
        }
        Ok(vec![Answer::BadIp; hosts.len()])
    };
    // An empty `ip6lanprefix=` is a router without IPv6: nothing to do.
    let prefix = match params.get("ip6lanprefix").map(lan::parse_prefix).transpose() {
        Ok(p) => p,
        Err(e) => {
            return bad_request(&|h| format!("{h} sent an IPv6 prefix that cannot be used: {e}; fix the update URL"))
        }
    };
    let (addresses, from_connection) = match params.addresses() {
        Ok(Some(a)) => (a, false),
        Ok(None) => {
            let mut a = Addresses::default();
            if let Some(ip) = source {
                let _ = a.add(ip);
            }
            (a, true)
        }
        Err(e) => return bad_request(&|h| format!("{h} sent an address that cannot be used: {e}; fix the update URL")),
    };
    // Nothing is written when any address is one the internet cannot reach.
    let refused = hosts.iter().flatten().filter(|h| app.registered(h)).fold(false, |refused, h| {
        addresses.iter().fold(refused, |r, ip| app.refuse_unreachable(h, ip, from_connection).is_some() || r)
    });
    if refused {
        return Ok(vec![Answer::BadIp; hosts.len()]);
    }
    let deadline = Instant::now() + REQUEST_BUDGET;
    let source = app.client_ip(req);
    let answers = hosts
        .iter()
        .map(|host| match host {
            None => Answer::NotFqdn,
            Some(h) if !app.registered(h) => {
                app.rejected(h, ClientMistake::NoHost, format!("{h} authenticated but is not in REGISTERED_FQDNS"));
                Answer::NoHost
            }
            Some(h) if app.acme_only(h) => {
                log::warn!("{h} is in ACME_ONLY_HOSTS and may not set an address");
                Answer::NoHost
            }
            Some(h) => {
                app.host_reported(h);
                let answer = update_host(app, h, &addresses, source, deadline);
                if let Some(prefix) = prefix {
                    app.set_prefix(h, prefix, deadline);
                }
                answer
            }
        })
        .collect();
    Ok(answers)
}

/// The `hostname` list in canonical form (`None` for a name that is not
/// one), or the user name when it is a full name and no list was sent.
fn requested_hosts(params: &Params<'_>, user: &str) -> Result<Vec<Option<String>>, Answer> {
    let mut hosts: Vec<Option<String>> = Vec::new();
    for name in params.hostname_items() {
        if hosts.len() == dyndns2::MAX_HOSTS {
            return Err(Answer::NumHost);
        }
        hosts.push(fqdn::canonical(name).ok());
    }
    if hosts.is_empty() {
        // Some clients send only the user name; accept it when it is a full name.
        match fqdn::canonical(user) {
            Ok(h) if user.contains('.') => hosts.push(Some(h)),
            _ => return Err(Answer::NotFqdn),
        }
    }
    Ok(hosts)
}

/// The admin credentials, or the key of the host every name in `hosts` is
/// (with the user name being that host: full name or first label).
fn authenticate(
    app: &App,
    user: &str,
    pass: &str,
    hosts: &[Option<String>],
    source: Option<IpAddr>,
) -> Result<(), Answer> {
    let target = match hosts {
        [Some(one), rest @ ..] if rest.iter().all(|h| h.as_ref() == Some(one)) => Some(one.as_str()),
        _ => None,
    };
    match app.guard.authorize(source, user, pass, target) {
        Ok(Principal::Admin) => Ok(()),
        Ok(Principal::Host(h)) if target == Some(h.as_str()) => Ok(()),
        Ok(Principal::Host(_)) | Err(Denied::Wrong) => Err(Answer::BadAuth),
        // The protocol's own code for a client that is refused.
        Err(Denied::Refused(_)) => Err(Answer::Abuse),
    }
}

/// Set every address of `addresses` on one host; one answer line.
fn update_host(app: &App, host: &str, addresses: &Addresses, source: Option<IpAddr>, deadline: Instant) -> Answer {
    let ips = addresses.iter();
    if ips.clone().next().is_none() {
        return Answer::BadIp;
    }
    let mut changed = false;
    let mut failure: Option<UpdateError> = None;
    for ip in ips.clone() {
        let cause = Cause::Report { endpoint: Endpoint::Dyndns2, source };
        match app.set_address(host, ip, cause, deadline) {
            Ok(outcome) => changed |= outcome != Outcome::Unchanged,
            Err(e) => failure = Some(e),
        }
    }
    let mut list = String::with_capacity(64);
    for (i, ip) in ips.enumerate() {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, "{ip}");
    }
    match failure {
        // The protocol's code for a client that sends too much.
        Some(UpdateError::TooManyWrites(_)) => Answer::Abuse,
        Some(e) if e.is_permanent() => Answer::DnsErr,
        Some(_) => Answer::ServerError,
        None if changed => Answer::Good(list),
        None => Answer::NoChg(list),
    }
}
