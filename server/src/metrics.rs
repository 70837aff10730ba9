//! Counters for `/metrics`: update requests by endpoint and result, drift
//! found by the reconcile by what was done about it, and each zone's last
//! reconcile (for `/status` too).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Which URL a counted request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /update`.
    Json,
    /// `/nic/update`, `/v3/update`.
    #[serde(rename = "dyndns2")]
    Dyndns2,
    /// `/present`, `/cleanup`.
    Acme,
    /// A LAN host's AAAA set from its router's prefix.
    Ipv6Prefix,
}

impl Endpoint {
    /// The `endpoint` label of `/metrics` and the inspector's column.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Json => "json",
            Endpoint::Dyndns2 => "dyndns2",
            Endpoint::Acme => "acme",
            Endpoint::Ipv6Prefix => "ipv6_prefix",
        }
    }
}

/// What the reconcile did about a record changed outside the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drift {
    Restored,
    Recreated,
    Reported,
    LeftLost,
    Failed,
}

impl Drift {
    pub const ALL: [Drift; 5] = [Drift::Restored, Drift::Recreated, Drift::Reported, Drift::LeftLost, Drift::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Drift::Restored => "restored",
            Drift::Recreated => "recreated",
            Drift::Reported => "reported",
            Drift::LeftLost => "left_lost",
            Drift::Failed => "failed",
        }
    }
}

#[derive(Default)]
pub struct Counters {
    requests: Mutex<BTreeMap<(Endpoint, &'static str), u64>>,
    drift: Mutex<BTreeMap<Drift, u64>>,
    /// Zone reconciles skipped because the API budget was low.
    pub reconcile_deferred: AtomicU64,
}

/// Each critical section is one map operation: poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Counters {
    pub fn count(&self, endpoint: Endpoint, result: &'static str) {
        *lock(&self.requests).entry((endpoint, result)).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(Endpoint, &'static str), u64> {
        lock(&self.requests).clone()
    }

    pub fn count_drift(&self, action: Drift) {
        *lock(&self.drift).entry(action).or_insert(0) += 1;
    }

    pub fn drift(&self, action: Drift) -> u64 {
        lock(&self.drift).get(&action).copied().unwrap_or(0)
    }
}

/// The last reconcile of one zone, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ZoneReconcile {
    /// Unix seconds of its end; 0 when it has not completed yet.
    pub at: u64,
    pub hosts: usize,
    pub drift: usize,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Attempts so far (done or failed; not the deferred ones): what a
    /// watcher waits on to know the zone was listed again.
    pub runs: u64,
}

/// Zone → its last reconcile. A panic while the lock is held leaves
/// consistent data (each critical section is one map operation).
#[derive(Default)]
pub struct Reconciles(Mutex<BTreeMap<String, ZoneReconcile>>);

impl Reconciles {
    pub fn get(&self, zone: &str) -> Option<ZoneReconcile> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(zone).cloned()
    }

    pub fn set(&self, zone: String, entry: ZoneReconcile) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(zone, entry);
    }

    /// Every zone's last reconcile, by zone name.
    pub fn all(&self) -> BTreeMap<String, ZoneReconcile> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
