//! A fake of the DNS endpoints of the Hetzner Cloud API, faithful to the
//! published API documentation (docs.hetzner.cloud, "Zones", "Zone RRSets",
//! "Actions"): Bearer auth, zones by id or
//! name, paginated zone lists, RRSets addressed by `(name, type)`, writes
//! that return an action which is `running` until polled, the documented
//! error documents (404, 409, 422, 429 …), `RateLimit-*` and
//! `X-Correlation-Id` headers. Faults (errors, HTML, hangs, resets,
//! redirects, failing actions) can be queued for the next calls.
//!
//! Every call is counted, so tests assert the API economy of the server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const TOKEN: &str = "test-token-0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCD";

/// A fault for one upcoming call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and Hetzner error code (JSON error document).
    Error { status: u16, code: &'static str },
    /// 429 with `RateLimit-Reset` this many seconds ahead.
    RateLimited { reset_in: u64 },
    /// Answer with a status and an HTML body (a proxy in between).
    Html { status: u16 },
    /// 200 with a body that is not JSON.
    InvalidJson,
    /// 301 to the console, as the retired DNS API does.
    Redirect,
    /// Read the request, then wait this long before answering.
    Hang(Duration),
    /// Drop the connection without any answer (the client sees the
    /// connection end at once, as when a peer fails).
    Reset,
    /// Accept the write, but its action ends in `error`.
    ActionError,
}

#[derive(Debug, Clone)]
struct Zone {
    id: u64,
    name: String,
    mode: &'static str,
    /// The project that has it: only that project's tokens see it.
    project: String,
}

/// The project of `TOKEN`.
pub const DEFAULT_PROJECT: &str = "default";

#[derive(Debug, Clone)]
struct RRSet {
    ttl: Option<u64>,
    records: Vec<String>,
    /// value → the record's comment (Hetzner keeps one per record).
    comments: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    zones: Vec<Zone>,
    rrsets: BTreeMap<(u64, String, String), RRSet>,
    /// action id → (polls until it is done, ends in error)
    actions: HashMap<u64, (u32, bool)>,
    next_action: u64,
    faults: VecDeque<Fault>,
    /// Every call meets this fault (after the queued ones) until cleared.
    outage: Option<Fault>,
    /// Calls whose path holds this text hang this long, then fail 503.
    hang_matching: Option<(String, Duration)>,
    /// pebble-challtestsrv's management URL: TXT RRSets are mirrored
    /// there, so that its DNS server answers what the zone holds.
    mirror: Option<String>,
    /// What was mirrored last: (FQDN, values).
    mirrored: Vec<(String, Vec<String>)>,
    /// The next write's action ends in `error` and changes nothing.
    fail_next_action: bool,
    /// Polls before an action reports success.
    polls_per_action: u32,
    calls: Vec<String>,
    /// The project of each call, in the order of `calls`.
    call_projects: Vec<String>,
    /// token → project; `TOKEN` is the project `default`.
    tokens: BTreeMap<String, String>,
    /// `RateLimit-Remaining` per project (each project has its own budget).
    remaining: BTreeMap<String, i64>,
    /// `RateLimit-Reset` to send (Unix seconds); `None`: one second ahead.
    reset_at: Option<u64>,
}

/// A running fake; it serves until its last clone is dropped.
#[derive(Clone)]
pub struct FakeHetzner {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    /// Kept for its `Drop`, which stops serving; `None` in the copy the
    /// server's handler holds (no cycle).
    _server: Option<Arc<tiny_http::Server>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeHetzner {
    /// Start on 127.0.0.1, port 0.
    pub fn start() -> FakeHetzner {
        FakeHetzner::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> FakeHetzner {
        let listener = std::net::TcpListener::bind(addr).expect("bind fake hetzner");
        let addr = listener.local_addr().expect("ip listener");
        let state = Arc::new(Mutex::new(State {
            next_action: 1000,
            polls_per_action: 1,
            tokens: BTreeMap::from([(TOKEN.to_string(), DEFAULT_PROJECT.to_string())]),
            ..State::default()
        }));
        let inner = FakeHetzner { state, addr, _server: None };
        let state = Arc::clone(&inner.state);
        // Each connection's requests are served on its own thread, so a
        // request can end its connection (`Fault::Reset`).
        let handler: tiny_http::Handler = Arc::new(move |rq| inner.serve(rq));
        let server = tiny_http::Server::with_limits(listener, tiny_http::Limits::default(), Some(handler))
            .expect("start fake hetzner");
        FakeHetzner { state, addr, _server: Some(Arc::new(server)) }
    }

    /// Base URL to put in `HETZNER_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn add_zone(&self, name: &str) -> u64 {
        self.add_zone_with_mode(name, "primary")
    }

    pub fn add_zone_with_mode(&self, name: &str, mode: &'static str) -> u64 {
        self.add_zone_to(DEFAULT_PROJECT, name, mode)
    }

    /// A project of its own with its token (each token sees only its
    /// project's zones, and has its own rate limit).
    pub fn add_project(&self, project: &str) -> String {
        let token = format!("token-of-{project}-0123456789abcdefghijklmnopqrstuvwxyz");
        lock(&self.state).tokens.insert(token.clone(), project.to_string());
        token
    }

    /// A zone in `project` (see `add_project`).
    pub fn add_zone_in(&self, project: &str, name: &str) -> u64 {
        self.add_zone_to(project, name, "primary")
    }

    fn add_zone_to(&self, project: &str, name: &str, mode: &'static str) -> u64 {
        let mut s = lock(&self.state);
        let id = 100 + s.zones.len() as u64;
        s.zones.push(Zone { id, name: name.to_string(), mode, project: project.to_string() });
        id
    }

    /// The calls made with `project`'s token.
    pub fn calls_of(&self, project: &str) -> Vec<String> {
        let s = lock(&self.state);
        s.calls.iter().zip(&s.call_projects).filter(|(_, p)| *p == project).map(|(c, _)| c.clone()).collect()
    }

    /// Put an RRSet in place directly (not counted as a call).
    pub fn put_rrset(&self, zone: &str, name: &str, rtype: &str, values: &[&str]) {
        let mut s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone).expect("zone").id;
        s.rrsets.insert(
            (id, name.into(), rtype.into()),
            RRSet { ttl: Some(60), records: values.iter().map(|v| v.to_string()).collect(), comments: BTreeMap::new() },
        );
    }

    /// Put an RRSet of one value with a comment in place directly.
    pub fn put_rrset_with_comment(&self, zone: &str, name: &str, rtype: &str, value: &str, comment: &str) {
        let mut s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone).expect("zone").id;
        let comments = BTreeMap::from([(value.to_string(), comment.to_string())]);
        s.rrsets
            .insert((id, name.into(), rtype.into()), RRSet { ttl: Some(60), records: vec![value.into()], comments });
    }

    /// The comment of the record holding `value`, `None` when there is none.
    pub fn comment(&self, zone: &str, name: &str, rtype: &str, value: &str) -> Option<String> {
        let s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone)?.id;
        s.rrsets.get(&(id, name.into(), rtype.into()))?.comments.get(value).cloned()
    }

    /// The values of an RRSet, `None` when it does not exist.
    pub fn rrset(&self, zone: &str, name: &str, rtype: &str) -> Option<Vec<String>> {
        let s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone)?.id;
        s.rrsets.get(&(id, name.into(), rtype.into())).map(|r| r.records.clone())
    }

    /// The TTL of an RRSet.
    pub fn rrset_ttl(&self, zone: &str, name: &str, rtype: &str) -> Option<u64> {
        let s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone)?.id;
        s.rrsets.get(&(id, name.into(), rtype.into())).and_then(|r| r.ttl)
    }

    /// Make the project's budget `remaining` calls (counting down with every
    /// call from there), refilled fully at `reset_in` seconds from now.
    /// The TTL of an RRSet, as Hetzner reports it.
    pub fn set_rrset_ttl(&self, zone: &str, name: &str, rtype: &str, ttl: u64) {
        let mut s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone).expect("zone").id;
        if let Some(r) = s.rrsets.get_mut(&(id, name.into(), rtype.into())) {
            r.ttl = Some(ttl);
        }
    }

    pub fn set_rate_limit(&self, remaining: i64, reset_in: u64) {
        self.set_rate_limit_of(DEFAULT_PROJECT, remaining, reset_in);
    }

    /// `set_rate_limit` for one project.
    pub fn set_rate_limit_of(&self, project: &str, remaining: i64, reset_in: u64) {
        let mut s = lock(&self.state);
        s.remaining.insert(project.to_string(), remaining);
        s.reset_at = Some(unix_now() + reset_in);
    }

    /// Calls so far whose `METHOD /path` starts with `prefix`.
    pub fn calls_starting(&self, prefix: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| c.starts_with(prefix)).collect()
    }

    /// Queue a fault for the next call that reaches the fake.
    pub fn fail_next(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Mirror every TXT RRSet into pebble-challtestsrv at `management_url`
    /// (its `/set-txt` and `/clear-txt`), as Hetzner's name servers would
    /// publish them.
    pub fn mirror_txt_to(&self, management_url: &str) {
        lock(&self.state).mirror = Some(management_url.to_string());
    }

    fn mirror_txt(&self) {
        let (url, now, before) = {
            let mut s = lock(&self.state);
            let Some(url) = s.mirror.clone() else { return };
            let mut now = Vec::new();
            for ((zone, name, rtype), set) in &s.rrsets {
                if rtype != "TXT" {
                    continue;
                }
                let zone = s.zones.iter().find(|z| z.id == *zone).map(|z| z.name.clone()).unwrap_or_default();
                let fqdn = if name == "@" { format!("{zone}.") } else { format!("{name}.{zone}.") };
                now.push((fqdn, set.records.iter().map(|v| v.trim_matches('"').to_string()).collect::<Vec<_>>()));
            }
            let before = std::mem::replace(&mut s.mirrored, now.clone());
            (url, now, before)
        };
        let post = |path: &str, body: serde_json::Value| {
            let _ = ureq::post(&format!("{url}{path}")).send(body.to_string());
        };
        for (fqdn, _) in before.iter().filter(|b| !now.contains(b)) {
            post("/clear-txt", serde_json::json!({"host": fqdn}));
        }
        for (fqdn, values) in now.iter().filter(|n| !before.contains(n)) {
            post("/clear-txt", serde_json::json!({"host": fqdn}));
            for v in values {
                post("/set-txt", serde_json::json!({"host": fqdn, "value": v}));
            }
        }
    }

    /// Every call fails with `fault` from now on, until `None`.
    /// Calls whose path contains `text` (e.g. one RRSet's name) hang for
    /// `d` and then answer 503; every other call is served as usual.
    pub fn hang_matching(&self, text: &str, d: Duration) {
        lock(&self.state).hang_matching = Some((text.to_string(), d));
    }

    /// Calls hang no more (see `hang_matching`).
    pub fn stop_hanging(&self) {
        lock(&self.state).hang_matching = None;
    }

    pub fn set_outage(&self, fault: Option<Fault>) {
        lock(&self.state).outage = fault;
    }

    /// How many polls an action needs before it reports `success` (0 =
    /// already `success` in the write's answer).
    pub fn set_polls_per_action(&self, n: u32) {
        lock(&self.state).polls_per_action = n;
    }

    /// Calls so far, as `METHOD /path?query`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    pub fn call_count(&self) -> usize {
        lock(&self.state).calls.len()
    }

    /// Wait (up to 10 s) until the zones were listed, e.g. by the server's
    /// start-up check, so that queued faults meet the calls a test makes.
    #[track_caller]
    pub fn wait_for_zone_listing(&self) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !self.calls().iter().any(|c| c.starts_with("GET /v1/zones?") || c == "GET /v1/zones") {
            assert!(std::time::Instant::now() < until, "no zone listing");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn clear_calls(&self) {
        let mut s = lock(&self.state);
        s.calls.clear();
        s.call_projects.clear();
    }

    fn serve(&self, mut rq: tiny_http::Request) {
        let method = rq.method().as_str().to_string();
        let url = rq.url().to_string();
        let mut body = String::new();
        let _ = rq.as_reader().read_to_string(&mut body);
        let auth = rq.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str().to_string());

        if url == "/stats" {
            let count = self.call_count().to_string();
            let _ = rq.respond(tiny_http::Response::from_string(count));
            return;
        }
        if url == "/calls" {
            let calls = serde_json::to_string(&self.calls()).unwrap_or_default();
            let _ = rq.respond(tiny_http::Response::from_string(calls));
            return;
        }
        if let Some(rest) = url.strip_prefix("/seed/") {
            // `/seed/N/IP`: records hN.<first zone> A IP for N hosts.
            let (n, ip) = rest.split_once('/').unwrap_or((rest, "198.51.100.1"));
            let zone = lock(&self.state).zones.first().map(|z| z.name.clone()).unwrap_or_default();
            for i in 0..n.parse::<usize>().unwrap_or(0) {
                self.put_rrset(&zone, &format!("h{i}"), "A", &[ip]);
            }
            let _ = rq.respond(tiny_http::Response::from_string("ok"));
            return;
        }
        if let Some(rest) = url.strip_prefix("/seed-in/") {
            // `/seed-in/ZONE/PREFIX/N/IP`: records PREFIX<i>.ZONE A IP, i < N.
            let parts: Vec<&str> = rest.split('/').collect();
            if let [zone, prefix, n, ip] = parts.as_slice() {
                for i in 0..n.parse::<usize>().unwrap_or(0) {
                    self.put_rrset(zone, &format!("{prefix}{i}"), "A", &[ip]);
                }
            }
            let _ = rq.respond(tiny_http::Response::from_string("ok"));
            return;
        }
        if let Some(kind) = url.strip_prefix("/outage/") {
            // `/outage/KIND` (for the soak process): hang, 500, reset or none.
            self.set_outage(match kind {
                "hang" => Some(Fault::Hang(Duration::from_secs(8))),
                "500" => Some(Fault::Error { status: 500, code: "server_error" }),
                "reset" => Some(Fault::Reset),
                _ => None,
            });
            let _ = rq.respond(tiny_http::Response::from_string("ok"));
            return;
        }
        if let Some(rest) = url.strip_prefix("/hang/") {
            self.queue_hangs(rest);
            let _ = rq.respond(tiny_http::Response::from_string("ok"));
            return;
        }
        let (fault, remaining, reset_at) = {
            let mut s = lock(&self.state);
            s.calls.push(format!("{method} {url}"));
            let project = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| s.tokens.get(t).cloned())
                .unwrap_or_default();
            s.call_projects.push(project.clone());
            let remaining = s.remaining.entry(project).or_insert(3600);
            *remaining = (*remaining - 1).max(0);
            let remaining = *remaining;
            let hang = s.hang_matching.as_ref().filter(|(text, _)| url.contains(text.as_str())).map(|(_, d)| *d);
            let fault = hang.map(Fault::Hang).or_else(|| s.faults.pop_front()).or_else(|| s.outage.clone());
            (fault, remaining, s.reset_at)
        };
        let reset = reset_at.unwrap_or_else(|| unix_now() + 1);
        let (status, doc, extra): (u16, String, Vec<(String, String)>) = match fault {
            Some(Fault::Hang(d)) => {
                std::thread::sleep(d);
                (503, error_doc("unavailable", "hung"), vec![])
            }
            Some(Fault::Reset) => return rq.abort(),
            Some(Fault::Redirect) => {
                (301, String::new(), vec![("Location".into(), "https://console.hetzner.com/".into())])
            }
            Some(Fault::Html { status }) => {
                (status, "<html><body><h1>502 Bad Gateway</h1></body></html>".into(), vec![])
            }
            Some(Fault::InvalidJson) => (200, "{\"zones\": [".into(), vec![]),
            Some(Fault::RateLimited { reset_in }) => (
                429,
                error_doc("rate_limit_exceeded", "limit of 3600 requests per hour reached"),
                vec![("RateLimit-Reset-Override".into(), (unix_now() + reset_in).to_string())],
            ),
            Some(Fault::Error { status, code }) => (status, error_doc(code, &format!("injected {code}")), vec![]),
            Some(Fault::ActionError) => {
                lock(&self.state).fail_next_action = true;
                self.route(&method, &url, &body, auth.as_deref())
            }
            None => {
                let answer = self.route(&method, &url, &body, auth.as_deref());
                if method != "GET" {
                    self.mirror_txt();
                }
                answer
            }
        };
        let mut reset_header = reset.to_string();
        let doc_is_html = status == 301 || doc.starts_with('<');
        let mut response = tiny_http::Response::from_data(doc.into_bytes()).with_status_code(status);
        for (k, v) in extra {
            if k == "RateLimit-Reset-Override" {
                reset_header = v;
                continue;
            }
            response.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("header"));
        }
        let content_type = if doc_is_html { "text/html" } else { "application/json" };
        for (k, v) in [
            ("Content-Type", content_type.to_string()),
            ("RateLimit-Limit", "3600".to_string()),
            ("RateLimit-Remaining", remaining.to_string()),
            ("RateLimit-Reset", reset_header),
            ("X-Correlation-Id", format!("corr-{}", unix_now())),
        ] {
            response.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("header"));
        }
        let _ = rq.respond(response);
    }

    /// `/hang/N/SECS` (outside /v1, for the benchmark process): the next N
    /// calls hang SECS seconds each, instead of the faults queued so far.
    fn queue_hangs(&self, rest: &str) {
        let (n, secs) = rest.split_once('/').unwrap_or((rest, "5"));
        lock(&self.state).faults.clear();
        for _ in 0..n.parse::<u32>().unwrap_or(0) {
            self.fail_next(Fault::Hang(Duration::from_secs(secs.parse().unwrap_or(5))));
        }
    }

    fn route(&self, method: &str, url: &str, body: &str, auth: Option<&str>) -> (u16, String, Vec<(String, String)>) {
        let project = {
            let s = lock(&self.state);
            auth.and_then(|a| a.strip_prefix("Bearer ")).and_then(|t| s.tokens.get(t).cloned())
        };
        let Some(project) = project else {
            return (401, error_doc("unauthorized", "unable to authenticate"), vec![]);
        };
        let project = project.as_str();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let Some(path) = path.strip_prefix("/v1") else {
            return (404, error_doc("not_found", "not found"), vec![]);
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut s = lock(&self.state);
        let result = match (method, segments.as_slice()) {
            ("GET", ["zones"]) => Ok(list_zones(&s, project, query)),
            ("GET", ["zones", zone]) => find_zone(&s, project, zone).map(|z| (200, json!({"zone": zone_json(&z)}))),
            ("GET", ["zones", zone, "rrsets"]) => find_zone(&s, project, zone).map(|z| list_rrsets(&s, &z, query)),
            ("GET", ["zones", zone, "rrsets", name, rtype]) => find_zone(&s, project, zone).and_then(|z| {
                s.rrsets
                    .get(&(z.id, name.to_string(), rtype.to_string()))
                    .map(|r| (200, json!({"rrset": rrset_json(z.id, name, rtype, r)})))
                    .ok_or_else(|| not_found("rrset"))
            }),
            ("POST", ["zones", zone, "rrsets"]) => {
                find_zone(&s, project, zone).and_then(|z| create_rrset(&mut s, &z, body))
            }
            ("POST", ["zones", zone, "rrsets", name, rtype, "actions", "set_records"]) => {
                find_zone(&s, project, zone).and_then(|z| set_records(&mut s, &z, name, rtype, body))
            }
            ("POST", ["zones", zone, "rrsets", name, rtype, "actions", "change_ttl"]) => {
                find_zone(&s, project, zone).and_then(|z| change_ttl(&mut s, &z, name, rtype, body))
            }
            ("POST", ["zones", zone, "rrsets", name, rtype, "actions", "add_records"]) => {
                find_zone(&s, project, zone).and_then(|z| add_records(&mut s, &z, name, rtype, body))
            }
            ("POST", ["zones", zone, "rrsets", name, rtype, "actions", "remove_records"]) => {
                find_zone(&s, project, zone).and_then(|z| remove_records(&mut s, &z, name, rtype, body))
            }
            ("DELETE", ["zones", zone, "rrsets", name, rtype]) => find_zone(&s, project, zone).and_then(|z| {
                s.rrsets.remove(&(z.id, name.to_string(), rtype.to_string())).ok_or_else(|| not_found("rrset"))?;
                Ok((201, json!({"action": new_action(&mut s, "delete_rrset", z.id)})))
            }),
            ("PUT", ["zones", _, "rrsets", _, _]) if body.contains("records") => {
                Err((422, error_doc("invalid_input", "can't update records with this endpoint")))
            }
            ("GET", ["actions", id]) => {
                id.parse::<u64>().map_err(|_| not_found("action")).and_then(|id| poll_action(&mut s, id))
            }
            _ => Err(not_found("resource")),
        };
        match result {
            Ok((status, doc)) => (status, doc.to_string(), vec![]),
            Err((status, doc)) => (status, doc, vec![]),
        }
    }
}

type Answer = Result<(u16, Value), (u16, String)>;

fn list_zones(s: &State, project: &str, query: &str) -> (u16, Value) {
    let param =
        |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).and_then(|v| v.parse::<usize>().ok());
    let per_page = param("per_page").unwrap_or(25).clamp(1, 50);
    let page = param("page").unwrap_or(1).max(1);
    let zones: Vec<&Zone> = s.zones.iter().filter(|z| z.project == project).collect();
    let total = zones.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = zones.into_iter().skip((page - 1) * per_page).take(per_page).map(zone_json).collect();
    let next = if page < last { json!(page + 1) } else { Value::Null };
    let prev = if page > 1 { json!(page - 1) } else { Value::Null };
    let meta = json!({"pagination": {"page": page, "per_page": per_page, "previous_page": prev, "next_page": next, "last_page": last, "total_entries": total}});
    (200, json!({"zones": items, "meta": meta}))
}

/// `GET /zones/{zone}/rrsets?type=…&name=…&page=…&per_page=…` (at most
/// 100 per page, sorted by name and type as Hetzner does by default).
fn list_rrsets(s: &State, z: &Zone, query: &str) -> (u16, Value) {
    let values = |k: &str| -> Vec<String> {
        query.split('&').filter_map(|p| p.strip_prefix(&format!("{k}="))).map(str::to_string).collect()
    };
    let number = |k: &str| values(k).first().and_then(|v| v.parse::<usize>().ok());
    let per_page = number("per_page").unwrap_or(25).clamp(1, 100);
    let page = number("page").unwrap_or(1).max(1);
    let (types, names) = (values("type"), values("name"));
    let matching: Vec<Value> = s
        .rrsets
        .iter()
        .filter(|((zone, name, rtype), _)| {
            *zone == z.id && (types.is_empty() || types.contains(rtype)) && (names.is_empty() || names.contains(name))
        })
        .map(|((zone, name, rtype), r)| rrset_json(*zone, name, rtype, r))
        .collect();
    let total = matching.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = matching.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let next = if page < last { json!(page + 1) } else { Value::Null };
    let prev = if page > 1 { json!(page - 1) } else { Value::Null };
    let meta = json!({"pagination": {"page": page, "per_page": per_page, "previous_page": prev, "next_page": next, "last_page": last, "total_entries": total}});
    (200, json!({"rrsets": items, "meta": meta}))
}

impl FakeHetzner {
    /// Remove an RRSet directly (as someone in the Hetzner Console would).
    pub fn delete_rrset(&self, zone: &str, name: &str, rtype: &str) {
        let mut s = lock(&self.state);
        let id = s.zones.iter().find(|z| z.name == zone).expect("zone").id;
        s.rrsets.remove(&(id, name.into(), rtype.into()));
    }
}

/// A zone of `project`: another project's zone is `404 not_found`, as
/// Hetzner answers a token of another project.
fn find_zone(s: &State, project: &str, id_or_name: &str) -> Result<Zone, (u16, String)> {
    s.zones
        .iter()
        .filter(|z| z.project == project)
        .find(|z| z.name == id_or_name || z.id.to_string() == id_or_name)
        .cloned()
        .ok_or_else(|| not_found("zone"))
}

fn zone_json(z: &Zone) -> Value {
    json!({"id": z.id, "name": z.name, "mode": z.mode, "ttl": 3600, "status": "ok", "labels": {}, "protection": {"delete": false}})
}

fn rrset_json(zone: u64, name: &str, rtype: &str, r: &RRSet) -> Value {
    let records: Vec<Value> = r
        .records
        .iter()
        .map(|v| json!({"value": v, "comment": r.comments.get(v).cloned().unwrap_or_default()}))
        .collect();
    json!({"id": format!("{name}/{rtype}"), "name": name, "type": rtype, "ttl": r.ttl, "labels": {}, "protection": {"change": false}, "records": records, "zone": zone})
}

/// The comments sent with `records` (value → comment), as Hetzner keeps them.
fn parse_comments(doc: &Value) -> BTreeMap<String, String> {
    let list = doc.get("records").and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .filter_map(|r| Some((r.get("value")?.as_str()?.to_string(), r.get("comment")?.as_str()?.to_string())))
        .collect()
}

/// Validate `records` as Hetzner does: a non-empty list of distinct values
/// that parse as addresses of the type.
fn parse_records(doc: &Value, rtype: &str) -> Result<Vec<String>, (u16, String)> {
    let invalid = |m: &str| (422, error_doc("invalid_input", m));
    let list = doc.get("records").and_then(Value::as_array).ok_or_else(|| invalid("records is required"))?;
    let mut values = Vec::new();
    for r in list {
        let v = r.get("value").and_then(Value::as_str).ok_or_else(|| invalid("record value is required"))?;
        let ok = match rtype {
            "A" => v.parse::<std::net::Ipv4Addr>().is_ok(),
            "AAAA" => v.parse::<std::net::Ipv6Addr>().is_ok(),
            // Character-strings in quotes, as in a zone file.
            "TXT" => v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
            _ => true,
        };
        if !ok || values.iter().any(|x: &String| x == v) {
            return Err(invalid(&format!("invalid record value {v:?}")));
        }
        values.push(v.to_string());
    }
    if values.is_empty() {
        return Err(invalid("records must not be empty"));
    }
    Ok(values)
}

fn create_rrset(s: &mut State, z: &Zone, body: &str) -> Answer {
    if z.mode != "primary" {
        return Err((422, error_doc("incorrect_zone_mode", "zone is not a primary zone")));
    }
    let doc: Value = serde_json::from_str(body).map_err(|_| (400, error_doc("json_error", "invalid JSON")))?;
    let invalid = |m: &str| (422, error_doc("invalid_input", m));
    let name = doc.get("name").and_then(Value::as_str).ok_or_else(|| invalid("name is required"))?.to_string();
    let rtype = doc.get("type").and_then(Value::as_str).ok_or_else(|| invalid("type is required"))?.to_string();
    if name != name.to_lowercase() || name.ends_with('.') || name.ends_with(&z.name) || name.is_empty() {
        return Err(invalid(&format!("invalid rrset name {name:?}")));
    }
    let ttl = doc.get("ttl").and_then(Value::as_u64);
    if ttl.is_some_and(|t| t < 60) {
        return Err(invalid("ttl must be at least 60"));
    }
    let records = parse_records(&doc, &rtype)?;
    let key = (z.id, name.clone(), rtype.clone());
    if s.rrsets.contains_key(&key) {
        return Err((409, error_doc("uniqueness_error", "rrset already exists")));
    }
    let rrset = RRSet { ttl, records, comments: parse_comments(&doc) };
    let rrset_doc = rrset_json(z.id, &name, &rtype, &rrset);
    if !s.fail_next_action {
        s.rrsets.insert(key, rrset);
    }
    let action = new_action(s, "create_rrset", z.id);
    Ok((201, json!({"rrset": rrset_doc, "action": action})))
}

fn set_records(s: &mut State, z: &Zone, name: &str, rtype: &str, body: &str) -> Answer {
    if z.mode != "primary" {
        return Err((422, error_doc("incorrect_zone_mode", "zone is not a primary zone")));
    }
    let doc: Value = serde_json::from_str(body).map_err(|_| (400, error_doc("json_error", "invalid JSON")))?;
    if doc.get("ttl").is_some() {
        return Err((422, error_doc("invalid_input", "unknown field ttl")));
    }
    let records = parse_records(&doc, rtype)?;
    let failing = s.fail_next_action;
    let key = (z.id, name.to_string(), rtype.to_string());
    let rrset = s.rrsets.get_mut(&key).ok_or_else(|| not_found("rrset"))?;
    if !failing {
        rrset.records = records;
        rrset.comments = parse_comments(&doc);
    }
    let action = new_action(s, "set_rrset_records", z.id);
    Ok((201, json!({"action": action})))
}

/// `change_ttl`: `{"ttl": N}` (60 …), or `null` for the zone's default.
fn change_ttl(s: &mut State, z: &Zone, name: &str, rtype: &str, body: &str) -> Answer {
    let invalid = |m: &str| (422, error_doc("invalid_input", m));
    let doc: Value = serde_json::from_str(body).map_err(|_| invalid("body is not JSON"))?;
    let ttl = match doc.get("ttl") {
        Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64().filter(|t| (60..=2_147_483_647).contains(t)).ok_or_else(|| invalid("ttl is out of range"))?,
        ),
        None => return Err(invalid("missing field ttl")),
    };
    let rrset = s.rrsets.get_mut(&(z.id, name.to_string(), rtype.to_string())).ok_or_else(|| not_found("rrset"))?;
    rrset.ttl = ttl;
    Ok((201, json!({"action": new_action(s, "change_rrset_ttl", z.id)})))
}

/// `add_records`: append values (creating the RRSet with `ttl` if missing);
/// a value already present is `invalid_input`, as duplicates are.
fn add_records(s: &mut State, z: &Zone, name: &str, rtype: &str, body: &str) -> Answer {
    let doc: Value =
        serde_json::from_slice(body.as_bytes()).map_err(|_| (400, error_doc("json_error", "invalid JSON")))?;
    let records = parse_records(&doc, rtype)?;
    let ttl = doc.get("ttl").and_then(Value::as_u64);
    let key = (z.id, name.to_string(), rtype.to_string());
    let rrset = s.rrsets.entry(key).or_insert(RRSet { ttl, records: Vec::new(), comments: BTreeMap::new() });
    if records.iter().any(|r| rrset.records.contains(r)) {
        return Err((422, error_doc("invalid_input", "duplicate record value")));
    }
    rrset.comments.extend(parse_comments(&doc));
    rrset.records.extend(records);
    Ok((201, json!({"action": new_action(s, "add_rrset_records", z.id)})))
}

/// `remove_records`: remove exactly the values listed; the RRSet goes with
/// its last value.
fn remove_records(s: &mut State, z: &Zone, name: &str, rtype: &str, body: &str) -> Answer {
    let doc: Value =
        serde_json::from_slice(body.as_bytes()).map_err(|_| (400, error_doc("json_error", "invalid JSON")))?;
    let records = parse_records(&doc, rtype)?;
    let key = (z.id, name.to_string(), rtype.to_string());
    let rrset = s.rrsets.get_mut(&key).ok_or_else(|| not_found("rrset"))?;
    rrset.records.retain(|r| !records.contains(r));
    if rrset.records.is_empty() {
        s.rrsets.remove(&key);
    }
    Ok((201, json!({"action": new_action(s, "remove_rrset_records", z.id)})))
}

fn new_action(s: &mut State, command: &str, zone: u64) -> Value {
    s.next_action += 1;
    let id = s.next_action;
    let polls = s.polls_per_action;
    let failing = std::mem::take(&mut s.fail_next_action);
    s.actions.insert(id, (polls.max(u32::from(failing)), failing));
    let status = if polls == 0 && !failing { "success" } else { "running" };
    action_json(id, command, zone, status, None)
}

fn poll_action(s: &mut State, id: u64) -> Answer {
    let entry = s.actions.get_mut(&id).ok_or_else(|| not_found("action"))?;
    if entry.1 {
        let err = json!({"code": "action_failed", "message": "the zone could not be updated"});
        return Ok((200, json!({"action": action_json(id, "set_rrset_records", 0, "error", Some(err))})));
    }
    entry.0 = entry.0.saturating_sub(1);
    let status = if entry.0 == 0 { "success" } else { "running" };
    Ok((200, json!({"action": action_json(id, "set_rrset_records", 0, status, None)})))
}

fn action_json(id: u64, command: &str, zone: u64, status: &str, error: Option<Value>) -> Value {
    let finished = if status == "running" { Value::Null } else { json!("2026-11-23T07:00:01+00:00") };
    json!({"id": id, "command": command, "status": status, "progress": if status == "running" { 50 } else { 100 },
           "started": "2026-11-23T07:00:00+00:00", "finished": finished,
           "resources": [{"id": zone, "type": "zone"}], "error": error.unwrap_or(Value::Null)})
}

fn error_doc(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "details": null}}).to_string()
}

fn not_found(what: &str) -> (u16, String) {
    (404, error_doc("not_found", &format!("{what} not found")))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
