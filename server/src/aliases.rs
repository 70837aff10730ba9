//! `HOST_ALIASES` and `HOST_TTL`: names whose A and AAAA follow a
//! registered host's, and per-host TTLs.
//!
//! An alias (`example.com=home.example.com`, `*.home.example.com=home.example.com`)
//! has no key and never reports: each report of its host sets the alias's
//! records too, through the host's gate, cache and write limit, so an
//! unchanged report costs no call for the host or its aliases. The apex of
//! a zone and wildcard names (`*.`) are allowed.

use std::collections::BTreeMap;

use crate::fqdn;

/// `HOST_TTL`'s range, Hetzner's.
pub const MIN_TTL: u32 = 60;
pub const MAX_TTL: u32 = 2_147_483_647;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias, canonical (`*.` kept for a wildcard).
    pub name: String,
    /// The registered host it follows.
    pub host: String,
}

/// A host name as `HOST_ALIASES` takes it: canonical, or `*.` and a
/// canonical name.
pub fn canonical_name(input: &str) -> Result<String, String> {
    let input = input.trim();
    match input.strip_prefix("*.") {
        Some(rest) => {
            fqdn::canonical(rest).map(|n| format!("*.{n}")).map_err(|e| format!("{input:?} is not a host name: {e}"))
        }
        None => fqdn::canonical(input).map_err(|e| format!("{input:?} is not a host name: {e}")),
    }
}

/// `alias=host,…`. `address_hosts`: registered hosts that report
/// addresses; `other_names`: names that may not be aliases (ACME-only
/// hosts, LAN hosts). Every problem names the entry.
pub fn parse_aliases(text: &str, address_hosts: &[String], other_names: &[String]) -> Result<Vec<Alias>, Vec<String>> {
    let mut aliases: Vec<Alias> = Vec::new();
    let mut errors = Vec::new();
    let entries: Vec<&str> = text.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let alias_names: Vec<String> =
        entries.iter().filter_map(|e| e.split_once('=')).filter_map(|(n, _)| canonical_name(n).ok()).collect();
    for entry in entries {
        match parse_alias(entry, address_hosts, other_names, &alias_names) {
            Ok(a) if aliases.iter().any(|o| o.name == a.name) => {
                errors.push(format!("HOST_ALIASES: {entry:?}: {} is listed twice; give each alias one host", a.name))
            }
            Ok(a) => aliases.push(a),
            Err(e) => errors.push(format!("HOST_ALIASES: {entry:?}: {e}")),
        }
    }
    aliases.sort_by(|a, b| a.name.cmp(&b.name));
    if errors.is_empty() {
        Ok(aliases)
    } else {
        Err(errors)
    }
}

fn parse_alias(
    entry: &str,
    address_hosts: &[String],
    other_names: &[String],
    alias_names: &[String],
) -> Result<Alias, String> {
    let (name, host) = entry
        .split_once('=')
        .ok_or("write alias=host, e.g. www.example.com=home.example.com (the host must be in REGISTERED_FQDNS)")?;
    let name = canonical_name(name)?;
    let host = fqdn::canonical(host.trim()).map_err(|e| format!("{:?} is not a host name: {e}", host.trim()))?;
    if address_hosts.binary_search(&name).is_ok() || other_names.contains(&name) {
        return Err(format!("{name} is a host of its own (REGISTERED_FQDNS, ACME_ONLY_HOSTS or IPV6_LAN_HOSTS); an alias has no key and never reports"));
    }
    if alias_names.contains(&host) {
        return Err(format!("{host} is an alias itself; name the registered host it follows"));
    }
    if address_hosts.binary_search(&host).is_err() {
        return Err(format!(
            "{host} is not a registered host that reports addresses; an alias follows one from REGISTERED_FQDNS"
        ));
    }
    Ok(Alias { name, host })
}

/// `host=seconds,…` for registered hosts (their aliases get the same).
pub fn parse_ttls(text: &str, address_hosts: &[String]) -> Result<BTreeMap<String, u32>, Vec<String>> {
    let mut ttls = BTreeMap::new();
    let mut errors = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry
            .split_once('=')
            .ok_or_else(|| "write host=seconds, e.g. home.example.com=300".to_string())
            .and_then(|(host, secs)| {
                let host =
                    fqdn::canonical(host.trim()).map_err(|e| format!("{:?} is not a host name: {e}", host.trim()))?;
                if address_hosts.binary_search(&host).is_err() {
                    return Err(format!("{host} is not a registered host that reports addresses"));
                }
                let secs = secs.trim();
                let ttl = secs
                    .parse::<u32>()
                    .ok()
                    .filter(|t| (MIN_TTL..=MAX_TTL).contains(t))
                    .ok_or_else(|| format!("{secs:?} is not a TTL in {MIN_TTL}..={MAX_TTL} seconds"))?;
                Ok((host, ttl))
            });
        match parsed {
            Ok((host, _)) if ttls.contains_key(&host) => {
                errors.push(format!("HOST_TTL: {entry:?}: {host} is listed twice"))
            }
            Ok((host, ttl)) => {
                ttls.insert(host, ttl);
            }
            Err(e) => errors.push(format!("HOST_TTL: {entry:?}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(ttls)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["home.example.com".into(), "nas.example.org".into()]
    }

    #[test]
    fn aliases_take_apex_and_wildcard_names_and_follow_a_registered_host() {
        let list =
            "Example.com=home.example.com, *.home.example.com=home.example.com,www.example.com=home.example.com.";
        let aliases = parse_aliases(list, &hosts(), &[]).expect("valid");
        let names: Vec<&str> = aliases.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["*.home.example.com", "example.com", "www.example.com"]);
        assert!(aliases.iter().all(|a| a.host == "home.example.com"));
    }

    #[test]
    fn every_bad_alias_is_named() {
        for (list, why) in [
            ("www.example.com", "write alias=host"),
            ("nas.example.org=home.example.com", "is a host of its own"),
            ("cam.example.com=home.example.com", "is a host of its own"),
            ("www.example.com=other.example.com", "is not a registered host"),
            ("a.example.com=home.example.com,b.example.com=a.example.com", "a.example.com is an alias itself"),
            ("bad..name=home.example.com", "is not a host name"),
            ("*.*.example.com=home.example.com", "is not a host name"),
            ("www.example.com=home.example.com,www.example.com=nas.example.org", "listed twice"),
        ] {
            let errors = parse_aliases(list, &hosts(), &["cam.example.com".into()]).expect_err(list);
            assert!(errors.iter().any(|e| e.starts_with("HOST_ALIASES: ") && e.contains(why)), "{list}: {errors:?}");
        }
    }

    #[test]
    fn ttls_are_in_hetzners_range_for_registered_hosts() {
        let ttls = parse_ttls("home.example.com=300, nas.example.org=2147483647", &hosts()).expect("valid");
        assert_eq!(ttls.get("home.example.com"), Some(&300));
        for (list, why) in [
            ("home.example.com=59", "not a TTL"),
            ("home.example.com=2147483648", "not a TTL"),
            ("home.example.com=5m", "not a TTL"),
            ("other.example.com=300", "not a registered host"),
            ("home.example.com", "write host=seconds"),
            ("home.example.com=300,home.example.com=600", "listed twice"),
        ] {
            let errors = parse_ttls(list, &hosts()).expect_err(list);
            assert!(errors.iter().any(|e| e.starts_with("HOST_TTL: ") && e.contains(why)), "{list}: {errors:?}");
        }
    }
}
