//! A project's API budget: what Hetzner's `RateLimit-*` headers say is
//! left, refilled at the documented rate, and the calls of the last hour by
//! kind. Each project (token) has its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// What a call is for, to count the API budget by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One zone or one RRSet.
    Read,
    /// A change (create, set, add or remove records).
    Write,
    /// Following an action.
    Poll,
    /// A paginated listing (zones, or the RRSets of a zone).
    List,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Read, Kind::Write, Kind::Poll, Kind::List];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Poll => "poll",
            Kind::List => "list",
        }
    }
}

/// Part of Hetzner's limit kept back for writes: below it, reads that only
/// confirm what the server believes (reconciles, per-host reads) wait.
pub const RESERVE_PERCENT: i64 = 10;
/// The limit Hetzner documents, until an answer says otherwise.
const DEFAULT_LIMIT: i64 = 3600;

/// The project's API budget as Hetzner's `RateLimit-*` headers tell it, and
/// the calls of the last hour by kind.
pub(super) struct Budget {
    pub(super) limit: AtomicI64,
    /// `RateLimit-Remaining` of the last answer, -1 before the first.
    pub(super) remaining: AtomicI64,
    /// `RateLimit-Reset` of the last answer (Unix seconds), 0 before.
    pub(super) reset: AtomicU64,
    /// When the last answer was read (Unix seconds).
    pub(super) seen: AtomicU64,
    /// Calls per minute of the last hour: (minute since the epoch, counts by kind).
    pub(super) minutes: Mutex<VecDeque<(u64, [u32; 4])>>,
}

impl Budget {
    pub(super) fn new() -> Budget {
        Budget {
            limit: AtomicI64::new(DEFAULT_LIMIT),
            remaining: AtomicI64::new(-1),
            reset: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            minutes: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn count(&self, kind: Kind, now: u64) {
        let minute = now / 60;
        let mut minutes = self.minutes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while minutes.front().is_some_and(|(m, _)| *m + 60 <= minute) {
            minutes.pop_front();
        }
        if minutes.back().is_none_or(|(m, _)| *m != minute) {
            minutes.push_back((minute, [0; 4]));
        }
        if let Some((_, counts)) = minutes.back_mut() {
            counts[kind as usize] += 1;
        }
    }

    pub(super) fn last_hour(&self, now: u64) -> [u32; 4] {
        let minute = now / 60;
        let minutes = self.minutes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total = [0; 4];
        for (_, counts) in minutes.iter().filter(|(m, _)| *m + 60 > minute) {
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        total
    }

    /// What is left now: the last `RateLimit-Remaining`, refilled at the
    /// documented rate (the limit per hour) since it was read, and full
    /// once `RateLimit-Reset` has passed.
    pub(super) fn remaining(&self, now: u64) -> Option<i64> {
        let remaining = self.remaining.load(Ordering::Relaxed);
        if remaining < 0 {
            return None;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let reset = self.reset.load(Ordering::Relaxed);
        if reset != 0 && now >= reset {
            return Some(limit);
        }
        let elapsed = now.saturating_sub(self.seen.load(Ordering::Relaxed));
        let refill = i64::try_from(elapsed).unwrap_or(i64::MAX).saturating_mul(limit) / 3600;
        Some(remaining.saturating_add(refill).min(limit))
    }
}
