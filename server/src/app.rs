//! The shared state of a running server (`App`) and what the endpoints do
//! with it: decide who may act for which host, record reports, set
//! addresses and say so (log, host book, notifications), count requests,
//! notice lost hosts and keep the state file.
//!
//! Every request thread holds an `Arc<App>`; each part guards its own data
//! (see `updater`, `hostbook`, `limiter`, `notify`), so no lock here spans
//! another part's work or any network I/O. A router's prefix for its LAN
//! hosts is `app/prefix.rs`; the address policy is `net::unreachable`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::Guard;
use crate::challenges::Challenges;
use crate::config::Config;
use crate::hetzner::Hetzner;
use crate::hostbook::HostStates;
use crate::hostbook::{Cause, Change};
use crate::inspect::Inspector;
use crate::keys::KeyFile;
mod prefix;

pub use prefix::{LanResult, LanState};

use crate::message::Req;
use crate::metrics::{Counters, Reconciles, ZoneReconcile};
use crate::net::RecordType;
use crate::notify::Event;
use crate::notify::{self, ClientMistake, Kind, Message, Notifier};

use crate::state;
use crate::time::{duration_text, unix_now};
use crate::updater::{Backend, Outcome, Report, Settings, UpdateError, Updater, WriteLimit};

/// Hetzner, one client per project, or nowhere in a dry run.
fn backend(config: &Config) -> Backend {
    if config.dry_run || config.projects.is_empty() {
        return Backend::DryRun;
    }
    let clients =
        config.projects.iter().enumerate().map(|(i, p)| {
            Hetzner::new(&config.api_url, p.token.clone(), config.hetzner_timeout).in_project(i, &p.name)
        });
    Backend::Hetzner(clients.collect())
}

/// State shared by all request threads.
pub struct App {
    pub config: Config,
    /// Registered and LAN hosts and aliases: every name whose records the
    /// server sets, sorted.
    record_names: Vec<String>,
    /// LAN host → what its router's last prefix did for it.
    lan: Mutex<BTreeMap<String, LanState>>,
    /// ACME challenge values hosts hold.
    pub challenges: Challenges,
    /// The last update requests of each host, for `/status`.
    pub inspector: Inspector,
    /// Keys, admin credentials and failed attempts (`auth`).
    pub guard: Guard,
    pub updater: Updater,
    pub hosts: HostStates,
    pub notifier: Notifier,
    pub counters: Counters,
    /// Hosts already warned about a private address from the connection.
    private_warned: Mutex<HashSet<String>>,
    /// Each zone's last reconcile.
    pub reconciled: Reconciles,
    pub started: Instant,
    /// The HTTPS certificate, when the server serves HTTPS itself.
    pub certificates: std::sync::OnceLock<Arc<crate::certificates::CertStore>>,
}

impl App {
    /// Everything a running server shares, with the state file loaded.
    pub fn new(config: Config, keys: KeyFile, notifier: Notifier) -> App {
        let backend = backend(&config);
        let write_limit = WriteLimit {
            burst: config.host_write_burst,
            per_hour: config.host_writes_per_hour,
            retry_after: config.failed_write_retry,
        };
        let record_hosts = config.record_hosts();
        let settings = Settings {
            record_ttl: config.record_ttl,
            request_cache_ttl: config.request_cache_ttl,
            zone_cache_ttl: config.zone_cache_ttl,
            reconcile_interval: config.reconcile_interval,
            write_limit,
            aliases: config.aliases.clone(),
            host_ttls: config.host_ttls.clone(),
        };
        let updater = Updater::new(backend, &record_hosts, settings);
        let mut record_names = record_hosts;
        record_names.extend(config.aliases.iter().map(|a| a.name.clone()));
        record_names.sort();
        let (saved, warning) = state::load(&config.state_file);
        if let Some(w) = warning {
            log::warn!("{w}");
            notifier.send(Message {
                title: "dyndns: state file reset".into(),
                body: w,
                priority: notify::DEFAULT,
                event: Event::StateReset,
                host: None,
            });
        }
        let (host_states, records, held) = state::split(saved);
        let challenges = Challenges::default();
        for (host, values) in held {
            challenges.import(&host, values);
        }
        for (host, rtype, c) in records {
            let Some(rtype) = RecordType::parse(&rtype) else { continue };
            if record_names.binary_search(&host).is_ok() && RecordType::of(c.ip) == rtype {
                updater.import(&host, rtype, c.ip, c.confirmed);
            }
        }
        // ACME-only hosts never report, so they are never lost.
        let hosts = HostStates::new(&config.address_hosts(), host_states);
        let lan = config.lan_hosts.iter().map(|h| (h.fqdn.clone(), LanState::default())).collect();
        let guard = Guard::new(keys, config.admin.clone(), &config.registered);
        App {
            config,
            record_names,
            lan: Mutex::new(lan),
            challenges,
            inspector: Inspector::default(),
            guard,
            updater,
            hosts,
            notifier,
            counters: Counters::default(),
            private_warned: Mutex::default(),
            reconciled: Reconciles::default(),
            started: Instant::now(),
            certificates: std::sync::OnceLock::new(),
        }
    }

    /// Read the key file again (`SIGHUP`): a deleted line revokes that key
    /// and a changed one rotates it, at once. Registered names still come
    /// from the environment, and no key is generated here (a revoked host
    /// stays without one). Logs which hosts changed, never a key; a file
    /// that cannot be read leaves the keys in use unchanged.
    pub fn reload_keys(&self) {
        // State first: once the old key is refused, the state is on disk.
        self.save_state_if_dirty();
        let path = &self.config.key_file;
        // A missing file is not an empty one here: a file moved away by
        // mistake (or a volume not mounted) must not revoke every key.
        if let Err(e) = std::fs::metadata(path) {
            log::error!(
                "SIGHUP: cannot read {}: {e}; keeping the keys in use (to revoke every key, empty the file instead)",
                path.display()
            );
            return;
        }
        let fresh = match KeyFile::load(path) {
            Ok(f) => f,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the keys in use");
                return;
            }
        };
        for w in &fresh.warnings {
            log::warn!("{}: {w}", path.display());
        }
        let change = self.guard.replace_keys(fresh);
        log::info!("SIGHUP: reloaded {}: {change}", path.display());
        for host in self.config.registered.iter().filter(|h| !self.guard.has_key(h)) {
            log::warn!("{host} is registered but has no key now; it cannot update until a key is added");
        }
    }

    /// The caller's address (see `Req::client_ip`).
    pub fn client_ip(&self, req: &Req) -> Option<IpAddr> {
        req.client_ip(&self.config.trusted_proxies)
    }

    pub fn registered(&self, host: &str) -> bool {
        self.config.registered.binary_search_by(|h| h.as_str().cmp(host)).is_ok()
    }

    /// May `host` only write ACME challenges (`ACME_ONLY_HOSTS`)?
    pub fn acme_only(&self, host: &str) -> bool {
        self.config.acme_only.binary_search_by(|h| h.as_str().cmp(host)).is_ok()
    }

    /// An authenticated report: the host is alive. Announces the end of an outage.
    pub fn host_reported(&self, host: &str) {
        if let Some(outage) = self.hosts.record_report(host) {
            log::info!("{host} is back online after {}", duration_text(outage));
            self.notifier.send_about(
                host,
                Message {
                    title: format!("{host} is back online"),
                    body: format!("{host} reported again after {} of silence.", duration_text(outage)),
                    priority: notify::DEFAULT,
                    event: Event::Back,
                    host: None,
                },
            );
        }
    }

    /// Refuse an address the internet can never reach (see
    /// `net::unreachable`) unless `ALLOW_PRIVATE_ADDRESSES=1`. `Some` is the
    /// refusal's text, also kept as the host's last error and announced
    /// once. `from_connection`: the request named no address, so `ip` is
    /// the peer's — a private one usually means an unnamed proxy or a
    /// container port mapping in between, and the text says so.
    pub fn refuse_unreachable(&self, host: &str, ip: IpAddr, from_connection: bool) -> Option<String> {
        let why = crate::net::unreachable(ip)?;
        if self.config.allow_private {
            if from_connection {
                self.warn_connection_address(host, ip);
            }
            return None;
        }
        let text = if from_connection {
            format!(
                "{host}: the address taken from the connection, {ip}, is {why}; if a proxy or a container port mapping is in between, name it in TRUSTED_PROXIES or have the client send its address (ALLOW_PRIVATE_ADDRESSES=1 publishes such addresses)"
            )
        } else {
            format!(
                "{host} reports {ip}: {why}; the internet cannot reach it (ALLOW_PRIVATE_ADDRESSES=1 publishes such addresses)"
            )
        };
        log::warn!("{text}");
        self.rejected(host, ClientMistake::PrivateAddress, text.clone());
        Some(text)
    }

    /// With `ALLOW_PRIVATE_ADDRESSES=1`: a private address from the
    /// connection is set, with a warning once per host.
    fn warn_connection_address(&self, host: &str, ip: IpAddr) {
        let mut warned = self.private_warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.insert(host.to_string()) {
            log::warn!(
                "{host}: setting {ip}, a private address taken from the connection; if a proxy or a container port mapping is in between, name it in TRUSTED_PROXIES (or have the client send its address)"
            );
        }
    }

    /// Set one host's record (and its aliases') and take note: host book
    /// and history, log, notifications. `cause`: what asked for it.
    pub fn set_address(&self, host: &str, ip: IpAddr, cause: Cause, deadline: Instant) -> Result<Outcome, UpdateError> {
        let report = self.updater.update(host, ip, deadline);
        self.note_report(host, ip, cause, &report);
        report.answer()
    }

    /// Write the changes that were answered with a passing error (dyndns2
    /// `911`) and not replaced since, so that a router's last report lands
    /// without the router's help once Hetzner answers again. Stops at the
    /// first one that fails again: Hetzner is still down, and the rest
    /// would only spend calls.
    pub fn retry_pending(&self, deadline: Instant) {
        for (host, ip) in self.updater.pending() {
            if Instant::now() >= deadline {
                return;
            }
            let Some(report) = self.updater.retry(&host, ip, deadline) else { continue };
            let failed = report.answer().is_err();
            if !failed {
                log::info!("{host}: the change to {ip} answered 911 earlier is written now");
            }
            self.note_report(&host, ip, Cause::Retry, &report);
            if failed {
                return;
            }
        }
    }

    fn note_report(&self, host: &str, ip: IpAddr, cause: Cause, report: &Report) {
        let rtype = RecordType::of(ip);
        let announce = self.config.notify_on_change || self.config.debug;
        for w in &report.writes {
            let Ok(outcome) = &w.result else { continue };
            if *outcome == Outcome::Unchanged {
                continue;
            }
            let old = w.old.filter(|_| *outcome == Outcome::Updated);
            let alias = (w.name != host).then(|| w.name.clone());
            let change = Change { at: unix_now(), rtype, old, new: ip, cause: cause.clone(), alias };
            self.hosts.record_change(host, change);
            if announce {
                let name = &w.name;
                let of = if name == host { String::new() } else { format!(" (alias of {host})") };
                self.notifier.send_about(
                    host,
                    Message {
                        title: format!("{name} {rtype} is now {ip}"),
                        body: format!("{name}{of}: {rtype} record {} {ip}.", outcome.as_str()),
                        priority: notify::DEFAULT,
                        event: Event::Change,
                        host: None,
                    },
                );
            }
        }
        match report.answer() {
            Ok(outcome) => {
                self.hosts.set_error(host, None);
                if outcome != Outcome::Unchanged {
                    self.notifier.recovered(host);
                }
            }
            Err(e) => {
                let name = report.writes.iter().find(|w| w.result.is_err()).map_or(host, |w| w.name.as_str());
                let of = if name == host { String::new() } else { format!(" (alias of {host})") };
                log::error!("update {name}{of} {rtype} {ip}: {e}");
                self.hosts.set_error(host, Some(if name == host { e.to_string() } else { format!("{name}: {e}") }));
                self.notifier.send_once(
                    host,
                    Kind::Update(e.kind()),
                    Message {
                        title: format!("dyndns: update of {host} failed"),
                        body: format!("{name}{of} {rtype} {ip}: {e}"),
                        priority: notify::HIGH,
                        event: Event::UpdateFailed,
                        host: None,
                    },
                );
            }
        }
    }

    /// An authenticated request that looks like a misconfigured client:
    /// remembered as the host's last error, announced once.
    pub fn rejected(&self, host: &str, mistake: ClientMistake, text: String) {
        self.hosts.set_error(host, Some(text.clone()));
        self.notifier.send_once(
            host,
            Kind::Client(mistake),
            Message {
                title: format!("dyndns: rejected an update of {host}"),
                body: text,
                priority: notify::HIGH,
                event: Event::Rejected,
                host: None,
            },
        );
    }

    /// Mark and announce hosts silent for `LOST_CONNECTION_TIMEOUT`.
    pub fn check_lost(&self) {
        let timeout = self.config.lost_connection_timeout.as_secs();
        for (host, silent) in self.hosts.find_lost(unix_now(), timeout) {
            log::error!("{host} has not reported for {}; it may be offline", duration_text(silent));
            self.notifier.send_about(
                &host,
                Message {
                    title: format!("{host} is offline"),
                    body: format!(
                        "{host} has not reported for {} (LOST_CONNECTION_TIMEOUT is {}).",
                        duration_text(silent),
                        duration_text(timeout)
                    ),
                    priority: notify::HIGH,
                    event: Event::Lost,
                    host: None,
                },
            );
        }
    }

    /// Every zone's last reconcile, by zone name.
    pub fn reconciles(&self) -> BTreeMap<String, ZoneReconcile> {
        self.reconciled.all()
    }

    /// Every name whose records the server sets: registered and LAN hosts
    /// and aliases, sorted.
    pub fn record_names(&self) -> &[String] {
        &self.record_names
    }

    /// Remove ACME challenge values older than an hour (a client that never
    /// cleaned up). Failures are logged; the next call tries again.
    pub fn expire_challenges(&self) {
        if !self.challenges.any() {
            return;
        }
        let results = self.challenges.expire(&self.updater, unix_now(), Instant::now() + REQUEST_BUDGET);
        for (host, value, result) in results {
            match result {
                Ok(_) => log::info!("removed the stale ACME challenge {value:?} of {host} (older than an hour)"),
                Err(e) => log::warn!("cannot remove the stale ACME challenge {value:?} of {host}: {e}"),
            }
            self.hosts.mark_dirty();
        }
    }

    /// Write the state file if anything changed since the last write.
    pub fn save_state_if_dirty(&self) {
        if !self.hosts.take_dirty() {
            return;
        }
        let mut file = state::StateFile { version: state::VERSION, ..Default::default() };
        for (host, s) in self.hosts.snapshot() {
            file.hosts.insert(host, state::HostRecord { state: s, ..Default::default() });
        }
        for (host, rtype, ip, confirmed) in self.updater.export() {
            let entry = file.hosts.entry(host).or_default();
            entry.records.insert(rtype.as_str().to_string(), state::Confirmed { ip, confirmed });
        }
        for (host, values) in self.challenges.export() {
            file.hosts.entry(host).or_default().challenges = values;
        }
        if let Err(e) = state::save(&self.config.state_file, &file) {
            self.hosts.mark_dirty();
            log::error!("STATE_FILE: cannot write {}: {e}", self.config.state_file.display());
        }
    }
}

/// How long a request may wait at most, retries included.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(15);
