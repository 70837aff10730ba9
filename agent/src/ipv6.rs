//! Which IPv6 address of this host to publish.
//!
//! Outgoing IPv6 connections usually leave from a temporary privacy address
//! (RFC 8981) that changes daily; the address the server sees is then the
//! wrong one to publish. On Linux the kernel lists every address with its
//! flags in `/proc/net/if_inet6` (`address ifindex prefixlen scope flags
//! name`, all hex but the name); the stable global address is the one that
//! is global unicast (2000::/3) and neither temporary, deprecated,
//! tentative nor failed duplicate detection.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// Where the kernel lists this host's IPv6 addresses.
pub const IF_INET6: &str = "/proc/net/if_inet6";

// `ifa_flags` as the file shows them (the low 8 bits).
const TEMPORARY: u8 = 0x01;
const OPTIMISTIC: u8 = 0x04;
const DAD_FAILED: u8 = 0x08;
const DEPRECATED: u8 = 0x20;
const TENTATIVE: u8 = 0x40;
const PERMANENT: u8 = 0x80;

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub addr: Ipv6Addr,
    pub scope: u8,
    pub flags: u8,
    pub interface: String,
}

/// Read the file's text; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let hex = f.next()?;
            let addr = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32)?);
            let (_index, _len) = (f.next()?, f.next()?);
            let scope = u8::from_str_radix(f.next()?, 16).ok()?;
            let flags = u8::from_str_radix(f.next()?, 16).ok()?;
            let interface = f.next()?.to_string();
            Some(Entry { addr, scope, flags, interface })
        })
        .collect()
}

/// Why an address is not the one to publish, if it is not.
fn unsuitable(e: &Entry) -> Option<&'static str> {
    let bits = u128::from(e.addr);
    if bits >> 121 == 0x7e {
        Some("unique-local")
    } else if bits >> 125 != 1 || e.scope != 0 {
        Some(if bits >> 118 == 0x3fa { "link-local" } else { "not global" })
    } else if e.flags & TEMPORARY != 0 {
        Some("temporary (privacy extensions)")
    } else if e.flags & DEPRECATED != 0 {
        Some("deprecated")
    } else if e.flags & (TENTATIVE | DAD_FAILED) != 0 {
        Some("not yet usable (duplicate address detection)")
    } else {
        None
    }
}

/// What choosing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The stable global address to publish.
    Stable(Ipv6Addr),
    /// No global IPv6 address at all: this host has no IPv6 to report.
    NoGlobal,
    /// Global addresses, but none fit to publish; the text says why, in words.
    NoneStable(String),
}

/// The stable global address, on `interface` when given. Among several, a
/// configured (permanent) one before others, and one whose duplicate
/// detection is done before an optimistic one; otherwise the kernel's order.
pub fn choose(entries: &[Entry], interface: Option<&str>) -> Choice {
    let on_interface: Vec<&Entry> = entries.iter().filter(|e| interface.is_none_or(|i| e.interface == i)).collect();
    let best = on_interface
        .iter()
        .filter(|e| unsuitable(e).is_none())
        .min_by_key(|e| (e.flags & PERMANENT == 0, e.flags & OPTIMISTIC != 0));
    if let Some(e) = best {
        return Choice::Stable(e.addr);
    }
    let global: Vec<&&Entry> = on_interface.iter().filter(|e| u128::from(e.addr) >> 125 == 1).collect();
    if global.is_empty() && interface.is_none() {
        return Choice::NoGlobal;
    }
    let mut text = match interface {
        Some(i) => format!("no stable global IPv6 address on IPV6_INTERFACE={i:?}"),
        None => "no stable global IPv6 address on this host".to_string(),
    };
    let listed: Vec<&&Entry> = on_interface.iter().filter(|e| e.scope == 0).take(4).collect();
    for (i, e) in listed.iter().enumerate() {
        let _ = write!(
            text,
            "{}{} on {} is {}",
            if i == 0 { ": " } else { ", " },
            e.addr,
            e.interface,
            unsuitable(e).unwrap_or("usable")
        );
    }
    text.push_str("; set IP to the address to publish, IPV6_INTERFACE to the interface that has it, or IPV6_SOURCE=connection to publish the address the server sees");
    Choice::NoneStable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a Linux host with SLAAC, privacy extensions, a ULA,
    /// a deprecated address of an old prefix and a tentative one.
    const CAPTURED: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000021132fffe123456 02 40 20 80     eth0
20010db800010000021132fffe123456 02 40 00 00     eth0
20010db80001000024a15c9b4e2f7d10 02 40 00 01     eth0
20010db80000ff00021132fffe123456 02 40 00 20     eth0
fd00000000000001021132fffe123456 02 40 00 00     eth0
20010db80002000000000000000000aa 03 40 00 40    wlan0
";

    fn captured() -> Vec<Entry> {
        parse(CAPTURED)
    }

    #[test]
    fn the_file_parses() {
        let entries = captured();
        assert_eq!(entries.len(), 7);
        assert_eq!(entries[0].addr, Ipv6Addr::LOCALHOST);
        assert_eq!((entries[3].flags, entries[3].interface.as_str()), (0x01, "eth0"));
        assert_eq!(parse("garbage\n0123 1 2 3\n"), Vec::new());
    }

    #[test]
    fn the_stable_global_address_wins_over_temporary_deprecated_ula_and_link_local() {
        let entries = captured();
        assert_eq!(choose(&entries, None), Choice::Stable("2001:db8:1:0:211:32ff:fe12:3456".parse().expect("ip")));
        assert_eq!(choose(&entries, Some("eth0")), choose(&entries, None));
        // wlan0's only global address is still tentative.
        match choose(&entries, Some("wlan0")) {
            Choice::NoneStable(text) => {
                assert!(text.contains("IPV6_INTERFACE=\"wlan0\""), "{text}");
                assert!(text.contains("2001:db8:2::aa on wlan0 is not yet usable"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_temporary_addresses_are_named_in_words() {
        let entries: Vec<Entry> = captured().into_iter().filter(|e| e.flags & TEMPORARY != 0 || e.scope != 0).collect();
        match choose(&entries, None) {
            Choice::NoneStable(text) => {
                assert!(
                    text.contains("2001:db8:1:0:24a1:5c9b:4e2f:7d10 on eth0 is temporary (privacy extensions)"),
                    "{text}"
                );
                assert!(text.contains("set IP"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let link_local_only: Vec<Entry> = captured().into_iter().filter(|e| e.scope != 0).collect();
        assert_eq!(choose(&link_local_only, None), Choice::NoGlobal);
        assert_eq!(choose(&[], None), Choice::NoGlobal);
    }

    #[test]
    fn a_configured_address_is_preferred_to_an_autoconfigured_one() {
        let mut entries = captured();
        entries.push(Entry {
            addr: "2001:db8:1::53".parse().expect("ip"),
            scope: 0,
            flags: PERMANENT,
            interface: "eth0".into(),
        });
        assert_eq!(choose(&entries, None), Choice::Stable("2001:db8:1::53".parse().expect("ip")));
    }
}
