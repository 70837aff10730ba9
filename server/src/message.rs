//! An HTTP exchange as the handlers see it: `Req`, a request borrowed from
//! tiny_http (only the body is owned), and `Reply`, the answer to write back. They live apart from
//! `http` (the glue that calls the handlers) so that the handlers never
//! import the module that calls them.

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::dyndns2;
use crate::net::Cidr;

/// Most `X-Forwarded-For` entries looked at, from the right: a chain of
/// proxies is short, and a client must not make us walk a long list.
const MAX_FORWARDED_HOPS: usize = 16;

/// A request as the handlers see it, borrowing from the HTTP library's
/// request (no copy of what it already holds; only the body is owned).
#[derive(Debug, Clone, Default)]
pub struct Req<'a> {
    /// Upper case.
    pub method: Cow<'a, str>,
    /// Path without query, leading slashes collapsed (`//nic/update` → `/nic/update`).
    pub path: Cow<'a, str>,
    pub query: &'a str,
    /// The headers a handler reads (`http::USED_HEADERS`), names in lower case.
    pub headers: Vec<(&'static str, &'a str)>,
    pub body: Vec<u8>,
    pub peer: Option<IpAddr>,
}

impl<'a> Req<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Split a request target into normalized path and query.
    pub fn split_target(target: &'a str) -> (Cow<'a, str>, &'a str) {
        // absolute-form (`http://host/path`) → origin-form
        let target = match target.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => rest.find('/').map_or("/", |i| &rest[i..]),
            _ => target,
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = if path.starts_with('/') && !path.starts_with("//") {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(format!("/{}", path.trim_start_matches('/')))
        };
        (path, query)
    }

    /// `Authorization: Basic` credentials, if present and decodable.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = LENIENT.decode(encoded.trim()).ok()?;
        let mut user = String::from_utf8(decoded).ok()?;
        let colon = user.find(':')?;
        let pass = user[colon + 1..].to_string();
        user.truncate(colon);
        Some((user, pass))
    }

    /// The caller's address, believing only what is proven.
    ///
    /// From a peer that is not a trusted proxy: the peer. From a trusted
    /// proxy: `X-Forwarded-For` read from the right — each proxy appends the
    /// address it saw, so the entries to the right were written by our own
    /// proxies and the first one that is not a trusted proxy is the client;
    /// anything to its left the client may have sent itself. `X-Real-Ip`
    /// only when there is no `X-Forwarded-For`. IPv4-mapped IPv6 becomes IPv4.
    pub fn client_ip(&self, trusted: &[Cidr]) -> Option<IpAddr> {
        let peer = self.peer.map(|p| p.to_canonical());
        let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
        let Some(mut client) = peer.filter(|&p| is_trusted(p)) else { return peer };
        let mut forwarded = self.headers.iter().filter(|(k, _)| *k == "x-forwarded-for").peekable();
        if forwarded.peek().is_none() {
            return Some(self.header("x-real-ip").and_then(|v| dyndns2::parse_ip(v).ok()).unwrap_or(client));
        }
        let entries: Vec<&str> = forwarded.flat_map(|(_, v)| v.split(',')).collect();
        for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
            // An entry that is not an address ends the walk: what is left
            // of it cannot be trusted either.
            let Ok(ip) = dyndns2::parse_ip(entry) else { break };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// An answer to write back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.into(), headers: Vec::new() }
    }

    pub fn json(status: u16, body: &Value) -> Reply {
        Reply { content_type: "application/json", ..Reply::text(status, body.to_string()) }
    }

    /// `{"error": message}`.
    pub fn json_error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({"error": message.into()}))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn method_not_allowed(allow: &'static str, body: &str) -> Reply {
        Reply::text(405, body).with_header("Allow", allow)
    }

    /// 429 for a source with too many failed attempts (`auth`).
    pub fn too_many_failures(secs: u64) -> Reply {
        let text = format!("too many failed authentications from this address; try again in {secs} s");
        Reply::json_error(429, text).with_header("Retry-After", secs.to_string())
    }
}

/// What the request log line says beyond the request and the reply: filled
/// in by the handler, written by `http`.
#[derive(Debug, Default)]
pub struct LogContext {
    /// The host (or hosts, comma-separated) the request was about.
    pub host: Option<String>,
    /// Whether the request authenticated, once that was checked.
    pub authenticated: Option<bool>,
    /// Why it did not, for the status page (`Guard::why_wrong`).
    pub denied: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalized() {
        assert_eq!(Req::split_target("//nic/update?hostname=a"), ("/nic/update".into(), "hostname=a"));
        assert_eq!(Req::split_target("/update"), ("/update".into(), ""));
        assert_eq!(Req::split_target("http://h:8080/nic/update?x"), ("/nic/update".into(), "x"));
        assert_eq!(Req::split_target("/a?b=c?d"), ("/a".into(), "b=c?d"));
        assert_eq!(Req::split_target("nic/update"), ("/nic/update".into(), ""));
        assert!(matches!(Req::split_target("/update?x").0, Cow::Borrowed(_)), "the usual path is not copied");
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn from<'a>(peer: &str, headers: &[(&'static str, &'a str)]) -> Req<'a> {
        Req { peer: Some(ip(peer)), headers: headers.to_vec(), ..Req::default() }
    }

    #[test]
    fn forwarded_for_is_read_from_the_right() {
        let trusted = [Cidr::parse("127.0.0.0/8").expect("cidr"), Cidr::parse("10.0.0.0/24").expect("cidr")];
        // The client wrote "6.6.6.6" itself; the proxy appended what it saw.
        let req = from("127.0.0.1", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("198.51.100.7")));
        // Two of our proxies in a row are skipped.
        let req = from("127.0.0.1", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("198.51.100.7")));
        // Several headers count as one list, in order.
        let req = from("127.0.0.1", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "2001:db8::9")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("2001:db8::9")));
        // Garbage stops the walk at the last proven hop.
        let req = from("127.0.0.1", &[("x-forwarded-for", "198.51.100.1, junk, 10.0.0.5")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("10.0.0.5")));
        // X-Real-Ip only without X-Forwarded-For.
        let req = from("127.0.0.1", &[("x-real-ip", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("198.51.100.7")));
        let req = from("::ffff:127.0.0.1", &[("x-real-ip", "2001:db8::5")]);
        assert_eq!(req.client_ip(&trusted), Some(ip("2001:db8::5")));
    }

    #[test]
    fn a_long_forwarded_chain_is_walked_only_so_far() {
        let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr"), Cidr::parse("127.0.0.1").expect("cidr")];
        // 1000 hops of our own proxies: the walk stops after 16 and does
        // not reach the forged address at the far left.
        let chain = std::iter::once("6.6.6.6".to_string())
            .chain((0..1000).map(|i| format!("10.0.{}.{}", i / 256, i % 256)))
            .collect::<Vec<_>>()
            .join(", ");
        let req = from("127.0.0.1", &[("x-forwarded-for", &chain)]);
        let client = req.client_ip(&trusted).expect("an address");
        assert_eq!(client.to_string(), "10.0.3.216", "the 16th entry from the right, not 6.6.6.6");
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let req = from("::ffff:203.0.113.9", &[("x-real-ip", "6.6.6.6"), ("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(req.client_ip(&[]), Some(ip("203.0.113.9")));
        assert_eq!(req.client_ip(&[Cidr::parse("127.0.0.1").expect("cidr")]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn basic_auth_is_decoded() {
        let req = from("127.0.0.1", &[("authorization", "Basic aG9tZTprZXk6d2l0aDpjb2xvbnM=")]);
        assert_eq!(req.basic_auth(), Some(("home".into(), "key:with:colons".into())));
        let req = from("127.0.0.1", &[("authorization", "basic aG9tZTprZXk")]);
        assert_eq!(req.basic_auth(), Some(("home".into(), "key".into())), "padding is optional");
        let req = from("127.0.0.1", &[("authorization", "Bearer x")]);
        assert_eq!(req.basic_auth(), None);
        let req = from("127.0.0.1", &[("authorization", "Basic !!!")]);
        assert_eq!(req.basic_auth(), None);
    }
}
