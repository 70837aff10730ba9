//! Address types every layer shares: the record type of an address
//! (`A`/`AAAA`), an address range (`10.0.0.0/8`) for `TRUSTED_PROXIES`,
//! and the address policy: which addresses the internet can never reach.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Record type of an address record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        }
    }

    /// `A` or `AAAA`, in any case.
    pub fn parse(text: &str) -> Option<RecordType> {
        if text.eq_ignore_ascii_case("A") {
            Some(RecordType::A)
        } else if text.eq_ignore_ascii_case("AAAA") {
            Some(RecordType::Aaaa)
        } else {
            None
        }
    }

    /// The type of record that holds `ip`.
    pub fn of(ip: IpAddr) -> RecordType {
        if ip.is_ipv4() {
            RecordType::A
        } else {
            RecordType::Aaaa
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address range such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `addr/prefix`, or a bare address (a range of one).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Is `ip` in the range? IPv4-mapped IPv6 counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (net, width) = bits(self.addr);
        let (host, host_width) = bits(ip);
        if width != host_width {
            return false;
        }
        // IPv4 sits in the top 32 bits, so a prefix counts from the top either way.
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        net & mask == host & mask
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an address can never be reached from the internet, if it cannot.
/// Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
/// 2001:db8::/32) pass, so examples work.
pub fn unreachable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => unreachable_v4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if v6.to_ipv4_mapped().is_some() {
                Some("an IPv4-mapped IPv6 address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_loopback() {
                Some("a loopback address")
            } else if bits >> 121 == 0x7e {
                Some("a unique-local address (fc00::/7)")
            } else if bits >> 118 == 0x3fa {
                Some("a link-local address")
            } else if bits >> 120 == 0xff {
                Some("a multicast address")
            } else if bits >> 125 != 1 {
                Some("not a global unicast address (2000::/3)")
            } else {
                None
            }
        }
    }
}

fn unreachable_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_private() {
        Some("a private address (RFC 1918)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("this router is behind carrier-grade NAT (100.64.0.0/10)")
    } else if v4.is_loopback() {
        Some("a loopback address")
    } else if v4.is_link_local() {
        Some("a link-local address")
    } else if v4.is_broadcast() {
        Some("the broadcast address")
    } else if v4.is_multicast() {
        Some("a multicast address")
    } else if a == 0 {
        Some("an unspecified address (0.0.0.0/8)")
    } else if a >= 240 {
        Some("a reserved address (240.0.0.0/4)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_addresses_are_named_and_documentation_ranges_pass() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.12.9",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd12::1",
            "ff02::1",
            "::ffff:192.0.2.1",
            "64:ff9b::1",
        ] {
            assert!(unreachable(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        assert!(unreachable("100.64.12.9".parse().expect("ip")).is_some_and(|r| r.contains("carrier-grade NAT")));
        for ip in ["192.0.2.1", "198.51.100.7", "203.0.113.9", "2001:db8::1", "8.8.8.8", "2a01:4f8::1", "100.128.0.1"] {
            assert_eq!(unreachable(ip.parse().expect("ip")), None, "{ip}");
        }
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains("10.200.1.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(!net.contains("::a00:1".parse().expect("ip")), "IPv6 is never in an IPv4 range");
        let v6 = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(v6.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert_eq!(Cidr::parse("0.0.0.0/0").map(|c| c.contains("8.8.8.8".parse().expect("ip"))), Some(true));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("::1").map(|c| c.prefix), Some(128));
        assert_eq!(Cidr::parse("192.0.2.0/24").map(|c| c.to_string()).as_deref(), Some("192.0.2.0/24"));
    }
}
