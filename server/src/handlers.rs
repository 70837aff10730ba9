//! The endpoints, as plain functions of a request and the app.
//!
//! Nothing here touches a socket: `http` lends each tiny_http request as a
//! `Req`, calls `handle` and writes the `Reply` back. Authentication comes
//! before anything is done on the caller's behalf: an unauthenticated
//! request never reaches Hetzner and gets the same answer for a registered
//! and an unregistered host.

use serde_json::Value;

mod nic_update;
mod update;

use nic_update::nic_update;
use update::json_update;

use crate::acme;
use crate::app::App;
use crate::dyndns2::Params;
use crate::inspect;
use crate::message::{LogContext, Reply, Req};
use crate::metrics::Endpoint;
use crate::pages;
use crate::updater::Outcome;

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
