//! A router's IPv6 prefix for its LAN hosts (`IPV6_LAN_HOSTS`): each LAN
//! host's AAAA is its interface identifier in the prefix, set in parallel
//! through the host's own gate, cache and write limit.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::PoisonError;
use std::time::Instant;

use super::App;
use crate::hostbook::Cause;
use crate::lan::{LanHost, Prefix};
use crate::metrics::Endpoint;
use crate::time::unix_now;
use crate::updater::{Outcome, UpdateError};

/// A LAN host's last update through its router's prefix, for `/status`.
#[derive(Debug, Clone, Default)]
pub struct LanState {
    pub prefix: Option<String>,
    /// Unix seconds of the last prefix report that set (or confirmed) it.
    pub at: Option<u64>,
    pub error: Option<String>,
    /// Unix seconds of the last prefix report that changed its AAAA, and
    /// how many did (for a LAN host that is also a registered host the
    /// host book counts every change, its own reports' too).
    pub last_change: Option<u64>,
    pub changes: u64,
}

/// What a router's prefix did for one of its LAN hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanResult {
    pub fqdn: String,
    pub ip: std::net::Ipv6Addr,
    pub result: Result<Outcome, UpdateError>,
}

impl App {
    /// Set the AAAA of every LAN host of `router` into `prefix`, in
    /// parallel (each host through its own gate, cache and write limit, as
    /// any host). Logged and counted; the caller's answer stays the
    /// router's own.
    pub fn set_prefix(&self, router: &str, prefix: Prefix, deadline: Instant) -> Vec<LanResult> {
        let hosts: Vec<&LanHost> = self.config.lan_hosts_of(router).collect();
        if hosts.is_empty() {
            log::debug!("{router} sent the prefix {prefix}, but IPV6_LAN_HOSTS names no LAN host behind it");
            return Vec::new();
        }
        let results: Vec<LanResult> = std::thread::scope(|s| {
            let running: Vec<_> = hosts
                .iter()
                .map(|h| {
                    let ip = h.address_in(&prefix);
                    let cause = Cause::Prefix { router: router.to_string() };
                    (h, ip, s.spawn(move || self.set_address(&h.fqdn, IpAddr::V6(ip), cause, deadline)))
                })
                .collect();
            running
                .into_iter()
                .map(|(h, ip, t)| {
                    let result = t.join().unwrap_or(Err(UpdateError::Busy));
                    LanResult { fqdn: h.fqdn.clone(), ip, result }
                })
                .collect()
        });
        let now = unix_now();
        let mut lan = self.lan.lock().unwrap_or_else(PoisonError::into_inner);
        for r in &results {
            let outcome = match &r.result {
                Ok(o) => {
                    log::info!("{router} prefix {prefix}: {} AAAA {} {}", r.fqdn, r.ip, o.as_str());
                    o.as_str()
                }
                Err(e) => {
                    log::error!("{router} prefix {prefix}: {} AAAA {}: {e}", r.fqdn, r.ip);
                    "error"
                }
            };
            self.counters.count(Endpoint::Ipv6Prefix, outcome);
            let state = lan.entry(r.fqdn.clone()).or_default();
            state.prefix = Some(prefix.to_string());
            state.at = Some(now);
            state.error = r.result.as_ref().err().map(ToString::to_string);
            if r.result.as_ref().is_ok_and(|o| *o != Outcome::Unchanged) {
                state.last_change = Some(now);
                state.changes += 1;
            }
        }
        results
    }

    /// Every LAN host's state, by name.
    pub fn lan_states(&self) -> BTreeMap<String, LanState> {
        self.lan.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
