//! Getting and renewing the HTTPS certificate for `TLS_DOMAINS` from an
//! ACME CA by DNS-01, through the server's own Hetzner token.
//!
//! One thread: at start the stored certificate (`tls-certificate.pem`
//! beside the state file, chain and key in one file written atomically,
//! mode 0600) is served at once; a new order is placed only when it is
//! missing, for other names, or due: fewer than `TLS_RENEW_DAYS` days left;
//! without that setting, at a moment picked inside the CA's suggested
//! renewal window (ARI, RFC 9773; asked again every 6 hours or as its
//! `Retry-After` says), and where the CA offers none at a third of the
//! certificate's lifetime. A certificate got in
//! this run is not renewed again for `MIN_RENEW_GAP`, so a CA with short
//! lifetimes cannot cause an order loop. A failure is tried again after
//! `FIRST_RETRY`, doubling to `MAX_RETRY`: at most four attempts in the
//! first hour, under Let's Encrypt's five failed validations per name and
//! hour. A CA that is down never stops the server from serving.
//!
//! Each order: account (the key in `tls-account.pem`), order, for every
//! authorization the TXT value added at `_acme-challenge.NAME` through
//! Hetzner; the server then asks `TLS_DNS_RESOLVER` (or Hetzner's
//! authoritative name servers) until every value is there, instead of
//! sleeping a fixed time, and only then asks the CA to validate. That
//! check also proves token, zone and DNS before the CA is troubled, which
//! is why no run against Let's Encrypt's staging comes first. The values
//! are removed after the order is final, in every outcome.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acme_client::{self, AcmeClient, AcmeError};
use crate::app::App;
use crate::certificates::{self, CertStore};
use crate::config::Acme;
use crate::fqdn;
use crate::notify::{self, Message};
use crate::time::unix_now;

/// Hetzner's authoritative name servers, asked for the challenge TXT
/// when `TLS_DNS_RESOLVER` is not set.
const HETZNER_NAME_SERVERS: [&str; 3] =
    ["hydrogen.ns.hetzner.com:53", "oxygen.ns.hetzner.com:53", "helium.ns.hetzner.de:53"];
/// A certificate got in this run is not renewed again before this.
const MIN_RENEW_GAP: Duration = Duration::from_secs(12 * 3600);
const FIRST_RETRY: Duration = Duration::from_secs(15 * 60);
const MAX_RETRY: Duration = Duration::from_secs(12 * 3600);
/// How long the challenge TXT may take to be seen in DNS.
const PROPAGATION: Duration = Duration::from_secs(300);
/// How long the CA may take to validate and issue.
const VALIDATION: Duration = Duration::from_secs(120);
/// The TTL of the challenge records.
const TXT_TTL: u32 = 60;
/// Warned about once a week when fewer days than this are left.
const EXPIRY_WARNING_DAYS: u64 = 21;

pub fn certificate_file(acme: &Acme) -> PathBuf {
    acme.dir.join("tls-certificate.pem")
}

fn account_file(acme: &Acme) -> PathBuf {
    acme.dir.join("tls-account.pem")
}

/// Serve the stored certificate, if there is one for these names.
pub fn load_stored(acme: &Acme, store: &CertStore) {
    let path = certificate_file(acme);
    let Ok(pem) = std::fs::read(&path) else { return };
    match certificates::parse(&pem, &pem) {
        Ok(loaded) => {
            log::info!(
                "TLS: serving the stored certificate {} (serial {}, valid until {})",
                path.display(),
                loaded.info.serial,
                utc(loaded.info.not_after)
            );
            store.install(loaded);
        }
        Err(e) => log::warn!("TLS: {} cannot be used ({e}); a new certificate will be ordered", path.display()),
    }
}

fn utc(unix: u64) -> String {
    let mut out = String::new();
    crate::time::utc_text(&mut out, std::time::UNIX_EPOCH + Duration::from_secs(unix), false);
    out
}

/// When the certificate in `store` is due for renewal (Unix seconds);
/// 0 when there is none (or it is for other names).
fn due(acme: &Acme, store: &CertStore, names_match: bool) -> u64 {
    let status = store.snapshot();
    let Some(info) = status.info.filter(|_| names_match) else { return 0 };
    let before = match acme.renew_days {
        Some(days) => u64::from(days) * 86_400,
        None => info.not_after.saturating_sub(info.not_before) / 3,
    };
    info.not_after.saturating_sub(before)
}

/// What the CA's renewal information (ARI) last said for the certificate
/// in use: when to renew (a moment picked at random inside its window, as
/// RFC 9773 4.2 asks, so that many servers do not renew at once) and when
/// to ask again.
#[derive(Default)]
struct Ari {
    /// The certificate it is for (its ARI identifier).
    for_id: Option<String>,
    renew_at: Option<u64>,
    window: Option<(u64, u64)>,
    ask_at: u64,
}

/// Asked again at most this often, and at least this often.
const ARI_MIN_RECHECK: u64 = 3600;
const ARI_RECHECK: u64 = 6 * 3600;
const ARI_MAX_RECHECK: u64 = 24 * 3600;

/// Ask the CA for the renewal window of `ari_id` if it is time to; the
/// renewal time it implies, if the CA offers ARI.
fn check_ari(acme: &Acme, ari: &mut Ari, ari_id: &str, now: u64) -> Option<u64> {
    if ari.for_id.as_deref() != Some(ari_id) {
        *ari = Ari { for_id: Some(ari_id.to_string()), ..Ari::default() };
    }
    if now < ari.ask_at {
        return ari.renew_at;
    }
    let answer = account_key(acme)
        .map_err(AcmeError)
        .and_then(|key| AcmeClient::connect(&acme.directory, acme.ca_file.as_deref(), &key))
        .and_then(|client| client.renewal_window(ari_id));
    match answer {
        Ok(Some(w)) => {
            ari.ask_at = now + w.retry_after.unwrap_or(ARI_RECHECK).clamp(ARI_MIN_RECHECK, ARI_MAX_RECHECK);
            if ari.window != Some((w.start, w.end)) {
                let pick = if w.end > w.start { fastrand::u64(w.start..w.end) } else { w.start };
                ari.window = Some((w.start, w.end));
                ari.renew_at = Some(pick);
                log::info!(
                    "TLS: the CA suggests renewing between {} and {}; renewing at {}",
                    utc(w.start),
                    utc(w.end),
                    utc(pick.max(now))
                );
            }
        }
        Ok(None) => {
            // No ARI at this CA: ask again a day later (it may start to offer it).
            ari.ask_at = now + ARI_MAX_RECHECK;
            ari.renew_at = None;
        }
        Err(e) => {
            log::warn!("TLS: cannot read the CA's renewal information ({e}); renewing by the certificate's lifetime");
            ari.ask_at = now + ARI_RECHECK;
        }
    }
    ari.renew_at
}

/// Run until `stop` says so (or is dropped): obtain, serve, renew.
pub fn run(app: &Arc<App>, acme: &Acme, store: &Arc<CertStore>, stop: &Receiver<()>) {
    let names_file = acme.dir.join("tls-names");
    let wanted = acme.domains.join(",");
    let mut names_match = std::fs::read_to_string(&names_file).is_ok_and(|n| n.trim() == wanted);
    let mut obtained_at: Option<Instant> = None;
    let mut retry = FIRST_RETRY;
    let mut failing = false;
    let mut warned_at: u64 = 0;
    let mut ari = Ari::default();
    loop {
        let now = unix_now();
        let mut at = due(acme, store, names_match);
        // Without TLS_RENEW_DAYS, the CA's renewal window decides where it offers one.
        let ari_id = store.snapshot().info.and_then(|i| i.ari_id).filter(|_| names_match);
        let mut replaces = None;
        if let (None, Some(id)) = (acme.renew_days, ari_id.as_deref()) {
            if let Some(t) = check_ari(acme, &mut ari, id, now) {
                at = t;
                replaces = Some(id.to_string());
            }
        }
        if let Some(got) = obtained_at {
            at = at.max(now + MIN_RENEW_GAP.saturating_sub(got.elapsed()).as_secs());
        }
        if at <= now {
            store.note_next(None);
            match obtain(app, acme, replaces.as_deref()) {
                Ok(pem) => match save_and_install(acme, store, &pem) {
                    Ok(()) => {
                        installed(app, store, &names_file, &wanted, failing);
                        (names_match, failing, retry) = (true, false, FIRST_RETRY);
                        obtained_at = Some(Instant::now());
                    }
                    Err(e) => failed(app, store, &mut failing, &mut retry, &wanted, e),
                },
                Err(e) => failed(app, store, &mut failing, &mut retry, &wanted, e.0),
            }
            let wait = if failing { retry_wait(&mut retry) } else { Duration::ZERO };
            if !wait.is_zero() {
                store.note_next(Some(unix_now() + wait.as_secs()));
                if !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
                    return;
                }
            }
            continue;
        }
        warn_expiry(app, store, &wanted, &mut warned_at);
        store.note_next(Some(at));
        // Wake at least hourly: the clock may jump, the expiry warning ticks,
        // and the CA's renewal information is asked again when it is time.
        let mut wait = (at - now).min(3600);
        if ari.for_id.is_some() {
            wait = wait.min(ari.ask_at.saturating_sub(now).max(1));
        }
        let wait = Duration::from_secs(wait);
        if !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

/// A new certificate is in use: its names noted, the recovery announced
/// after failures.
fn installed(app: &App, store: &CertStore, names_file: &std::path::Path, wanted: &str, was_failing: bool) {
    let _ = crate::atomic::write(names_file, wanted.as_bytes(), false);
    if was_failing {
        notify(
            app,
            "dyndns: certificate renewed",
            format!("{wanted}: the certificate was renewed after earlier failures."),
            notify::DEFAULT,
        );
    }
    store.note_attempt(Ok(()), None);
}

fn retry_wait(retry: &mut Duration) -> Duration {
    let wait = *retry;
    *retry = (*retry * 2).min(MAX_RETRY);
    wait
}

fn failed(app: &App, store: &CertStore, failing: &mut bool, retry: &mut Duration, names: &str, e: String) {
    log::error!("TLS: could not get a certificate for {names}: {e}; trying again in {} min", retry.as_secs() / 60);
    if !*failing {
        notify(app, "dyndns: certificate renewal failed", format!("{names}: {e}"), notify::HIGH);
    }
    *failing = true;
    store.note_attempt(Err(e), None);
}

fn warn_expiry(app: &App, store: &CertStore, names: &str, warned_at: &mut u64) {
    let Some(info) = store.snapshot().info else { return };
    let now = unix_now();
    let left_days = info.not_after.saturating_sub(now) / 86_400;
    if left_days < EXPIRY_WARNING_DAYS && now.saturating_sub(*warned_at) >= 7 * 86_400 {
        *warned_at = now;
        notify(
            app,
            "dyndns: certificate expires soon",
            format!(
                "{names}: the certificate expires on {} ({left_days} days); renewal has not succeeded.",
                utc(info.not_after)
            ),
            notify::HIGH,
        );
    }
}

fn notify(app: &App, title: &str, body: String, priority: u8) {
    app.notifier.send(Message { title: title.into(), body, priority, event: notify::Event::Certificate, host: None });
}

fn save_and_install(acme: &Acme, store: &CertStore, pem: &str) -> Result<(), String> {
    let loaded = certificates::parse(pem.as_bytes(), pem.as_bytes())?;
    let path = certificate_file(acme);
    crate::atomic::write(&path, pem.as_bytes(), false).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    log::info!(
        "TLS: new certificate for {} (serial {}, valid until {})",
        acme.domains.join(", "),
        loaded.info.serial,
        utc(loaded.info.not_after)
    );
    store.install(loaded);
    Ok(())
}

/// The stored account key, or a new one (saved before it is used, so a
/// crash cannot leave an account whose key is lost).
fn account_key(acme: &Acme) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let path = account_file(acme);
    match std::fs::read(&path) {
        Ok(pem) => {
            rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem).map(|k| k.secret_pkcs8_der().to_vec()).map_err(
                |e| format!("{} is not a PEM account key ({e}); move it away to start a new account", path.display()),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = acme_client::new_key().map_err(|e| e.0)?;
            crate::atomic::write(&path, pem("PRIVATE KEY", &key).as_bytes(), false)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A TXT value written for a challenge, to be removed again.
struct Written {
    /// The project that holds the zone (`Hetzner::index`).
    project: usize,
    zone: u64,
    name: String,
    fqdn: String,
    value: String,
}

/// One whole order; the chain and key as one PEM text.
fn obtain(app: &App, acme: &Acme, replaces: Option<&str>) -> Result<String, AcmeError> {
    let err = |e: String| AcmeError(e);
    let key = account_key(acme).map_err(err)?;
    log::info!("TLS: ordering a certificate for {} from {}", acme.domains.join(", "), acme.directory);
    let mut client = AcmeClient::connect(&acme.directory, acme.ca_file.as_deref(), &key)?;
    client.account(acme.email.as_deref())?;
    let order = client.new_order(&acme.domains, replaces)?;
    let mut written = Vec::new();
    let result = validate_and_issue(app, acme, &mut client, order, &mut written);
    for w in written {
        let Some(api) = app.updater.projects().get(w.project) else { break };
        if let Err(e) = api.remove_txt(w.zone, &w.name, &w.value, Instant::now() + Duration::from_secs(30)) {
            log::warn!("TLS: could not remove the challenge TXT at {}: {e}", w.fqdn);
        }
    }
    result
}

fn validate_and_issue(
    app: &App,
    acme: &Acme,
    client: &mut AcmeClient,
    order: acme_client::Order,
    written: &mut Vec<Written>,
) -> Result<String, AcmeError> {
    let err = |e: String| AcmeError(e);
    if app.updater.projects().is_empty() {
        return Err(err("TLS_DOMAINS needs the Hetzner token (not DRY_RUN)".into()));
    }
    let mut pending = Vec::new();
    for url in &order.authorizations {
        let authz = client.authorization(url)?;
        if authz.status == "valid" {
            continue;
        }
        let challenge = authz
            .challenges
            .iter()
            .find(|c| c.kind == "dns-01")
            .ok_or_else(|| err(format!("the CA offers no dns-01 challenge for {}", authz.identifier.value)))?;
        let fqdn = format!("_acme-challenge.{}", authz.identifier.value.trim_start_matches("*."));
        let value = client.dns_value(&challenge.token);
        let deadline = Instant::now() + Duration::from_secs(60);
        let zone = app.updater.zone_for(&fqdn, deadline).map_err(|e| err(format!("TLS_DOMAINS: {e}")))?;
        let name = fqdn::rr_name(&fqdn, &zone.name);
        let api = app.updater.api(&zone).ok_or_else(|| err(format!("TLS_DOMAINS: no project holds {fqdn}")))?;
        api.add_txt(zone.id, &name, TXT_TTL, &value, deadline)
            .map_err(|e| err(format!("cannot write the challenge TXT at {fqdn}: {e}")))?;
        written.push(Written { project: zone.project, zone: zone.id, name, fqdn: fqdn.clone(), value: value.clone() });
        pending.push((url.clone(), challenge.url.clone(), fqdn, value));
    }
    for (_, _, fqdn, value) in &pending {
        wait_for_txt(acme, fqdn, value)?;
    }
    let until = Instant::now() + VALIDATION;
    for (authz_url, challenge_url, fqdn, _) in &pending {
        client.respond(challenge_url)?;
        let authz = client.wait_authorization(authz_url, until)?;
        if authz.status != "valid" {
            let why = authz
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| authz.status.clone());
            return Err(err(format!("the CA did not validate {fqdn}: {why}")));
        }
    }
    let cert_key = acme_client::new_key()?;
    let csr = acme_client::csr(&acme.domains, &cert_key)?;
    let order = client.wait_order(&order.url, &["pending"], until)?;
    if order.status != "ready" && order.status != "valid" {
        let why = order.error.map(|p| p.to_string()).unwrap_or(order.status);
        return Err(err(format!("the order ended as {why}")));
    }
    if order.status == "ready" {
        client.finalize(&order, &csr)?;
    }
    let order = client.wait_order(&order.url, &["ready", "processing"], until)?;
    let url = match (order.status.as_str(), order.certificate) {
        ("valid", Some(url)) => url,
        (status, _) => return Err(err(format!("the order ended as {status} without a certificate"))),
    };
    let chain = client.download(&url)?;
    Ok(format!("{}{}", chain.trim_end_matches('\n').to_owned() + "\n", pem("PRIVATE KEY", &cert_key)))
}

/// Ask the resolver(s) until `value` is among the TXT values of `fqdn`.
fn wait_for_txt(acme: &Acme, fqdn: &str, value: &str) -> Result<(), AcmeError> {
    let servers: Vec<String> = match &acme.resolver {
        Some(r) => vec![r.clone()],
        None => HETZNER_NAME_SERVERS.iter().map(|s| s.to_string()).collect(),
    };
    let until = Instant::now() + PROPAGATION;
    let mut last;
    for server in &servers {
        loop {
            match crate::dns_query::txt(server, fqdn, Duration::from_secs(3)) {
                Ok(values) if values.iter().any(|v| v == value) => break,
                Ok(values) => last = format!("{server} answers {} other value(s)", values.len()),
                Err(e) => last = e,
            }
            if Instant::now() >= until {
                return Err(AcmeError(format!("the challenge TXT at {fqdn} did not appear in DNS within {} s ({last}); check TLS_DNS_RESOLVER and the zone's delegation", PROPAGATION.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}
