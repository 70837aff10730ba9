//! What the server knows about each registered host besides its records:
//! when it last reported, whether it is lost, its last error.
//!
//! A host is lost when it has not reported for `LOST_CONNECTION_TIMEOUT`,
//! counted from its last report or from the server's start, whichever is
//! later: a host is never blamed for the server's own downtime, and a host
//! that never reports after a start is reported once the timeout has passed.
//! The `lost` flag is persisted, so an outage is announced once, even across
//! restarts, and "back online" follows it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::metrics::Endpoint;
use crate::net::RecordType;
use crate::time::unix_now;

/// One host's entry, as the state file keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Unix seconds of the last authenticated report.
    #[serde(default)]
    pub last_seen: Option<u64>,
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<u64>,
    /// Unix seconds of the last write that changed one of its records.
    #[serde(default)]
    pub last_change: Option<u64>,
    /// Writes that changed one of its records, ever.
    #[serde(default)]
    pub changes: u64,
    /// Its last `HISTORY` record changes, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub history: VecDeque<Change>,
}

/// Record changes kept per host.
pub const HISTORY: usize = 20;

/// One change of a host's record: when, which, from what to what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub at: u64,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// `None`: the record was created.
    pub old: Option<IpAddr>,
    pub new: IpAddr,
    pub cause: Cause,
    /// The alias (`HOST_ALIASES`) whose record this was; `None`: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// What made the server write a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Cause {
    /// The host's own report (or its router's, for a LAN host), from the
    /// address `source`, through `endpoint`.
    Report { endpoint: Endpoint, source: Option<IpAddr> },
    /// A router's IPv6 prefix (a LAN host's AAAA).
    Prefix { router: String },
    /// A change answered `911` earlier, written by the server itself.
    Retry,
    /// The reconcile set back a record changed outside the server.
    Repair,
}

impl Cause {
    /// For people: "dyndns2 report from 203.0.113.7".
    pub fn text(&self) -> String {
        match self {
            Cause::Report { endpoint, source: Some(ip) } => format!("{} report from {ip}", endpoint.as_str()),
            Cause::Report { endpoint, source: None } => format!("{} report", endpoint.as_str()),
            Cause::Prefix { router } => format!("prefix from {router}"),
            Cause::Retry => "written after Hetzner recovered (911 earlier)".into(),
            Cause::Repair => "restored by the reconcile".into(),
        }
    }
}

/// Every registered host's entry; shared by all request threads.
pub struct HostStates {
    hosts: Mutex<HashMap<String, HostState>>,
    /// When the server started (Unix seconds): nobody is lost for the
    /// server's own downtime.
    started: u64,
    /// Changed since the state file was last written.
    dirty: AtomicBool,
    /// Hosts whose `last_error` is set (changed under the lock only).
    with_errors: AtomicUsize,
}

impl HostStates {
    /// The registered hosts, with what the state file remembered of them.
    pub fn new(registered: &[String], mut loaded: HashMap<String, HostState>) -> HostStates {
        let hosts: HashMap<String, HostState> =
            registered.iter().map(|h| (h.clone(), loaded.remove(h).unwrap_or_default())).collect();
        let with_errors = AtomicUsize::new(hosts.values().filter(|s| s.last_error.is_some()).count());
        HostStates { hosts: Mutex::new(hosts), started: unix_now(), dirty: AtomicBool::new(false), with_errors }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HostState>> {
        // Every critical section leaves the map consistent; a panic
        // elsewhere while holding the lock cannot leave half an update.
        self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record an authenticated report. Returns the outage length when the
    /// host was lost.
    pub fn record_report(&self, host: &str) -> Option<u64> {
        let now = unix_now();
        let mut hosts = self.lock();
        let state = hosts.get_mut(host)?;
        let outage = state.lost.then(|| now.saturating_sub(state.last_seen.unwrap_or(self.started)));
        state.last_seen = Some(now);
        state.lost = false;
        self.dirty.store(true, Ordering::Relaxed);
        outage
    }

    /// Record a write that changed one of the host's records.
    pub fn record_change(&self, host: &str, change: Change) {
        let mut hosts = self.lock();
        if let Some(state) = hosts.get_mut(host) {
            state.last_change = Some(change.at);
            state.changes += 1;
            if state.history.len() >= HISTORY {
                state.history.pop_front();
            }
            state.history.push_back(change);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Record the outcome of an update: `Some(error)` or `None` for success.
    pub fn set_error(&self, host: &str, error: Option<String>) {
        // Every successful request clears; without any error on record
        // that needs no lock.
        if error.is_none() && self.with_errors.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut hosts = self.lock();
        if let Some(state) = hosts.get_mut(host) {
            if state.last_error != error {
                match (&state.last_error, &error) {
                    (None, Some(_)) => self.with_errors.fetch_add(1, Ordering::Relaxed),
                    (Some(_), None) => self.with_errors.fetch_sub(1, Ordering::Relaxed),
                    _ => 0,
                };
                state.last_error_at = error.as_ref().map(|_| unix_now());
                state.last_error = error;
                self.dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn is_lost(&self, host: &str) -> bool {
        self.lock().get(host).is_some_and(|s| s.lost)
    }

    /// Mark hosts silent for longer than `timeout` as lost; returns the newly
    /// lost ones with how long they have been silent.
    pub fn find_lost(&self, now: u64, timeout: u64) -> Vec<(String, u64)> {
        let mut newly = Vec::new();
        for (host, state) in self.lock().iter_mut() {
            let since = state.last_seen.unwrap_or(0).max(self.started);
            let silent = now.saturating_sub(since);
            if !state.lost && silent >= timeout {
                state.lost = true;
                newly.push((host.clone(), now.saturating_sub(state.last_seen.unwrap_or(self.started))));
            }
        }
        if !newly.is_empty() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        newly.sort();
        newly
    }

    pub fn snapshot(&self) -> Vec<(String, HostState)> {
        let mut all: Vec<_> = self.lock().iter().map(|(h, s)| (h.clone(), s.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Was anything changed since the last call?
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }

    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_once_per_outage_then_back_online() {
        let book = HostStates::new(&["a.example.com".into(), "b.example.com".into()], HashMap::new());
        let start = book.started;
        assert!(book.find_lost(start + 5, 10).is_empty());
        book.record_report("a.example.com");
        assert!(book.find_lost(start + 5, 10).is_empty());
        let lost = book.find_lost(start + 20, 10);
        // b never reported since the start; both are silent for 20 s.
        let names: Vec<&str> = lost.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, vec!["a.example.com", "b.example.com"]);
        assert!(book.find_lost(start + 30, 10).is_empty(), "announced once per outage");
        assert!(book.record_report("b.example.com").is_some(), "back online with an outage length");
        assert_eq!(book.record_report("b.example.com"), None);
        assert_eq!(book.record_report("unknown.example.com"), None);
    }

    #[test]
    fn remembered_hosts_are_not_blamed_for_server_downtime() {
        let mut loaded = HashMap::new();
        loaded.insert("a.example.com".to_string(), HostState { last_seen: Some(1), ..HostState::default() });
        let book = HostStates::new(&["a.example.com".into()], loaded);
        assert!(book.find_lost(book.started + 5, 10).is_empty());
        assert_eq!(book.find_lost(book.started + 10, 10).len(), 1);
    }
}
