//! Writing one record at Hetzner at the lowest cost: a known record is set
//! without a read, an unknown one read first and created when missing, and
//! a record with a `HOST_TTL` given that TTL once.

use std::net::IpAddr;
use std::time::Instant;

use super::{comment, lock, Backend, Outcome, Target, UpdateError, Updater, Written};
use crate::fqdn;
use crate::hetzner::{ApiError, Record};
use crate::net::RecordType;

impl Updater {
    /// Write `ip` into each name's record (a host, then its aliases) that
    /// does not hold it freshly confirmed, up to the first failure.
    pub(super) fn write_all(&self, names: &[&str], rtype: RecordType, ip: IpAddr, deadline: Instant) -> Vec<Written> {
        let mut writes = Vec::with_capacity(names.len());
        for &name in names {
            let known = self.confirmed(name, rtype);
            // A record confirmed to hold `ip` costs nothing (the host's, when
            // only an alias needs writing).
            if self.cached_unchanged(name, rtype, ip).is_some() {
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
                let ttl = self.ttl_for(fqdn).unwrap_or(self.record_ttl);
                match api.create_rrset(zone.id, &name, rtype, ttl, record, deadline) {
                    Ok(()) => {
                        log::info!("hetzner: created {fqdn} {rtype} {ip} ttl {ttl}");
                        self.ttl_is_right(fqdn, rtype);
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

    /// The `HOST_TTL` of a host or alias (its host's), if it has one.
    pub(super) fn ttl_for(&self, name: &str) -> Option<u32> {
        self.ttls.get(self.host_of(name)).copied()
    }

    /// Note that a record's TTL was seen equal to its `HOST_TTL` (or set so).
    fn ttl_is_right(&self, name: &str, rtype: RecordType) {
        lock(&self.ttl_right).insert((name.to_string(), rtype));
    }

    /// After a write: give the record its `HOST_TTL` if it has one and
    /// `found` (the TTL read; `None` when not read) differs, or, unread,
    /// when it was not seen right since the start — one call at most,
    /// never one per report. A failure is logged, never the report's: the
    /// address is written, and the reconcile tries again.
    pub(super) fn keep_ttl(&self, target: &Target<'_>, found: Option<Option<u32>>, deadline: Instant) {
        let Some(ttl) = self.ttl_for(target.fqdn) else { return };
        let right = match found {
            Some(found) => found == Some(ttl),
            None => lock(&self.ttl_right).contains(&(target.fqdn.to_string(), target.rtype)),
        };
        if right {
            self.ttl_is_right(target.fqdn, target.rtype);
            return;
        }
        let (fqdn, rtype) = (target.fqdn, target.rtype);
        match target.api.change_ttl(target.zone.id, target.name, rtype, ttl, deadline) {
            Ok(()) => {
                log::info!("hetzner: {fqdn} {rtype} has the TTL {ttl} now (HOST_TTL)");
                self.ttl_is_right(fqdn, rtype);
            }
            Err(e) => log::warn!("hetzner: cannot change the TTL of {fqdn} {rtype} to {ttl} (HOST_TTL): {e}"),
        }
    }
}
