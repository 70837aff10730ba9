//! `GET /status` (JSON, or a small HTML page for browsers) and
//! `GET /metrics` (Prometheus text format), drawn from the app's counters
//! and host book. Both need the admin credentials; without configured
//! admin credentials `/status` answers 404, and `/metrics` too unless
//! `METRICS_PUBLIC=1`. Neither ever shows a key.

use serde_json::{json, Value};

mod html;
mod metrics;

pub use metrics::metrics;

use crate::app::App;
use crate::auth::{Denied, Principal};
use crate::hetzner::{Hetzner, Kind, RESERVE_PERCENT};
use crate::hostbook::Change;
use crate::message::{Reply, Req};
use crate::net::RecordType;
use crate::time::{duration_text, unix_now};

/// Is the request allowed to see `/status` (or `/metrics`)? `Err` is the answer.
fn require_admin(app: &App, req: &Req, public: bool) -> Result<(), Reply> {
    if public {
        return Ok(());
    }
    if app.config.admin.is_none() {
        return Err(Reply::text(404, "not found (set BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD to enable)"));
    }
    let Some((user, pass)) = req.basic_auth() else { return Err(admin_required()) };
    match app.guard.authorize(app.client_ip(req), &user, &pass, None) {
        Ok(Principal::Admin) => Ok(()),
        Err(Denied::Refused(secs)) => Err(Reply::too_many_failures(secs)),
        Ok(Principal::Host(_)) | Err(Denied::Wrong) => Err(admin_required()),
    }
}

fn admin_required() -> Reply {
    Reply::text(401, "admin credentials required").with_header("WWW-Authenticate", "Basic realm=\"dyndns\"")
}

/// A host's state in `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostState {
    Online,
    /// Silent for `LOST_CONNECTION_TIMEOUT`.
    Lost,
    NeverSeen,
    /// A LAN host that is not registered itself: follows its router.
    Lan,
}

impl HostState {
    /// Registered hosts' states, as `/metrics` counts them.
    const REGISTERED: [HostState; 3] = [HostState::Online, HostState::Lost, HostState::NeverSeen];

    fn as_str(self) -> &'static str {
        match self {
            HostState::Online => "online",
            HostState::Lost => "lost",
            HostState::NeverSeen => "never seen",
            HostState::Lan => "lan",
        }
    }
}

struct HostRow {
    fqdn: String,
    a: Option<String>,
    aaaa: Option<String>,
    last_seen: Option<u64>,
    state: HostState,
    last_error: Option<String>,
    /// A LAN host's router (prefix mode) and the prefix it last reported.
    via: Option<String>,
    prefix: Option<String>,
    last_change: Option<u64>,
    changes: u64,
    /// Record changes, oldest first (registered hosts).
    history: Vec<Change>,
}

/// Registered hosts, then LAN hosts that are not registered themselves
/// (state `lan`, last seen = their router's last prefix report).
fn host_rows(app: &App) -> Vec<HostRow> {
    let lan = app.lan_states();
    let via = |fqdn: &str| app.config.lan_hosts.iter().find(|h| h.fqdn == fqdn).map(|h| h.router.clone());
    let mut rows: Vec<HostRow> = app
        .hosts
        .snapshot()
        .into_iter()
        .map(|(fqdn, s)| HostRow {
            a: app.updater.confirmed(&fqdn, RecordType::A).map(|ip| ip.to_string()),
            aaaa: app.updater.confirmed(&fqdn, RecordType::Aaaa).map(|ip| ip.to_string()),
            state: if s.lost {
                HostState::Lost
            } else if s.last_seen.is_some() {
                HostState::Online
            } else {
                HostState::NeverSeen
            },
            last_seen: s.last_seen,
            last_error: s.last_error,
            via: via(&fqdn),
            prefix: lan.get(&fqdn).and_then(|l| l.prefix.clone()),
            last_change: s.last_change,
            changes: s.changes,
            history: s.history.into_iter().collect(),
            fqdn,
        })
        .collect();
    for (fqdn, l) in lan.into_iter().filter(|(h, _)| !app.registered(h)) {
        rows.push(HostRow {
            a: app.updater.confirmed(&fqdn, RecordType::A).map(|ip| ip.to_string()),
            aaaa: app.updater.confirmed(&fqdn, RecordType::Aaaa).map(|ip| ip.to_string()),
            last_seen: l.at,
            state: HostState::Lan,
            last_error: l.error,
            via: via(&fqdn),
            prefix: l.prefix,
            last_change: l.last_change,
            changes: l.changes,
            history: Vec::new(),
            fqdn,
        });
    }
    rows
}

pub fn status(app: &App, req: &Req) -> Reply {
    if let Err(reply) = require_admin(app, req, false) {
        return reply;
    }
    let now = unix_now();
    let rows = host_rows(app);
    if req.header("accept").is_some_and(|a| a.contains("text/html")) {
        return Reply { content_type: "text/html; charset=utf-8", ..Reply::text(200, html::html(app, &rows, now)) };
    }
    let hosts: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut row = json!({"fqdn": r.fqdn, "a": r.a, "aaaa": r.aaaa, "state": r.state.as_str(), "last_seen": r.last_seen,
                   "last_seen_ago": r.last_seen.map(|t| duration_text(now.saturating_sub(t))), "last_error": r.last_error});
            if let Some(via) = &r.via {
                row["via"] = json!(via);
                row["prefix"] = json!(r.prefix);
            }
            row["last_change"] = json!(r.last_change);
            row["changes"] = json!(r.changes);
            let history: Vec<Value> = r
                .history
                .iter()
                .rev()
                .map(|c| {
                    let mut change = json!({"at": c.at, "type": c.rtype.as_str(), "old": c.old, "new": c.new, "cause": c.cause});
                    if let Some(alias) = &c.alias {
                        change["alias"] = json!(alias);
                    }
                    change
                })
                .collect();
            row["history"] = json!(history);
            let aliases = app.updater.aliases_of(&r.fqdn);
            if !aliases.is_empty() {
                let records: Vec<Value> = aliases
                    .iter()
                    .map(|a| {
                        let a_ip = app.updater.confirmed(a, RecordType::A);
                        json!({"fqdn": a, "a": a_ip, "aaaa": app.updater.confirmed(a, RecordType::Aaaa)})
                    })
                    .collect();
                row["aliases"] = json!(records);
            }
            row["requests"] = json!(app.inspector.of(&r.fqdn));
            row
        })
        .collect();
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "dry_run": app.config.dry_run,
        "hetzner_rate_limit_remaining": app.updater.projects().first().and_then(|h| h.rate_remaining()),
        "hetzner": app.updater.projects().first().map_or(Value::Null, api_budget),
        "projects": app.updater.projects().iter().map(api_budget).collect::<Vec<_>>(),
        "reconcile": reconcile_doc(app, now),
        "tls": tls_doc(app, now),
        "hosts": hosts,
    });
    Reply { content_type: "application/json", ..Reply::text(200, doc.to_string()) }
}

/// A project's API budget: what is left, the reserve, the calls of the
/// last hour.
fn api_budget(h: &Hetzner) -> Value {
    let calls = h.calls_last_hour();
    let by_kind: serde_json::Map<String, Value> =
        Kind::ALL.iter().zip(calls).map(|(k, n)| (k.as_str().to_string(), json!(n))).collect();
    json!({
        "project": h.project,
        "rate_limit": h.rate_limit(),
        "rate_limit_remaining": h.rate_remaining(),
        "reserve": h.rate_limit() * RESERVE_PERCENT / 100,
        "budget_low": h.budget_low(),
        "calls_last_hour": by_kind,
    })
}

/// The HTTPS certificate: names, serial, expiry, the last renewal.
fn tls_doc(app: &App, now: u64) -> Value {
    let Some(store) = app.certificates.get() else { return Value::Null };
    let status = store.snapshot();
    let (result, at) = match &status.last_attempt {
        Some((at, Ok(()))) => (json!("ok"), Some(*at)),
        Some((at, Err(e))) => (json!(e), Some(*at)),
        None => (Value::Null, None),
    };
    json!({
        "names": status.names,
        "serial": status.info.as_ref().map(|i| i.serial.clone()),
        "not_after": status.info.as_ref().map(|i| i.not_after),
        "expires_in": status.info.as_ref().map(|i| duration_text(i.not_after.saturating_sub(now))),
        "last_renewal": at,
        "last_renewal_result": result,
        "next_renewal": status.next_attempt,
    })
}

fn reconcile_doc(app: &App, now: u64) -> Value {
    let zones: Vec<Value> = app
        .reconciles()
        .into_iter()
        .map(|(zone, r)| {
            let last = (r.at > 0).then_some(r.at);
            json!({"zone": zone, "last_run": last, "last_run_ago": last.map(|t| duration_text(now.saturating_sub(t))),
                   "hosts": r.hosts, "drift": r.drift, "error": r.error})
        })
        .collect();
    json!({
        "interval_seconds": app.config.reconcile_interval.as_secs(),
        "repair": app.config.reconcile_repair,
        "zones": zones,
    })
}
