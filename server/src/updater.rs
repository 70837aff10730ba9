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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::aliases::Alias;
use crate::fqdn;
use crate::hetzner::{ApiError, Hetzner, Listed, Record, Zone};
use crate::metrics;
use crate::net::RecordType;
use crate::time::unix_now;
use crate::zones::{best_zone, ZoneCache};

pub use dyndns_common::answer::Outcome;

/// Why an update did not happen (or could not be confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// No zone of the token's project contains the host.
    NoZone(String),
    /// The Hetzner API failed.
    Api(ApiError),
    /// Another update of the host held its gate until the deadline.
    Busy,
    /// The host used up its writes (`HOST_WRITE_BURST`,
    /// `HOST_WRITES_PER_HOUR`); the next one is possible after this time.
    TooManyWrites(Duration),
    /// A retry of a pending change found a newer report in its place.
    Superseded,
}

impl UpdateError {
    /// A short stable name of the failure, to tell repeated failures apart.
    pub fn kind(&self) -> String {
        match self {
            UpdateError::NoZone(_) => "no_zone".into(),
            UpdateError::Api(ApiError::Api { code, .. }) => code.clone(),
            UpdateError::Api(ApiError::Redirect { .. }) => "redirect".into(),
            UpdateError::Api(ApiError::Malformed { .. }) => "malformed".into(),
            UpdateError::Api(ApiError::Transport(_)) => "unreachable".into(),
            UpdateError::Api(ApiError::ActionFailed { code, .. }) => format!("action_{code}"),
            UpdateError::Api(ApiError::ActionUnconfirmed { .. }) => "unconfirmed".into(),
            UpdateError::Busy => "busy".into(),
            UpdateError::TooManyWrites(_) => "too_many_writes".into(),
            UpdateError::Superseded => "superseded".into(),
        }
    }

    /// A problem retrying will not fix without the operator (dyndns2 `dnserr`),
    /// as opposed to a passing one (`911`).
    pub fn is_permanent(&self) -> bool {
        match self {
            UpdateError::NoZone(_) => true,
            UpdateError::Api(ApiError::Api { status, .. }) => {
                (400..500).contains(status) && *status != 429 && *status != 423
            }
            UpdateError::Api(ApiError::Redirect { .. } | ApiError::ActionFailed { .. }) => true,
            UpdateError::Api(_) | UpdateError::Busy | UpdateError::TooManyWrites(_) | UpdateError::Superseded => false,
        }
    }
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::NoZone(host) => write!(
                f,
                "no zone of this Hetzner project contains {host}; create the zone in the Hetzner Console or use a token of the project that holds it"
            ),
            UpdateError::Api(e) if e.maybe_applied() => write!(f, "could not confirm the change: {e}"),
            UpdateError::Api(e) => write!(f, "failed to change the record: {e}"),
            UpdateError::Busy => f.write_str("another update of this host is still running; try again"),
            UpdateError::TooManyWrites(wait) => write!(
                f,
                "too many address changes of this host (HOST_WRITE_BURST, HOST_WRITES_PER_HOUR); the next is possible in {} s",
                wait.as_secs().max(1)
            ),
            UpdateError::Superseded => f.write_str("a newer report replaced this change"),
        }
    }
}

impl From<ApiError> for UpdateError {
    fn from(e: ApiError) -> Self {
        UpdateError::Api(e)
    }
}

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

/// Per-host write limit: `burst` writes at once, `per_hour` refilled.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimit {
    pub burst: u32,
    pub per_hour: u32,
    /// `FAILED_WRITE_RETRY`: after a write of the host failed (Hetzner down,
    /// slow, answering 5xx), its next write is tried no sooner than this;
    /// reports in between are answered with the same error (dyndns2 `911`)
    /// without a call, and the newest of them is written by the server
    /// itself once this has passed (`Updater::retry_pending`).
    pub retry_after: Duration,
}

/// One host's gate: at most one update at a time, and its write tokens.
struct Gate {
    state: Mutex<GateState>,
    free: Condvar,
}

struct GateState {
    busy: bool,
    tokens: f64,
    refilled: Instant,
    /// The last write that failed in a way retrying may fix, and when: for
    /// `WriteLimit::retry_after` later changes are answered with it from memory.
    failed: Option<(Instant, UpdateError)>,
}

impl Gate {
    fn new(limit: WriteLimit) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                busy: false,
                tokens: f64::from(limit.burst),
                refilled: Instant::now(),
                failed: None,
            }),
            free: Condvar::new(),
        }
    }

    /// Wait until no other update of the host runs, or `Busy` at `deadline`.
    fn enter(&self, deadline: Instant) -> Result<GateGuard<'_>, UpdateError> {
        let mut state = lock(&self.state);
        while state.busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpdateError::Busy);
            }
            state = self.free.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        state.busy = true;
        Ok(GateGuard(self))
    }

    /// Is a write token left? Nothing is spent: only a write Hetzner
    /// accepted spends one (`spend_write`), so a host whose reports fail
    /// during an outage is not locked out afterwards.
    fn may_write(&self, limit: WriteLimit) -> Result<(), UpdateError> {
        let mut state = lock(&self.state);
        let per_second = f64::from(limit.per_hour) / 3600.0;
        let refill = state.refilled.elapsed().as_secs_f64() * per_second;
        state.tokens = (state.tokens + refill).min(f64::from(limit.burst));
        state.refilled = Instant::now();
        if state.tokens >= 1.0 {
            Ok(())
        } else {
            Err(UpdateError::TooManyWrites(Duration::from_secs_f64((1.0 - state.tokens) / per_second)))
        }
    }

    /// Hetzner accepted a write: one token is spent.
    fn spend_write(&self) {
        let mut state = lock(&self.state);
        state.tokens = (state.tokens - 1.0).max(0.0);
    }

    /// The failure of a write within the last `RETRY_AFTER_FAILURE`.
    fn recent_failure(&self, limit: WriteLimit) -> Option<UpdateError> {
        let state = lock(&self.state);
        state.failed.as_ref().filter(|(at, _)| at.elapsed() < limit.retry_after).map(|(_, e)| e.clone())
    }

    fn set_failure(&self, failure: Option<UpdateError>) {
        lock(&self.state).failed = failure.map(|e| (Instant::now(), e));
    }
}

/// Opens the gate when dropped, also when the update panicked.
struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).busy = false;
        self.0.free.notify_one();
    }
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
/// then its aliases' (`HOST_ALIASES`), up to the first that failed.
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
    /// Host or alias → its `HOST_TTL`.
    ttls: HashMap<String, u32>,
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
        let mut ttls: HashMap<String, u32> = settings.host_ttls.iter().map(|(h, t)| (h.clone(), *t)).collect();
        for a in &settings.aliases {
            if let Some(&ttl) = settings.host_ttls.get(&a.host) {
                ttls.insert(a.name.clone(), ttl);
            }
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
            ttls,
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

    fn unchanged(&self, host: &str, ip: IpAddr) -> Report {
        let names = std::iter::once(host).chain(self.aliases_of(host).iter().map(String::as_str));
        let writes = names.map(|n| Written { name: n.to_string(), old: Some(ip), result: Ok(Outcome::Unchanged) });
        Report { writes: writes.collect() }
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
            return self.unchanged(host, ip);
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
            return self.unchanged(host, ip);
        }
        let names: Vec<&str> = std::iter::once(host).chain(self.aliases_of(host).iter().map(String::as_str)).collect();
        let changes = names.iter().any(|n| self.confirmed(n, rtype) != Some(ip));
        // Known, unchanged addresses only need a read: no write token. With
        // the API budget below its reserve that read waits (the addresses
        // were confirmed before; reconciles resume with the budget).
        if !changes && self.budget_low(host) {
            log::info!("{host} {rtype} {ip}: not read back, the Hetzner API budget is below its reserve");
            return self.unchanged(host, ip);
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

    /// Write `ip` into each name's record (a host, then its aliases) that
    /// does not hold it freshly confirmed, up to the first failure.
    fn write_all(&self, names: &[&str], rtype: RecordType, ip: IpAddr, deadline: Instant) -> Vec<Written> {
        let mut writes = Vec::with_capacity(names.len());
        for (i, &name) in names.iter().enumerate() {
            let known = self.confirmed(name, rtype);
            // An alias already right costs nothing (the host is always
            // looked at: its report is what asked).
            if i > 0 && self.cached_unchanged(name, rtype, ip).is_some() {
                writes.push(Written { name: name.to_string(), old: known, result: Ok(Outcome::Unchanged) });
                continue;
            }
            let result = match &self.backend {
                Backend::DryRun => {
                    log::info!(
                        "dry run: would set {name} {rtype} {ip}{}",
                        known.map(|k| format!(" (was {k})")).unwrap_or_default()
                    );
                    Ok(if known.is_some() { Outcome::Updated } else { Outcome::Created })
                }
                Backend::Hetzner(_) => self.write(name, rtype, ip, known, deadline),
            };
            self.set_cached(name, rtype, result.is_ok().then_some(ip));
            let failed = result.is_err();
            writes.push(Written { name: name.to_string(), old: known, result });
            if failed {
                break;
            }
        }
        writes
    }

    /// A report of the address already in place settles a pending change.
    fn settle(&self, fqdn: &str, rtype: RecordType, ip: IpAddr) {
        let mut pending = lock(&self.pending);
        if !pending.is_empty() && pending.get(&(fqdn.to_string(), rtype)).is_some_and(|p| *p != ip) {
            pending.remove(&(fqdn.to_string(), rtype));
        }
    }

    fn write(
        &self,
        fqdn: &str,
        rtype: RecordType,
        ip: IpAddr,
        known: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Outcome, UpdateError> {
        let zone = self.zone_for(fqdn, deadline)?;
        let api = self.api(&zone).ok_or_else(|| UpdateError::NoZone(fqdn.to_string()))?;
        let name = fqdn::rr_name(fqdn, &zone.name);
        let value = ip.to_string();
        let comment = comment(fqdn, &value);
        let record = Record { value: &value, comment: &comment };
        let target = Target { api, zone: &zone, fqdn, name: &name, rtype };
        if let Some(old) = known.filter(|&old| old != ip) {
            // The record is known to exist: no need to read it first.
            match api.set_records(zone.id, &name, rtype, record, deadline) {
                Ok(()) => {
                    log::info!("hetzner: set {fqdn} {rtype} {ip} (was {old})");
                    self.keep_ttl(&target, None, deadline);
                    return Ok(Outcome::Updated);
                }
                Err(e) if e.is_not_found() => {} // deleted meanwhile: read and create below
                Err(e) => return Err(e.into()),
            }
        }
        match api.get_rrset(zone.id, &name, rtype, deadline)? {
            Some(rrset) => {
                let current: Vec<Option<IpAddr>> = rrset.values.iter().map(|v| v.parse().ok()).collect();
                let outcome = if current == [Some(ip)] {
                    Outcome::Unchanged
                } else {
                    api.set_records(zone.id, &name, rtype, record, deadline)?;
                    log::info!("hetzner: set {fqdn} {rtype} {ip} (was {})", rrset.values.join(","));
                    Outcome::Updated
                };
                self.keep_ttl(&target, Some(rrset.ttl), deadline);
                Ok(outcome)
            }
            None => {
                let ttl = self.ttls.get(fqdn).copied().unwrap_or(self.record_ttl);
                match api.create_rrset(zone.id, &name, rtype, ttl, record, deadline) {
                    Ok(()) => {
                        log::info!("hetzner: created {fqdn} {rtype} {ip} ttl {ttl}");
                        self.ttl_seen(fqdn, rtype, true);
                        Ok(Outcome::Created)
                    }
                    Err(ApiError::Api { status: 409, code, .. }) if code == "uniqueness_error" => {
                        // Created by someone else between our read and our write.
                        api.set_records(zone.id, &name, rtype, record, deadline)?;
                        log::info!("hetzner: set {fqdn} {rtype} {ip} (created concurrently)");
                        self.keep_ttl(&target, None, deadline);
                        Ok(Outcome::Updated)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Note whether a record's TTL was seen equal to its `HOST_TTL`.
    fn ttl_seen(&self, name: &str, rtype: RecordType, right: bool) {
        let mut seen = lock(&self.ttl_right);
        if right {
            seen.insert((name.to_string(), rtype));
        } else {
            seen.remove(&(name.to_string(), rtype));
        }
    }

    /// After a write: give the record its `HOST_TTL` if it has one and
    /// `found` (the TTL read; `None` when not read) differs, or, unread,
    /// when it was not seen right since the start — one call at most,
    /// never one per report. A failure is logged, never the report's: the
    /// address is written, and the reconcile tries again.
    fn keep_ttl(&self, target: &Target<'_>, found: Option<Option<u32>>, deadline: Instant) {
        let Some(&ttl) = self.ttls.get(target.fqdn) else { return };
        let right = match found {
            Some(found) => found == Some(ttl),
            None => lock(&self.ttl_right).contains(&(target.fqdn.to_string(), target.rtype)),
        };
        if right {
            self.ttl_seen(target.fqdn, target.rtype, true);
            return;
        }
        let (fqdn, rtype) = (target.fqdn, target.rtype);
        match target.api.change_ttl(target.zone.id, target.name, rtype, ttl, deadline) {
            Ok(()) => {
                log::info!("hetzner: {fqdn} {rtype} has the TTL {ttl} now (HOST_TTL)");
                self.ttl_seen(fqdn, rtype, true);
            }
            Err(e) => log::warn!("hetzner: cannot change the TTL of {fqdn} {rtype} to {ttl} (HOST_TTL): {e}"),
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

    /// The host whose records an alias follows, or `name` itself.
    pub fn host_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.followed.get(name).map_or(name, String::as_str)
    }

    /// Compare every record of `names` (hosts and aliases, all in `zone`)
    /// with one listing of the zone's A and AAAA RRSets. A record that
    /// holds the confirmed address (an alias: its host's) is confirmed anew
    /// (so unchanged reports cost no call); a host's record the server knew
    /// nothing about is learned. A record that differs, or was deleted, is
    /// drift: `repair` decides per host (an alias: its host) whether to set
    /// it back. A record with a `HOST_TTL` gets it. Returns the drift
    /// found, in name order.
    pub fn reconcile(
        &self,
        zone: &Zone,
        names: &[&str],
        repair: &dyn Fn(&str) -> Repair,
        deadline: Instant,
    ) -> Result<Vec<Drift>, ApiError> {
        let Some(api) = self.api(zone) else { return Ok(Vec::new()) };
        let listed_at = Instant::now();
        let listing = api.list_address_rrsets(zone.id, deadline)?;
        let mut by_name: HashMap<(&str, RecordType), &Listed> = HashMap::new();
        for r in &listing {
            by_name.insert((r.name.as_str(), r.rtype), r);
        }
        let mut drift = Vec::new();
        // Hosts first: a host learned from this listing is what its
        // aliases are compared with.
        let (hosts, aliases): (Vec<&str>, Vec<&str>) = names.iter().partition(|n| self.host_of(n) == **n);
        for fqdn in hosts.into_iter().chain(aliases) {
            let name = fqdn::rr_name(fqdn, &zone.name);
            let host = self.host_of(fqdn);
            for rtype in [RecordType::A, RecordType::Aaaa] {
                let listed = by_name.get(&(name.as_str(), rtype)).copied();
                let target = Target { api, zone, fqdn, name: &name, rtype };
                let seen = Differing { host, target, listed, listed_at, repair: repair(host) };
                if let Some(d) = self.compare(seen, deadline) {
                    drift.push(d);
                }
            }
        }
        Ok(drift)
    }

    /// One record of a reconcile: confirmed, learned, or drift.
    fn compare(&self, seen: Differing<'_>, deadline: Instant) -> Option<Drift> {
        let Differing { host, target, listed, listed_at, repair } = seen;
        let Target { fqdn, rtype, .. } = target;
        let single = listed.and_then(|r| single_address(&r.values)).filter(|ip| RecordType::of(*ip) == rtype);
        let own = listed.is_some_and(|r| match (r.values.as_slice(), r.comments.as_slice()) {
            ([value], [comment]) => is_own_write(comment, fqdn, value),
            _ => false,
        });
        let Some(expected) = self.cached(host, rtype) else {
            // Nothing known of the host: learn its record as it is.
            if fqdn == host {
                if let Some(ip) = single {
                    self.set_cached(fqdn, rtype, Some(ip));
                }
            }
            return None;
        };
        if single == Some(expected.ip) {
            self.confirm_if_unchanged(host, fqdn, rtype, expected, listed_at);
            if let (Some(listed), Repair::Yes) = (listed, repair) {
                self.keep_ttl(&target, Some(listed.ttl), deadline);
            }
            return None;
        }
        if let Some(ip) = single.filter(|_| own && fqdn == host) {
            // The server's own write of this very value (one whose
            // confirmation was lost, or made from a state file restored
            // since): no drift; it is what the record holds.
            log::info!("reconcile: {fqdn} {rtype} holds {ip}, written by this server; taken as confirmed");
            self.replace_if_unchanged(fqdn, rtype, expected, ip, listed_at);
            return None;
        }
        let found = listed.map(|r| r.values.clone());
        self.drifted(&target, host, expected, found, repair, listed_at, deadline)
    }

    /// Take `now` in place of `seen`, unless an update changed the record
    /// after the listing.
    fn replace_if_unchanged(&self, host: &str, rtype: RecordType, seen: Confirmed, now: IpAddr, listed_at: Instant) {
        let mut cache = lock(&self.cache);
        if let Some(entry) = cache.get_mut(host).and_then(|r| r[slot(rtype)].as_mut()) {
            if entry.ip == seen.ip && entry.at.is_none_or(|at| at <= listed_at) {
                *entry = Confirmed { ip: now, at: Some(Instant::now()), unix: unix_now() };
            }
        }
    }

    /// Refresh the confirmation of `fqdn` (the host `host`, or one of its
    /// aliases) holding the host's `seen` address, unless an update
    /// changed either after the listing.
    fn confirm_if_unchanged(&self, host: &str, fqdn: &str, rtype: RecordType, seen: Confirmed, listed_at: Instant) {
        let mut cache = lock(&self.cache);
        let unchanged = |c: &Confirmed| c.ip == seen.ip && c.at.is_none_or(|at| at <= listed_at);
        if !cache.get(host).and_then(|r| r[slot(rtype)].as_ref()).is_some_and(unchanged) {
            return;
        }
        let entry = &mut cache.entry(fqdn.to_string()).or_default()[slot(rtype)];
        if entry.is_none_or(|c| c.at.is_none_or(|at| at <= listed_at)) {
            *entry = Some(Confirmed { ip: seen.ip, at: Some(Instant::now()), unix: unix_now() });
        }
    }

    /// Handle one record that differs from its host's confirmed address
    /// (`expected`), under the host's gate (no update of the host runs
    /// meanwhile). `None` when an update of the host changed the record
    /// after the listing.
    #[allow(clippy::too_many_arguments)] // one record's facts, each used once; a struct would only be unpacked here
    fn drifted(
        &self,
        target: &Target<'_>,
        host: &str,
        expected: Confirmed,
        found: Option<Vec<String>>,
        repair: Repair,
        listed_at: Instant,
        deadline: Instant,
    ) -> Option<Drift> {
        let Target { api, zone, fqdn, name, rtype } = *target;
        let _inside = self.gate(host).enter(deadline).ok()?;
        // An update after the listing changed the host's address, or wrote
        // this very record: the listing is out of date.
        if self.cached(host, rtype).map(|c| c.ip) != Some(expected.ip)
            || self.cached(fqdn, rtype).and_then(|c| c.at).is_some_and(|at| at > listed_at)
        {
            return None;
        }
        let single = found.as_deref().and_then(single_address).filter(|ip| RecordType::of(*ip) == rtype);
        let mut drift =
            Drift { host: fqdn.to_string(), rtype, expected: expected.ip, found, action: DriftAction::Reported };
        if repair != Repair::Yes {
            // The record is what it is now: the next report of the host's
            // own address is a change, and writes it.
            self.set_cached(fqdn, rtype, single);
            drift.action = if repair == Repair::HostLost { DriftAction::LeftLost } else { DriftAction::Reported };
            return Some(drift);
        }
        let value = expected.ip.to_string();
        let comment = comment(fqdn, &value);
        let record = Record { value: &value, comment: &comment };
        let ttl = self.ttls.get(fqdn).copied().unwrap_or(self.record_ttl);
        let result = match &drift.found {
            Some(_) => api.set_records(zone.id, name, rtype, record, deadline).map(|()| DriftAction::Restored),
            None => api.create_rrset(zone.id, name, rtype, ttl, record, deadline).map(|()| DriftAction::Recreated),
        };
        match result {
            Ok(action) => {
                self.set_cached(fqdn, rtype, Some(expected.ip));
                drift.action = action;
            }
            Err(e) => {
                // Unknown state: the next report reads the truth.
                self.set_cached(fqdn, rtype, None);
                drift.action = DriftAction::Failed(e.to_string());
            }
        }
        Some(drift)
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

/// Is `comment` the server's own, for `host` holding `value`?
fn is_own_write(comment: &str, host: &str, value: &str) -> bool {
    let mut words = comment.split_whitespace();
    words.next() == Some(COMMENT_TAG) && words.next() == Some(host) && words.next() == Some(value)
}

/// The only address an RRSet holds, if it holds exactly one.
fn single_address(values: &[String]) -> Option<IpAddr> {
    match values {
        [one] => one.parse().ok(),
        _ => None,
    }
}

/// What the reconcile may do about a host's drifted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    Yes,
    /// `RECONCILE_REPAIR=0`: only report.
    ReportOnly,
    /// The host is lost: its address may really be gone; leave it.
    HostLost,
}

/// A record found different from the address the server last confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub host: String,
    pub rtype: RecordType,
    pub expected: IpAddr,
    /// The values found; `None` when the RRSet was deleted.
    pub found: Option<Vec<String>>,
    pub action: DriftAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftAction {
    Restored,
    Recreated,
    Reported,
    LeftLost,
    Failed(String),
}

impl DriftAction {
    /// Its label in `/metrics` and `/status`.
    pub fn metric(&self) -> metrics::Drift {
        match self {
            DriftAction::Restored => metrics::Drift::Restored,
            DriftAction::Recreated => metrics::Drift::Recreated,
            DriftAction::Reported => metrics::Drift::Reported,
            DriftAction::LeftLost => metrics::Drift::LeftLost,
            DriftAction::Failed(_) => metrics::Drift::Failed,
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.metric().as_str()
    }
}

/// One record of a zone listing, to be compared with what the server
/// confirmed for its host.
struct Differing<'a> {
    /// The host whose address the record must hold (itself, or the host
    /// an alias follows).
    host: &'a str,
    target: Target<'a>,
    /// The RRSet in the listing; `None`: not there.
    listed: Option<&'a Listed>,
    listed_at: Instant,
    repair: Repair,
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

    /// What a write Hetzner accepted does to the gate.
    fn take_write(gate: &Gate, limit: WriteLimit) -> Result<(), UpdateError> {
        gate.may_write(limit)?;
        gate.spend_write();
        Ok(())
    }

    #[test]
    fn a_flood_is_held_to_the_burst_plus_the_hourly_refill() {
        let limit = WriteLimit { burst: 10, per_hour: 12, retry_after: Duration::ZERO };
        let gate = Gate::new(limit);
        let mut granted = 0;
        // One hour of a client trying 40 writes a minute, the clock moved
        // by hand: each minute is a minute more since the last refill.
        for _ in 0..60 {
            for _ in 0..40 {
                granted += u32::from(take_write(&gate, limit).is_ok());
            }
            let mut state = lock(&gate.state);
            state.refilled -= Duration::from_secs(60);
        }
        assert!((21..=22).contains(&granted), "{granted} writes in an hour");
        // Spent: the next write is due within one refill interval.
        while take_write(&gate, limit).is_ok() {}
        match take_write(&gate, limit) {
            Err(UpdateError::TooManyWrites(wait)) => assert!(wait <= Duration::from_secs(300), "{wait:?}"),
            other => panic!("{other:?}"),
        }
    }

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
