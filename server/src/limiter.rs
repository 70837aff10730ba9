//! Slowing down key guessing: a source with `MAX_FAILURES` failed
//! authentications within `WINDOW` is refused for `BLOCK`, without looking
//! at what it sends. Other sources (and the right key from another address)
//! are unaffected.
//!
//! - The source is the proven client address (`Req::client_ip`); IPv6
//!   sources count per /64, since one host usually owns a whole /64.
//! - A success does not erase failures: otherwise one valid key would let
//!   its holder guess other hosts' keys without limit. A router whose key
//!   was wrong is let in once its block ends (at most `BLOCK`).
//! - Memory is bounded: at most `MAX_SOURCES` sources are tracked, and when
//!   the table is full the one whose window started first is forgotten.
//!   Entries leave in the order their windows started (a queue beside the
//!   map), so pruning costs O(1) amortized per failure instead of a scan
//!   of the whole table under its lock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const BLOCK: Duration = Duration::from_secs(300);
/// Sources tracked at most (about 100 bytes each: ~2 MiB when full).
pub const MAX_SOURCES: usize = 20_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

impl Entry {
    /// Nothing left to remember at `now`: window over, no block running.
    fn expired(&self, now: Instant) -> bool {
        match self.blocked_until {
            Some(until) => until <= now,
            None => now.duration_since(self.since) >= WINDOW,
        }
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// `(source, since)` in the order windows started; a record whose
    /// `since` no longer matches its entry is stale and skipped.
    order: VecDeque<(IpAddr, Instant)>,
}

impl Table {
    /// Forget expired entries at the front, and the oldest while full.
    fn prune(&mut self, now: Instant) {
        while let Some(&(ip, since)) = self.order.front() {
            let current = self.entries.get(&ip).filter(|e| e.since == since);
            let drop_it = match current {
                None => true, // stale record
                Some(e) => e.expired(now) || self.entries.len() >= MAX_SOURCES,
            };
            if !drop_it {
                break;
            }
            self.order.pop_front();
            if current.is_some() {
                self.entries.remove(&ip);
            }
        }
    }
}

pub struct Limiter {
    table: Mutex<Table>,
    /// When the latest block ends, in milliseconds since `epoch` (0: none
    /// yet): while it lies in the past nobody is blocked, and `blocked`
    /// answers without taking the table's lock (every request asks).
    blocks_end: AtomicU64,
    epoch: Instant,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter { table: Mutex::default(), blocks_end: AtomicU64::new(0), epoch: Instant::now() }
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

impl Limiter {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every critical section leaves map and queue consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much longer `ip` is refused, if it is.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        self.blocked_at(ip, Instant::now())
    }

    fn blocked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.millis(now) >= self.blocks_end.load(Ordering::Relaxed) {
            return None;
        }
        let until = self.lock().entries.get(&key(ip))?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Count a failed authentication; true when this blocks the source.
    pub fn failed(&self, ip: IpAddr) -> bool {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> bool {
        let source = key(ip);
        let mut table = self.lock();
        table.prune(now);
        let fresh = Entry { failures: 0, since: now, blocked_until: None };
        let restart = table.entries.get(&source).is_none_or(|e| e.expired(now));
        if restart {
            table.entries.insert(source, fresh);
            table.order.push_back((source, now));
        }
        let Some(e) = table.entries.get_mut(&source) else { return false };
        e.failures += 1;
        if e.failures >= MAX_FAILURES && e.blocked_until.is_none() {
            e.blocked_until = Some(now + BLOCK);
            // Rounded up, so the fast path never ends a block early.
            self.blocks_end.fetch_max(self.millis(now + BLOCK) + 1, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn ten_failures_block_only_that_source_for_the_block_time() {
        let l = Limiter::default();
        let now = Instant::now();
        for i in 1..MAX_FAILURES {
            assert!(!l.failed_at(ip("203.0.113.1"), now), "blocked after {i}");
        }
        assert!(l.failed_at(ip("203.0.113.1"), now));
        assert!(l.blocked_at(ip("203.0.113.1"), now).is_some_and(|d| d == BLOCK));
        assert_eq!(l.blocked_at(ip("203.0.113.2"), now), None);
        assert_eq!(l.blocked_at(ip("203.0.113.1"), now + BLOCK), None, "the block ends");
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_block() {
        let l = Limiter::default();
        let start = Instant::now();
        for i in 0..3 * MAX_FAILURES {
            let at = start + WINDOW / (MAX_FAILURES - 2) * i;
            assert!(!l.failed_at(ip("192.0.2.1"), at), "failure {i}");
        }
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = Limiter::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            l.failed_at(ip(&format!("2001:db8:1:2::{i:x}")), now);
        }
        assert!(l.blocked_at(ip("2001:db8:1:2::ffff"), now).is_some());
        assert!(l.blocked_at(ip("2001:db8:1:3::1"), now).is_none());
    }

    #[test]
    fn expired_sources_are_pruned_and_the_table_never_exceeds_its_cap() {
        let l = Limiter::default();
        let now = Instant::now();
        for i in 0..1000u32 {
            l.failed_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(l.tracked(), 1000);
        // A window later, the next failure prunes every expired source.
        l.failed_at(ip("198.51.100.1"), now + WINDOW);
        assert_eq!(l.tracked(), 1);
        // A flood of new sources: the oldest go first, the count stays capped.
        let later = now + WINDOW * 2;
        for i in 0..(MAX_SOURCES as u32 + 5000) {
            l.failed_at(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), later);
        }
        assert!(l.tracked() <= MAX_SOURCES, "{}", l.tracked());
        assert!(l.lock().order.len() <= MAX_SOURCES + 1);
        // A blocked source at the front is kept while its block runs.
        let l = Limiter::default();
        for _ in 0..MAX_FAILURES {
            l.failed_at(ip("203.0.113.9"), now);
        }
        l.failed_at(ip("198.51.100.1"), now + WINDOW * 2);
        assert!(l.blocked_at(ip("203.0.113.9"), now + WINDOW * 2).is_some());
        l.failed_at(ip("198.51.100.1"), now + BLOCK);
        assert_eq!(l.tracked(), 1, "the block ended and the source was forgotten");
    }
}
