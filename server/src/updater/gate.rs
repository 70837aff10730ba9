//! One host's gate: at most one update of the host at a time (held
//! across its API calls on purpose: two concurrent first updates must not
//! both create), and its write tokens (`HOST_WRITE_BURST`,
//! `HOST_WRITES_PER_HOUR`), so that one host — or a leaked key — can
//! neither hold others up nor spend the project's API budget. A host's
//! aliases share its gate. A thread that panics inside leaves consistent
//! data (each critical section is one assignment), so poisoning is ignored.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{lock, UpdateError};

/// Per-host write limit: `burst` writes at once, `per_hour` refilled.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimit {
    pub burst: u32,
    pub per_hour: u32,
    /// `FAILED_WRITE_RETRY`: after a write of the host failed (Hetzner down,
    /// slow, answering 5xx), its next write is tried no sooner than this;
    /// reports in between are answered with the same error (dyndns2 `911`)
    /// without a call, and the newest of them is written by the server
    /// itself once this has passed (`Updater::retry_pending`).
    pub retry_after: Duration,
}

/// One host's gate: at most one update at a time, and its write tokens.
pub(super) struct Gate {
    state: Mutex<GateState>,
    free: Condvar,
}

struct GateState {
    busy: bool,
    tokens: f64,
    refilled: Instant,
    /// The last write that failed in a way retrying may fix, and when: for
    /// `WriteLimit::retry_after` later changes are answered with it from memory.
    failed: Option<(Instant, UpdateError)>,
}

impl Gate {
    pub(super) fn new(limit: WriteLimit) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                busy: false,
                tokens: f64::from(limit.burst),
                refilled: Instant::now(),
                failed: None,
            }),
            free: Condvar::new(),
        }
    }

    /// Wait until no other update of the host runs, or `Busy` at `deadline`.
    pub(super) fn enter(&self, deadline: Instant) -> Result<GateGuard<'_>, UpdateError> {
        let mut state = lock(&self.state);
        while state.busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpdateError::Busy);
            }
            state = self.free.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        state.busy = true;
        Ok(GateGuard(self))
    }

    /// Is a write token left? Nothing is spent: only a write Hetzner
    /// accepted spends one (`spend_write`), so a host whose reports fail
    /// during an outage is not locked out afterwards.
    pub(super) fn may_write(&self, limit: WriteLimit) -> Result<(), UpdateError> {
        let mut state = lock(&self.state);
        let per_second = f64::from(limit.per_hour) / 3600.0;
        let refill = state.refilled.elapsed().as_secs_f64() * per_second;
        state.tokens = (state.tokens + refill).min(f64::from(limit.burst));
        state.refilled = Instant::now();
        if state.tokens >= 1.0 {
            Ok(())
        } else {
            Err(UpdateError::TooManyWrites(Duration::from_secs_f64((1.0 - state.tokens) / per_second)))
        }
    }

    /// Hetzner accepted a write: one token is spent.
    pub(super) fn spend_write(&self) {
        let mut state = lock(&self.state);
        state.tokens = (state.tokens - 1.0).max(0.0);
    }

    /// The failure of a write within the last `RETRY_AFTER_FAILURE`.
    pub(super) fn recent_failure(&self, limit: WriteLimit) -> Option<UpdateError> {
        let state = lock(&self.state);
        state.failed.as_ref().filter(|(at, _)| at.elapsed() < limit.retry_after).map(|(_, e)| e.clone())
    }

    pub(super) fn set_failure(&self, failure: Option<UpdateError>) {
        lock(&self.state).failed = failure.map(|e| (Instant::now(), e));
    }
}

/// Opens the gate when dropped, also when the update panicked.
pub(super) struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).busy = false;
        self.0.free.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a write Hetzner accepted does to the gate.
    fn take_write(gate: &Gate, limit: WriteLimit) -> Result<(), UpdateError> {
        gate.may_write(limit)?;
        gate.spend_write();
        Ok(())
    }

    #[test]
    fn a_flood_is_held_to_the_burst_plus_the_hourly_refill() {
        let limit = WriteLimit { burst: 10, per_hour: 12, retry_after: Duration::ZERO };
        let gate = Gate::new(limit);
        let mut granted = 0;
        // One hour of a client trying 40 writes a minute, the clock moved
        // by hand: each minute is a minute more since the last refill.
        for _ in 0..60 {
            for _ in 0..40 {
                granted += u32::from(take_write(&gate, limit).is_ok());
            }
            let mut state = lock(&gate.state);
            state.refilled -= Duration::from_secs(60);
        }
        assert!((21..=22).contains(&granted), "{granted} writes in an hour");
        // Spent: the next write is due within one refill interval.
        while take_write(&gate, limit).is_ok() {}
        match take_write(&gate, limit) {
            Err(UpdateError::TooManyWrites(wait)) => assert!(wait <= Duration::from_secs(300), "{wait:?}"),
            other => panic!("{other:?}"),
        }
    }
}
