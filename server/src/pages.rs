//! `GET /status` (JSON, or a small HTML page for browsers) and
//! `GET /metrics` (Prometheus text format), drawn from the app's counters
//! and host book. Both need the admin credentials; without configured
//! admin credentials `/status` answers 404, and `/metrics` too unless
//! `METRICS_PUBLIC=1`. Neither ever shows a key.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::app::App;
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
    if req.basic_auth().is_some_and(|(u, p)| app.admin_ok(&u, &p)) {
        Ok(())
    } else {
        Err(Reply::text(401, "admin credentials required").with_header("WWW-Authenticate", "Basic realm=\"dyndns\""))
    }
}

struct HostRow {
    fqdn: String,
    a: Option<String>,
    aaaa: Option<String>,
    last_seen: Option<u64>,
    state: &'static str,
    last_error: Option<String>,
}

fn host_rows(app: &App) -> Vec<HostRow> {
    app.hosts
        .snapshot()
        .into_iter()
        .map(|(fqdn, s)| HostRow {
            a: app.updater.confirmed(&fqdn, RecordType::A).map(|ip| ip.to_string()),
            aaaa: app.updater.confirmed(&fqdn, RecordType::Aaaa).map(|ip| ip.to_string()),
            state: if s.lost {
                "lost"
            } else if s.last_seen.is_some() {
                "online"
            } else {
                "never seen"
            },
            last_seen: s.last_seen,
            last_error: s.last_error,
            fqdn,
        })
        .collect()
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
            json!({"fqdn": r.fqdn, "a": r.a, "aaaa": r.aaaa, "state": r.state, "last_seen": r.last_seen,
                   "last_seen_ago": r.last_seen.map(|t| duration_text(now.saturating_sub(t))), "last_error": r.last_error})
        })
        .collect();
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "dry_run": app.config.dry_run,
        "hetzner_rate_limit_remaining": app.updater.hetzner().and_then(|h| h.rate_remaining()),
        "hosts": hosts,
    });
    Reply { content_type: "application/json", ..Reply::text(200, doc.to_string()) }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(app: &App, rows: &[HostRow], now: u64) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>dyndns status</title><style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}.lost{color:#b00}.online{color:#080}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>dyndns-server {}</h1><p>up {}{}</p><table><tr><th>host</th><th>A</th><th>AAAA</th><th>last report</th><th>state</th><th>last error</th></tr>",
        env!("CARGO_PKG_VERSION"),
        duration_text(app.started.elapsed().as_secs()),
        if app.config.dry_run { " — dry run" } else { "" }
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            html_escape(&r.fqdn),
            html_escape(r.a.as_deref().unwrap_or("–")),
            html_escape(r.aaaa.as_deref().unwrap_or("–")),
            r.last_seen.map_or("never".into(), |t| format!("{} ago", duration_text(now.saturating_sub(t)))),
            r.state.replace(' ', "-"),
            r.state,
            html_escape(r.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table></body></html>\n");
    out
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
            "dyndns_update_requests_total{{endpoint=\"{endpoint}\",result=\"{}\"}} {n}",
            label_escape(result)
        );
    }
    if let Some(h) = app.updater.hetzner() {
        out.push_str("# HELP dyndns_hetzner_api_calls_total Calls to the Hetzner API by outcome.\n# TYPE dyndns_hetzner_api_calls_total counter\n");
        for (outcome, n) in h.call_counts() {
            let _ = writeln!(out, "dyndns_hetzner_api_calls_total{{outcome=\"{outcome}\"}} {n}");
        }
        if let Some(n) = h.rate_remaining() {
            out.push_str("# HELP dyndns_hetzner_rate_limit_remaining RateLimit-Remaining of the last Hetzner answer.\n# TYPE dyndns_hetzner_rate_limit_remaining gauge\n");
            let _ = writeln!(out, "dyndns_hetzner_rate_limit_remaining {n}");
        }
    }
    let rows = host_rows(app);
    out.push_str("# HELP dyndns_hosts Registered hosts by state.\n# TYPE dyndns_hosts gauge\n");
    for state in ["online", "lost", "never seen"] {
        let n = rows.iter().filter(|r| r.state == state).count();
        let _ = writeln!(out, "dyndns_hosts{{state=\"{}\"}} {n}", state.replace(' ', "_"));
    }
    out.push_str("# HELP dyndns_notification_failures_total Notifications that could not be delivered.\n# TYPE dyndns_notification_failures_total counter\n");
    let _ = writeln!(out, "dyndns_notification_failures_total {}", app.notifier.failures());
    Reply { content_type: "text/plain; version=0.0.4; charset=utf-8", ..Reply::text(200, out) }
}

fn label_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
