//! Who is asking: the one place credentials are checked, for every endpoint.
//!
//! Two kinds of credentials exist:
//! - **A host's key** (HTTP Basic with the host's full name or first label
//!   as user, or `X-Pre-Shared-Key`): 256 random bits, written by the
//!   server. Guessing one is hopeless at any rate, so a correct key is
//!   **always** accepted, whatever its source address did before. Nobody
//!   who shares an address with a router (CGNAT, a proxy that names no
//!   client, Docker's userland proxy) can lock that router out.
//! - **The admin credentials** (`BASIC_AUTH_USERNAME`/`_PASSWORD`): chosen
//!   by a person, so guessable. A source with `limiter::MAX_FAILURES`
//!   failed attempts *with the admin's user name* within a minute has its
//!   admin logins refused, right or wrong, for `limiter::BLOCK` (answering
//!   a right one would let guessing go on). Only guesses of the admin's
//!   user name count here: a scanner, a misconfigured router or a guess of
//!   a host's key never locks the admin out. What is left: someone who
//!   knows the admin's user name and shares the admin's address can keep
//!   the admin's logins from that address refused; host keys still work,
//!   and so does the admin from any other address.
//!
//! Every failed attempt also counts for its source in a second table; a
//! source over the limit has its wrong attempts answered at once with the
//! protocol's "too many" code (so a scanner is told, and its log lines are
//! one warning), which never touches a right key.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock};

use subtle::ConstantTimeEq as _;

use crate::config::Admin;
use crate::fqdn;
use crate::keys::KeyFile;
use crate::limiter::{self, Limiter};

/// Compared against when a host has no key, so an unknown host costs the
/// same time as a wrong key: as long as a real key (43 characters).
const NO_KEY: &str = "no-key-no-key-no-key-no-key-no-key-no-key-x";

/// Whom a request's credentials prove it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin credentials: may act for every registered host.
    Admin,
    /// The holder of this registered host's key.
    Host(String),
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Wrong (or no) credentials.
    Wrong,
    /// The source failed too often: refused for this many more seconds.
    Refused(u64),
}

/// The keys, the admin credentials and the failure tables.
pub struct Guard {
    /// Replaced whole on reload (`SIGHUP`); readers never see half a file.
    keys: RwLock<KeyFile>,
    admin: Option<Admin>,
    /// `REGISTERED_FQDNS`, sorted.
    registered: BTreeSet<String>,
    /// Every failed attempt, per source.
    failures: Limiter,
    /// Failed attempts with the admin's user name, per source.
    admin_failures: Limiter,
}

impl Guard {
    pub fn new(keys: KeyFile, admin: Option<Admin>, registered: &[String]) -> Guard {
        Guard {
            keys: RwLock::new(keys),
            admin,
            registered: registered.iter().cloned().collect(),
            failures: Limiter::default(),
            admin_failures: Limiter::default(),
        }
    }

    /// Check `user`/`pass` from `source` for a request about `target` (the
    /// host a request acts on, when it names one). A user name that is a
    /// first label means `target` when `target` has that label, else the
    /// one registered host with that label.
    pub fn authorize(
        &self,
        source: Option<IpAddr>,
        user: &str,
        pass: &str,
        target: Option<&str>,
    ) -> Result<Principal, Denied> {
        if let Some(host) = self.key_holder(user, pass.trim(), target) {
            return Ok(Principal::Host(host));
        }
        let admin_named = self.admin.as_ref().is_some_and(|a| a.username == user);
        if admin_named {
            if let Some(secs) = source.and_then(|s| self.admin_failures.blocked(s)) {
                return Err(Denied::Refused(secs.as_secs().max(1)));
            }
            if self.admin_ok(user, pass) {
                return Ok(Principal::Admin);
            }
        }
        let Some(source) = source else { return Err(Denied::Wrong) };
        // Counted before the other table answers, so no admin guess goes uncounted.
        if admin_named && self.admin_failures.failed(source) {
            log::warn!(
                "{source}: {} failed admin logins within {}s; its admin logins are refused for {}s (host keys still work)",
                limiter::MAX_FAILURES,
                limiter::WINDOW.as_secs(),
                limiter::BLOCK.as_secs()
            );
        }
        if let Some(secs) = self.failures.blocked(source) {
            return Err(Denied::Refused(secs.as_secs().max(1)));
        }
        if self.failures.failed(source) {
            log::warn!(
                "{source}: {} failed authentications within {}s; its wrong keys are answered at once for {}s (right keys still work)",
                limiter::MAX_FAILURES,
                limiter::WINDOW.as_secs(),
                limiter::BLOCK.as_secs()
            );
        }
        Err(Denied::Wrong)
    }

    /// The registered host whose key `pass` is, named by `user` (see `authorize`).
    fn key_holder(&self, user: &str, pass: &str, target: Option<&str>) -> Option<String> {
        let user = user.trim().trim_end_matches('.').to_ascii_lowercase();
        let candidate = if user.contains('.') {
            fqdn::canonical(&user).ok()
        } else if let Some(t) = target.filter(|t| fqdn::first_label(t) == user) {
            Some(t.to_string())
        } else {
            let mut named = self.registered.iter().filter(|h| fqdn::first_label(h) == user);
            match (named.next(), named.next()) {
                (Some(one), None) => Some(one.clone()),
                _ => None,
            }
        };
        // Always one comparison, so timing does not tell a known name.
        let host = candidate.unwrap_or_default();
        (self.key_ok(&host, pass) && self.registered.contains(&host)).then_some(host)
    }

    /// Why credentials for `target` were wrong, for the admin's status
    /// page only (never in an answer): the user name names no registered
    /// host, or it does and the key is wrong.
    pub fn why_wrong(&self, user: &str, target: Option<&str>) -> String {
        let name = user.trim().trim_end_matches('.').to_ascii_lowercase();
        let named = if name.contains('.') {
            fqdn::canonical(&name).ok().filter(|h| self.registered.contains(h))
        } else {
            target.filter(|t| fqdn::first_label(t) == name).map(str::to_string).or_else(|| {
                let mut named = self.registered.iter().filter(|h| fqdn::first_label(h) == name);
                match (named.next(), named.next()) {
                    (Some(one), None) => Some(one.clone()),
                    _ => None,
                }
            })
        };
        let shown: String = user.chars().filter(|c| !c.is_control()).take(64).collect();
        match named {
            Some(host) => format!("user name {shown:?} is right ({host}); the key is wrong"),
            None if user.is_empty() => "no user name".into(),
            None => format!("user name {shown:?} names no registered host; use the host's first label or full name"),
        }
    }

    /// Does `presented` equal the key of `host`? Constant time, and the same
    /// work for a host without a key.
    fn key_ok(&self, host: &str, presented: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = keys.get(host);
        let same = key.unwrap_or(NO_KEY).as_bytes().ct_eq(presented.as_bytes());
        bool::from(same) && key.is_some()
    }

    /// Are these the admin credentials? Both parts are always compared, so
    /// timing does not tell which one was wrong.
    fn admin_ok(&self, user: &str, pass: &str) -> bool {
        self.admin.as_ref().is_some_and(|a| {
            let user_ok = a.username.as_bytes().ct_eq(user.as_bytes());
            let pass_ok = a.password.expose().as_bytes().ct_eq(pass.as_bytes());
            bool::from(user_ok & pass_ok)
        })
    }

    pub fn admin_configured(&self) -> bool {
        self.admin.is_some()
    }

    pub fn has_key(&self, host: &str) -> bool {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).get(host).is_some()
    }

    /// Put a freshly read key file in place; what changed, for the log.
    pub fn replace_keys(&self, fresh: KeyFile) -> String {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let change = keys.changes_to(&fresh);
        *keys = fresh;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_key_is_as_long_as_a_real_one() {
        assert_eq!(NO_KEY.len(), crate::keys::new_key().expect("random").len());
    }
}
