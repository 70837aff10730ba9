//! The request inspector: per registered host, its last `KEPT` update
//! requests as the server understood them — when, from which address and
//! how that address was determined, the user agent, the endpoint, the host
//! names and address parameters as parsed, whether it authenticated, and
//! the answer — for the admin on `/status`. Routers log almost nothing; this
//! shows what a Fritz!Box or UniFi box actually sent.
//!
//! Keys and passwords are never kept: only parsed names and address
//! parameters are. A request that named a registered host but failed to
//! authenticate is kept too (marked), so "my router says badauth" can be
//! diagnosed. A request like the previous one (same source, agent,
//! endpoint, authentication and answer) only counts as a repeat, so a
//! router reporting every minute does not push out what is worth seeing,
//! and the usual request costs no allocation. Memory is bounded: `KEPT`
//! entries of bounded size per registered host.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// Requests kept per host.
pub const KEPT: usize = 10;
/// Longest text kept of one field.
const FIELD: usize = 120;

/// One request, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Unix seconds of the last request like this one.
    pub at: u64,
    /// Requests like this one after the first.
    pub repeats: u32,
    pub source: Option<IpAddr>,
    /// How `source` was determined: `connection`, or `proxy header`.
    pub source_from: &'static str,
    /// The trusted proxy whose header gave `source`, if one did.
    pub proxy: Option<IpAddr>,
    pub agent: String,
    pub endpoint: &'static str,
    /// The host names the request named, as parsed.
    pub hosts: String,
    /// The address parameters as sent (`myip=…`, `ip6lanprefix=…`, `"ip"`).
    pub addresses: String,
    pub authenticated: bool,
    pub answer: String,
}

/// A request being recorded; the owned parts are built only when it is not
/// a repeat.
pub struct Observed<'a> {
    pub at: u64,
    pub source: Option<IpAddr>,
    pub peer: Option<IpAddr>,
    pub agent: &'a str,
    pub endpoint: &'static str,
    pub hosts: &'a str,
    pub addresses: &'a dyn Fn() -> String,
    pub authenticated: bool,
    pub answer: &'a str,
}

#[derive(Default)]
pub struct Inspector {
    hosts: Mutex<HashMap<String, VecDeque<Seen>>>,
}

fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(FIELD).collect();
    if text.chars().count() > FIELD {
        out.push('…');
    }
    out
}

impl Inspector {
    /// Keep `seen` for each of `hosts` (registered hosts only).
    pub fn record<'h>(&self, hosts: impl Iterator<Item = &'h str>, seen: &Observed<'_>) {
        let mut map = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        for host in hosts {
            let list = match map.get_mut(host) {
                Some(list) => list,
                // Most hosts keep one entry (their repeats): no room for more
                // until it is needed.
                None => map.entry(host.to_string()).or_insert_with(|| VecDeque::with_capacity(1)),
            };
            if let Some(last) = list.back_mut() {
                let same = last.source == seen.source
                    && last.endpoint == seen.endpoint
                    && last.authenticated == seen.authenticated
                    && last.agent.as_str() == clip_ref(seen.agent)
                    && last.answer.as_str() == clip_ref(seen.answer);
                if same {
                    last.at = seen.at;
                    last.repeats = last.repeats.saturating_add(1);
                    // A failure does not name the address in its answer:
                    // show what the latest repeat sent (a success does, so
                    // its repeats sent the same).
                    if !is_success(&last.answer) {
                        last.addresses = clip(&(seen.addresses)());
                        last.hosts = clip(seen.hosts);
                    }
                    continue;
                }
            }
            if list.len() >= KEPT {
                list.pop_front();
            }
            let (source_from, proxy) = match (seen.source, seen.peer.map(|p| p.to_canonical())) {
                (Some(s), Some(p)) if s != p => ("proxy header", Some(p)),
                _ => ("connection", None),
            };
            list.push_back(Seen {
                at: seen.at,
                repeats: 0,
                source: seen.source,
                source_from,
                proxy,
                agent: clip(seen.agent),
                endpoint: seen.endpoint,
                hosts: clip(seen.hosts),
                addresses: clip(&(seen.addresses)()),
                authenticated: seen.authenticated,
                answer: clip(seen.answer),
            });
        }
    }

    /// A host's requests, oldest first.
    pub fn of(&self, host: &str) -> Vec<Seen> {
        let map = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(host).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Did the server accept the request (`good`, `nochg`, a JSON answer of
/// `/update` with a status)?
pub fn is_success(answer: &str) -> bool {
    answer.starts_with("good") || answer.starts_with("nochg") || answer.starts_with("{\"fqdn\"")
}

/// `text` as `clip` would keep it, when that needs no copy (the usual
/// short, clean value); otherwise something that never equals a kept value.
fn clip_ref(text: &str) -> &str {
    if text.len() <= FIELD && !text.chars().any(char::is_control) {
        text
    } else {
        "\u{0}"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed<'a>(answer: &'a str, addresses: &'a dyn Fn() -> String) -> Observed<'a> {
        Observed {
            at: 100,
            source: Some("203.0.113.7".parse().expect("ip")),
            peer: Some("127.0.0.1".parse().expect("ip")),
            agent: "Fritz!Box",
            endpoint: "dyndns2",
            hosts: "home.example.com",
            addresses,
            authenticated: true,
            answer,
        }
    }

    #[test]
    fn repeats_are_counted_and_only_the_last_few_kept() {
        let inspector = Inspector::default();
        let addresses = || "myip=203.0.113.7".to_string();
        for _ in 0..5 {
            inspector.record(["home.example.com"].into_iter(), &observed("nochg 203.0.113.7", &addresses));
        }
        let seen = inspector.of("home.example.com");
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].repeats, seen[0].source_from), (4, "proxy header"));
        assert_eq!(seen[0].proxy, Some("127.0.0.1".parse().expect("ip")));
        for i in 0..20 {
            let answer = format!("good 203.0.113.{i}");
            inspector.record(["home.example.com"].into_iter(), &observed(&answer, &addresses));
        }
        let seen = inspector.of("home.example.com");
        assert_eq!(seen.len(), KEPT);
        assert_eq!(seen.last().map(|s| s.answer.as_str()), Some("good 203.0.113.19"));
        let long = "x".repeat(500);
        inspector.record(["home.example.com"].into_iter(), &observed(&long, &addresses));
        assert_eq!(inspector.of("home.example.com").last().map(|s| s.answer.chars().count()), Some(FIELD + 1));
    }
}
