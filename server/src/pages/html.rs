//! The `/status` page for a browser: one self-contained HTML document.

use std::fmt::Write as _;

use serde_json::Value;

use super::{HostRow, HostState};
use crate::app::App;
use crate::hetzner::Kind;
use crate::hostbook::Change;
use crate::net::RecordType;
use crate::time::duration_text;

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

/// The page: a table of the hosts, then each project's API budget and each
/// zone's last reconcile.
pub(super) fn html(app: &App, rows: &[HostRow], now: u64) -> String {
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
        host_html(&mut out, app, r, now);
    }
    out.push_str("</table>");
    footer(&mut out, app, now);
    out.push_str("</body></html>\n");
    out
}

/// One host's row, its aliases' rows, and its history and requests.
fn host_html(out: &mut String, app: &App, r: &HostRow, now: u64) {
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
        history_table(out, &r.history, now);
        requests_table(out, &seen, now);
        out.push_str("</td></tr>");
    }
}

/// Each project's API budget and each zone's last reconcile.
fn footer(out: &mut String, app: &App, now: u64) {
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
}
