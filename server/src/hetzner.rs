//! The DNS endpoints of the Hetzner Cloud API (`https://api.hetzner.cloud/v1`).
//!
//! One `ureq::Agent`, built once with timeouts and without redirects: the old
//! DNS API answers `301` to the console, and a stale URL must fail with a
//! clear error instead of reading an HTML page as success. Every call takes
//! a deadline so a client's request is never held longer than the caller
//! allows; retries (rate limit, `conflict`, `locked`, 502/504) happen only
//! while the deadline permits, honouring `RateLimit-Reset`. Error answers are
//! read, so the operator sees Hetzner's own code, message and correlation id.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::env::Secret;
use crate::net::RecordType;
use crate::time::unix_now;

const USER_AGENT: &str = concat!("dyndns-server/", env!("CARGO_PKG_VERSION"));
/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 4;
/// Largest response body we read (a zone page of 50 zones is ~30 KiB, a
/// page of 100 RRSets about as much).
const MAX_BODY: u64 = 1 << 20;
/// The project of `HETZNER_TOKEN`.
pub const DEFAULT_PROJECT: &str = "default";
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

/// Why a call to Hetzner failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Hetzner answered with its error document (`{"error": {...}}`).
    Api { status: u16, code: String, message: String, correlation_id: Option<String> },
    /// A 3xx answer: the URL is wrong (the old DNS API redirects to the console).
    Redirect { status: u16, location: String },
    /// An answer that is not the JSON Hetzner sends.
    Malformed { status: u16, detail: String },
    /// No answer: connection refused or reset, DNS failure, timeout.
    Transport(String),
    /// The write was accepted but its action ended in `error`.
    ActionFailed { code: String, message: String },
    /// The write was accepted but its action was still running at the deadline.
    ActionUnconfirmed { id: u64 },
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Api { status: 404, .. })
    }

    fn code(&self) -> &str {
        match self {
            ApiError::Api { code, .. } => code,
            _ => "",
        }
    }

    /// Worth another try after a pause (what Hetzner's own client retries).
    fn is_transient(&self) -> bool {
        match self {
            ApiError::Api { status, code, .. } => {
                matches!(status, 429 | 423 | 502 | 504) || (*status == 409 && code == "conflict")
            }
            // A bare 502/504 from a proxy in front of the API.
            ApiError::Malformed { status, .. } => matches!(status, 502 | 504),
            _ => false,
        }
    }

    /// May the write have taken effect anyway? ("could not confirm" vs "failed")
    pub fn maybe_applied(&self) -> bool {
        matches!(self, ApiError::Transport(_) | ApiError::ActionUnconfirmed { .. })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Api { status, code, message, correlation_id } => {
                write!(f, "hetzner answered {status} {code}: {message}")?;
                if let Some(id) = correlation_id {
                    write!(f, " (correlation id {id})")?;
                }
                match code.as_str() {
                    "unauthorized" => write!(f, "; check HETZNER_TOKEN"),
                    "token_readonly" => write!(f, "; the token is read-only, create one with Read & Write access"),
                    "incorrect_zone_mode" => write!(f, "; the zone is a secondary zone and cannot be changed through the API"),
                    _ => Ok(()),
                }
            }
            ApiError::Redirect { status, location } => write!(
                f,
                "hetzner API answered {status} redirect to {location:?}; HETZNER_API_URL must be the Cloud API (https://api.hetzner.cloud/v1)"
            ),
            ApiError::Malformed { status, detail } => write!(
                f,
                "hetzner API answered {status} with {detail}; check HETZNER_API_URL"
            ),
            ApiError::Transport(detail) => write!(f, "no answer from the hetzner API: {detail}"),
            ApiError::ActionFailed { code, message } => write!(f, "hetzner could not apply the change: {code}: {message}"),
            ApiError::ActionUnconfirmed { id } => {
                write!(f, "hetzner accepted the change but action {id} had not finished in time")
            }
        }
    }
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
struct Budget {
    limit: AtomicI64,
    /// `RateLimit-Remaining` of the last answer, -1 before the first.
    remaining: AtomicI64,
    /// `RateLimit-Reset` of the last answer (Unix seconds), 0 before.
    reset: AtomicU64,
    /// When the last answer was read (Unix seconds).
    seen: AtomicU64,
    /// Calls per minute of the last hour: (minute since the epoch, counts by kind).
    minutes: Mutex<VecDeque<(u64, [u32; 4])>>,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            limit: AtomicI64::new(DEFAULT_LIMIT),
            remaining: AtomicI64::new(-1),
            reset: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            minutes: Mutex::new(VecDeque::new()),
        }
    }

    fn count(&self, kind: Kind, now: u64) {
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

    fn last_hour(&self, now: u64) -> [u32; 4] {
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
    fn remaining(&self, now: u64) -> Option<i64> {
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

// The documents Hetzner answers with, as far as we read them.

#[derive(Deserialize)]
struct ZonesPage {
    zones: Vec<ZoneDoc>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u64>,
}

#[derive(Deserialize)]
struct ZoneDoc {
    id: u64,
    name: String,
}

impl ZoneDoc {
    fn into_zone(self, project: usize) -> Zone {
        Zone { id: self.id, name: self.name.trim_end_matches('.').to_ascii_lowercase(), project }
    }
}

#[derive(Deserialize)]
struct OneZone {
    zone: ZoneDoc,
}

#[derive(Deserialize)]
struct OneRRSet {
    rrset: RRSetDoc,
}

#[derive(Deserialize)]
struct RRSetDoc {
    records: Vec<RecordDoc>,
    #[serde(default)]
    ttl: Option<u32>,
}

#[derive(Deserialize)]
struct RecordDoc {
    value: String,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize)]
struct RRSetsPage {
    rrsets: Vec<ListedDoc>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct ListedDoc {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    records: Vec<RecordDoc>,
    #[serde(default)]
    ttl: Option<u32>,
}

/// The answer to a write: the action to wait for (some answers carry none).
#[derive(Deserialize)]
struct WriteAnswer {
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Deserialize)]
struct OneAction {
    action: Action,
}

#[derive(Deserialize)]
struct Action {
    id: u64,
    status: String,
    #[serde(default)]
    error: Option<ErrorDoc>,
}

/// The body of a non-2xx answer: Hetzner's error document, or any other
/// JSON (then only the status code tells what happened).
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorAnswer {
    Hetzner { error: ErrorDoc },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct ErrorDoc {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
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

    /// Follow an action until it leaves `running`, polling the global
    /// `/actions/{id}` (resource-local action URLs are deprecated): first
    /// after `FIRST_POLL`, then at doubling intervals up to 2 s.
    fn wait_action(&self, action: Option<Action>, deadline: Instant) -> Result<(), ApiError> {
        let Some(mut action) = action else { return Ok(()) };
        let mut pause = FIRST_POLL;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let (code, message) = action.error.map(|e| (e.code, e.message)).unwrap_or_default();
                    return Err(ApiError::ActionFailed { code, message });
                }
                "running" => {}
                other => return Err(malformed(&format!("action status {other:?}"))),
            }
            if Instant::now() + pause >= deadline {
                return Err(ApiError::ActionUnconfirmed { id: action.id });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            let path = format!("/actions/{}", action.id);
            action = self.call::<OneAction>(Kind::Poll, Method::Get, &path, deadline)?.action;
        }
    }

    /// One API call with bounded retries of transient errors, its answer
    /// read as `T`.
    fn call<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let result = self.call_retrying(kind, method, path, deadline);
        // Hetzner answered unless it could not be reached, failed, refused
        // the token or throttled: a missing record or a refused value is an
        // answer.
        let failure = match &result {
            Ok(_) => None,
            Err(ApiError::Api { status, .. }) if !matches!(status, 401 | 403 | 429 | 500..) => None,
            Err(e) => Some(e.to_string()),
        };
        *self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
        result
    }

    /// Why the last call to Hetzner failed; `None` when it succeeded (or
    /// none was made).
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn call_retrying<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.budget.count(kind, unix_now());
            let (result, reset_at) = self.call_once(method, path, deadline);
            let err = match result.and_then(|text| parse_answer::<T>(&text, 200)) {
                Ok(doc) => return Ok(doc),
                Err(err) => err,
            };
            if !err.is_transient() || attempt >= MAX_ATTEMPTS {
                return Err(err);
            }
            let backoff = Duration::from_millis(500 << (attempt - 1));
            let pause = match (err.code(), reset_at) {
                ("rate_limit_exceeded", Some(reset)) => Duration::from_secs(reset.saturating_sub(unix_now()).max(1)),
                _ => backoff,
            };
            if Instant::now() + pause >= deadline {
                return Err(err);
            }
            log::warn!("hetzner: {method} {path}: {err}; retrying in {}s", pause.as_secs_f32());
            std::thread::sleep(pause);
        }
    }

    /// One request: the body of a 2xx answer, or the error; and the
    /// `RateLimit-Reset` of the answer.
    fn call_once(&self, method: Method<'_>, path: &str, deadline: Instant) -> (Result<String, ApiError>, Option<u64>) {
        let mut resp = match self.send(method, path, deadline) {
            Ok(r) => r,
            Err(e) => {
                self.count("transport");
                return (Err(ApiError::Transport(e.to_string())), None);
            }
        };
        let status = resp.status().as_u16();
        self.count(match status {
            200..=299 => "success",
            300..=399 => "redirect",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        });
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let reset_at = header("ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = header("ratelimit-remaining").and_then(|v| v.parse::<i64>().ok()) {
            let budget = &self.budget;
            if let Some(limit) = header("ratelimit-limit").and_then(|v| v.parse::<i64>().ok()).filter(|&l| l > 0) {
                budget.limit.store(limit, Ordering::Relaxed);
            }
            budget.reset.store(reset_at.unwrap_or(0), Ordering::Relaxed);
            budget.seen.store(unix_now(), Ordering::Relaxed);
            budget.remaining.store(n.max(0), Ordering::Relaxed);
        }
        let correlation_id = header("x-correlation-id");
        if (300..400).contains(&status) {
            let location = header("location").unwrap_or_default();
            return (Err(ApiError::Redirect { status, location }), reset_at);
        }
        let text = match resp.body_mut().with_config().limit(MAX_BODY).read_to_string() {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_) | ureq::Error::Io(_)) => {
                return (Err(ApiError::Transport(format!("the answer to {method} {path} broke off"))), reset_at)
            }
            Err(e) => {
                return (Err(ApiError::Malformed { status, detail: format!("an unreadable body ({e})") }), reset_at)
            }
        };
        if (200..300).contains(&status) {
            return (Ok(text), reset_at);
        }
        let err = match parse_answer::<ErrorAnswer>(&text, status) {
            Ok(ErrorAnswer::Hetzner { error }) => ApiError::Api {
                status,
                code: Some(error.code).filter(|c| !c.is_empty()).unwrap_or_else(|| format!("http_{status}")),
                message: escape_remote(&error.message),
                correlation_id: correlation_id.map(|c| escape_remote(&c)),
            },
            Ok(ErrorAnswer::Other(_)) => {
                ApiError::Api { status, code: format!("http_{status}"), message: String::new(), correlation_id }
            }
            Err(e) => e,
        };
        (Err(err), reset_at)
    }

    /// Send one request, with the time left before `deadline` (at most
    /// `HETZNER_TIMEOUT`) as its timeout.
    fn send(
        &self,
        method: Method<'_>,
        path: &str,
        deadline: Instant,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let timeout = Some(left.min(self.timeout));
        let auth = format!("Bearer {}", self.token.expose());
        match method {
            Method::Get => {
                let rq = self.agent.get(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth).header("Accept", "application/json").call()
            }
            Method::Delete => {
                let rq = self.agent.delete(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth).header("Accept", "application/json").call()
            }
            Method::Post(body) => {
                let rq = self.agent.post(&url).config().timeout_global(timeout).build();
                rq.header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(body.to_string())
            }
        }
    }
}

/// Text from Hetzner as it may be logged: control characters (a newline
/// would start a forged log line) and non-ASCII as `\xNN`/`\u{..}`, at most
/// 300 characters.
fn escape_remote(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(300) {
        match c {
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    out
}

/// Read an answer body as `T`; a body that is not JSON, or JSON of another
/// shape, is `Malformed` (with the start of the body, never more).
fn parse_answer<T: DeserializeOwned>(text: &str, status: u16) -> Result<T, ApiError> {
    serde_json::from_str::<T>(text).map_err(|e| {
        if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            ApiError::Malformed { status, detail: format!("an unexpected document ({e})") }
        } else {
            let start: String = text.chars().take(40).collect();
            ApiError::Malformed { status, detail: format!("a body that is not JSON (starts with {start:?})") }
        }
    })
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

fn malformed(detail: &str) -> ApiError {
    ApiError::Malformed { status: 200, detail: format!("an unexpected document ({detail})") }
}

#[cfg(test)]
mod tests {
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
