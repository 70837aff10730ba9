//! `GET /metrics`: the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{host_rows, require_admin, HostState};
use crate::app::App;
use crate::hetzner::{Hetzner, Kind};
use crate::message::{Reply, Req};
use crate::metrics::Drift;
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
