//! Prefix mode: hosts on a router's LAN whose AAAA records follow the
//! router's delegated IPv6 prefix (`IPV6_LAN_HOSTS`), and which addresses a
//! record may hold at all (`ALLOW_PRIVATE_ADDRESSES`).
//!
//! A LAN host is `fqdn=interface-id@router`: its address is the prefix the
//! router reports with every bit beyond the prefix length taken from the
//! interface identifier, so `::5:ba98:76ff:fe54:3210` on a /56 lands in
//! subnet 5 and on a /64 in the prefix's own subnet. A MAC address
//! (`mac:00:11:32:12:34:56`) gives the modified EUI-64 identifier SLAAC
//! derives from it.

use std::fmt;
use std::net::Ipv6Addr;

use crate::fqdn;

/// Shortest and longest prefix a router may report.
pub const SHORTEST_PREFIX: u8 = 48;
pub const LONGEST_PREFIX: u8 = 64;
/// LAN hosts one router may carry (each change of prefix is one write each).
pub const MAX_PER_ROUTER: usize = 32;

/// One entry of `IPV6_LAN_HOSTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanHost {
    pub fqdn: String,
    /// The bits below the prefix; never any of the top 48.
    pub interface_id: u128,
    pub router: String,
}

impl LanHost {
    /// The host's address in `prefix`.
    pub fn address_in(&self, prefix: &Prefix) -> Ipv6Addr {
        let mask = u128::MAX << (128 - u32::from(prefix.len));
        Ipv6Addr::from((u128::from(prefix.net) & mask) | (self.interface_id & !mask))
    }
}

/// Read `IPV6_LAN_HOSTS` (entries separated by commas); `Err` is one line
/// per entry that cannot be used.
pub fn parse_lan_hosts(text: &str, registered: &[String]) -> Result<Vec<LanHost>, Vec<String>> {
    let mut hosts: Vec<LanHost> = Vec::new();
    let mut errors = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_entry(entry, registered) {
            Ok(h) if hosts.iter().any(|o| o.fqdn == h.fqdn) => {
                errors.push(format!("IPV6_LAN_HOSTS: {} is listed twice; give each LAN host one entry", h.fqdn))
            }
            Ok(h) => hosts.push(h),
            Err(e) => errors.push(format!("IPV6_LAN_HOSTS: {entry:?}: {e}")),
        }
    }
    for router in registered {
        let n = hosts.iter().filter(|h| &h.router == router).count();
        if n > MAX_PER_ROUTER {
            errors.push(format!("IPV6_LAN_HOSTS: {router} has {n} LAN hosts; at most {MAX_PER_ROUTER} are allowed"));
        }
    }
    hosts.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
    if errors.is_empty() {
        Ok(hosts)
    } else {
        Err(errors)
    }
}

fn parse_entry(entry: &str, registered: &[String]) -> Result<LanHost, String> {
    const SHAPE: &str =
        "write fqdn=interface-id@router-fqdn, e.g. nas.example.com=::211:32ff:fe12:3456@router.example.com";
    let (left, router) = entry.rsplit_once('@').ok_or(format!("no @router; {SHAPE}"))?;
    let (name, id) = left.split_once('=').ok_or(format!("no =interface-id; {SHAPE}"))?;
    let fqdn = fqdn::canonical(name.trim()).map_err(|e| format!("{:?} is not a host name: {e}", name.trim()))?;
    let router = fqdn::canonical(router.trim()).map_err(|e| format!("{:?} is not a host name: {e}", router.trim()))?;
    if registered.binary_search(&router).is_err() {
        return Err(format!("the router {router} is not in REGISTERED_FQDNS; it reports the prefix with its own key"));
    }
    if fqdn == router {
        return Err(format!("{fqdn} is the router itself; its own report sets its address"));
    }
    let interface_id = interface_id(id.trim())?;
    Ok(LanHost { fqdn, interface_id, router })
}

/// `::211:32ff:fe12:3456` (the low bits of an IPv6 address) or
/// `mac:00:11:32:12:34:56` (modified EUI-64).
fn interface_id(text: &str) -> Result<u128, String> {
    let id = match text.strip_prefix("mac:").or_else(|| text.strip_prefix("MAC:")) {
        Some(mac) => eui64(mac).ok_or(format!("{mac:?} is not a MAC address like 00:11:32:12:34:56"))?,
        None => {
            let ip: Ipv6Addr = text.parse().map_err(|_| {
                format!("{text:?} is not an interface identifier like ::211:32ff:fe12:3456 or mac:00:11:32:12:34:56")
            })?;
            u128::from(ip)
        }
    };
    if id >> (128 - u32::from(SHORTEST_PREFIX)) != 0 {
        return Err(format!("{text:?} sets bits of the first {SHORTEST_PREFIX}, which always come from the router's prefix; give only the low bits (::…)"));
    }
    if id == 0 {
        return Err(format!("{text:?} is all zeros (the subnet-router anycast address)"));
    }
    Ok(id)
}

/// The modified EUI-64 interface identifier of a MAC address: `ff:fe` in
/// the middle and the universal/local bit flipped (RFC 4291, appendix A).
fn eui64(mac: &str) -> Option<u128> {
    let bytes: Vec<u8> = mac.split([':', '-']).map(|b| u8::from_str_radix(b, 16).ok()).collect::<Option<_>>()?;
    if bytes.len() != 6 || mac.split([':', '-']).any(|b| b.len() != 2) {
        return None;
    }
    let id = [bytes[0] ^ 0x02, bytes[1], bytes[2], 0xff, 0xfe, bytes[3], bytes[4], bytes[5]];
    Some(u128::from(u64::from_be_bytes(id)))
}

/// A delegated prefix a router reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub net: Ipv6Addr,
    pub len: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Read a reported prefix: `2001:db8:1:200::/56`, /48 to /64, global
/// unicast. `Err` says what is wrong.
pub fn parse_prefix(text: &str) -> Result<Prefix, String> {
    let shown: String = text.chars().take(64).collect();
    let (addr, len) =
        text.trim().split_once('/').ok_or(format!("{shown:?} is not a prefix like 2001:db8:1:200::/56"))?;
    let net: Ipv6Addr = addr.trim().parse().map_err(|_| format!("{shown:?} is not an IPv6 prefix"))?;
    let len: u8 = len.trim().parse().map_err(|_| format!("{shown:?} has no prefix length"))?;
    if !(SHORTEST_PREFIX..=LONGEST_PREFIX).contains(&len) {
        return Err(format!("{shown:?}: a delegated prefix is /{SHORTEST_PREFIX} to /{LONGEST_PREFIX}, not /{len}"));
    }
    if u128::from(net) >> 125 != 1 {
        return Err(format!("{shown:?} is not a global unicast prefix (2000::/3)"));
    }
    Ok(Prefix { net, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Vec<String> {
        vec!["router.example.com".to_string()]
    }

    #[test]
    fn entries_parse_and_place_hosts_in_their_subnet() {
        let hosts = parse_lan_hosts(
            "nas.example.com=::211:32ff:fe12:3456@router.example.com, cam.example.com=::5:ba98:76ff:fe54:3210@Router.Example.com., tv.example.com=mac:00:11:32:12:34:56@router.example.com",
            &registered(),
        )
        .expect("valid");
        let names: Vec<&str> = hosts.iter().map(|h| h.fqdn.as_str()).collect();
        assert_eq!(names, ["cam.example.com", "nas.example.com", "tv.example.com"]);
        let p56 = parse_prefix("2001:db8:1:200::/56").expect("prefix");
        let p64 = parse_prefix("2001:db8:1:2ff::/64").expect("prefix");
        let at = |i: usize, p: &Prefix| hosts[i].address_in(p).to_string();
        assert_eq!(at(0, &p56), "2001:db8:1:205:ba98:76ff:fe54:3210", "subnet 5 of the /56");
        assert_eq!(at(0, &p64), "2001:db8:1:2ff:ba98:76ff:fe54:3210", "a /64 keeps its own subnet");
        assert_eq!(at(1, &p56), "2001:db8:1:200:211:32ff:fe12:3456");
        assert_eq!(at(2, &p64), "2001:db8:1:2ff:211:32ff:fe12:3456", "modified EUI-64 of 00:11:32:12:34:56");
    }

    #[test]
    fn bad_entries_are_refused_one_line_each() {
        let errors = parse_lan_hosts(
            "nas.example.com=::1@other.example.com,x.example.com@router.example.com,a.example.com=2001:db8::1@router.example.com,b.example.com=mac:00:11@router.example.com,c.example.com=::1@router.example.com,c.example.com=::2@router.example.com,router.example.com=::1@router.example.com,d.example.com=::@router.example.com",
            &registered(),
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 7, "{errors:#?}");
        for (line, text) in errors.iter().zip([
            "router other.example.com is not in REGISTERED_FQDNS",
            "no =interface-id",
            "sets bits of the first 48",
            "is not a MAC address",
            "c.example.com is listed twice",
            "is the router itself",
            "all zeros",
        ]) {
            assert!(line.starts_with("IPV6_LAN_HOSTS: ") && line.contains(text), "{line} lacks {text}");
        }
    }

    #[test]
    fn prefixes_must_be_delegated_global_unicast() {
        assert!(parse_prefix("2001:db8:1:200::/56").is_ok());
        assert!(parse_prefix("2a01:4f8:c0c::/48").is_ok());
        for (bad, why) in [
            ("2001:db8::/65", "/48 to /64"),
            ("2001:db8::/40", "/48 to /64"),
            ("fd00:1::/56", "global unicast"),
            ("fe80::/64", "global unicast"),
            ("2001:db8::1", "not a prefix"),
            ("banana/56", "not an IPv6 prefix"),
            ("192.0.2.0/24", "not an IPv6 prefix"),
        ] {
            let e = parse_prefix(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
