//! Which names the server serves: `REGISTERED_FQDNS`, `ACME_ONLY_HOSTS`,
//! `IPV6_LAN_HOSTS`, `HOST_ALIASES` and `HOST_TTL`, checked against each
//! other.

use std::collections::BTreeMap;

use crate::aliases::{self, Alias};
use crate::env::Env;
use crate::fqdn;
use crate::lan::{self, LanHost};

/// The names, as `Config` holds them.
pub(super) struct Hosts {
    pub registered: Vec<String>,
    pub acme_only: Vec<String>,
    pub lan_hosts: Vec<LanHost>,
    pub aliases: Vec<Alias>,
    pub host_ttls: BTreeMap<String, u32>,
}

pub(super) fn hosts(env: &mut Env<'_>) -> Hosts {
    let mut registered = registered_hosts(env);
    let acme_only = host_list(env, "ACME_ONLY_HOSTS");
    for host in &acme_only {
        if registered.contains(host) {
            env.error(format!("ACME_ONLY_HOSTS: {host} is in REGISTERED_FQDNS too; list it in one of them"));
        }
    }
    registered.extend(acme_only.iter().cloned());
    registered.sort();
    registered.dedup();
    let lan_hosts = parsed(env, "IPV6_LAN_HOSTS", |t| lan::parse_lan_hosts(t, &registered));
    let (aliases, host_ttls) = aliases_and_ttls(env, &registered, &acme_only, &lan_hosts);
    Hosts { registered, acme_only, lan_hosts, aliases, host_ttls }
}

/// `HOST_ALIASES` and `HOST_TTL` (see `aliases`); every bad entry named.
fn aliases_and_ttls(
    env: &mut Env<'_>,
    registered: &[String],
    acme_only: &[String],
    lan_hosts: &[LanHost],
) -> (Vec<Alias>, BTreeMap<String, u32>) {
    let address_hosts: Vec<String> = registered.iter().filter(|h| !acme_only.contains(h)).cloned().collect();
    let others: Vec<String> = acme_only.iter().cloned().chain(lan_hosts.iter().map(|h| h.fqdn.clone())).collect();
    let aliases = parsed(env, "HOST_ALIASES", |t| aliases::parse_aliases(t, &address_hosts, &others));
    let ttls = parsed(env, "HOST_TTL", |t| aliases::parse_ttls(t, &address_hosts));
    (aliases, ttls)
}

/// A list setting read by `parse`: empty when unset; each problem it
/// finds is one error (which names the setting and the entry).
fn parsed<T: Default>(env: &mut Env<'_>, var: &str, parse: impl Fn(&str) -> Result<T, Vec<String>>) -> T {
    match env.text(var).map(|t| parse(&t)) {
        None => T::default(),
        Some(Ok(value)) => value,
        Some(Err(errors)) => {
            for e in errors {
                env.error(e);
            }
            T::default()
        }
    }
}

/// A comma-separated list of host names, canonical, sorted, no duplicates.
pub(super) fn host_list(env: &mut Env<'_>, var: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    for item in env.text(var).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match fqdn::canonical(item) {
            Ok(host) => hosts.push(host),
            Err(e) => env.error(format!("{var}: {item:?} is not a host name: {e}")),
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

fn registered_hosts(env: &mut Env<'_>) -> Vec<String> {
    let (var, raw) = match (env.text("REGISTERED_FQDNS"), env.text("ALLOWED_FQDNS")) {
        (Some(v), old) => {
            if old.is_some() {
                env.warn("ALLOWED_FQDNS is ignored because REGISTERED_FQDNS is set; remove ALLOWED_FQDNS");
            }
            ("REGISTERED_FQDNS", v)
        }
        (None, Some(v)) => {
            env.warn("ALLOWED_FQDNS is deprecated; rename it to REGISTERED_FQDNS");
            ("ALLOWED_FQDNS", v)
        }
        (None, None) => {
            env.warn("REGISTERED_FQDNS is empty: no host may be updated and every update answers nohost; list your hosts, comma-separated");
            return Vec::new();
        }
    };
    let mut hosts = Vec::new();
    for item in raw.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
        match fqdn::canonical(item) {
            Ok(host) if !hosts.contains(&host) => hosts.push(host),
            Ok(_) => {}
            Err(e) => env.error(format!("{var}: {item:?} is not a host name: {e}")),
        }
    }
    hosts.sort();
    hosts
}
