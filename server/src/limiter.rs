//! Slowing down key guessing: a source address with `MAX_FAILURES` failed
//! authentications within `WINDOW` is refused for `BLOCK`, without looking
//! at what it sends. Other sources (and the right key from another address)
//! are unaffected. IPv6 sources are counted per /64, since one host usually
//! owns a whole /64. The map is pruned when it grows large, so a flood of
//! sources cannot grow it without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const BLOCK: Duration = Duration::from_secs(300);
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Limiter {
    sources: Mutex<HashMap<IpAddr, Entry>>,
}

fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Single-entry updates only: a poisoned map is still consistent.
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How much longer `ip` is refused, if it is.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let until = self.lock().get(&key(ip))?.blocked_until?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// Count a failed authentication; true when this blocks the source.
    pub fn failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.blocked_until.is_some_and(|u| u > now) || now.duration_since(e.since) < WINDOW);
        }
        let e = map.entry(key(ip)).or_insert(Entry { failures: 0, since: now, blocked_until: None });
        if now.duration_since(e.since) >= WINDOW || e.blocked_until.is_some_and(|u| u <= now) {
            *e = Entry { failures: 0, since: now, blocked_until: None };
        }
        e.failures += 1;
        if e.failures >= MAX_FAILURES && e.blocked_until.is_none() {
            e.blocked_until = Some(now + BLOCK);
            return true;
        }
        false
    }

    /// A successful authentication clears the source's failures.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.lock();
        if map.contains_key(&key(ip)) {
            map.remove(&key(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_block_only_that_source() {
        let l = Limiter::default();
        let bad: IpAddr = "203.0.113.1".parse().expect("ip");
        let good: IpAddr = "203.0.113.2".parse().expect("ip");
        for i in 1..MAX_FAILURES {
            assert!(!l.failed(bad), "blocked after {i}");
            assert_eq!(l.blocked(bad), None);
        }
        assert!(l.failed(bad));
        assert!(l.blocked(bad).is_some_and(|d| d > Duration::from_secs(290)));
        assert_eq!(l.blocked(good), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_success_resets() {
        let l = Limiter::default();
        for i in 0..MAX_FAILURES {
            l.failed(format!("2001:db8:1:2::{i:x}").parse().expect("ip"));
        }
        assert!(l.blocked("2001:db8:1:2::ffff".parse().expect("ip")).is_some());
        assert!(l.blocked("2001:db8:1:3::1".parse().expect("ip")).is_none());
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..MAX_FAILURES - 1 {
            l.failed(v4);
        }
        l.succeeded(v4);
        assert!(!l.failed(v4));
    }
}
