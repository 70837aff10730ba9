//! `GET /status` (JSON, or a small HTML page for browsers) and
//! `GET /metrics` (Prometheus text format), drawn from the app's counters
//! and host book. Both need the admin credentials; without configured
//! admin credentials `/status` answers 404, and `/metrics` too unless
//! `METRICS_PUBLIC=1`. Neither ever shows a key.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::app::App;
use crate::auth::{Denied, Principal};
use crate::hetzner::{Hetzner, Kind, RESERVE_PERCENT};
use crate::hostbook::Change;
use crate::message::{Reply, Req};
use crate::metrics::Drift;
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
        return Reply { content_type: "text/html; charset=utf-8", ..Reply::text(200, html(app, &rows, now)) };
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

/// `/update`'s JSON answer as a line (`created AAAA 2001:db8::5`);
/// anything else as it is.
fn short_answer(answer: &str) -> String {
    let Ok(doc) = serde_json::from_str::<Value>(answer) else { return answer.to_string() };
    let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    format!("{} {} {}", field("status"), field("type"), field("ip"))
}

/// A host's record changes, newest first.
fn history_table(out: &mut String, history: &[Change], now: u64) {
    if history.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<details class=\"history\"><summary>history ({})</summary><table><tr><th>when</th><th>record</th><th>change</th><th>why</th></tr>",
        history.len()
    );
    for c in history.iter().rev() {
        let _ = write!(
            out,
            "<tr><td class=\"t\">{}</td><td>{}{}</td><td>{} → {}</td><td>{}</td></tr>",
            ago(now, c.at),
            c.alias.as_deref().map(|a| format!("{} ", html_escape(a))).unwrap_or_default(),
            c.rtype.as_str(),
            c.old.map_or("(new)".into(), |ip| ip.to_string()),
            c.new,
            html_escape(&c.cause.text()),
        );
    }
    out.push_str("</table></details>");
}

/// A host's last requests, newest first.
fn requests_table(out: &mut String, seen: &[crate::inspect::Seen], now: u64) {
    if seen.is_empty() {
        return;
    }
    out.push_str("<details><summary>last requests</summary><table><tr><th>when</th><th>from</th><th>agent</th><th>endpoint</th><th>hosts</th><th>addresses</th><th>auth</th><th>answer</th></tr>");
    for s in seen.iter().rev() {
        let _ = write!(
            out,
            "<tr><td class=\"t\">{}{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"answer{}\">{}</td></tr>",
            ago(now, s.at),
            if s.repeats > 0 { format!(" (×{})", s.repeats + 1) } else { String::new() },
            s.source.map_or("?".into(), |ip| ip.to_string()),
            match s.proxy {
                Some(p) => format!("{} via {p}", s.source_from),
                None => s.source_from.to_string(),
            },
            html_escape(&s.agent),
            s.endpoint,
            html_escape(&s.hosts),
            html_escape(&s.addresses),
            if s.authenticated { "yes" } else { "<b>no</b>" },
            if crate::inspect::is_success(&s.answer) { "" } else { " fail" },
            html_escape(&short_answer(&s.answer)),
        );
    }
    out.push_str("</table></details>");
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// "3m 2s ago", with the UTC time on hover.
fn ago(now: u64, at: u64) -> String {
    let mut utc = String::new();
    crate::time::utc_text(&mut utc, std::time::UNIX_EPOCH + std::time::Duration::from_secs(at), false);
    format!("<span title=\"{utc}\">{}&nbsp;ago</span>", duration_text(now.saturating_sub(at)).replace(' ', "&nbsp;"))
}

fn html(app: &App, rows: &[HostRow], now: u64) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>dyndns status</title><style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}.lost,.fail{color:#b00}\
         .fail{font-weight:600}.online,.ok{color:#080}.t,.state{white-space:nowrap}details table{font-size:12px}\
         .answer{max-width:32em;overflow-wrap:anywhere}.banner{background:#fd0;padding:.6em 1em;font-weight:600;display:inline-block}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>dyndns-server {}</h1><p>up {}</p>",
        env!("CARGO_PKG_VERSION"),
        duration_text(app.started.elapsed().as_secs()),
    );
    if app.config.dry_run {
        out.push_str(
            "<p class=\"banner\">Dry run: nothing is written to Hetzner; records are kept in memory only.</p>",
        );
    }
    out.push_str("<table><tr><th>host</th><th>A</th><th>AAAA</th><th>last report</th><th>state</th><th>last answer</th><th>last change</th><th>changes</th><th>last error</th></tr>");
    for r in rows {
        let seen = app.inspector.of(&r.fqdn);
        let answer = match seen.last() {
            Some(s) if crate::inspect::is_success(&s.answer) => {
                format!("<td class=\"ok answer\">{}</td>", html_escape(&short_answer(&s.answer)))
            }
            Some(s) => format!("<td class=\"fail answer\">{}</td>", html_escape(&s.answer)),
            None => "<td>–</td>".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"state {}\">{}</td>{answer}<td class=\"t\">{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            html_escape(&r.fqdn),
            html_escape(r.a.as_deref().unwrap_or("–")),
            html_escape(r.aaaa.as_deref().unwrap_or("–")),
            r.last_seen.map_or("never".into(), |t| ago(now, t)),
            r.state.as_str().replace(' ', "-"),
            match &r.via {
                Some(router) if r.state == HostState::Lan => format!("via {}", html_escape(router)),
                Some(router) => format!("{} via {}", r.state.as_str(), html_escape(router)),
                None => r.state.as_str().to_string(),
            },
            r.last_change.map_or("–".into(), |t| ago(now, t)),
            r.changes,
            if r.last_error.is_some() { "fail answer" } else { "answer" },
            html_escape(r.last_error.as_deref().unwrap_or("")),
        );
        for alias in app.updater.aliases_of(&r.fqdn) {
            let ip = |t| app.updater.confirmed(alias, t).map_or("–".into(), |ip| ip.to_string());
            let _ = write!(
                out,
                "<tr class=\"alias\"><td>↳ {}</td><td>{}</td><td>{}</td><td colspan=\"6\">alias of {}</td></tr>",
                html_escape(alias),
                ip(RecordType::A),
                ip(RecordType::Aaaa),
                html_escape(&r.fqdn),
            );
        }
        if !seen.is_empty() || !r.history.is_empty() {
            out.push_str("<tr><td></td><td colspan=\"8\">");
            history_table(&mut out, &r.history, now);
            requests_table(&mut out, &seen, now);
            out.push_str("</td></tr>");
        }
    }
    out.push_str("</table>");
    for h in app.updater.projects() {
        let calls = h.calls_last_hour();
        let project = match app.updater.projects().len() {
            1 => String::new(),
            _ => format!(" (project {})", html_escape(&h.project)),
        };
        let _ = write!(
            out,
            "<p>Hetzner API{project}: {} of {} calls left; last hour: {}</p>",
            h.rate_remaining().map_or("?".into(), |n| n.to_string()),
            h.rate_limit(),
            Kind::ALL.iter().zip(calls).map(|(k, n)| format!("{n} {}", k.as_str())).collect::<Vec<_>>().join(", ")
        );
    }
    for (zone, r) in app.reconciles() {
        let _ = write!(
            out,
            "<p>zone {}: reconciled {}{}</p>",
            html_escape(&zone),
            if r.at > 0 { format!("{} ago", duration_text(now.saturating_sub(r.at))) } else { "never".into() },
            r.error.map(|e| format!(" — last attempt failed: {}", html_escape(&e))).unwrap_or_default()
        );
    }
    out.push_str("</body></html>\n");
    out
}

/// The Hetzner API metrics, one series per project (`project` label).
fn budget_metrics(out: &mut String, projects: &[Hetzner]) {
    out.push_str("# HELP dyndns_hetzner_api_calls_total Calls to the Hetzner API by project and outcome.\n# TYPE dyndns_hetzner_api_calls_total counter\n");
    for h in projects {
        for (outcome, n) in h.call_counts() {
            let project = label_escape(&h.project);
            let _ = writeln!(out, "dyndns_hetzner_api_calls_total{{project=\"{project}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    out.push_str("# HELP dyndns_hetzner_rate_limit_remaining Hetzner API calls left per project: RateLimit-Remaining of the last answer, refilled since.\n# TYPE dyndns_hetzner_rate_limit_remaining gauge\n");
    for h in projects {
        if let Some(n) = h.rate_remaining() {
            let _ =
                writeln!(out, "dyndns_hetzner_rate_limit_remaining{{project=\"{}\"}} {n}", label_escape(&h.project));
        }
    }
    out.push_str("# HELP dyndns_hetzner_rate_limit RateLimit-Limit of each project (calls per hour).\n# TYPE dyndns_hetzner_rate_limit gauge\n");
    for h in projects {
        let _ =
            writeln!(out, "dyndns_hetzner_rate_limit{{project=\"{}\"}} {}", label_escape(&h.project), h.rate_limit());
    }
    out.push_str("# HELP dyndns_hetzner_calls_last_hour Calls to the Hetzner API in the last hour by project and kind.\n# TYPE dyndns_hetzner_calls_last_hour gauge\n");
    for h in projects {
        for (kind, n) in Kind::ALL.iter().zip(h.calls_last_hour()) {
            let project = label_escape(&h.project);
            let _ =
                writeln!(out, "dyndns_hetzner_calls_last_hour{{project=\"{project}\",kind=\"{}\"}} {n}", kind.as_str());
        }
    }
}

pub fn metrics(app: &App, req: &Req) -> Reply {
    if let Err(reply) = require_admin(app, req, app.config.metrics_public) {
        return reply;
    }
    let mut out = String::new();
    out.push_str("# HELP dyndns_update_requests_total Update requests by endpoint and result.\n# TYPE dyndns_update_requests_total counter\n");
    for ((endpoint, result), n) in app.counters.snapshot() {
        let _ = writeln!(
            out,
            "dyndns_update_requests_total{{endpoint=\"{}\",result=\"{}\"}} {n}",
            endpoint.as_str(),
            label_escape(result)
        );
    }
    if !app.updater.projects().is_empty() {
        budget_metrics(&mut out, app.updater.projects());
        out.push_str("# HELP dyndns_reconcile_last_run_timestamp_seconds When the last reconcile of a zone finished.\n# TYPE dyndns_reconcile_last_run_timestamp_seconds gauge\n");
        for (zone, r) in app.reconciles() {
            let _ = writeln!(
                out,
                "dyndns_reconcile_last_run_timestamp_seconds{{zone=\"{}\"}} {}",
                label_escape(&zone),
                r.at
            );
        }
        out.push_str("# HELP dyndns_reconcile_deferred_total Zone reconciles put off because the API budget was low.\n# TYPE dyndns_reconcile_deferred_total counter\n");
        let _ = writeln!(
            out,
            "dyndns_reconcile_deferred_total {}",
            app.counters.reconcile_deferred.load(Ordering::Relaxed)
        );
        out.push_str("# HELP dyndns_drift_total Records found changed outside the server, by what was done.\n# TYPE dyndns_drift_total counter\n");
        for action in Drift::ALL {
            let _ =
                writeln!(out, "dyndns_drift_total{{action=\"{}\"}} {}", action.as_str(), app.counters.drift(action));
        }
    }
    let rows = host_rows(app);
    out.push_str("# HELP dyndns_hosts Registered hosts by state.\n# TYPE dyndns_hosts gauge\n");
    for state in HostState::REGISTERED {
        let n = rows.iter().filter(|r| r.state == state).count();
        let _ = writeln!(out, "dyndns_hosts{{state=\"{}\"}} {n}", state.as_str().replace(' ', "_"));
    }
    if let Some(store) = app.certificates.get() {
        let status = store.snapshot();
        if let Some(info) = &status.info {
            out.push_str("# HELP dyndns_tls_certificate_expiry_timestamp_seconds When the HTTPS certificate in use expires.\n# TYPE dyndns_tls_certificate_expiry_timestamp_seconds gauge\n");
            let _ = writeln!(out, "dyndns_tls_certificate_expiry_timestamp_seconds {}", info.not_after);
        }
        if let Some((at, result)) = &status.last_attempt {
            out.push_str("# HELP dyndns_tls_renewal_success Whether the last certificate renewal succeeded (1) or failed (0), and when.\n# TYPE dyndns_tls_renewal_success gauge\n");
            let _ = writeln!(out, "dyndns_tls_renewal_success {}", u8::from(result.is_ok()));
            let _ = writeln!(out, "dyndns_tls_renewal_last_timestamp_seconds {at}");
        }
    }
    out.push_str("# HELP dyndns_notification_failures_total Notifications that could not be delivered.\n# TYPE dyndns_notification_failures_total counter\n");
    let _ = writeln!(out, "dyndns_notification_failures_total {}", app.notifier.failures());
    Reply { content_type: "text/plain; version=0.0.4; charset=utf-8", ..Reply::text(200, out) }
}

fn label_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
