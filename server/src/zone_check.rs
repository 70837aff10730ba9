//! What the server checks about its zones at start.
//!
//! With one token and nothing that depends on a zone, the zone list is read
//! in the background: it checks the token and says which registered hosts
//! have no zone, and Hetzner being down must not stop the start. With
//! several projects (`HETZNER_TOKENS_FILE`), aliases (`HOST_ALIASES`) or a
//! certificate of the server's own (`TLS_DOMAINS`), the list is read before
//! serving, and what can only be a mistake stops the start (exit 2): a
//! token Hetzner refuses, a zone two projects see, an alias or TLS name in
//! no zone. When Hetzner does not answer, those checks wait: the start goes
//! on and the updates or the renewal say what is wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::{ConfigError, TlsSource};
use crate::hetzner::{ApiError, Zone};
use crate::projects::DEFAULT_PROJECT;
use crate::zones::{best_zone, in_two_projects};

/// How long the start waits for the zone lists.
const START_CHECK: Duration = Duration::from_secs(20);

/// Check the zones at start (see the module); in the background when
/// nothing depends on them.
pub fn at_start(app: &Arc<App>) -> Result<(), ConfigError> {
    let acme = matches!(app.config.tls.as_ref().map(|t| &t.source), Some(TlsSource::Acme(_)));
    if app.updater.projects().is_empty() {
        if acme {
            return Err(ConfigError("TLS_DOMAINS needs the Hetzner token to write the challenge records; unset DRY_RUN or use TLS_CERT_FILE and TLS_KEY_FILE".into()));
        }
        return Ok(());
    }
    if app.updater.projects().len() == 1 && app.config.aliases.is_empty() && !acme {
        in_background(app);
        return Ok(());
    }
    let (failures, zones) = app.updater.list_zones_now(Instant::now() + START_CHECK);
    let mut complete = true;
    for (api, failure) in app.updater.projects().iter().zip(&failures) {
        let Some(e) = failure else { continue };
        let refused = matches!(e, ApiError::Api { status: 401 | 403, .. });
        let whose = if api.project == DEFAULT_PROJECT {
            "HETZNER_TOKEN".to_string()
        } else {
            format!("HETZNER_TOKENS_FILE: project {}", api.project)
        };
        if refused {
            return Err(ConfigError(format!("{whose}: Hetzner refused the token: {e}")));
        }
        log::warn!("{whose}: cannot list its zones now ({e}); the zone checks wait until Hetzner answers");
        complete = false;
    }
    if let Some((zone, a, b)) = in_two_projects(&zones).into_iter().next() {
        let name = |i: usize| app.updater.projects().get(i).map_or("?", |p| p.project.as_str());
        return Err(ConfigError(format!(
            "HETZNER_TOKENS_FILE: the zone {zone} is in project {} and in project {}; each zone must be served by one token, so remove one of the two tokens' access to it (or one of the tokens)",
            name(a),
            name(b)
        )));
    }
    log_zones(app, &zones);
    if complete {
        names_in_zones(app, &zones)?;
    }
    Ok(())
}

/// Every alias and TLS name must lie in a zone of some project.
fn names_in_zones(app: &App, zones: &[Zone]) -> Result<(), ConfigError> {
    for a in &app.config.aliases {
        if best_zone(zones, &a.name).is_none() {
            return Err(ConfigError(format!(
                "HOST_ALIASES: {}={}: no zone of any Hetzner project holds {}; create the zone, add the project's token, or drop the alias",
                a.name, a.host, a.name
            )));
        }
    }
    if let Some(TlsSource::Acme(acme)) = app.config.tls.as_ref().map(|t| &t.source) {
        for name in &acme.domains {
            if best_zone(zones, name.trim_start_matches("*.")).is_none() {
                return Err(ConfigError(format!(
                    "TLS_DOMAINS: no zone of this Hetzner project contains {name}; the server gets its certificate through its own zones, so use a name in one of them (or TLS_CERT_FILE for a certificate from elsewhere)"
                )));
            }
        }
    }
    Ok(())
}

/// The zones found, per project, and the registered hosts no zone holds.
fn log_zones(app: &App, zones: &[Zone]) {
    for api in app.updater.projects() {
        let names: Vec<&str> = zones.iter().filter(|z| z.project == api.index).map(|z| z.name.as_str()).collect();
        let of = if app.updater.projects().len() > 1 { format!(" of project {}", api.project) } else { String::new() };
        log::info!("hetzner: token{of} accepted; {} zone(s): {}", names.len(), names.join(", "));
    }
    for host in &app.config.registered {
        if best_zone(zones, host).is_none() {
            log::warn!("{host} is registered but no zone of the Hetzner project(s) contains it; its updates will fail");
        }
    }
}

/// Read the zone list once in the background: it checks the token, tells
/// the operator which registered hosts have no zone, and saves the first
/// update the lookup. Failures are logged, never fatal (Hetzner may be down).
fn in_background(app: &Arc<App>) {
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new().name("zone-check".into()).spawn(move || {
        let Some(result) = app.updater.prefetch_zones(Instant::now() + Duration::from_secs(30)) else { return };
        match result {
            Ok(zones) => log_zones(&app, &zones),
            Err(e) => log::error!("hetzner: cannot list zones: {e}"),
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the zone check: {e}");
    }
}
