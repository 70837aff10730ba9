//! Heartbeats of the running server to `HEALTHCHECKS_URL` and
//! `UPTIME_KUMA_URL`: a start ping, then every `CONNECTION_CHECK_INTERVAL`
//! the server's health (`check`), and at once — within a second — when it
//! changes. Each monitor has its own thread behind a small queue, so a
//! monitor that hangs delays neither the server nor the other monitor; a
//! ping that cannot be delivered is logged once (and its recovery once),
//! naming the service and host only.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use dyndns_common::heartbeat::{monitors, send, Beat, Monitor, Ping};

use crate::app::App;

/// How often health is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long the first zone listing may take before it counts as failing.
const START_GRACE: Duration = Duration::from_secs(30);

/// Healthy means: the zone list is known, the last call to Hetzner
/// succeeded (or none was needed since), no zone's reconcile and no
/// certificate renewal is failing. Otherwise: the first reason.
pub fn check(app: &App) -> Result<(), String> {
    if !app.updater.zones_known() {
        return Err("the zone list has not been read from Hetzner yet".into());
    }
    for api in app.updater.projects() {
        if let Some(e) = api.last_failure() {
            return Err(match app.updater.projects().len() {
                1 => format!("the last call to Hetzner failed: {e}"),
                _ => format!("the last call to Hetzner for project {} failed: {e}", api.project),
            });
        }
    }
    if let Some((zone, e)) = app.reconciles().into_iter().find_map(|(z, r)| r.error.map(|e| (z, e))) {
        return Err(format!("the reconcile of {zone} failed: {e}"));
    }
    if let Some(store) = app.certificates.get() {
        if let Some((_, Err(e))) = store.snapshot().last_attempt {
            return Err(format!("the HTTPS certificate could not be renewed: {e}"));
        }
    }
    Ok(())
}

/// Start the heartbeat threads; `None` without monitors. Dropping or
/// signalling `stop` ends them.
pub fn spawn(app: &Arc<App>, stop: Receiver<()>) -> Option<JoinHandle<()>> {
    if app.config.monitors.is_empty() {
        return None;
    }
    let senders: Vec<SyncSender<Result<(), String>>> =
        app.config.monitors.iter().filter_map(|m| deliver_in_background(m.clone())).collect();
    let app = Arc::clone(app);
    let every = app.config.connection_check_interval;
    let spawned = std::thread::Builder::new().name("heartbeat".into()).spawn(move || {
        let send = |state: &Result<(), String>| {
            for tx in &senders {
                if let Err(TrySendError::Full(_)) = tx.try_send(state.clone()) {
                    log::debug!("heartbeat: a monitor is still busy with the last ping; skipped one");
                }
            }
        };
        let mut last: Option<Result<(), String>> = None;
        let (started, mut sent_at) = (Instant::now(), Instant::now());
        loop {
            let now = check(&app);
            // The zone list is read right after the start: no alarm for
            // that, unless it fails or takes longer than START_GRACE.
            let starting = !app.updater.zones_known()
                && !app.updater.projects().is_empty()
                && app.updater.projects().iter().all(|h| h.last_failure().is_none())
                && started.elapsed() < START_GRACE;
            if last.is_none() && starting {
                if !matches!(stop.recv_timeout(LOOK_EVERY), Err(RecvTimeoutError::Timeout)) {
                    return;
                }
                continue;
            }
            let changed = last.as_ref().is_none_or(|l| l.is_ok() != now.is_ok());
            if changed || sent_at.elapsed() >= every {
                if changed {
                    match &now {
                        Ok(()) if last.is_some() => log::info!("heartbeat: healthy again"),
                        Ok(()) => {}
                        Err(why) => log::warn!("heartbeat: failing: {why}"),
                    }
                }
                send(&now);
                sent_at = Instant::now();
                last = Some(now);
            }
            if !matches!(stop.recv_timeout(LOOK_EVERY), Err(RecvTimeoutError::Timeout)) {
                return;
            }
        }
    });
    spawned.map_err(|e| log::error!("cannot start the heartbeat thread: {e}")).ok()
}

/// A thread that pings `monitor`: first the start, then each state it is
/// given. The queue holds two states; more are dropped (the next look
/// sends the truth again).
fn deliver_in_background(monitor: Monitor) -> Option<SyncSender<Result<(), String>>> {
    let (tx, rx) = mpsc::sync_channel::<Result<(), String>>(2);
    let label = monitor.label();
    let name = label.clone();
    let spawned = std::thread::Builder::new().name("heartbeat-ping".into()).spawn(move || {
        let agent = crate::notify::outbound_agent();
        let mut failing = false;
        let mut deliver = |ping: Ping| match send(&agent, &ping) {
            Ok(()) if failing => {
                failing = false;
                log::info!("heartbeat: {label} reached again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                log::warn!("heartbeat: cannot reach {label} ({e}); said once until it works again");
            }
            Err(_) => {}
        };
        deliver(monitor.ping(Beat::Start));
        for state in rx {
            match state {
                Ok(()) => deliver(monitor.ping(Beat::Up("healthy"))),
                Err(why) => deliver(monitor.ping(Beat::Down(&why))),
            }
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            log::error!("cannot start the heartbeat thread of {name}: {e}");
            None
        }
    }
}
