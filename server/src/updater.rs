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

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::fqdn;
use crate::hetzner::{ApiError, Hetzner, Listed, Record, Zone};
use crate::metrics;
use crate::net::RecordType;
use crate::time::unix_now;

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

/// Where records go: Hetzner, or nowhere (dry run, records kept in memory).
pub enum Backend {
    Hetzner(Box<Hetzner>),
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
    /// host → its confirmed A and AAAA (looked up by `&str`: no
    /// allocation on the cached path).
    cache: Mutex<HashMap<String, [Option<Confirmed>; 2]>>,
    gates: HashMap<String, Gate>,
    other_hosts_gate: Gate,
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
    pub fn new(
        backend: Backend,
        hosts: &[String],
        record_ttl: u32,
        request_cache_ttl: Duration,
        zone_cache_ttl: Duration,
        reconcile_interval: Duration,
        write_limit: WriteLimit,
    ) -> Updater {
        Updater {
            backend,
            record_ttl,
            request_cache_ttl,
            fresh_for: request_cache_ttl.max(reconcile_interval * 2),
            first_reconcile_pending: AtomicBool::new(!reconcile_interval.is_zero()),
            write_limit,
            zones: ZoneCache { ttl: zone_cache_ttl, state: Mutex::new(ZoneState::default()), fetching: Mutex::new(()) },
            cache: Mutex::new(HashMap::new()),
            gates: hosts.iter().map(|h| (h.clone(), Gate::new(write_limit))).collect(),
            other_hosts_gate: Gate::new(write_limit),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn hetzner(&self) -> Option<&Hetzner> {
        match &self.backend {
            Backend::Hetzner(h) => Some(h),
            Backend::DryRun => None,
        }
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

    fn set_cached(&self, fqdn: &str, rtype: RecordType, ip: Option<IpAddr>) {
        let confirmed = ip.map(|ip| Confirmed { ip, at: Some(Instant::now()), unix: unix_now() });
        lock(&self.cache).entry(fqdn.to_string()).or_default()[slot(rtype)] = confirmed;
    }

    /// Make the `fqdn` record of `ip`'s family hold exactly `ip`.
    pub fn update(&self, fqdn: &str, ip: IpAddr, deadline: Instant) -> Result<Outcome, UpdateError> {
        self.update_as(fqdn, ip, deadline, false)
    }

    /// Changes answered with a passing error whose host may be tried
    /// again now: (host, address), oldest failures first.
    pub fn pending(&self) -> Vec<(String, IpAddr)> {
        let pending = lock(&self.pending).iter().map(|((h, _), ip)| (h.clone(), *ip)).collect::<Vec<_>>();
        pending
            .into_iter()
            .filter(|(host, _)| {
                self.gates.get(host).unwrap_or(&self.other_hosts_gate).recent_failure(self.write_limit).is_none()
            })
            .collect()
    }

    /// Write a pending change again (see `pending`); `None` if a newer
    /// report replaced or settled it meanwhile.
    pub fn retry(&self, fqdn: &str, ip: IpAddr, deadline: Instant) -> Option<Result<Outcome, UpdateError>> {
        match self.update_as(fqdn, ip, deadline, true) {
            Err(UpdateError::Superseded) => None,
            other => Some(other),
        }
    }

    fn update_as(&self, fqdn: &str, ip: IpAddr, deadline: Instant, retry: bool) -> Result<Outcome, UpdateError> {
        let rtype = RecordType::of(ip);
        if !retry && self.cached_unchanged(fqdn, rtype, ip).is_some() {
            self.settle(fqdn, rtype, ip);
            return Ok(Outcome::Unchanged);
        }
        let gate = self.gates.get(fqdn).unwrap_or(&self.other_hosts_gate);
        let _inside = gate.enter(deadline)?;
        let key = (fqdn.to_string(), rtype);
        if retry && lock(&self.pending).get(&key) != Some(&ip) {
            return Err(UpdateError::Superseded);
        }
        // Another request for this host may have written it while we waited.
        if self.cached_unchanged(fqdn, rtype, ip).is_some() {
            self.settle(fqdn, rtype, ip);
            return Ok(Outcome::Unchanged);
        }
        let known = self.cached(fqdn, rtype).map(|c| c.ip);
        // A known, unchanged address only needs a read: no write token. With
        // the API budget below its reserve that read waits (the address was
        // confirmed before; reconciles resume with the budget).
        if known == Some(ip) && self.hetzner().is_some_and(Hetzner::budget_low) {
            log::info!("{fqdn} {rtype} {ip}: not read back, the Hetzner API budget is below its reserve");
            return Ok(Outcome::Unchanged);
        }
        if known != Some(ip) {
            gate.may_write(self.write_limit)?;
        }
        if let Some(failure) = gate.recent_failure(self.write_limit) {
            // Hetzner failed this host's last write moments ago: answered
            // from memory, written by `retry_pending` later.
            lock(&self.pending).insert(key, ip);
            return Err(failure);
        }
        let result = match &self.backend {
            Backend::DryRun => {
                log::info!(
                    "dry run: would set {fqdn} {rtype} {ip}{}",
                    known.map(|k| format!(" (was {k})")).unwrap_or_default()
                );
                Ok(if known.is_some() { Outcome::Updated } else { Outcome::Created })
            }
            Backend::Hetzner(api) => self.write(api, fqdn, rtype, ip, known, deadline),
        };
        self.set_cached(fqdn, rtype, result.is_ok().then_some(ip));
        let accepted = match &result {
            Ok(outcome) => *outcome != Outcome::Unchanged,
            // The write reached Hetzner; only its confirmation failed.
            Err(UpdateError::Api(ApiError::ActionUnconfirmed { .. } | ApiError::ActionFailed { .. })) => true,
            Err(_) => false,
        };
        if accepted && known != Some(ip) {
            gate.spend_write();
        }
        match &result {
            Err(e) if !e.is_permanent() => {
                gate.set_failure(Some(e.clone()));
                lock(&self.pending).insert(key, ip);
            }
            _ => {
                gate.set_failure(None);
                lock(&self.pending).remove(&key);
            }
        }
        result
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
        api: &Hetzner,
        fqdn: &str,
        rtype: RecordType,
        ip: IpAddr,
        known: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Outcome, UpdateError> {
        let zone = self.zones.lookup(api, fqdn, deadline)?;
        let name = fqdn::rr_name(fqdn, &zone.name);
        let value = ip.to_string();
        let comment = comment(fqdn, &value);
        let record = Record { value: &value, comment: &comment };
        if let Some(old) = known.filter(|&old| old != ip) {
            // The record is known to exist: no need to read it first.
            match api.set_records(zone.id, &name, rtype, record, deadline) {
                Ok(()) => {
                    log::info!("hetzner: set {fqdn} {rtype} {ip} (was {old})");
                    return Ok(Outcome::Updated);
                }
                Err(e) if e.is_not_found() => {} // deleted meanwhile: read and create below
                Err(e) => return Err(e.into()),
            }
        }
        match api.get_rrset(zone.id, &name, rtype, deadline)? {
            Some(rrset) => {
                let current: Vec<Option<IpAddr>> = rrset.values.iter().map(|v| v.parse().ok()).collect();
                if current == [Some(ip)] {
                    return Ok(Outcome::Unchanged);
                }
                api.set_records(zone.id, &name, rtype, record, deadline)?;
                log::info!("hetzner: set {fqdn} {rtype} {ip} (was {})", rrset.values.join(","));
                Ok(Outcome::Updated)
            }
            None => {
                match api.create_rrset(zone.id, &name, rtype, self.record_ttl, record, deadline) {
                    Ok(()) => {
                        log::info!("hetzner: created {fqdn} {rtype} {ip} ttl {}", self.record_ttl);
                        Ok(Outcome::Created)
                    }
                    Err(ApiError::Api { status: 409, code, .. }) if code == "uniqueness_error" => {
                        // Created by someone else between our read and our write.
                        api.set_records(zone.id, &name, rtype, record, deadline)?;
                        log::info!("hetzner: set {fqdn} {rtype} {ip} (created concurrently)");
                        Ok(Outcome::Updated)
                    }
                    Err(e) => Err(e.into()),
                }
            }
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

    /// Compare every record of `hosts` (all in `zone`) with one listing of
    /// the zone's A and AAAA RRSets. A record that holds the confirmed
    /// address is confirmed anew (so unchanged reports cost no call); one
    /// the server knew nothing about is learned. A record that differs from
    /// the confirmed address, or was deleted, is drift: `repair` decides per
    /// host whether to set it back. Returns the drift found, in host order.
    pub fn reconcile(
        &self,
        zone: &Zone,
        hosts: &[&str],
        repair: &dyn Fn(&str) -> Repair,
        deadline: Instant,
    ) -> Result<Vec<Drift>, ApiError> {
        let Some(api) = self.hetzner() else { return Ok(Vec::new()) };
        let listed_at = Instant::now();
        let listing = api.list_address_rrsets(zone.id, deadline)?;
        let mut by_name: HashMap<(&str, RecordType), &Listed> = HashMap::new();
        for r in &listing {
            by_name.insert((r.name.as_str(), r.rtype), r);
        }
        let mut drift = Vec::new();
        for &host in hosts {
            let name = fqdn::rr_name(host, &zone.name);
            for rtype in [RecordType::A, RecordType::Aaaa] {
                let listed = by_name.get(&(name.as_str(), rtype));
                let found = listed.map(|r| r.values.clone());
                let single = found.as_deref().and_then(single_address);
                let own = listed.is_some_and(|r| match (r.values.as_slice(), r.comments.as_slice()) {
                    ([value], [comment]) => is_own_write(comment, host, value),
                    _ => false,
                });
                let Some(expected) = self.cached(host, rtype) else {
                    // Nothing known: learn the record as it is.
                    if let Some(ip) = single.filter(|ip| RecordType::of(*ip) == rtype) {
                        self.set_cached(host, rtype, Some(ip));
                    }
                    continue;
                };
                if single == Some(expected.ip) {
                    self.confirm_if_unchanged(host, rtype, expected, listed_at);
                    continue;
                }
                if let Some(ip) = single.filter(|ip| own && RecordType::of(*ip) == rtype) {
                    // The server's own write of this very value (one whose
                    // confirmation was lost, or made from a state file
                    // restored since): no drift; it is what the record holds.
                    log::info!("reconcile: {host} {rtype} holds {ip}, written by this server; taken as confirmed");
                    self.replace_if_unchanged(host, rtype, expected, ip, listed_at);
                    continue;
                }
                let seen = Differing { host, rtype, expected, found, listed_at };
                if let Some(d) = self.drifted(api, zone, seen, repair(host), deadline) {
                    drift.push(d);
                }
            }
        }
        Ok(drift)
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

    /// Refresh a confirmation, unless an update changed it after the listing.
    fn confirm_if_unchanged(&self, host: &str, rtype: RecordType, seen: Confirmed, listed_at: Instant) {
        let mut cache = lock(&self.cache);
        if let Some(entry) = cache.get_mut(host).and_then(|r| r[slot(rtype)].as_mut()) {
            if entry.ip == seen.ip && entry.at.is_none_or(|at| at <= listed_at) {
                *entry = Confirmed { ip: seen.ip, at: Some(Instant::now()), unix: unix_now() };
            }
        }
    }

    /// Handle one record that differs from its confirmed address (`seen`), under the
    /// host's gate (no update of the host runs meanwhile). `None` when an
    /// update of the host changed the record after the listing.
    fn drifted(
        &self,
        api: &Hetzner,
        zone: &Zone,
        seen: Differing<'_>,
        repair: Repair,
        deadline: Instant,
    ) -> Option<Drift> {
        let Differing { host, rtype, expected, found, listed_at } = seen;
        let gate = self.gates.get(host).unwrap_or(&self.other_hosts_gate);
        let _inside = gate.enter(deadline).ok()?;
        let now = self.cached(host, rtype);
        if now.map(|c| c.ip) != Some(expected.ip) || now.and_then(|c| c.at).is_some_and(|at| at > listed_at) {
            return None;
        }
        let single = found.as_deref().and_then(single_address).filter(|ip| RecordType::of(*ip) == rtype);
        let mut drift =
            Drift { host: host.to_string(), rtype, expected: expected.ip, found, action: DriftAction::Reported };
        if repair != Repair::Yes {
            // The record is what it is now: the next report of the host's
            // own address is a change, and writes it.
            self.set_cached(host, rtype, single);
            drift.action = if repair == Repair::HostLost { DriftAction::LeftLost } else { DriftAction::Reported };
            return Some(drift);
        }
        let name = fqdn::rr_name(host, &zone.name);
        let value = expected.ip.to_string();
        let comment = comment(host, &value);
        let record = Record { value: &value, comment: &comment };
        let result = match &drift.found {
            Some(_) => api.set_records(zone.id, &name, rtype, record, deadline).map(|()| DriftAction::Restored),
            None => api
                .create_rrset(zone.id, &name, rtype, self.record_ttl, record, deadline)
                .map(|()| DriftAction::Recreated),
        };
        match result {
            Ok(action) => {
                self.set_cached(host, rtype, Some(expected.ip));
                drift.action = action;
            }
            Err(e) => {
                // Unknown state: the next report reads the truth.
                self.set_cached(host, rtype, None);
                drift.action = DriftAction::Failed(e.to_string());
            }
        }
        Some(drift)
    }

    /// Fill the zone cache (at start, so the first update does not pay for
    /// it); returns the zones or the error.
    pub fn prefetch_zones(&self, deadline: Instant) -> Option<Result<Vec<Zone>, ApiError>> {
        let api = self.hetzner()?;
        Some(self.zones.refresh(api, deadline, None))
    }

    /// The zone that holds `fqdn` (see `ZoneCache`); `NoZone` in a dry run.
    pub fn zone_for(&self, fqdn: &str, deadline: Instant) -> Result<Zone, UpdateError> {
        match self.hetzner() {
            Some(api) => self.zones.lookup(api, fqdn, deadline),
            None => Err(UpdateError::NoZone(fqdn.to_string())),
        }
    }

    /// `hosts` grouped by their zone (hosts no zone holds are left out),
    /// from the zone list, fetched again once it is older than
    /// `ZONE_CACHE_TTL` (a stale list serves while Hetzner fails).
    pub fn hosts_by_zone<'h>(
        &self,
        hosts: &'h [String],
        deadline: Instant,
    ) -> Result<Vec<(Zone, Vec<&'h str>)>, ApiError> {
        let Some(api) = self.hetzner() else { return Ok(Vec::new()) };
        let (fetched, mut zones) = {
            let state = lock(&self.zones.state);
            (state.fetched, state.zones.clone())
        };
        if fetched.is_none_or(|at| at.elapsed() >= self.zones.ttl) {
            match self.zones.refresh(api, deadline, fetched) {
                Ok(fresh) => zones = fresh,
                Err(e) if fetched.is_none() => return Err(e),
                Err(e) => log::warn!("hetzner: cannot list zones ({e}); using the list from before"),
            }
        }
        let mut grouped: Vec<(Zone, Vec<&str>)> = Vec::new();
        for host in hosts {
            let Some(zone) = best_zone(&zones, host) else { continue };
            match grouped.iter_mut().find(|(z, _)| z.id == zone.id) {
                Some((_, list)) => list.push(host),
                None => grouped.push((zone, vec![host])),
            }
        }
        grouped.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(grouped)
    }

    /// The zone of `fqdn` from the cache, if known.
    pub fn cached_zone(&self, fqdn: &str) -> Option<Zone> {
        best_zone(&lock(&self.zones.state).zones, fqdn)
    }

    /// Has the zone list been read (always, in a dry run)?
    pub fn zones_known(&self) -> bool {
        self.hetzner().is_none() || lock(&self.zones.state).fetched.is_some()
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

/// One record of a zone listing that differs from what the server
/// confirmed for it.
struct Differing<'a> {
    host: &'a str,
    rtype: RecordType,
    expected: Confirmed,
    /// The RRSet's values in the listing; `None`: not there.
    found: Option<Vec<String>>,
    listed_at: Instant,
}

/// FQDN → zone, from the listing of all zones of the project (one call for
/// every host), refreshed after `ZONE_CACHE_TTL` or, for a host no zone
/// matches, at most once a minute.
struct ZoneCache {
    ttl: Duration,
    state: Mutex<ZoneState>,
    /// Held while fetching, so concurrent lookups wait for one fetch
    /// instead of each making their own.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct ZoneState {
    zones: Vec<Zone>,
    fetched: Option<Instant>,
}

const MISS_REFRESH: Duration = Duration::from_secs(60);

impl ZoneCache {
    fn lookup(&self, api: &Hetzner, fqdn: &str, deadline: Instant) -> Result<Zone, UpdateError> {
        let seen = {
            let state = lock(&self.state);
            if let Some(at) = state.fetched {
                let found = best_zone(&state.zones, fqdn);
                let age = at.elapsed();
                match found {
                    Some(z) if age < self.ttl => return Ok(z),
                    None if age < MISS_REFRESH.min(self.ttl) => return Err(UpdateError::NoZone(fqdn.to_string())),
                    _ => {}
                }
            }
            state.fetched
        };
        match self.refresh(api, deadline, seen) {
            Ok(zones) => {
                if let Some(z) = best_zone(&zones, fqdn) {
                    return Ok(z);
                }
            }
            // Listing unavailable: fall through to asking by name.
            Err(ApiError::Api { status: 404 | 405, .. }) => {}
            Err(e) => {
                // Hetzner is failing: a stale mapping beats no answer (zones
                // of a project almost never move).
                let stale = best_zone(&lock(&self.state).zones, fqdn);
                return stale.ok_or(UpdateError::Api(e));
            }
        }
        // Listing found nothing: ask for each candidate zone by name, longest
        // first (covers a project that lists zones it cannot match otherwise).
        let labels: Vec<&str> = fqdn.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            if let Some(zone) = api.get_zone(&candidate, deadline)? {
                lock(&self.state).zones.push(zone.clone());
                return Ok(zone);
            }
        }
        Err(UpdateError::NoZone(fqdn.to_string()))
    }

    /// Fetch the zone list unless another thread fetched it since `seen`.
    fn refresh(&self, api: &Hetzner, deadline: Instant, seen: Option<Instant>) -> Result<Vec<Zone>, ApiError> {
        let _one_fetch = lock(&self.fetching);
        {
            let state = lock(&self.state);
            if state.fetched.is_some() && state.fetched != seen {
                return Ok(state.zones.clone());
            }
        }
        let zones = api.list_zones(deadline)?;
        let mut state = lock(&self.state);
        state.zones = zones.clone();
        state.fetched = Some(Instant::now());
        Ok(zones)
    }
}

/// The longest zone name that contains `fqdn` on a label boundary.
fn best_zone(zones: &[Zone], fqdn: &str) -> Option<Zone> {
    zones.iter().filter(|z| fqdn::in_zone(fqdn, &z.name)).max_by_key(|z| z.name.len()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_zone_on_a_label_boundary_wins() {
        let zones = vec![
            Zone { id: 1, name: "example.com".into() },
            Zone { id: 2, name: "sub.example.com".into() },
            Zone { id: 3, name: "ample.com".into() },
        ];
        assert_eq!(best_zone(&zones, "a.sub.example.com").map(|z| z.id), Some(2));
        assert_eq!(best_zone(&zones, "b.example.com").map(|z| z.id), Some(1));
        assert_eq!(best_zone(&zones, "example.com").map(|z| z.id), Some(1));
        assert_eq!(best_zone(&zones, "badexample.com").map(|z| z.id), None);
    }

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
        let u = Updater::new(Backend::DryRun, &hosts, 60, Duration::ZERO, Duration::ZERO, Duration::ZERO, limit);
        let deadline = Instant::now() + Duration::from_secs(1);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let ip2: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(u.update("home.example.com", ip, deadline), Ok(Outcome::Created));
        assert_eq!(u.update("home.example.com", ip, deadline), Ok(Outcome::Unchanged));
        assert_eq!(u.update("home.example.com", ip2, deadline), Ok(Outcome::Updated));
        assert_eq!(u.confirmed("home.example.com", RecordType::A), Some(ip2));
        assert_eq!(u.confirmed("home.example.com", RecordType::Aaaa), None);
    }
}
