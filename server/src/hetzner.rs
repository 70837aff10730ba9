//! The DNS endpoints of the Hetzner Cloud API (`https://api.hetzner.cloud/v1`).
//!
//! One `ureq::Agent`, built once with timeouts and without redirects: the old
//! DNS API answers `301` to the console, and a stale URL must fail with a
//! clear error instead of reading an HTML page as success. Every call takes
//! a deadline so a client's request is never held longer than the caller
//! allows; retries (rate limit, `conflict`, `locked`, 502/504) happen only
//! while the deadline permits, honouring `RateLimit-Reset`. Error answers are
//! read, so the operator sees Hetzner's own code, message and correlation id.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod budget;
mod call;
mod error;
mod wire;

use budget::Budget;
pub use budget::{Kind, RESERVE_PERCENT};
pub use error::ApiError;
use wire::{OneRRSet, OneZone, RRSetsPage, WriteAnswer, ZonesPage};

use crate::env::Secret;
use crate::net::RecordType;
use crate::projects::DEFAULT_PROJECT;
use crate::time::unix_now;

const USER_AGENT: &str = concat!("dyndns-server/", env!("CARGO_PKG_VERSION"));
/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 4;
/// Largest response body we read (a zone page of 50 zones is ~30 KiB, a
/// page of 100 RRSets about as much).
const MAX_BODY: u64 = 1 << 20;
/// The first look at an action after a write. Hetzner's DNS actions run for
/// a moment; looking at once would mostly find them `running` and cost a
/// call more.
pub const FIRST_POLL: Duration = Duration::from_millis(500);

/// A zone of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: u64,
    pub name: String,
    /// The project whose token sees it: its index among the server's
    /// projects (`Hetzner::index`).
    pub project: usize,
}

/// Parsed content of an RRSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRSet {
    pub values: Vec<String>,
    /// `None`: the zone's default TTL.
    pub ttl: Option<u32>,
}

/// One address record to write: its value and the comment Hetzner keeps
/// beside it (`updater::comment`: who wrote it, for whom, when).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub value: &'a str,
    pub comment: &'a str,
}

/// One RRSet of a zone listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub rtype: RecordType,
    pub values: Vec<String>,
    /// The records' comments, in the order of `values` (empty when none).
    pub comments: Vec<String>,
    /// `None`: the zone's default TTL.
    pub ttl: Option<u32>,
}

/// The HTTP request of one call; only a POST has a body.
#[derive(Debug, Clone, Copy)]
enum Method<'a> {
    Get,
    Post(&'a Value),
    Delete,
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post(_) => "POST",
            Method::Delete => "DELETE",
        })
    }
}

/// The API client of one project (one token). Cheap to share: `&Hetzner`
/// from any thread.
pub struct Hetzner {
    /// The project's name (`HETZNER_TOKENS_FILE`; `default` for
    /// `HETZNER_TOKEN`), for logs, `/status` and `/metrics`.
    pub project: String,
    /// Its place among the server's projects (`Zone::project`).
    pub index: usize,
    agent: ureq::Agent,
    base: String,
    token: Secret,
    /// The longest one call may take (`HETZNER_TIMEOUT`).
    timeout: Duration,
    budget: Budget,
    /// Calls by outcome, for `/metrics`.
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// Why the last call failed (heartbeats).
    last_failure: Mutex<Option<String>>,
}

/// ureq's buffers per connection. Its defaults are 128 KiB each, filled
/// with zeros when a connection opens, so every open or pooled connection
/// kept 256 KiB of touched memory (measured with 1000 hosts: idle private
/// memory 1.5 -> 1.2 MiB, peak RSS under load 13.2 -> 10.5 MiB with these
/// sizes). An answer's head must fit the input
/// buffer; bodies stream through it, so a listing page of any size reads
/// the same. Our requests are a few hundred bytes.
pub const INPUT_BUFFER: usize = 16 * 1024;
pub const OUTPUT_BUFFER: usize = 8 * 1024;
/// A larger answer head is an error that says so (it must stay below
/// `INPUT_BUFFER`, or the error would be "made no progress").
const MAX_ANSWER_HEAD: usize = 12 * 1024;

impl Hetzner {
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Hetzner {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .timeout_global(Some(timeout))
            .user_agent(USER_AGENT)
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .max_response_header_size(MAX_ANSWER_HEAD)
            .build()
            .new_agent();
        Hetzner {
            project: DEFAULT_PROJECT.to_string(),
            index: 0,
            agent,
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout,
            budget: Budget::new(),
            calls: Mutex::new(BTreeMap::new()),
            last_failure: Mutex::new(None),
        }
    }

    /// The client of project `name`, the `index`th of the server's.
    pub fn in_project(mut self, index: usize, name: &str) -> Hetzner {
        self.index = index;
        self.project = name.to_string();
        self
    }

    /// Requests left in the project's budget now (see `Budget::remaining`),
    /// if any answer carried `RateLimit-Remaining`.
    pub fn rate_remaining(&self) -> Option<i64> {
        self.budget.remaining(unix_now())
    }

    /// `RateLimit-Limit` as last seen (3600 before any answer).
    pub fn rate_limit(&self) -> i64 {
        self.budget.limit.load(Ordering::Relaxed)
    }

    /// Is the budget below its reserve (`RESERVE_PERCENT` of the limit)?
    /// Then only writes should be made.
    pub fn budget_low(&self) -> bool {
        self.rate_remaining().is_some_and(|n| n < self.rate_limit() * RESERVE_PERCENT / 100)
    }

    /// Calls made in the last hour, by kind (in `Kind::ALL` order).
    pub fn calls_last_hour(&self) -> [u32; 4] {
        self.budget.last_hour(unix_now())
    }

    /// Calls so far by outcome (`success`, `client_error`, `rate_limited`,
    /// `server_error`, `redirect`, `transport`).
    pub fn call_counts(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn count(&self, outcome: &'static str) {
        *self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(outcome).or_insert(0) += 1;
    }

    /// All zones of the project, following pagination.
    pub fn list_zones(&self, deadline: Instant) -> Result<Vec<Zone>, ApiError> {
        let mut zones = Vec::new();
        let mut page = 1u64;
        for _ in 0..200 {
            let path = format!("/zones?page={page}&per_page=50");
            let doc: ZonesPage = self.call(Kind::List, Method::Get, &path, deadline)?;
            zones.extend(doc.zones.into_iter().map(|z| z.into_zone(self.index)));
            match doc.meta.and_then(|m| m.pagination).and_then(|p| p.next_page) {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
        Ok(zones)
    }

    /// One zone by name; `None` when the project has no such zone.
    pub fn get_zone(&self, name: &str, deadline: Instant) -> Result<Option<Zone>, ApiError> {
        match self.call::<OneZone>(Kind::Read, Method::Get, &format!("/zones/{name}"), deadline) {
            Ok(doc) => Ok(Some(doc.zone.into_zone(self.index))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The RRSet `(name, type)` of a zone; `None` when it does not exist.
    pub fn get_rrset(
        &self,
        zone: u64,
        name: &str,
        rtype: RecordType,
        deadline: Instant,
    ) -> Result<Option<RRSet>, ApiError> {
        let path = format!("/zones/{zone}/rrsets/{name}/{rtype}");
        match self.call::<OneRRSet>(Kind::Read, Method::Get, &path, deadline) {
            Ok(doc) => {
                Ok(Some(RRSet { values: doc.rrset.records.into_iter().map(|r| r.value).collect(), ttl: doc.rrset.ttl }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create an RRSet with one record and wait for its action.
    pub fn create_rrset(
        &self,
        zone: u64,
        name: &str,
        rtype: RecordType,
        ttl: u32,
        record: Record<'_>,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let records = [{ json!({"value": record.value, "comment": record.comment}) }];
        let body = json!({"name": name, "type": rtype.as_str(), "ttl": ttl, "records": records});
        let answer: WriteAnswer =
            self.call(Kind::Write, Method::Post(&body), &format!("/zones/{zone}/rrsets"), deadline)?;
        self.wait_action(answer.action, deadline)
    }

    /// Replace the records of an RRSet with one record and wait for its action.
    pub fn set_records(
        &self,
        zone: u64,
        name: &str,
        rtype: RecordType,
        record: Record<'_>,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let body = json!({"records": [{"value": record.value, "comment": record.comment}]});
        let path = format!("/zones/{zone}/rrsets/{name}/{rtype}/actions/set_records");
        let answer: WriteAnswer = self.call(Kind::Write, Method::Post(&body), &path, deadline)?;
        self.wait_action(answer.action, deadline)
    }

    /// Change the TTL of an RRSet and wait for its action (`set_records`
    /// takes no TTL).
    pub fn change_ttl(
        &self,
        zone: u64,
        name: &str,
        rtype: RecordType,
        ttl: u32,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let body = json!({ "ttl": ttl });
        let path = format!("/zones/{zone}/rrsets/{name}/{rtype}/actions/change_ttl");
        let answer: WriteAnswer = self.call(Kind::Write, Method::Post(&body), &path, deadline)?;
        self.wait_action(answer.action, deadline)
    }

    /// The values of a TXT RRSet, unquoted; `None` when it does not exist.
    pub fn get_txt(&self, zone: u64, name: &str, deadline: Instant) -> Result<Option<Vec<String>>, ApiError> {
        let path = format!("/zones/{zone}/rrsets/{name}/TXT");
        match self.call::<OneRRSet>(Kind::Read, Method::Get, &path, deadline) {
            Ok(doc) => Ok(Some(doc.rrset.records.into_iter().map(|r| unquote(&r.value)).collect())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Add one value to a TXT RRSet (created with `ttl` when missing) and
    /// wait for the action. The value is sent quoted, as the API requires.
    pub fn add_txt(&self, zone: u64, name: &str, ttl: u32, value: &str, deadline: Instant) -> Result<(), ApiError> {
        let body = json!({"ttl": ttl, "records": [{"value": quote(value)}]});
        let path = format!("/zones/{zone}/rrsets/{name}/TXT/actions/add_records");
        let answer: WriteAnswer = self.call(Kind::Write, Method::Post(&body), &path, deadline)?;
        self.wait_action(answer.action, deadline)
    }

    /// Remove exactly one value from a TXT RRSet and wait for the action.
    pub fn remove_txt(&self, zone: u64, name: &str, value: &str, deadline: Instant) -> Result<(), ApiError> {
        let body = json!({"records": [{"value": quote(value)}]});
        let path = format!("/zones/{zone}/rrsets/{name}/TXT/actions/remove_records");
        let answer: WriteAnswer = self.call(Kind::Write, Method::Post(&body), &path, deadline)?;
        self.wait_action(answer.action, deadline)
    }

    /// Delete a whole RRSet and wait for the action; one that is already
    /// gone is no error.
    pub fn delete_txt_rrset(&self, zone: u64, name: &str, deadline: Instant) -> Result<(), ApiError> {
        let path = format!("/zones/{zone}/rrsets/{name}/TXT");
        match self.call::<WriteAnswer>(Kind::Write, Method::Delete, &path, deadline) {
            Ok(answer) => self.wait_action(answer.action, deadline),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every A and AAAA RRSet of a zone, in pages of 100 (one call per
    /// page, however many hosts the zone holds).
    pub fn list_address_rrsets(&self, zone: u64, deadline: Instant) -> Result<Vec<Listed>, ApiError> {
        let mut all = Vec::new();
        let mut page = 1u64;
        for _ in 0..1000 {
            let path = format!("/zones/{zone}/rrsets?type=A&type=AAAA&page={page}&per_page=100");
            let doc: RRSetsPage = self.call(Kind::List, Method::Get, &path, deadline)?;
            all.extend(doc.rrsets.into_iter().filter_map(|r| {
                let comments = r.records.iter().map(|v| v.comment.clone().unwrap_or_default()).collect();
                Some(Listed {
                    name: r.name,
                    rtype: RecordType::parse(&r.rtype)?,
                    values: r.records.into_iter().map(|v| v.value).collect(),
                    comments,
                    ttl: r.ttl,
                })
            }));
            match doc.meta.and_then(|m| m.pagination).and_then(|p| p.next_page) {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
        Ok(all)
    }
}

/// A TXT value as the API takes it: one quoted character-string (values
/// of an ACME challenge are 43 characters of base64url, far below the
/// 255 a string may hold, and never contain quotes).
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A TXT value as the API answers it, without the quotes.
fn unquote(value: &str) -> String {
    let v = value.trim();
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::call::{escape_remote, parse_answer};
    use super::wire::{ErrorAnswer, OneAction};
    use super::*;

    #[test]
    fn text_from_hetzner_cannot_start_a_log_line() {
        assert_eq!(escape_remote("bad\n2026-01-01 [INFO] forged"), "bad\\x0a2026-01-01 [INFO] forged");
        assert_eq!(escape_remote("Zone ü"), "Zone \\u{fc}");
        assert_eq!(escape_remote(&"a".repeat(1000)).len(), 300);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = ApiError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "unable to authenticate".into(),
            correlation_id: Some("abc".into()),
        };
        assert_eq!(
            e.to_string(),
            "hetzner answered 401 unauthorized: unable to authenticate (correlation id abc); check HETZNER_TOKEN"
        );
        assert!(!e.is_transient());
        let r = ApiError::Redirect { status: 301, location: "https://console.hetzner.com/".into() };
        assert!(r.to_string().contains("HETZNER_API_URL"));
    }

    #[test]
    fn answers_are_read_as_typed_documents() {
        let page: ZonesPage = parse_answer(
            r#"{"zones":[{"id":7,"name":"Example.COM.","ttl":3600}],"meta":{"pagination":{"next_page":2}}}"#,
            200,
        )
        .expect("zones");
        assert_eq!(
            page.zones.into_iter().map(|z| z.into_zone(0)).collect::<Vec<_>>(),
            vec![Zone { id: 7, name: "example.com".into(), project: 0 }]
        );
        let err = parse_answer::<ZonesPage>(r#"{"zone":{}}"#, 200).err().expect("wrong shape");
        assert!(err.to_string().contains("an unexpected document (missing field `zones`"), "{err}");
        let err = parse_answer::<ZonesPage>("<html>moved</html>", 200).err().expect("html");
        assert!(err.to_string().contains("not JSON (starts with \"<html>moved</html>\")"), "{err}");
        let action: OneAction =
            parse_answer(r#"{"action":{"id":3,"status":"error","error":{"code":"x","message":"y"}}}"#, 200)
                .expect("action");
        assert_eq!((action.action.id, action.action.error.map(|e| e.code)), (3, Some("x".into())));
        let error = parse_answer::<ErrorAnswer>(r#"{"error":{"code":"locked","message":"m"}}"#, 423).ok();
        assert!(matches!(error, Some(ErrorAnswer::Hetzner { error }) if error.code == "locked"));
        assert!(matches!(parse_answer::<ErrorAnswer>("[1]", 502).ok(), Some(ErrorAnswer::Other(_))));
        assert!(parse_answer::<ErrorAnswer>("<html>", 502).is_err(), "not JSON stays Malformed");
    }

    #[test]
    fn the_budget_refills_at_the_documented_rate_and_counts_the_last_hour() {
        let b = Budget::new();
        assert_eq!(b.remaining(1000), None, "unknown before the first answer");
        b.remaining.store(100, Ordering::Relaxed);
        b.seen.store(1000, Ordering::Relaxed);
        b.reset.store(1000 + 3500, Ordering::Relaxed);
        assert_eq!(b.remaining(1000), Some(100));
        assert_eq!(b.remaining(1260), Some(360), "one call a second for 3600 an hour");
        assert_eq!(b.remaining(9000), Some(3600), "full after the reset");
        // Minutes since the epoch: 2000, 2000, 2002, 2050, 2050.
        let at = [(0, Kind::Read), (30, Kind::Write), (120, Kind::Poll), (3000, Kind::List), (3000, Kind::List)];
        for (t, kind) in at {
            b.count(kind, 120_000 + t);
        }
        assert_eq!(b.last_hour(120_000 + 3000), [1, 1, 1, 2]);
        assert_eq!(b.last_hour(120_000 + 3660), [0, 0, 1, 2], "older than an hour is gone");
    }

    #[test]
    fn transient_errors_are_the_ones_hetzner_retries() {
        let api = |status, code: &str| ApiError::Api {
            status,
            code: code.into(),
            message: String::new(),
            correlation_id: None,
        };
        assert!(api(429, "rate_limit_exceeded").is_transient());
        assert!(api(409, "conflict").is_transient());
        assert!(api(423, "locked").is_transient());
        assert!(api(502, "bad_gateway").is_transient());
        assert!(!api(409, "uniqueness_error").is_transient());
        assert!(!api(422, "invalid_input").is_transient());
        assert!(!api(500, "server_error").is_transient());
        assert!(!api(401, "unauthorized").is_transient());
    }
}
