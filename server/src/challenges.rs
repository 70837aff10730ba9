//! ACME DNS-01 challenge values (`_acme-challenge.<host>` TXT records) that
//! hosts write under their own key, so no device needs the project token.
//!
//! Each value is added to the TXT RRSet of the name without touching the
//! other values (a certificate for `nas.example.com` and
//! `*.nas.example.com` needs two at once) and removed on its own; the
//! RRSet is deleted with its last value. Both operations read the RRSet
//! first, so presenting twice leaves one value.
//!
//! What Hetzner is asked is bounded per host:
//! - A value the server holds for the host is presented again without a
//!   call, and a value it does not hold (never written, or cleaned up
//!   already) is cleaned up without one: repeating costs nothing.
//! - Every operation that does reach Hetzner spends one of the host's
//!   `CALLS_BURST` tokens, refilled at `CALLS_PER_HOUR`; without one the
//!   answer is 429 with the wait (one certificate for a name and its
//!   wildcard takes four operations, so a looping client or a leaked key
//!   costs at most ~3 calls × `CALLS_PER_HOUR` an hour, not the project's
//!   whole budget).
//!
//! Operations of one host run one at a time (a `present` racing the
//! deletion of the last value could lose its value); other hosts never
//! wait for them, and the values themselves sit behind a lock that is
//! never held across a call, so the state writer, a reload and shutdown
//! never wait for Hetzner. A host holds at most `MAX_PER_HOST` values, and
//! values older than `STALE_AFTER` are removed by the server (`expire`),
//! also across restarts (they are kept in the state file). In a dry run
//! values live only here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fqdn;
use crate::updater::{UpdateError, Updater};

/// Challenge values one host may hold at once: two per certificate
/// (name and wildcard), for two certificates being renewed together.
pub const MAX_PER_HOST: usize = 4;
/// Values older than this (seconds) are removed by the server.
pub const STALE_AFTER: u64 = 3600;
/// TTL of a TXT RRSet the server creates.
pub const TXT_TTL: u32 = 60;
/// The label in front of a host's name.
pub const LABEL: &str = "_acme-challenge";
/// Operations reaching Hetzner one host may run at once (two certificates
/// of a name and its wildcard: eight)…
pub const CALLS_BURST: u32 = 8;
/// … and refilled per hour.
pub const CALLS_PER_HOUR: u32 = 12;

/// One value a host holds, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub value: String,
    /// Unix seconds when it was presented.
    pub added: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeError {
    /// The host holds `MAX_PER_HOST` values already.
    TooMany,
    /// The host has no operation token left; one is back after this.
    TooManyCalls(Duration),
    Update(UpdateError),
}

impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChallengeError::TooMany => write!(
                f,
                "this host holds {MAX_PER_HOST} challenge values already; clean up finished challenges first (stale ones go after {} minutes)",
                STALE_AFTER / 60
            ),
            ChallengeError::TooManyCalls(wait) => write!(
                f,
                "this host asked for {CALLS_BURST} challenge changes in a short time; at most {CALLS_PER_HOUR} an hour follow, the next in {} s",
                wait.as_secs().max(1)
            ),
            ChallengeError::Update(e) => write!(f, "{e}"),
        }
    }
}

impl From<UpdateError> for ChallengeError {
    fn from(e: UpdateError) -> Self {
        ChallengeError::Update(e)
    }
}

impl From<crate::hetzner::ApiError> for ChallengeError {
    fn from(e: crate::hetzner::ApiError) -> Self {
        ChallengeError::Update(UpdateError::Api(e))
    }
}

/// What `present` or `cleanup` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Added,
    AlreadyPresent,
    Removed,
    AlreadyGone,
}

impl Done {
    pub fn as_str(self) -> &'static str {
        match self {
            Done::Added => "added",
            Done::AlreadyPresent => "already present",
            Done::Removed => "removed",
            Done::AlreadyGone => "already gone",
        }
    }
}

/// One host's operation lock and its tokens.
struct HostOps {
    tokens: f64,
    refilled: Instant,
}

impl HostOps {
    /// Spend a token, or say when the next one is back.
    fn spend(&mut self) -> Result<(), ChallengeError> {
        let per_second = f64::from(CALLS_PER_HOUR) / 3600.0;
        let refill = self.refilled.elapsed().as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(f64::from(CALLS_BURST));
        self.refilled = Instant::now();
        if self.tokens < 1.0 {
            return Err(ChallengeError::TooManyCalls(Duration::from_secs_f64((1.0 - self.tokens) / per_second)));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[derive(Default)]
pub struct Challenges {
    /// Host → the values it holds. Never locked across a call.
    held: Mutex<BTreeMap<String, Vec<Held>>>,
    /// Host → its operations' lock (held across the calls of one
    /// operation) and tokens. Hosts are the registered ones: bounded.
    ops: Mutex<HashMap<String, Arc<Mutex<HostOps>>>>,
}

/// Who pays for an operation: a host's request spends its tokens, the
/// server's own expiry does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payer {
    Host,
    Server,
}

impl Challenges {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<Held>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn host_ops(&self, host: &str) -> Arc<Mutex<HostOps>> {
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = || Arc::new(Mutex::new(HostOps { tokens: f64::from(CALLS_BURST), refilled: Instant::now() }));
        ops.entry(host.to_string()).or_insert_with(fresh).clone()
    }

    fn holds(&self, host: &str, value: &str) -> bool {
        self.lock().get(host).is_some_and(|v| v.iter().any(|h| h.value == value))
    }

    /// Values remembered from the state file.
    pub fn import(&self, host: &str, values: Vec<Held>) {
        if !values.is_empty() {
            self.lock().insert(host.to_string(), values);
        }
    }

    /// Every host's values, for the state file.
    pub fn export(&self) -> BTreeMap<String, Vec<Held>> {
        self.lock().clone()
    }

    /// Add `value` to the TXT RRSet of `_acme-challenge.<host>`.
    pub fn present(
        &self,
        updater: &Updater,
        host: &str,
        value: &str,
        now: u64,
        deadline: Instant,
    ) -> Result<Done, ChallengeError> {
        let ops = self.host_ops(host);
        let mut ops = ops.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let held = self.lock();
            let mine = held.get(host).map_or(&[][..], Vec::as_slice);
            if mine.iter().any(|h| h.value == value) {
                return Ok(Done::AlreadyPresent);
            }
            if mine.len() >= MAX_PER_HOST {
                return Err(ChallengeError::TooMany);
            }
        }
        let done = if updater.projects().is_empty() {
            log::info!("dry run: would add TXT {LABEL}.{host} {value:?}");
            Done::Added
        } else {
            ops.spend()?;
            let (api, zone, name, current) = txt_of(updater, host, deadline)?;
            if current.iter().any(|v| v == value) {
                Done::AlreadyPresent
            } else {
                api.add_txt(zone, &name, TXT_TTL, value, deadline)?;
                log::info!("hetzner: added TXT {LABEL}.{host} {value:?}");
                Done::Added
            }
        };
        let mut held = self.lock();
        let mine = held.entry(host.to_string()).or_default();
        mine.retain(|h| h.value != value);
        mine.push(Held { value: value.to_string(), added: now });
        Ok(done)
    }

    /// Remove exactly `value` from the TXT RRSet of `_acme-challenge.<host>`
    /// (the RRSet with its last value). A value the server does not hold
    /// for the host costs no call.
    pub fn cleanup(
        &self,
        updater: &Updater,
        host: &str,
        value: &str,
        deadline: Instant,
    ) -> Result<Done, ChallengeError> {
        self.remove(updater, host, value, deadline, Payer::Host)
    }

    /// Remove every value older than `STALE_AFTER`; returns what was tried,
    /// with its outcome.
    pub fn expire(
        &self,
        updater: &Updater,
        now: u64,
        deadline: Instant,
    ) -> Vec<(String, String, Result<Done, ChallengeError>)> {
        let stale: Vec<(String, String)> = self
            .lock()
            .iter()
            .flat_map(|(host, values)| {
                values
                    .iter()
                    .filter(|h| now.saturating_sub(h.added) >= STALE_AFTER)
                    .map(|h| (host.clone(), h.value.clone()))
            })
            .collect();
        stale
            .into_iter()
            .map(|(host, value)| {
                let result = self.remove(updater, &host, &value, deadline, Payer::Server);
                (host, value, result)
            })
            .collect()
    }

    /// Is anything held (so `expire` has work one day)?
    pub fn any(&self) -> bool {
        self.lock().values().any(|v| !v.is_empty())
    }

    fn remove(
        &self,
        updater: &Updater,
        host: &str,
        value: &str,
        deadline: Instant,
        payer: Payer,
    ) -> Result<Done, ChallengeError> {
        let ops = self.host_ops(host);
        let mut ops = ops.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.holds(host, value) {
            return Ok(Done::AlreadyGone);
        }
        let done = if updater.projects().is_empty() {
            log::info!("dry run: would remove TXT {LABEL}.{host} {value:?}");
            Done::Removed
        } else {
            if payer == Payer::Host {
                ops.spend()?;
            }
            let (api, zone, name, current) = txt_of(updater, host, deadline)?;
            if !current.iter().any(|v| v == value) {
                Done::AlreadyGone
            } else {
                if current.iter().all(|v| v == value) {
                    api.delete_txt_rrset(zone, &name, deadline)?;
                } else {
                    api.remove_txt(zone, &name, value, deadline)?;
                }
                log::info!("hetzner: removed TXT {LABEL}.{host} {value:?}");
                Done::Removed
            }
        };
        let mut held = self.lock();
        if let Some(mine) = held.get_mut(host) {
            mine.retain(|h| h.value != value);
            if mine.is_empty() {
                held.remove(host);
            }
        }
        Ok(done)
    }
}

/// The client of its zone's project, the zone id, RRSet name and current
/// values of a host's challenge RRSet.
fn txt_of<'u>(
    updater: &'u Updater,
    host: &str,
    deadline: Instant,
) -> Result<(&'u crate::hetzner::Hetzner, u64, String, Vec<String>), ChallengeError> {
    let zone = updater.zone_for(host, deadline)?;
    let api = updater.api(&zone).ok_or_else(|| UpdateError::NoZone(host.to_string()))?;
    let name = rr_name(host, &zone.name);
    let current = api.get_txt(zone.id, &name, deadline)?.unwrap_or_default();
    Ok((api, zone.id, name, current))
}

/// The RRSet name of a host's challenge within its zone.
fn rr_name(host: &str, zone: &str) -> String {
    match fqdn::rr_name(host, zone).as_str() {
        "@" => LABEL.to_string(),
        name => format!("{LABEL}.{name}"),
    }
}

/// The host a challenge name is for: `_acme-challenge.nas.example.com.` →
/// `nas.example.com` (lower case, no trailing dot); `None` when the name
/// is not a challenge name.
pub fn host_of(challenge: &str) -> Option<String> {
    let name = challenge.trim().trim_end_matches('.');
    let (label, rest) = name.split_once('.')?;
    if !label.eq_ignore_ascii_case(LABEL) {
        return None;
    }
    fqdn::canonical(rest).ok()
}

/// The DNS-01 value of a key authorization: base64url (no padding) of its
/// SHA-256 (RFC 8555, section 8.4), for lego's `RAW` mode.
pub fn digest(key_authorization: &str) -> String {
    use base64::Engine as _;
    let sha = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_names_map_to_their_host() {
        assert_eq!(host_of("_acme-challenge.nas.example.com.").as_deref(), Some("nas.example.com"));
        assert_eq!(host_of("_ACME-Challenge.NAS.example.com").as_deref(), Some("nas.example.com"));
        assert_eq!(host_of("nas.example.com."), None);
        assert_eq!(host_of("_acme-challenge"), None);
        assert_eq!(host_of("_acme-challenge.bad..name"), None);
        assert_eq!(rr_name("nas.example.com", "example.com"), "_acme-challenge.nas");
        assert_eq!(rr_name("example.com", "example.com"), "_acme-challenge");
    }

    #[test]
    fn the_digest_is_rfc_8555s() {
        // RFC 8555 example shape: base64url of SHA-256, 43 characters.
        assert_eq!(digest("token.thumbprint").len(), 43);
        assert_eq!(digest(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }
}
