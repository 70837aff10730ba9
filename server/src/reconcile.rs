//! The reconcile: at start and every `RECONCILE_INTERVAL`, each zone that
//! holds names the server sets is listed once (one call per 100 records)
//! and compared with what the server confirmed (`updater::drift`); a
//! record changed outside the server is set back, reported, or left alone
//! for a lost host, and announced. A project whose API budget is below its
//! reserve has its zones' reconciles put off (address changes go on).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::hostbook::{Cause, Change};
use crate::metrics::ZoneReconcile;
use crate::notify::{self, Event, Message};
use crate::time::unix_now;
use crate::updater::{Drift, DriftAction, Repair};

/// How long one reconcile of all zones may take at most.
const RECONCILE_BUDGET: Duration = Duration::from_secs(120);

/// After a reconcile that did not complete, the next try comes after this,
/// doubling up to `RECONCILE_INTERVAL` while it keeps failing.
const RECONCILE_RETRY: Duration = Duration::from_secs(10);

/// Reconcile every zone at start and then every `RECONCILE_INTERVAL`
/// (unless it is 0, or in a dry run), until the returned sender is dropped.
pub fn spawn(app: &Arc<App>) -> Option<Sender<()>> {
    let interval = app.config.reconcile_interval;
    if interval.is_zero() || app.updater.projects().is_empty() {
        return None;
    }
    let (stop_tx, stop) = mpsc::channel::<()>();
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new().name("reconcile".into()).spawn(move || {
        let mut retry = RECONCILE_RETRY.min(interval);
        loop {
            let started = Instant::now();
            let complete = reconcile_all(&app, started + RECONCILE_BUDGET.min(interval.max(Duration::from_secs(30))));
            app.updater.first_reconcile_done();
            let wait = if complete {
                retry = RECONCILE_RETRY.min(interval);
                interval
            } else {
                let wait = retry;
                retry = (retry * 2).min(interval);
                wait
            };
            if !matches!(stop.recv_timeout(wait.saturating_sub(started.elapsed())), Err(RecvTimeoutError::Timeout)) {
                return;
            }
        }
    });
    match spawned {
        Ok(_) => Some(stop_tx),
        Err(e) => {
            log::error!("cannot start the reconcile thread (drift repair, API economy): {e}");
            None
        }
    }
}

/// Reconcile every zone that holds registered hosts (see
/// `Updater::reconcile`): one listing per 100 records, drift set back
/// unless `RECONCILE_REPAIR=0` or the host is lost. Deferred while the
/// Hetzner API budget is below its reserve. Returns whether every zone
/// was reconciled (false: try again sooner).
pub fn reconcile_all(app: &App, deadline: Instant) -> bool {
    let zones = match app.updater.hosts_by_zone(app.record_names(), deadline) {
        Ok(zones) => zones,
        Err(e) => {
            log::warn!("reconcile: cannot list the zones: {e}");
            return false;
        }
    };
    let mut complete = true;
    let repair = |host: &str| {
        // A LAN host is as alive as its router.
        let lan = app.config.lan_hosts.iter().find(|h| h.fqdn == host && !app.registered(host));
        let reporter = lan.map_or(host, |h| h.router.as_str());
        if app.hosts.is_lost(reporter) {
            Repair::HostLost
        } else if app.config.reconcile_repair {
            Repair::Yes
        } else {
            Repair::ReportOnly
        }
    };
    for (zone, hosts) in zones {
        let name = zone.name.clone();
        let Some(api) = app.updater.api(&zone) else { continue };
        if api.budget_low() {
            app.counters.reconcile_deferred.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "reconcile of {name} deferred: the Hetzner API budget of project {} is below its reserve ({} of {} left); address changes still go through",
                api.project,
                api.rate_remaining().unwrap_or(0),
                api.rate_limit()
            );
            complete = false;
            continue;
        }
        let result = app.updater.reconcile(&zone, &hosts, &repair, deadline);
        let runs = app.reconciled.get(&name).map_or(0, |r| r.runs) + 1;
        let mut entry = ZoneReconcile { hosts: hosts.len(), runs, ..ZoneReconcile::default() };
        match result {
            Ok(drift) => {
                entry.at = unix_now();
                entry.drift = drift.len();
                log::debug!("reconcile of {name}: {} host(s), {} drifted", hosts.len(), drift.len());
                for d in drift {
                    drifted(app, d);
                }
            }
            Err(e) => {
                log::error!("reconcile of {name}: {e}");
                complete = false;
                entry.error = Some(e.to_string());
                entry.at = app.reconciled.get(&name).map_or(0, |r| r.at);
            }
        }
        app.reconciled.set(name, entry);
    }
    complete
}

/// Log, count and announce one drifted record.
fn drifted(app: &App, d: Drift) {
    app.counters.count_drift(d.action.metric());
    let (host, rtype, expected) = (&d.host, d.rtype, d.expected);
    if matches!(d.action, DriftAction::Restored | DriftAction::Recreated) {
        let old = d.found.as_deref().and_then(|v| match v {
            [one] => one.parse().ok(),
            _ => None,
        });
        // An alias's repair goes into its host's history.
        let owner = app.updater.host_of(host);
        let alias = (owner != host.as_str()).then(|| host.clone());
        let change = Change { at: unix_now(), rtype, old, new: expected, cause: Cause::Repair, alias };
        app.hosts.record_change(owner, change);
    }
    let found = match &d.found {
        Some(values) => values.join(","),
        None => "nothing (deleted)".into(),
    };
    let text = match &d.action {
        DriftAction::Restored => format!("{host} was changed outside the server: {found} → restored {expected}"),
        DriftAction::Recreated => format!("{host} {rtype} was deleted outside the server → re-created with {expected}"),
        DriftAction::Reported => format!(
            "{host} {rtype} was changed outside the server: it holds {found}, the server set {expected}; not restored (RECONCILE_REPAIR=0)"
        ),
        DriftAction::LeftLost => format!(
            "{host} {rtype} was changed outside the server: it holds {found}, the server set {expected}; left alone, the host is lost"
        ),
        DriftAction::Failed(e) => {
            format!("{host} {rtype} was changed outside the server ({found}); restoring {expected} failed: {e}")
        }
    };
    match &d.action {
        DriftAction::LeftLost => log::info!("reconcile: {text}"),
        DriftAction::Failed(_) => log::error!("reconcile: {text}"),
        _ => log::warn!("reconcile: {text}"),
    }
    if d.action == DriftAction::LeftLost {
        return;
    }
    let failed = matches!(d.action, DriftAction::Failed(_));
    app.notifier.send_about(
        host,
        Message {
            title: format!("{host} {rtype} was changed outside the server"),
            body: text,
            priority: if failed { notify::HIGH } else { notify::DEFAULT },
            event: Event::Drift,
            host: None,
        },
    );
}
