//! The reconcile's side of the updater: one listing of a zone compared
//! with what the server confirmed for each host and alias in it; a record
//! changed or deleted outside the server is drift, set back (under the
//! host's gate, so no update of the host runs meanwhile) unless
//! `RECONCILE_REPAIR=0` or the host is lost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::{comment, lock, slot, Confirmed, Target, Updater, COMMENT_TAG};
use crate::fqdn;
use crate::hetzner::{ApiError, Listed, Record, Zone};
use crate::metrics;
use crate::net::RecordType;
use crate::time::unix_now;

impl Updater {
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
        self.drifted(seen, expected, single, deadline)
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
    /// changed it after the listing. An alias only needs its host to hold
    /// that address still: the host's own confirmation is refreshed by
    /// this very listing, just before.
    fn confirm_if_unchanged(&self, host: &str, fqdn: &str, rtype: RecordType, seen: Confirmed, listed_at: Instant) {
        let mut cache = lock(&self.cache);
        let alias = fqdn != host;
        if alias && cache.get(host).and_then(|r| r[slot(rtype)]).map(|c| c.ip) != Some(seen.ip) {
            return;
        }
        let entry = &mut cache.entry(fqdn.to_string()).or_default()[slot(rtype)];
        let unchanged = match entry {
            None => alias,
            Some(c) => (alias || c.ip == seen.ip) && c.at.is_none_or(|at| at <= listed_at),
        };
        if unchanged {
            *entry = Some(Confirmed { ip: seen.ip, at: Some(Instant::now()), unix: unix_now() });
        }
    }

    /// Handle one record that differs from its host's confirmed address
    /// (`expected`), under the host's gate (no update of the host runs
    /// meanwhile). `None` when an update of the host changed the record
    /// after the listing.
    /// `single`: the one address of the listed RRSet, of its type.
    fn drifted(
        &self,
        seen: Differing<'_>,
        expected: Confirmed,
        single: Option<IpAddr>,
        deadline: Instant,
    ) -> Option<Drift> {
        let Differing { host, target, listed, listed_at, repair } = seen;
        let Target { api, zone, fqdn, name, rtype } = target;
        let _inside = self.gate(host).enter(deadline).ok()?;
        // An update after the listing changed the host's address, or wrote
        // this very record: the listing is out of date.
        if self.cached(host, rtype).map(|c| c.ip) != Some(expected.ip)
            || self.cached(fqdn, rtype).and_then(|c| c.at).is_some_and(|at| at > listed_at)
        {
            return None;
        }
        let found = listed.map(|r| r.values.clone());
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
        let ttl = self.ttl_for(fqdn).unwrap_or(self.record_ttl);
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
#[derive(Clone, Copy)]
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
