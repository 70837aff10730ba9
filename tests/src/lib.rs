//! Test harness: the real server in-process on port 0, a fake Hetzner
//! Cloud API, and a small HTTP client, so the end-to-end tests read as
//! sentences.

pub mod fake_hetzner;
pub mod fake_ntfy;
pub mod fake_services;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use fake_hetzner::{FakeHetzner, Fault, TOKEN};
pub use fake_ntfy::{FakeNtfy, NtfyMessage};
pub use fake_services::{FakeService, Recorded, Service};

use dyndns_server::config::Config;
use dyndns_server::Server;

/// A fresh, empty directory for one test (the `tempfile` crate makes it),
/// removed when the last clone is dropped: a restart test hands it from
/// one server to the next.
#[derive(Clone)]
pub struct Scratch(Arc<tempfile::TempDir>);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A new scratch directory; `tag` names it, for a reader of `/tmp`.
pub fn scratch_dir(tag: &str) -> Scratch {
    let dir = tempfile::Builder::new().prefix(&format!("dyndns-e2e-{tag}-")).tempdir().expect("create scratch dir");
    Scratch(Arc::new(dir))
}

/// Wait until `check` holds, up to `secs` seconds (looking every 25 ms).
#[track_caller]
pub fn eventually(secs: u64, what: &str, check: impl Fn() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < until, "not within {secs} s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// The admin credentials `Setup::with_admin` sets.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-123");

/// Settings for a test server; `start` runs it.
pub struct Setup {
    vars: HashMap<String, String>,
    pub dir: Scratch,
}

impl Setup {
    /// A server for `hosts` (comma-separated) writing to `fake`.
    pub fn new(fake: &FakeHetzner, hosts: &str) -> Setup {
        Setup::in_dir(fake, hosts, scratch_dir("server"))
    }

    /// Like `new`, with the key and state files in `dir` (a restart).
    pub fn in_dir(fake: &FakeHetzner, hosts: &str, dir: Scratch) -> Setup {
        let mut vars = HashMap::new();
        for (k, v) in [
            ("LISTEN_ADDR", "127.0.0.1".to_string()),
            ("LISTEN_PORT", "0".to_string()),
            ("HETZNER_TOKEN", TOKEN.to_string()),
            ("HETZNER_API_URL", fake.url()),
            ("REGISTERED_FQDNS", hosts.to_string()),
            ("PRE_SHARED_KEY_FILE", dir.join("keys").display().to_string()),
            // Off unless a test is about it: a reconcile at start lists the
            // zones' records, and most tests count calls exactly.
            ("RECONCILE_INTERVAL", "0".to_string()),
        ] {
            vars.insert(k.to_string(), v);
        }
        Setup { vars, dir }
    }

    /// With the admin credentials `ADMIN` (for `/status` and `/metrics`).
    pub fn with_admin(self) -> Setup {
        self.var("BASIC_AUTH_USERNAME", ADMIN.0).var("BASIC_AUTH_PASSWORD", ADMIN.1)
    }

    pub fn var(mut self, name: &str, value: &str) -> Setup {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    pub fn without(mut self, name: &str) -> Setup {
        self.vars.remove(name);
        self
    }

    pub fn config(&self) -> Config {
        let vars = self.vars.clone();
        Config::from_lookup(&move |k| vars.get(k).cloned()).expect("valid test config")
    }

    #[track_caller]
    pub fn start(self) -> TestServer {
        if std::env::var_os("E2E_LOG").is_some() {
            let _ = dyndns_server::logging::init(&self.config(), false);
        }
        let running = Server::start(self.config()).expect("server starts");
        TestServer { base: format!("http://{}", running.addr()), running: Some(running), dir: self.dir }
    }
}

/// A running server; stopped on drop.
pub struct TestServer {
    running: Option<Server>,
    pub base: String,
    pub dir: Scratch,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl TestServer {
    /// Every key the server generated, by host (one read of the key file).
    pub fn keys(&self) -> HashMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join("keys")).expect("key file");
        text.lines().filter_map(|l| l.split_once(' ')).map(|(h, k)| (h.to_string(), k.to_string())).collect()
    }

    /// The key the server generated for `host`.
    pub fn key(&self, host: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("keys")).expect("key file");
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(h, _)| *h == host)
            .map(|(_, k)| k.to_string())
            .unwrap_or_else(|| panic!("no key for {host}"))
    }

    /// Shut down (as on SIGTERM) and return the data directory.
    pub fn stop(mut self) -> Scratch {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
        self.dir.clone()
    }

    pub fn running(&self) -> &Server {
        self.running.as_ref().expect("running")
    }

    /// Any request; `headers` as (name, value).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        request(&format!("{}{path}", self.base), method, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    /// GET with basic auth.
    pub fn get_as(&self, path: &str, user: &str, pass: &str) -> Resp {
        let auth = basic(user, pass);
        self.request("GET", path, &[("Authorization", &auth)], None)
    }

    /// `POST /update` with a JSON body and a pre-shared key.
    /// One host's row of `/status` (JSON), as the admin sees it.
    #[track_caller]
    pub fn host_status(&self, host: &str) -> serde_json::Value {
        let status = self.get_as("/status", ADMIN.0, ADMIN.1).json();
        let rows = status["hosts"].as_array().cloned().unwrap_or_default();
        rows.into_iter().find(|h| h["fqdn"] == host).unwrap_or_else(|| panic!("no {host} in {status}"))
    }

    pub fn update(&self, body: &str, key: &str) -> Resp {
        self.request("POST", "/update", &[("X-Pre-Shared-Key", key), ("Content-Type", "application/json")], Some(body))
    }
}

/// `Basic …` header value.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// One HTTP request on a new connection; status errors are answers. The
/// agent is built once: building one per request (its TLS set-up) cost the
/// test process so much time under 40 parallel requests that the harness,
/// not the server, made answers look seconds slow.
pub fn request(url: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            // A connection per request, as before: no pooled keep-alive.
            .max_idle_connections(0)
            .build()
            .into()
    });
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let result = match body {
        Some(b) => agent.run(builder.body(b.to_string()).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let status = resp.status().as_u16();
    let body = if method == "HEAD" { String::new() } else { resp.body_mut().read_to_string().unwrap_or_default() };
    Resp { status, body, headers }
}
