//! The dyndns2 protocol as routers, ddclient and inadyn speak it.
//!
//! `Answer` is the protocol: its `Display` is the exact text of one answer
//! line. Error lines are the bare code because inadyn looks for substrings
//! such as `ok` or `good` anywhere in the body. The query parser never
//! fails: what it cannot decode it keeps as it is, and bad values are
//! reported by the functions that interpret them.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most host names one request may update (the protocol's limit).
pub const MAX_HOSTS: usize = 20;

/// One answer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The record was changed; the address list (`v4`, `v6` or `v4,v6`).
    Good(String),
    /// The record already held the address.
    NoChg(String),
    /// Missing or wrong credentials.
    BadAuth,
    /// Not a fully-qualified host name, or no host name given.
    NotFqdn,
    /// The host is not registered on this server.
    NoHost,
    /// More than `MAX_HOSTS` host names.
    NumHost,
    /// The source failed to authenticate too often and is refused for a while.
    Abuse,
    /// Hetzner refused the change for a reason retrying will not fix
    /// (no zone, read-only token, secondary zone).
    DnsErr,
    /// Hetzner failed or is unreachable; try again later.
    ServerError,
    /// `myip` (or another address parameter) is not a single IP address,
    /// for example a Fritz!Box `<ip6lanprefix>` in CIDR form. Not part of
    /// the original protocol; clients treat it like any other failure.
    BadIp,
}

impl Answer {
    /// The answer's code, the first word of its line (`good`, `911`…).
    pub fn code(&self) -> &'static str {
        match self {
            Answer::Good(_) => "good",
            Answer::NoChg(_) => "nochg",
            Answer::BadAuth => "badauth",
            Answer::NotFqdn => "notfqdn",
            Answer::NoHost => "nohost",
            Answer::NumHost => "numhost",
            Answer::Abuse => "abuse",
            Answer::DnsErr => "dnserr",
            Answer::ServerError => "911",
            Answer::BadIp => "badip",
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Good(ips) | Answer::NoChg(ips) => write!(f, "{} {ips}", self.code()),
            _ => f.write_str(self.code()),
        }
    }
}

/// Decoded query (or form body) parameters, in order.
#[derive(Debug, Default, Clone)]
pub struct Params<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Params<'a> {
    /// Borrowed from `query` where nothing needed decoding (the usual case).
    pub fn parse(query: &'a str) -> Params<'a> {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let mut key = decode(k);
                if key.bytes().any(|b| b.is_ascii_uppercase()) {
                    key.to_mut().make_ascii_lowercase();
                }
                (key, decode(v))
            })
            .collect();
        Params(pairs)
    }

    pub fn extend(&mut self, other: Params<'a>) {
        self.0.extend(other.0);
    }

    /// Every (name, value) pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The first value of `name`, trimmed, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    fn all<'s>(&'s self, names: &'s [&str]) -> impl Iterator<Item = &'s str> {
        self.0.iter().filter(move |(k, _)| names.contains(&k.as_ref())).map(|(_, v)| v.as_ref())
    }

    /// The host names of `hostname` (comma-separated; empty items dropped).
    pub fn hostnames(&self) -> Vec<String> {
        self.hostname_items().map(String::from).collect()
    }

    /// `hostnames` without copying them.
    pub fn hostname_items(&self) -> impl Iterator<Item = &str> {
        self.all(&["hostname"]).flat_map(|v| v.split(',')).map(str::trim).filter(|h| !h.is_empty())
    }

    /// Credentials given in the query (for routers that cannot do basic auth).
    pub fn credentials(&self) -> Option<(String, String)> {
        let user = self.get("user").or_else(|| self.get("username"))?;
        let pass = self.get("pass").or_else(|| self.get("password"))?;
        Some((user.to_string(), pass.to_string()))
    }

    /// The addresses the request asks for; `None` when it names none, so the
    /// connection's address is used.
    pub fn addresses(&self) -> Result<Option<Addresses>, AddressError> {
        let mut out = Addresses::default();
        let names = ["myip", "myipv4", "ip", "myipv6", "ipv6", "myip6"];
        for value in self.all(&names).flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
            out.add(parse_ip(value)?)?;
        }
        Ok((out.v4.is_some() || out.v6.is_some()).then_some(out))
    }
}

/// The addresses one request sets: at most one per family.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Addresses {
    pub fn add(&mut self, ip: IpAddr) -> Result<(), AddressError> {
        match ip {
            IpAddr::V4(a) if self.v4.is_some_and(|b| b != a) => Err(AddressError::TwoOfAFamily),
            IpAddr::V6(a) if self.v6.is_some_and(|b| b != a) => Err(AddressError::TwoOfAFamily),
            IpAddr::V4(a) => {
                self.v4 = Some(a);
                Ok(())
            }
            IpAddr::V6(a) => {
                self.v6 = Some(a);
                Ok(())
            }
        }
    }

    pub fn list(&self) -> Vec<IpAddr> {
        self.iter().collect()
    }

    /// IPv4 first, then IPv6.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + Clone {
        self.v4.map(IpAddr::V4).into_iter().chain(self.v6.map(IpAddr::V6))
    }
}

/// Why an address parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// A prefix such as `2001:db8::/64` (Fritz!Box `<ip6lanprefix>`).
    Cidr(String),
    /// Not an IP address.
    Invalid(String),
    /// Two different addresses of the same family.
    TwoOfAFamily,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Cidr(v) => write!(f, "{v:?} is a network prefix, not an address"),
            AddressError::Invalid(v) => write!(f, "{v:?} is not an IP address"),
            AddressError::TwoOfAFamily => write!(f, "two different addresses of the same family"),
        }
    }
}

/// Parse one address; IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes IPv4.
pub fn parse_ip(value: &str) -> Result<IpAddr, AddressError> {
    let value = value.trim();
    if value.contains('/') {
        return Err(AddressError::Cidr(clip(value)));
    }
    let bare = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    bare.parse::<IpAddr>().map(|ip| ip.to_canonical()).map_err(|_| AddressError::Invalid(clip(value)))
}

fn clip(value: &str) -> String {
    value.chars().take(64).collect()
}

/// `%XX` and `+` decoding. Invalid escapes stay as they are; bytes that are
/// not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    decode(s).into_owned()
}

/// `percent_decode`, borrowing when there is nothing to decode.
fn decode(s: &str) -> Cow<'_, str> {
    // Bytes, not chars: a char-set search decodes UTF-8 and cost more
    // than the rest of the query parsing (callgrind).
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let plus_as_space = s.replace('+', " ");
    Cow::Owned(percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_the_exact_wire_text() {
        assert_eq!(Answer::Good("192.0.2.1".into()).to_string(), "good 192.0.2.1");
        assert_eq!(Answer::Good("192.0.2.1,2001:db8::1".into()).to_string(), "good 192.0.2.1,2001:db8::1");
        assert_eq!(Answer::NoChg("192.0.2.1".into()).to_string(), "nochg 192.0.2.1");
        let codes = [
            (Answer::BadAuth, "badauth"),
            (Answer::NotFqdn, "notfqdn"),
            (Answer::NoHost, "nohost"),
            (Answer::NumHost, "numhost"),
            (Answer::Abuse, "abuse"),
            (Answer::DnsErr, "dnserr"),
            (Answer::ServerError, "911"),
            (Answer::BadIp, "badip"),
        ];
        for (answer, text) in codes {
            assert_eq!(answer.to_string(), text);
            assert_eq!(answer.code(), text);
            // inadyn counts a body containing any of these as success.
            for word in ["ok", "good", "true", "updated", "nochg"] {
                assert!(!text.contains(word), "{text} contains {word}");
            }
        }
    }

    #[test]
    fn query_decoding_matches_what_clients_send() {
        let p = Params::parse(
            "hostname=a.example.com,b.example.com&myip=2001%3adb8%3a%3a1&system=dyndns&wildcard=NOCHG&Pass=p%2Bw+x",
        );
        assert_eq!(p.hostnames(), vec!["a.example.com", "b.example.com"]);
        assert_eq!(p.get("pass"), Some("p+w x"));
        let a = p.addresses().expect("ok").expect("some");
        assert_eq!(a.v6, Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(a.v4, None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a%2Bb+c%41"), "a+b cA");
    }

    #[test]
    fn addresses_from_every_parameter_shape() {
        let get = |q: &str| Params::parse(q).addresses();
        assert_eq!(get("myip="), Ok(None));
        assert_eq!(get("hostname=x"), Ok(None));
        let both = get("myip=192.0.2.1,2001:db8::1").expect("ok").expect("some");
        assert_eq!(both.list().len(), 2);
        assert_eq!(get("myip=192.0.2.1&myipv6=2001:db8::1"), Ok(Some(both)));
        assert_eq!(
            get("myip=192.0.2.1,"),
            Ok(Some(Addresses { v4: Some("192.0.2.1".parse().expect("ip")), v6: None }))
        );
        assert_eq!(
            get("myip=::ffff:192.0.2.1").expect("ok").and_then(|a| a.v4),
            Some("192.0.2.1".parse().expect("ip"))
        );
        assert_eq!(get("myip=192.0.2.1&ip=192.0.2.1").expect("ok").map(|a| a.list().len()), Some(1));
        assert!(matches!(get("myipv6=2001:db8:1:2::/64"), Err(AddressError::Cidr(_))));
        assert!(matches!(get("myip=banana"), Err(AddressError::Invalid(_))));
        assert_eq!(get("myip=192.0.2.1&ip=192.0.2.2"), Err(AddressError::TwoOfAFamily));
    }

    #[test]
    fn query_credentials() {
        assert_eq!(Params::parse("user=home&pass=k").credentials(), Some(("home".into(), "k".into())));
        assert_eq!(Params::parse("username=home&password=k").credentials(), Some(("home".into(), "k".into())));
        assert_eq!(Params::parse("user=home").credentials(), None);
    }
}
