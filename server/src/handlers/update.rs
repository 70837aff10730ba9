//! `POST /update`: the JSON endpoint (`{"fqdn", "ip"?, "type"?,
//! "ipv6_prefix"?}` with `X-Pre-Shared-Key` or Basic credentials).

use std::net::IpAddr;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::app::{App, REQUEST_BUDGET};
use crate::auth::{Denied, Principal};
use crate::dyndns2;
use crate::fqdn;
use crate::hostbook::Cause;
use crate::lan::{self, Prefix};
use crate::message::{LogContext, Reply, Req};
use crate::metrics::Endpoint;
use crate::net::RecordType;
use crate::notify::ClientMistake;
use crate::updater::{Outcome, UpdateError};

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
pub(super) fn json_update(app: &App, req: &Req, log: &mut LogContext) -> (Reply, Option<Outcome>) {
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

    if let Err(reply) = authorize(app, req, &host, source, log) {
        return (reply, None);
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
    answer(&host, ip, result, lan)
}

/// May the caller set `host`'s address? The host's key in its header, or
/// Basic credentials (the admin's, or the host's name and key as on the
/// dyndns2 endpoint); the host must report addresses.
fn authorize(app: &App, req: &Req, host: &str, source: Option<IpAddr>, log: &mut LogContext) -> Result<(), Reply> {
    let (principal, user) = match (req.header("x-pre-shared-key"), req.basic_auth()) {
        (Some(key), _) => (app.guard.authorize(source, host, key, Some(host)), None),
        (None, Some((user, pass))) => (app.guard.authorize(source, &user, &pass, Some(host)), Some(user)),
        (None, None) => return Err(Reply::json_error(401, "missing X-Pre-Shared-Key header")),
    };
    log.authenticated = Some(principal.is_ok());
    if let Err(Denied::Wrong) = principal {
        log.denied = Some(match user {
            Some(user) => app.guard.why_wrong(&user, Some(host)),
            None => "the X-Pre-Shared-Key is not this host's key".into(),
        });
    }
    match principal {
        Ok(Principal::Admin) => {}
        Ok(Principal::Host(h)) if h == host => {}
        Ok(Principal::Host(h)) => {
            return Err(Reply::json_error(403, format!("these credentials are {h}'s; they cannot update {host}")))
        }
        Err(Denied::Refused(secs)) => return Err(Reply::too_many_failures(secs)),
        Err(Denied::Wrong) => return Err(Reply::json_error(401, "wrong pre-shared key for this host")),
    }
    if !app.registered(host) {
        app.rejected(host, ClientMistake::NoHost, format!("{host} authenticated but is not in REGISTERED_FQDNS"));
        return Err(Reply::json_error(404, format!("{host} is not registered on this server (REGISTERED_FQDNS)")));
    }
    if app.acme_only(host) {
        let text = format!("{host} is in ACME_ONLY_HOSTS: it may write its ACME challenges, not an address");
        return Err(Reply::json_error(403, text));
    }
    Ok(())
}

/// The answer to a report: the usual one written directly, or with the
/// LAN hosts a prefix set.
fn answer(
    host: &str,
    ip: IpAddr,
    result: Result<Outcome, UpdateError>,
    lan: Option<Vec<crate::app::LanResult>>,
) -> (Reply, Option<Outcome>) {
    let rtype = RecordType::of(ip);
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
