//! Which zone of which Hetzner project holds a name.
//!
//! The server may hold several projects' tokens (`HETZNER_TOKENS_FILE`);
//! each zone is served with the token of the project that has it. One
//! listing of every project's zones (one call per 50 zones) serves every
//! host; it is read again after `ZONE_CACHE_TTL` or, for a name no zone
//! holds, at most once a minute. A project whose listing fails keeps its
//! last list (zones almost never move) and never hides another's zones.
//!
//! The lock is never held across a call to Hetzner; a second lock lets
//! concurrent lookups wait for one listing instead of each making their
//! own. A thread that panics while holding either leaves consistent data
//! (each critical section is one assignment), so poisoning is ignored.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::fqdn;
use crate::hetzner::{ApiError, Hetzner, Zone};

/// How soon a name no zone held is looked for again.
const MISS_REFRESH: Duration = Duration::from_secs(60);

pub struct ZoneCache {
    ttl: Duration,
    state: Mutex<ZoneState>,
    /// Held while listing.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct ZoneState {
    /// Per project (by `Hetzner::index`): its zones, once listed.
    lists: Vec<Option<Vec<Zone>>>,
    /// Zones found by name (`get_zone`), beside the lists.
    found: Vec<Zone>,
    /// When the last listing ended in which every project answered or had
    /// a list from before.
    fetched: Option<Instant>,
}

impl ZoneState {
    fn all(&self) -> Vec<Zone> {
        self.lists.iter().flatten().flatten().chain(&self.found).cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ZoneCache {
    pub fn new(ttl: Duration) -> ZoneCache {
        ZoneCache { ttl, state: Mutex::new(ZoneState::default()), fetching: Mutex::new(()) }
    }

    /// The zone that holds `fqdn`; `None` when no project has one. A
    /// failing listing falls back on the list from before.
    pub fn lookup(&self, projects: &[Hetzner], fqdn: &str, deadline: Instant) -> Result<Option<Zone>, ApiError> {
        let seen = {
            let state = lock(&self.state);
            if let Some(at) = state.fetched {
                let found = best_zone(&state.all(), fqdn);
                let age = at.elapsed();
                match found {
                    Some(z) if age < self.ttl => return Ok(Some(z)),
                    None if age < MISS_REFRESH.min(self.ttl) => return Ok(None),
                    _ => {}
                }
            }
            state.fetched
        };
        match self.refresh(projects, deadline, seen) {
            Ok(zones) => {
                if let Some(z) = best_zone(&zones, fqdn) {
                    return Ok(Some(z));
                }
            }
            // Listing unavailable: fall through to asking by name.
            Err(ApiError::Api { status: 404 | 405, .. }) => {}
            Err(e) => {
                // Hetzner is failing: a stale mapping beats no answer.
                let stale = best_zone(&lock(&self.state).all(), fqdn);
                return stale.map(Some).ok_or(e);
            }
        }
        // The listings found nothing: ask each project for each candidate
        // zone by name, longest first (covers a project that lists zones
        // it cannot match otherwise).
        let labels: Vec<&str> = fqdn.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            for api in projects {
                if let Some(zone) = api.get_zone(&candidate, deadline)? {
                    lock(&self.state).found.push(zone.clone());
                    return Ok(Some(zone));
                }
            }
        }
        Ok(None)
    }

    /// List every project's zones unless another thread did since `seen`.
    /// A project whose listing fails keeps its list from before; without
    /// one, the listing fails.
    pub fn refresh(
        &self,
        projects: &[Hetzner],
        deadline: Instant,
        seen: Option<Instant>,
    ) -> Result<Vec<Zone>, ApiError> {
        let _one_fetch = lock(&self.fetching);
        {
            let state = lock(&self.state);
            if state.fetched.is_some() && state.fetched != seen {
                return Ok(state.all());
            }
        }
        let failure = self.list(projects, deadline).into_iter().flatten().next();
        let state = lock(&self.state);
        match failure {
            Some(e) => Err(e),
            None => Ok(state.all()),
        }
    }

    /// List every project's zones now; each project's failure, in project
    /// order (`None`: listed, or a list from before kept).
    pub fn list_each(&self, projects: &[Hetzner], deadline: Instant) -> Vec<Option<ApiError>> {
        let _one_fetch = lock(&self.fetching);
        self.list(projects, deadline)
    }

    fn list(&self, projects: &[Hetzner], deadline: Instant) -> Vec<Option<ApiError>> {
        let mut failures = Vec::new();
        for api in projects {
            let listed = api.list_zones(deadline);
            let mut state = lock(&self.state);
            if state.lists.len() <= api.index {
                state.lists.resize(api.index + 1, None);
            }
            failures.push(match listed {
                Ok(zones) => {
                    state.lists[api.index] = Some(zones);
                    None
                }
                Err(e) if state.lists[api.index].is_some() => {
                    log::warn!(
                        "hetzner: cannot list the zones of project {} ({e}); using the list from before",
                        api.project
                    );
                    None
                }
                Err(e) => Some(e),
            });
        }
        if failures.iter().all(Option::is_none) {
            lock(&self.state).fetched = Some(Instant::now());
        }
        failures
    }

    /// The zones as last listed, and when (`None`: never).
    pub fn snapshot(&self) -> (Option<Instant>, Vec<Zone>) {
        let state = lock(&self.state);
        (state.fetched, state.all())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The zone of `fqdn` from the lists, if known.
    pub fn cached(&self, fqdn: &str) -> Option<Zone> {
        best_zone(&lock(&self.state).all(), fqdn)
    }

    /// Has every project's zone list been read?
    pub fn known(&self) -> bool {
        lock(&self.state).fetched.is_some()
    }
}

/// The longest zone name that contains `fqdn` on a label boundary (a
/// wildcard `*.name` lies in the zone that holds `name`).
pub fn best_zone(zones: &[Zone], fqdn: &str) -> Option<Zone> {
    zones.iter().filter(|z| fqdn::in_zone(fqdn, &z.name)).max_by_key(|z| z.name.len()).cloned()
}

/// Zones that two projects both see: (zone, first project, second project).
pub fn in_two_projects(zones: &[Zone]) -> Vec<(String, usize, usize)> {
    let mut twice = Vec::new();
    for (i, a) in zones.iter().enumerate() {
        if let Some(b) = zones[i + 1..].iter().find(|b| b.name == a.name && b.project != a.project) {
            if !twice.iter().any(|(name, _, _)| *name == a.name) {
                twice.push((a.name.clone(), a.project, b.project));
            }
        }
    }
    twice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(id: u64, name: &str, project: usize) -> Zone {
        Zone { id, name: name.into(), project }
    }

    #[test]
    fn the_longest_zone_on_a_label_boundary_wins() {
        let zones = vec![zone(1, "example.com", 0), zone(2, "sub.example.com", 1), zone(3, "ample.com", 0)];
        assert_eq!(best_zone(&zones, "a.sub.example.com").map(|z| z.id), Some(2));
        assert_eq!(best_zone(&zones, "b.example.com").map(|z| z.id), Some(1));
        assert_eq!(best_zone(&zones, "example.com").map(|z| z.id), Some(1));
        assert_eq!(best_zone(&zones, "*.example.com").map(|z| z.id), Some(1));
        assert_eq!(best_zone(&zones, "*.sub.example.com").map(|z| z.id), Some(2));
        assert_eq!(best_zone(&zones, "badexample.com").map(|z| z.id), None);
    }

    #[test]
    fn a_zone_two_projects_see_is_found_once() {
        let zones = vec![zone(1, "example.com", 0), zone(2, "example.org", 0), zone(3, "example.com", 1)];
        assert_eq!(in_two_projects(&zones), vec![("example.com".to_string(), 0, 1)]);
        assert!(in_two_projects(&zones[..2]).is_empty());
    }
}
