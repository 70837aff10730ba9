//! `POST /present` and `POST /cleanup`: the lego `httpreq` protocol (also
//! spoken by Traefik through lego, Caddy's and acme.sh's `acmeproxy`), so
//! a host can answer ACME DNS-01 challenges for its own name with its own
//! key — and for nothing else.
//!
//! Bodies: `{"fqdn": "_acme-challenge.nas.example.com.", "value": "…"}`, or
//! lego's `RAW` mode `{"domain": "nas.example.com", "token", "keyAuth"}`
//! (the server computes the value). Credentials: HTTP Basic as for dyndns2
//! (the host's full name or first label, and its key; the admin
//! credentials act for any registered host). Answers: 200 with a JSON body
//! that holds the value (acme.sh looks for it), 400 for a malformed body,
//! 401 for missing or wrong credentials, 403 for a name that is not
//! `_acme-challenge.<the authenticated host>`, 429 when the source is
//! refused or the host holds too many values, 502/503 when Hetzner fails.

use std::time::Instant;

use serde_json::{json, Value};

use crate::app::{App, REQUEST_BUDGET};
use crate::auth::{Denied, Principal};
use crate::challenges::{self, ChallengeError, LABEL};
use crate::message::{LogContext, Reply, Req};
use crate::notify::Event;
use crate::notify::{self, Message};
use crate::time::unix_now;

/// Longest challenge value accepted (a DNS-01 value is 43 characters).
const MAX_VALUE: usize = 255;

/// A challenge request: the host its name is for (if it is a challenge
/// name at all), the name as sent, and the value.
struct Challenge {
    host: Option<String>,
    fqdn: String,
    value: String,
}

/// Handle `/present` (`present`) or `/cleanup`; the result label for `/metrics` too.
pub fn handle(app: &App, req: &Req, log: &mut LogContext, present: bool) -> (Reply, &'static str) {
    if req.method != "POST" {
        return (Reply::method_not_allowed("POST", "method not allowed; POST a JSON body"), "405");
    }
    let source = app.client_ip(req);
    let challenge = match parse(&req.body) {
        Ok(c) => c,
        Err(text) => return (Reply::json_error(400, text), "400"),
    };
    let Some((user, pass)) = req.basic_auth() else {
        return (unauthorized("HTTP Basic credentials required (the host's name and key)"), "401");
    };
    let acting = match app.guard.authorize(source, &user, &pass, challenge.host.as_deref()) {
        Ok(Principal::Admin) => challenge.host.clone().filter(|h| app.registered(h)),
        Ok(Principal::Host(h)) => Some(h),
        Err(Denied::Refused(secs)) => return (Reply::too_many_failures(secs), "429"),
        Err(Denied::Wrong) => return (unauthorized("wrong name or key"), "401"),
    };
    log.host = acting.clone().or_else(|| challenge.host.clone());
    let host = match (acting, &challenge.host) {
        (Some(acting), Some(target)) if &acting == target && app.registered(&acting) => acting,
        (Some(acting), _) => {
            let text =
                format!("{LABEL}.{acting} is the only challenge name this key may write, not {:?}", challenge.fqdn);
            return (Reply::json_error(403, text), "403");
        }
        (None, _) => {
            let text = format!("{:?} is not {LABEL}.<a host in REGISTERED_FQDNS>", challenge.fqdn);
            return (Reply::json_error(403, text), "403");
        }
    };
    let deadline = Instant::now() + REQUEST_BUDGET;
    let result = if present {
        app.challenges.present(&app.updater, &host, &challenge.value, unix_now(), deadline)
    } else {
        app.challenges.cleanup(&app.updater, &host, &challenge.value, deadline)
    };
    let action = if present { "present" } else { "cleanup" };
    match result {
        Ok(done) => {
            app.hosts.mark_dirty();
            let body = json!({"status": done.as_str(), "fqdn": format!("{LABEL}.{host}."), "value": challenge.value});
            (Reply::json(200, &body), action)
        }
        Err(e @ ChallengeError::TooMany) => (Reply::json_error(429, e.to_string()), "429"),
        Err(e @ ChallengeError::TooManyCalls(wait)) => {
            let reply =
                Reply::json_error(429, e.to_string()).with_header("Retry-After", wait.as_secs().max(1).to_string());
            (reply, "429")
        }
        Err(ChallengeError::Update(e)) => {
            log::error!("ACME {action} for {host}: {e}");
            app.notifier.send_once(
                &host,
                notify::Kind::Challenge(e.kind()),
                Message {
                    title: format!("dyndns: ACME {action} for {host} failed"),
                    body: format!("{LABEL}.{host} TXT: {e}"),
                    priority: notify::HIGH,
                    event: Event::AcmeFailed,
                    host: None,
                },
            );
            let status = if e.is_permanent() { 502 } else { 503 };
            (Reply::json_error(status, e.to_string()), if status == 502 { "502" } else { "503" })
        }
    }
}

fn unauthorized(text: &str) -> Reply {
    Reply::json_error(401, text).with_header("WWW-Authenticate", "Basic realm=\"dyndns\"")
}

/// Read the body; `Err` is the message of a 400 answer.
fn parse(body: &[u8]) -> Result<Challenge, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let text = |k: &str| -> Result<Option<&str>, String> {
        match doc.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{k}\" must be a string")),
        }
    };
    let (fqdn, value) = match (text("fqdn")?, text("value")?, text("domain")?, text("keyAuth")?) {
        (Some(fqdn), Some(value), _, _) => (fqdn.trim().to_string(), value.trim().to_string()),
        (None, None, Some(domain), Some(key_auth)) => {
            // RAW mode: a wildcard's challenge is its base name's.
            let base = domain.trim().trim_start_matches("*.");
            (format!("{LABEL}.{base}"), challenges::digest(key_auth))
        }
        _ => {
            return Err(
                "expected {\"fqdn\": \"_acme-challenge.<host>.\", \"value\": \"…\"} or {\"domain\", \"token\", \"keyAuth\"}"
                    .into(),
            )
        }
    };
    let valid = !value.is_empty()
        && value.len() <= MAX_VALUE
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!("\"value\" must be 1 to {MAX_VALUE} characters of base64url (a DNS-01 digest)"));
    }
    Ok(Challenge { host: challenges::host_of(&fqdn), fqdn: fqdn.chars().take(300).collect(), value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_both_modes_parse_and_bad_ones_are_worded() {
        let c = parse(
            br#"{"fqdn": "_acme-challenge.nas.example.com.", "value": "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"}"#,
        )
        .expect("default mode");
        assert_eq!((c.host.as_deref(), c.value.len()), (Some("nas.example.com"), 43));
        let raw = parse(br#"{"domain": "*.nas.example.com", "token": "t", "keyAuth": "t.thumb"}"#).expect("raw");
        assert_eq!(raw.host.as_deref(), Some("nas.example.com"));
        assert_eq!(raw.value, challenges::digest("t.thumb"));
        let other = parse(br#"{"fqdn": "www.example.com.", "value": "abc"}"#).expect("parses");
        assert_eq!(other.host, None, "not a challenge name: refused later with 403");
        for (body, wanted) in [
            (&br"nope"[..], "not valid JSON"),
            (br#"{"fqdn": 5, "value": "a"}"#, "\"fqdn\" must be a string"),
            (br#"{"value": "a"}"#, "expected"),
            (br#"{"fqdn": "_acme-challenge.a.example.com", "value": "a\"b"}"#, "base64url"),
            (br#"{"fqdn": "_acme-challenge.a.example.com", "value": ""}"#, "base64url"),
        ] {
            let e = parse(body).err().expect("refused");
            assert!(e.contains(wanted), "{e}");
        }
    }
}
