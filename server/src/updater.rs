//! Setting a host's A or AAAA record, at the lowest cost in API calls.
//!
//! The cache holds, per (host, type), the last address Hetzner *confirmed*
//! (read back, or written and its action finished). An update for that
//! address within `REQUEST_CACHE_TTL` costs no call; after it, one GET. A
//! changed address whose record is known goes straight to `set_records`
//! (plus the action poll), a new one costs GET + create (+ poll). A failed or
//! unconfirmed write drops the entry, so the next update reads the truth.
//!
//! Updates of one host are serialized by that host's gate, held across the
//! API calls on purpose (two concurrent first updates must not both create);
//! updates of different hosts run in parallel. Waiting at the gate counts
//! against the request's deadline, and each host may cause at most
//! `HOST_WRITE_BURST` writes at once, refilled at `HOST_WRITES_PER_HOUR`
//! (a token bucket), so that one host — or a leaked key — can neither hold
//! others up nor spend the project's API budget. The cache and zone maps are
//! behind their own mutexes, which are never held across network I/O. A
//! thread that panics while holding one leaves consistent data (every
//! critical section is a single map operation), so poisoning is ignored.
//!
//! A host's aliases (`HOST_ALIASES`) are written with it, through its gate
//! and cache. The parts: `gate` (one update per host, write tokens),
//! `write` (one record at Hetzner), `drift` (the reconcile's comparison
//! and repair), `error` (why an update failed); the zone lists are
//! `crate::zones`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::aliases::Alias;
use crate::hetzner::{ApiError, Hetzner, Zone};
use crate::net::RecordType;
use crate::time::unix_now;
use crate::zones::{best_zone, ZoneCache};

mod drift;
mod error;
mod gate;
mod write;

pub use drift::{Drift, DriftAction, Repair};
pub use dyndns_common::answer::Outcome;
pub use error::UpdateError;
use gate::Gate;
pub use gate::WriteLimit;

#[derive(Debug, Clone, Copy)]
struct Confirmed {
    ip: IpAddr,
    /// When Hetzner confirmed it in this run; `None` for a confirmation
    /// loaded from the state file that is older than `REQUEST_CACHE_TTL`
    /// (the record is known, the address needs a read to be trusted).
    at: Option<Instant>,
    /// The same moment in Unix seconds, for the state file.
    unix: u64,
}

/// Where records go: Hetzner (one client per project, in
/// `Hetzner::index` order), or nowhere (dry run, records kept in memory).
pub enum Backend {
    Hetzner(Vec<Hetzner>),
    DryRun,
}

/// What the updater is told at start.
pub struct Settings {
    /// `RECORD_TTL`: the TTL of records the server creates.
    pub record_ttl: u32,
    pub request_cache_ttl: Duration,
    pub zone_cache_ttl: Duration,
    pub reconcile_interval: Duration,
    pub write_limit: WriteLimit,
    /// `HOST_ALIASES`: names whose records follow a host's.
    pub aliases: Vec<Alias>,
    /// `HOST_TTL`: host → the TTL of its records and its aliases'.
    pub host_ttls: BTreeMap<String, u32>,
}

/// What one report did to each record it concerns: its host's first,
/// then its aliases' (`HOST_ALIASES`), up to the first that failed. Empty
/// when every record already held the address and nothing was looked at
/// (the cached path, which so allocates nothing for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub writes: Vec<Written>,
}

/// One record of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The host, or one of its aliases.
    pub name: String,
    /// The address confirmed before.
    pub old: Option<IpAddr>,
    pub result: Result<Outcome, UpdateError>,
}

impl Report {
    const UNCHANGED: Report = Report { writes: Vec::new() };

    fn failed(host: &str, e: UpdateError) -> Report {
        Report { writes: vec![Written { name: host.to_string(), old: None, result: Err(e) }] }
    }

    /// The answer to the report: the first failure, else the host's
    /// outcome (`Updated` when only an alias changed).
    pub fn answer(&self) -> Result<Outcome, UpdateError> {
        if let Some(e) = self.writes.iter().find_map(|w| w.result.as_ref().err()) {
            return Err(e.clone());
        }
        let host = self.writes.first().map_or(Ok(Outcome::Unchanged), |w| w.result.clone())?;
        let alias_changed = self.writes.iter().skip(1).any(|w| w.result != Ok(Outcome::Unchanged));
        Ok(if host == Outcome::Unchanged && alias_changed { Outcome::Updated } else { host })
    }
}

pub struct Updater {
    backend: Backend,
    record_ttl: u32,
    request_cache_ttl: Duration,
    /// How long a confirmation is trusted: `REQUEST_CACHE_TTL`, or two
    /// `RECONCILE_INTERVAL`s when reconciles run (each one confirms every
    /// record of its zone anew, so one missed reconcile costs nothing).
    fresh_for: Duration,
    /// Set while the first reconcile after the start has not ended: a known
    /// record (from the state file) is then trusted without a read, since
    /// the listing under way confirms or repairs it within seconds — a
    /// restart must not cost a read per host.
    first_reconcile_pending: AtomicBool,
    write_limit: WriteLimit,
    zones: ZoneCache,
    /// name → its confirmed A and AAAA (looked up by `&str`: no
    /// allocation on the cached path).
    cache: Mutex<HashMap<String, [Option<Confirmed>; 2]>>,
    /// Host → its gate; each alias maps to its host's, so an alias's
    /// write or repair waits for its host's update and counts as its.
    gates: HashMap<String, Arc<Gate>>,
    other_hosts_gate: Gate,
    /// Host → its aliases, sorted.
    aliases: HashMap<String, Vec<String>>,
    /// Alias → the host it follows.
    followed: HashMap<String, String>,
    /// Host → its `HOST_TTL` (its aliases' too: `ttl_for`).
    ttls: BTreeMap<String, u32>,
    /// (name, type) whose TTL was seen equal to its `HOST_TTL` (or set so)
    /// since the start: a write of another needs `change_ttl` once.
    ttl_right: Mutex<HashSet<(String, RecordType)>>,
    /// (host, type) → the newest address answered with a passing error,
    /// to be written by `retry_pending` when Hetzner answers again, unless
    /// a newer report replaced it.
    pending: Mutex<HashMap<(String, RecordType), IpAddr>>,
}

fn slot(rtype: RecordType) -> usize {
    match rtype {
        RecordType::A => 0,
        RecordType::Aaaa => 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Updater {
    pub fn new(backend: Backend, hosts: &[String], settings: Settings) -> Updater {
        let Settings { record_ttl, request_cache_ttl, zone_cache_ttl, reconcile_interval, write_limit, .. } = settings;
        let mut gates: HashMap<String, Arc<Gate>> =
            hosts.iter().map(|h| (h.clone(), Arc::new(Gate::new(write_limit)))).collect();
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for a in &settings.aliases {
            let gate = Arc::clone(gates.entry(a.host.clone()).or_insert_with(|| Arc::new(Gate::new(write_limit))));
            gates.insert(a.name.clone(), gate);
            aliases.entry(a.host.clone()).or_default().push(a.name.clone());
        }
        Updater {
            backend,
            record_ttl,
            request_cache_ttl,
            fresh_for: request_cache_ttl.max(reconcile_interval * 2),
            first_reconcile_pending: AtomicBool::new(!reconcile_interval.is_zero()),
            write_limit,
            zones: ZoneCache::new(zone_cache_ttl),
            cache: Mutex::new(HashMap::new()),
            gates,
            other_hosts_gate: Gate::new(write_limit),
            followed: settings.aliases.iter().map(|a| (a.name.clone(), a.host.clone())).collect(),
            aliases,
            ttls: settings.host_ttls,
            ttl_right: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The projects written to: one client per token; none in a dry run.
    pub fn projects(&self) -> &[Hetzner] {
        match &self.backend {
            Backend::Hetzner(projects) => projects,
            Backend::DryRun => &[],
        }
    }

    /// The client of the project that holds `zone`.
    pub fn api(&self, zone: &Zone) -> Option<&Hetzner> {
        self.projects().get(zone.project)
    }

    /// Is the API budget of the project that holds `name` below its reserve?
    fn budget_low(&self, name: &str) -> bool {
        self.zones.cached(name).and_then(|z| self.api(&z).map(Hetzner::budget_low)).unwrap_or(false)
    }

    /// `host`'s aliases (`HOST_ALIASES`), sorted.
    pub fn aliases_of(&self, host: &str) -> &[String] {
        self.aliases.get(host).map_or(&[], Vec::as_slice)
    }

    /// The last confirmed address of a record, if any.
    pub fn confirmed(&self, fqdn: &str, rtype: RecordType) -> Option<IpAddr> {
        self.cached(fqdn, rtype).map(|c| c.ip)
    }

    fn cached(&self, fqdn: &str, rtype: RecordType) -> Option<Confirmed> {
        lock(&self.cache).get(fqdn).and_then(|r| r[slot(rtype)])
    }

    /// A cached answer for an unchanged address, without any lock but the
    /// cache's. Dry-run records never expire (they are the only copy).
    fn cached_unchanged(&self, fqdn: &str, rtype: RecordType, ip: IpAddr) -> Option<Confirmed> {
        let entry = self.cached(fqdn, rtype)?;
        let fresh = matches!(self.backend, Backend::DryRun)
            || entry.at.is_some_and(|at| at.elapsed() < self.fresh_for)
            || self.first_reconcile_pending.load(Ordering::Relaxed);
        (entry.ip == ip && fresh).then_some(entry)
    }

    /// Do the host's record and its aliases' all hold `ip`, freshly confirmed?
    fn all_unchanged(&self, host: &str, rtype: RecordType, ip: IpAddr) -> bool {
        self.cached_unchanged(host, rtype, ip).is_some()
            && self.aliases_of(host).iter().all(|a| self.cached_unchanged(a, rtype, ip).is_some())
    }

    fn set_cached(&self, fqdn: &str, rtype: RecordType, ip: Option<IpAddr>) {
        let confirmed = ip.map(|ip| Confirmed { ip, at: Some(Instant::now()), unix: unix_now() });
        lock(&self.cache).entry(fqdn.to_string()).or_default()[slot(rtype)] = confirmed;
    }

    fn gate(&self, name: &str) -> &Gate {
        self.gates.get(name).map_or(&self.other_hosts_gate, |g| g)
    }

    /// Make the `fqdn` record of `ip`'s family hold exactly `ip`, and its
    /// aliases' records too.
    pub fn update(&self, fqdn: &str, ip: IpAddr, deadline: Instant) -> Report {
        self.update_as(fqdn, ip, deadline, false)
    }

    /// Changes answered with a passing error whose host may be tried
    /// again now: (host, address), oldest failures first.
    pub fn pending(&self) -> Vec<(String, IpAddr)> {
        let pending = lock(&self.pending).iter().map(|((h, _), ip)| (h.clone(), *ip)).collect::<Vec<_>>();
        pending.into_iter().filter(|(host, _)| self.gate(host).recent_failure(self.write_limit).is_none()).collect()
    }

    /// Write a pending change again (see `pending`); `None` if a newer
    /// report replaced or settled it meanwhile.
    pub fn retry(&self, fqdn: &str, ip: IpAddr, deadline: Instant) -> Option<Report> {
        let report = self.update_as(fqdn, ip, deadline, true);
        (report.answer() != Err(UpdateError::Superseded)).then_some(report)
    }

    fn update_as(&self, host: &str, ip: IpAddr, deadline: Instant, retry: bool) -> Report {
        let rtype = RecordType::of(ip);
        if !retry && self.all_unchanged(host, rtype, ip) {
            self.settle(host, rtype, ip);
            return Report::UNCHANGED;
        }
        let gate = self.gate(host);
        let _inside = match gate.enter(deadline) {
            Ok(inside) => inside,
            Err(e) => return Report::failed(host, e),
        };
        let key = (host.to_string(), rtype);
        if retry && lock(&self.pending).get(&key) != Some(&ip) {
            return Report::failed(host, UpdateError::Superseded);
        }
        // Another request for this host may have written it while we waited.
        if self.all_unchanged(host, rtype, ip) {
            self.settle(host, rtype, ip);
            return Report::UNCHANGED;
        }
        let names: Vec<&str> = std::iter::once(host).chain(self.aliases_of(host).iter().map(String::as_str)).collect();
        let changes = names.iter().any(|n| self.confirmed(n, rtype) != Some(ip));
        // Known, unchanged addresses only need a read: no write token. With
        // the API budget below its reserve that read waits (the addresses
        // were confirmed before; reconciles resume with the budget).
        if !changes && self.budget_low(host) {
            log::info!("{host} {rtype} {ip}: not read back, the Hetzner API budget is below its reserve");
            return Report::UNCHANGED;
        }
        if changes {
            if let Err(e) = gate.may_write(self.write_limit) {
                return Report::failed(host, e);
            }
        }
        if let Some(failure) = gate.recent_failure(self.write_limit) {
            // Hetzner failed this host's last write moments ago: answered
            // from memory, written by `retry_pending` later.
            lock(&self.pending).insert(key, ip);
            return Report::failed(host, failure);
        }
        let writes = self.write_all(&names, rtype, ip, deadline);
        // One token per report, however many aliases it wrote.
        let accepted = writes.iter().any(|w| {
            w.old != Some(ip)
                && match &w.result {
                    Ok(outcome) => *outcome != Outcome::Unchanged,
                    // The write reached Hetzner; only its confirmation failed.
                    Err(UpdateError::Api(ApiError::ActionUnconfirmed { .. } | ApiError::ActionFailed { .. })) => true,
                    Err(_) => false,
                }
        });
        if accepted {
            gate.spend_write();
        }
        match writes.iter().find_map(|w| w.result.as_ref().err()) {
            Some(e) if !e.is_permanent() => {
                gate.set_failure(Some(e.clone()));
                lock(&self.pending).insert(key, ip);
            }
            _ => {
                gate.set_failure(None);
                lock(&self.pending).remove(&key);
            }
        }
        Report { writes }
    }

    /// A report of the address already in place settles a pending change.
    fn settle(&self, fqdn: &str, rtype: RecordType, ip: IpAddr) {
        let mut pending = lock(&self.pending);
        if !pending.is_empty() && pending.get(&(fqdn.to_string(), rtype)).is_some_and(|p| *p != ip) {
            pending.remove(&(fqdn.to_string(), rtype));
        }
    }

    /// Every confirmed address, for the state file: (host, type, ip, unix time).
    pub fn export(&self) -> Vec<(String, RecordType, IpAddr, u64)> {
        let mut all: Vec<_> = lock(&self.cache)
            .iter()
            .flat_map(|(h, r)| {
                [RecordType::A, RecordType::Aaaa]
                    .into_iter()
                    .filter_map(move |t| r[slot(t)].map(|c| (h.clone(), t, c.ip, c.unix)))
            })
            .collect();
        all.sort();
        all
    }

    /// Load confirmations from the state file. Those younger than
    /// `REQUEST_CACHE_TTL` stay fresh; older ones mark the record as known.
    pub fn import(&self, host: &str, rtype: RecordType, ip: IpAddr, unix: u64) {
        let age = Duration::from_secs(unix_now().saturating_sub(unix));
        let at = (age < self.request_cache_ttl).then(|| Instant::now().checked_sub(age)).flatten();
        lock(&self.cache).entry(host.to_string()).or_default()[slot(rtype)] = Some(Confirmed { ip, at, unix });
    }

    /// The first reconcile since the start has ended (whatever its outcome).
    pub fn first_reconcile_done(&self) {
        self.first_reconcile_pending.store(false, Ordering::Relaxed);
    }

    /// Read every project's zone list (at start, so the first update does
    /// not pay for it); `None` in a dry run.
    pub fn prefetch_zones(&self, deadline: Instant) -> Option<Result<Vec<Zone>, ApiError>> {
        if self.projects().is_empty() {
            return None;
        }
        Some(self.zones.refresh(self.projects(), deadline, None))
    }

    /// List every project's zones now (the start's check): each project's
    /// failure, in project order, and the zones known after it.
    pub fn list_zones_now(&self, deadline: Instant) -> (Vec<Option<ApiError>>, Vec<Zone>) {
        let failures = self.zones.list_each(self.projects(), deadline);
        (failures, self.zones.snapshot().1)
    }

    /// The zone that holds `fqdn` (see `ZoneCache`); `NoZone` in a dry run.
    pub fn zone_for(&self, fqdn: &str, deadline: Instant) -> Result<Zone, UpdateError> {
        match self.zones.lookup(self.projects(), fqdn, deadline) {
            Ok(Some(zone)) => Ok(zone),
            Ok(None) => Err(UpdateError::NoZone(fqdn.to_string())),
            Err(e) => Err(UpdateError::Api(e)),
        }
    }

    /// `names` grouped by their zone (names no zone holds are left out),
    /// from the zone lists, read again once older than `ZONE_CACHE_TTL`
    /// (a stale list serves while Hetzner fails).
    pub fn hosts_by_zone<'h>(
        &self,
        names: &'h [String],
        deadline: Instant,
    ) -> Result<Vec<(Zone, Vec<&'h str>)>, ApiError> {
        if self.projects().is_empty() {
            return Ok(Vec::new());
        }
        let (fetched, mut zones) = self.zones.snapshot();
        if fetched.is_none_or(|at| at.elapsed() >= self.zones.ttl()) {
            match self.zones.refresh(self.projects(), deadline, fetched) {
                Ok(fresh) => zones = fresh,
                Err(e) if fetched.is_none() => return Err(e),
                Err(e) => log::warn!("hetzner: cannot list zones ({e}); using the list from before"),
            }
        }
        let mut grouped: Vec<(Zone, Vec<&str>)> = Vec::new();
        for host in names {
            let Some(zone) = best_zone(&zones, host) else { continue };
            match grouped.iter_mut().find(|(z, _)| *z == zone) {
                Some((_, list)) => list.push(host),
                None => grouped.push((zone, vec![host])),
            }
        }
        grouped.sort_by(|a, b| (&a.0.name, a.0.project).cmp(&(&b.0.name, b.0.project)));
        Ok(grouped)
    }

    /// The zone of `fqdn` from the cache, if known.
    pub fn cached_zone(&self, fqdn: &str) -> Option<Zone> {
        self.zones.cached(fqdn)
    }

    /// Has every project's zone list been read (always, in a dry run)?
    pub fn zones_known(&self) -> bool {
        self.projects().is_empty() || self.zones.known()
    }
}

/// The first word of the comment beside every value the server writes.
pub const COMMENT_TAG: &str = "hetzner-dyndns";

/// The comment beside a record value the server writes: the project, the
/// host, the value and when (UTC, to the minute), so that an operator
/// looking at the zone in the Hetzner Console sees who set it, and the
/// reconcile tells the server's own writes from changes by others (a
/// value changed in the Console no longer matches its comment). It costs
/// no call: it goes with the value.
pub fn comment(host: &str, value: &str) -> String {
    let mut at = String::new();
    crate::time::utc_text(&mut at, std::time::SystemTime::now(), false);
    let minute = at.get(..16).unwrap_or(&at);
    format!("{COMMENT_TAG} {host} {value} {minute}Z")
}

/// One record at Hetzner: its project, zone, name and type.
#[derive(Clone, Copy)]
struct Target<'a> {
    api: &'a Hetzner,
    zone: &'a Zone,
    /// The host or alias.
    fqdn: &'a str,
    /// Its RRSet name in the zone.
    name: &'a str,
    rtype: RecordType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_keeps_records_in_memory() {
        let hosts = vec!["home.example.com".to_string()];
        let limit = WriteLimit { burst: 10, per_hour: 12, retry_after: Duration::ZERO };
        let aliases = vec![Alias { name: "www.example.com".into(), host: "home.example.com".into() }];
        let settings = Settings {
            record_ttl: 60,
            request_cache_ttl: Duration::ZERO,
            zone_cache_ttl: Duration::ZERO,
            reconcile_interval: Duration::ZERO,
            write_limit: limit,
            aliases,
            host_ttls: BTreeMap::new(),
        };
        let u = Updater::new(Backend::DryRun, &hosts, settings);
        let deadline = Instant::now() + Duration::from_secs(1);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let ip2: IpAddr = "192.0.2.2".parse().expect("ip");
        let report = u.update("home.example.com", ip, deadline);
        assert_eq!(report.answer(), Ok(Outcome::Created));
        let names: Vec<&str> = report.writes.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["home.example.com", "www.example.com"]);
        assert_eq!(u.update("home.example.com", ip, deadline).answer(), Ok(Outcome::Unchanged));
        assert_eq!(u.update("home.example.com", ip2, deadline).answer(), Ok(Outcome::Updated));
        assert_eq!(u.confirmed("home.example.com", RecordType::A), Some(ip2));
        assert_eq!(u.confirmed("www.example.com", RecordType::A), Some(ip2));
        assert_eq!(u.confirmed("home.example.com", RecordType::Aaaa), None);
    }
}
