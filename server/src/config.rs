//! The server's settings: the only module that reads the environment.
//!
//! Reading happens in two steps: raw strings (from the process environment,
//! or from a map in tests) are read by one small reader per setting
//! (`env::Env`, whose rules the agent shares), then checked together into a
//! `Config` with typed values. Any value that does not parse stops the
//! server with a line naming the variable, quoting the value and saying what
//! to do; all such problems are reported at once. Secrets are held in
//! `Secret` (whose `Debug` is redacted) and never logged.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::aliases::Alias;
use crate::env::{redact_url, Env};
pub use crate::env::{ConfigError, Secret};
use crate::lan::LanHost;
use crate::net::Cidr;
use crate::notifiers::Target;
use crate::projects::ProjectToken;
use dyndns_common::heartbeat::Monitor;

/// Beginnings of our settings' names: an unknown variable starting so is
/// named at start as a likely typo.
const SETTING_PREFIXES: &[&str] = &[
    "HETZNER_",
    "LISTEN_",
    "NTFY_",
    "TLS_",
    "HOST_",
    "RECONCILE_",
    "BASIC_AUTH_",
    "NOTIFY_",
    "HEALTHCHECKS_",
    "UPTIME_",
    "LOG_",
    "IPV6_",
    "REQUEST_",
    "ZONE_",
    "RECORD_",
    "PRE_SHARED_",
    "ACME_",
    "CLIENT_",
    "REGISTERED_",
    "TRUSTED_",
    "ALLOW_",
    "STATE_",
    "PUBLIC_",
    "LOST_",
    "CONNECTION_",
    "METRICS_",
    "FAILED_",
    "DEBUG_",
    "DRY_",
];

mod hetzner;
mod hosts;
mod notifications;
mod tls;

use hetzner::{api_url, hetzner_tokens};
use hosts::{hosts, Hosts};
use notifications::notifiers;
use tls::tls;
pub use tls::{Acme, Tls, TlsSource, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};

pub const DEFAULT_API_URL: &str = "https://api.hetzner.cloud/v1";
/// Shortest admin password accepted (`BASIC_AUTH_PASSWORD`): it unlocks
/// every host, so it must resist guessing at the limiter's pace for years.
pub const MIN_ADMIN_PASSWORD: usize = 12;
/// Admin credentials accepted on both update endpoints for any registered host.
#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The Hetzner projects written to: `HETZNER_TOKEN` (named `default`)
    /// and `HETZNER_TOKENS_FILE`'s; empty only when not needed (dry run,
    /// `keys`).
    pub projects: Vec<ProjectToken>,
    pub api_url: String,
    /// Canonical names (see `fqdn`), sorted, no duplicates.
    pub registered: Vec<String>,
    pub key_file: PathBuf,
    /// Plain HTTP on `listen`: always without TLS; with TLS only when
    /// `LISTEN_PORT` is set (keys then cross the network in clear).
    pub plain_http: bool,
    pub tls: Option<Tls>,
    /// `PRE_SHARED_KEY_FILE` was not set (`/pre-shared-key` is used).
    pub key_file_is_default: bool,
    pub listen: SocketAddr,
    pub record_ttl: u32,
    pub zone_cache_ttl: Duration,
    pub request_cache_ttl: Duration,
    pub admin: Option<Admin>,
    pub debug: bool,
    pub log_file: Option<PathBuf>,
    pub log_max_bytes: u64,
    pub log_backup_count: usize,
    pub dry_run: bool,
    /// Where notifications go: ntfy (`NTFY_URL`/`NTFY_TOPIC`), then each
    /// entry of `NOTIFY_URLS`.
    pub notifiers: Vec<Target>,
    /// Heartbeats (`HEALTHCHECKS_URL`, `UPTIME_KUMA_URL`).
    pub monitors: Vec<Monitor>,
    pub notify_on_change: bool,
    pub notify_repeat_interval: Duration,
    pub connection_check_interval: Duration,
    pub lost_connection_timeout: Duration,
    pub state_file: PathBuf,
    pub metrics_public: bool,
    /// Peers whose `X-Real-Ip`/`X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `CLIENT_TIMEOUT`: a request must arrive whole within this time of its
    /// connection becoming idle; idle connections close after it.
    pub client_timeout: Duration,
    /// `MAX_CONNECTIONS`: open client connections at most.
    pub max_connections: usize,
    /// `HETZNER_TIMEOUT`: the longest one call to Hetzner may take.
    pub hetzner_timeout: Duration,
    /// `HOST_WRITE_BURST` and `HOST_WRITES_PER_HOUR`: Hetzner writes one host
    /// may cause at once, and refilled per hour.
    pub host_write_burst: u32,
    pub host_writes_per_hour: u32,
    /// `FAILED_WRITE_RETRY`: after a host's write failed in a passing way,
    /// its next write goes to Hetzner no sooner than this (zero: at once).
    pub failed_write_retry: Duration,
    /// `RECONCILE_INTERVAL`: how often every zone's A and AAAA records are
    /// listed and compared; zero turns reconciles off.
    pub reconcile_interval: Duration,
    /// `RECONCILE_REPAIR`: set drifted records back (or only report them).
    pub reconcile_repair: bool,
    /// `IPV6_LAN_HOSTS`: hosts whose AAAA follows their router's prefix,
    /// sorted by name.
    pub lan_hosts: Vec<LanHost>,
    /// `HOST_ALIASES`: names whose A and AAAA follow a registered host's,
    /// sorted by name.
    pub aliases: Vec<Alias>,
    /// `HOST_TTL`: host → the TTL of its records and its aliases'.
    pub host_ttls: BTreeMap<String, u32>,
    /// `PUBLIC_URL`: where routers reach the server (for `setup`), no
    /// trailing slash.
    pub public_url: Option<String>,
    /// `ACME_ONLY_HOSTS`: hosts (also in `registered`, so they have keys)
    /// that may only write their ACME challenges, never an address; sorted.
    pub acme_only: Vec<String>,
    /// `ALLOW_PRIVATE_ADDRESSES`: let records hold addresses the internet
    /// cannot reach (private, CGNAT, loopback, link-local, ULA …).
    pub allow_private: bool,
    /// Problems that did not stop the server, to be logged once logging is up.
    pub warnings: Vec<String>,
}

/// Loopback only: a reverse proxy on the same host. A proxy elsewhere (a
/// compose network) must be named, because behind a container port mapping
/// every client arrives from the bridge's gateway address, and trusting a
/// private range there would let any client choose its address.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1/128";

impl Config {
    /// From the process environment; variables that look like a misspelt
    /// setting are named (a warning, or with the errors when the start stops).
    pub fn from_env() -> Result<Config, ConfigError> {
        crate::env::from_process(SETTING_PREFIXES, Config::from_lookup, |c| &mut c.warnings)
    }

    /// Read settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut env = Env::new(lookup);
        let dry_run = env.flag("DRY_RUN", false);
        let key_file = PathBuf::from(env.text("PRE_SHARED_KEY_FILE").unwrap_or_else(|| "/pre-shared-key".into()));
        let Hosts { registered, acme_only, lan_hosts, aliases, host_ttls } = hosts(&mut env);
        let mut config = Config {
            aliases,
            host_ttls,
            projects: hetzner_tokens(&mut env, dry_run),
            api_url: api_url(&mut env),
            registered,
            acme_only,
            lan_hosts,
            public_url: public_url(&mut env),
            allow_private: env.flag("ALLOW_PRIVATE_ADDRESSES", false),
            state_file: state_file(&env, &key_file, dry_run),
            key_file_is_default: env.text("PRE_SHARED_KEY_FILE").is_none(),
            plain_http: true,
            tls: None,
            key_file,
            listen: listen_address(&mut env),
            record_ttl: env.number("RECORD_TTL", 60, 60, 2_147_483_647) as u32,
            zone_cache_ttl: seconds(&mut env, "ZONE_CACHE_TTL", 86_400, 0, 31_536_000),
            request_cache_ttl: seconds(&mut env, "REQUEST_CACHE_TTL", 300, 0, 31_536_000),
            hetzner_timeout: seconds(&mut env, "HETZNER_TIMEOUT", 10, 1, 60),
            admin: admin(&mut env),
            debug: env.flag("DEBUG_LOGGING", false),
            log_file: env.text("LOG_FILE").map(PathBuf::from),
            log_max_bytes: env.number("LOG_MAX_BYTES", 1_048_576, 1024, u64::MAX),
            log_backup_count: env.number("LOG_BACKUP_COUNT", 3, 0, 1000) as usize,
            dry_run,
            notifiers: notifiers(&mut env),
            monitors: dyndns_common::heartbeat::monitors(&mut env),
            notify_on_change: env.flag("NOTIFY_ON_CHANGE", false),
            notify_repeat_interval: seconds(&mut env, "NOTIFY_REPEAT_INTERVAL", 3600, 0, 31_536_000),
            connection_check_interval: seconds(&mut env, "CONNECTION_CHECK_INTERVAL", 60, 1, 86_400),
            lost_connection_timeout: seconds(&mut env, "LOST_CONNECTION_TIMEOUT", 10_800, 1, 31_536_000),
            metrics_public: env.flag("METRICS_PUBLIC", false),
            trusted_proxies: trusted_proxies(&mut env),
            client_timeout: seconds(&mut env, "CLIENT_TIMEOUT", 10, 1, 300),
            max_connections: env.number("MAX_CONNECTIONS", 512, 16, 65_536) as usize,
            host_write_burst: env.number("HOST_WRITE_BURST", 10, 1, 1000) as u32,
            host_writes_per_hour: env.number("HOST_WRITES_PER_HOUR", 12, 1, 3600) as u32,
            failed_write_retry: seconds(&mut env, "FAILED_WRITE_RETRY", 10, 0, 3600),
            reconcile_interval: reconcile_interval(&mut env),
            reconcile_repair: env.flag("RECONCILE_REPAIR", true),
            warnings: Vec::new(),
        };
        config.tls = tls(&mut env, config.listen.ip(), &config.state_file);
        if config.tls.is_some() {
            config.plain_http = env.text("LISTEN_PORT").is_some();
            if config.plain_http {
                env.warn(format!(
                    "LISTEN_PORT is set beside HTTPS: plain HTTP is served on {} too, and keys sent there cross the network in clear; unset LISTEN_PORT unless a router cannot do HTTPS",
                    config.listen
                ));
            }
        }
        let (mut config, warnings) = env.finish(config)?;
        config.warnings = warnings;
        Ok(config)
    }

    /// Every host whose address records the server sets: registered hosts
    /// (but those that are ACME-only) and LAN hosts, sorted, no duplicates.
    pub fn record_hosts(&self) -> Vec<String> {
        let mut all = self.address_hosts();
        all.extend(self.lan_hosts.iter().map(|h| h.fqdn.clone()));
        all.sort();
        all.dedup();
        all
    }

    /// Registered hosts that report addresses (all but `ACME_ONLY_HOSTS`).
    pub fn address_hosts(&self) -> Vec<String> {
        self.registered.iter().filter(|h| self.acme_only.binary_search(h).is_err()).cloned().collect()
    }

    /// The LAN hosts behind `router`.
    pub fn lan_hosts_of<'a>(&'a self, router: &'a str) -> impl Iterator<Item = &'a LanHost> + 'a {
        self.lan_hosts.iter().filter(move |h| h.router == router)
    }

    /// What serving needs beyond what `keys` needs: a token unless dry run.
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if self.projects.is_empty() && !self.dry_run {
            return Err(ConfigError(
                "HETZNER_TOKEN is not set; set it (or HETZNER_TOKEN_FILE) to a Hetzner Cloud API token with Read & Write access, or set DRY_RUN=1 to try the server without one".into(),
            ));
        }
        Ok(())
    }

    /// One line with the effective settings, secrets redacted.
    pub fn summary(&self) -> String {
        let notify = if self.notifiers.is_empty() {
            "off".to_string()
        } else {
            let labels: Vec<String> = self.notifiers.iter().map(Target::label).collect();
            format!("[{}]", labels.join(", "))
        };
        let heartbeats = if self.monitors.is_empty() {
            "off".to_string()
        } else {
            let labels: Vec<String> = self.monitors.iter().map(Monitor::label).collect();
            format!("[{}]", labels.join(", "))
        };
        let admin = self.admin.as_ref().map_or("unset".into(), |a| format!("{} (password set)", a.username));
        let log_file = self.log_file.as_ref().map_or("none".into(), |p| {
            format!("{} ({} bytes x {})", p.display(), self.log_max_bytes, self.log_backup_count)
        });
        let proxies: Vec<String> = self.trusted_proxies.iter().map(Cidr::to_string).collect();
        format!(
            "listen={} api={} registered=[{}] key_file={} state_file={} notify={notify} heartbeats={heartbeats} notify_on_change={} lost_after={}s record_ttl={} zone_cache_ttl={}s request_cache_ttl={}s hetzner_timeout={}s client_timeout={}s max_connections={} host_writes={}+{}/h failed_write_retry={}s reconcile={}s repair={} lan_hosts={} aliases={} host_ttl={} acme_only=[{}] allow_private={} trusted_proxies=[{}] token={} admin={admin} dry_run={} debug={} log_file={log_file}",
            match (&self.tls, self.plain_http) {
                (Some(t), true) => format!("{} https={}", self.listen, t.listen),
                (Some(t), false) => format!("off https={}", t.listen),
                (None, _) => self.listen.to_string(),
            },
            redact_url(&self.api_url),
            self.registered.join(","),
            self.key_file.display(),
            self.state_file.display(),
            u8::from(self.notify_on_change),
            self.lost_connection_timeout.as_secs(),
            self.record_ttl,
            self.zone_cache_ttl.as_secs(),
            self.request_cache_ttl.as_secs(),
            self.hetzner_timeout.as_secs(),
            self.client_timeout.as_secs(),
            self.max_connections,
            self.host_write_burst,
            self.host_writes_per_hour,
            self.failed_write_retry.as_secs(),
            self.reconcile_interval.as_secs(),
            u8::from(self.reconcile_repair),
            self.lan_hosts.len(),
            self.aliases.len(),
            self.host_ttls.len(),
            self.acme_only.join(","),
            u8::from(self.allow_private),
            proxies.join(","),
            match self.projects.as_slice() {
                [] => "unset".to_string(),
                [one] if one.name == crate::projects::DEFAULT_PROJECT => "set".to_string(),
                all => format!("[{}]", all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(",")),
            },
            u8::from(self.dry_run),
            u8::from(self.debug),
        )
    }
}

/// Shortest `RECONCILE_INTERVAL` that does not warn: each reconcile costs
/// one call per 100 records of every zone with registered hosts.
const RECONCILE_WARN_BELOW: u64 = 60;

fn reconcile_interval(env: &mut Env<'_>) -> Duration {
    let secs = env.number("RECONCILE_INTERVAL", 900, 0, 86_400);
    if (1..RECONCILE_WARN_BELOW).contains(&secs) {
        env.warn(format!(
            "RECONCILE_INTERVAL={secs} lists every zone {} times an hour; each listing page is one of the project's 3600 Hetzner API calls an hour (900, the default, is 4 times)",
            3600 / secs
        ));
    }
    Duration::from_secs(secs)
}

fn seconds(env: &mut Env<'_>, name: &str, default: u64, min: u64, max: u64) -> Duration {
    Duration::from_secs(env.number(name, default, min, max))
}

/// `STATE_FILE`, or `dyndns-state.json` next to the key file. A dry run
/// keeps its state apart (`….dry-run.json`): addresses it "wrote" were never
/// at Hetzner, and a live run must not answer `nochg` from them.
fn state_file(env: &Env<'_>, key_file: &std::path::Path, dry_run: bool) -> PathBuf {
    let path = env.text("STATE_FILE").map(PathBuf::from).unwrap_or_else(|| {
        let dir = key_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        dir.join("dyndns-state.json")
    });
    if !dry_run {
        return path;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dry = match name.strip_suffix(".json") {
        Some(stem) => format!("{stem}.dry-run.json"),
        None => format!("{name}.dry-run"),
    };
    path.with_file_name(dry)
}

fn listen_address(env: &mut Env<'_>) -> SocketAddr {
    let ip = match env.text("LISTEN_ADDR") {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(raw) => raw.trim_start_matches('[').trim_end_matches(']').parse().unwrap_or_else(|_| {
            env.error(format!("LISTEN_ADDR={raw:?} is not an IP address; use 0.0.0.0, [::] or 127.0.0.1"));
            IpAddr::from([0, 0, 0, 0])
        }),
    };
    // 0 (a free port) is for tests; an operator's typo beyond 65535 stops the server.
    let port = env.number("LISTEN_PORT", 80, 0, 65535) as u16;
    SocketAddr::new(ip, port)
}

fn admin(env: &mut Env<'_>) -> Option<Admin> {
    match (env.text("BASIC_AUTH_USERNAME"), env.secret("BASIC_AUTH_PASSWORD")) {
        (Some(username), Some(password)) => {
            if username.contains(':') {
                env.error(format!(
                    "BASIC_AUTH_USERNAME={username:?} contains ':', which basic auth cannot carry; pick another name"
                ));
            }
            if password.expose().chars().count() < MIN_ADMIN_PASSWORD {
                env.error(format!(
                    "BASIC_AUTH_PASSWORD is shorter than {MIN_ADMIN_PASSWORD} characters; it unlocks every host, use a long random one (e.g. `openssl rand -base64 24`)"
                ));
            }
            Some(Admin { username, password })
        }
        (None, None) => None,
        // A password that was set but refused (placeholder, quotes) has
        // its own message already.
        (Some(_), None)
            if env.text("BASIC_AUTH_PASSWORD").is_some() || env.text("BASIC_AUTH_PASSWORD_FILE").is_some() =>
        {
            None
        }
        (Some(_), None) => {
            env.error("BASIC_AUTH_USERNAME is set but BASIC_AUTH_PASSWORD is not; set both or neither");
            None
        }
        (None, Some(_)) => {
            env.error("BASIC_AUTH_PASSWORD is set but BASIC_AUTH_USERNAME is not; set both or neither");
            None
        }
    }
}

fn trusted_proxies(env: &mut Env<'_>) -> Vec<Cidr> {
    let raw = env.text("TRUSTED_PROXIES").unwrap_or_else(|| DEFAULT_TRUSTED_PROXIES.to_string());
    let mut nets = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
        match Cidr::parse(item) {
            // Trusting every address lets every client choose its own.
            Some(net) if net.prefix == 0 => env.error(format!(
                "TRUSTED_PROXIES: {item:?} trusts every address, so any client could set its address through a header; name your proxy's address instead"
            )),
            Some(net) => nets.push(net),
            None => env.error(format!(
                "TRUSTED_PROXIES: {item:?} is not an address or CIDR like 10.0.0.0/8; use \"none\" to trust no proxy"
            )),
        }
    }
    nets
}

fn public_url(env: &mut Env<'_>) -> Option<String> {
    let raw = env.text("PUBLIC_URL")?;
    let url = raw.trim().trim_end_matches('/').to_string();
    let (scheme, authority, rest) = crate::env::url_parts(&url);
    let ok = matches!(scheme, Some("http" | "https"))
        && !authority.is_empty()
        && !authority.contains('@')
        && !rest.contains(['?', '#']);
    if !ok {
        env.error(format!(
            "PUBLIC_URL={:?} is not a plain http(s) URL; set it to the address routers reach the server at, e.g. https://dyndns.example.com",
            redact_url(&raw)
        ));
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifiers::NtfyAuth;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn malformed_acme_settings_are_named_and_quoted() {
        let base = [("DRY_RUN", "1"), ("TLS_DOMAINS", "dyndns.example.com")];
        for (name, value, wanted) in [
            ("TLS_ACME_DIRECTORY", "http://ca.example/dir", "is not an https:// URL"),
            ("TLS_ACME_DIRECTORY", "letsencrypt-stagin", "is not an https:// URL"),
            ("TLS_DNS_RESOLVER", "ns1.example.com", "is not host:port"),
            ("TLS_DNS_RESOLVER", "1.1.1.1:99999", "is not host:port"),
            ("TLS_ACME_EMAIL", "not-an-address", "is not an e-mail address"),
            ("TLS_ACME_EMAIL", "a@b.example,c@d.example", "is not an e-mail address"),
            ("TLS_RENEW_DAYS", "0", "TLS_RENEW_DAYS"),
            ("TLS_RENEW_DAYS", "thirty", "TLS_RENEW_DAYS"),
            ("TLS_RENEW_DAYS", "99999", "TLS_RENEW_DAYS"),
        ] {
            let mut vars = base.to_vec();
            vars.push((name, value));
            let err = load(&vars).expect_err(&format!("{name}={value} was accepted")).0;
            assert!(err.contains(name) && err.contains(wanted), "{name}={value}: {err}");
            assert!(err.contains(value), "{name}={value}: the value is quoted: {err}");
        }
        // The short names and a good value of each are taken.
        let mut vars = base.to_vec();
        vars.extend([
            ("TLS_ACME_DIRECTORY", "letsencrypt-staging"),
            ("TLS_DNS_RESOLVER", "[2606:4700::1111]:53"),
            ("TLS_ACME_EMAIL", "ops@example.com"),
            ("TLS_RENEW_DAYS", "30"),
        ]);
        load(&vars).expect("good values");
    }

    #[test]
    fn defaults() {
        let c = load(&[("DRY_RUN", "1")]).expect("config");
        assert_eq!(c.listen, "0.0.0.0:80".parse().expect("addr"));
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.record_ttl, 60);
        assert_eq!(c.zone_cache_ttl, Duration::from_secs(86_400));
        assert_eq!(c.request_cache_ttl, Duration::from_secs(300));
        assert_eq!((c.reconcile_interval, c.reconcile_repair), (Duration::from_secs(900), true));
        assert_eq!(c.key_file, PathBuf::from("/pre-shared-key"));
        assert!(c.registered.is_empty());
        assert!(c.warnings.iter().any(|w| w.contains("REGISTERED_FQDNS is empty")));
        assert!(c.check_serve().is_ok());
    }

    #[test]
    fn values_that_do_not_parse_stop_the_server_naming_each_variable() {
        let err = load(&[("RECORD_TTL", "abc"), ("LISTEN_PORT", "70000"), ("DRY_RUN", "2"), ("METRICS_PUBLIC", "ja")])
            .expect_err("bad values");
        for text in ["RECORD_TTL=\"abc\"", "LISTEN_PORT=\"70000\"", "DRY_RUN=\"2\"", "METRICS_PUBLIC=\"ja\""] {
            assert!(err.0.contains(text), "{text} missing from {err}");
        }
        assert_eq!(err.0.lines().count(), 4);
        assert!(load(&[("RECORD_TTL", "30")]).expect_err("below the minimum").0.contains("RECORD_TTL=\"30\""));
        let err = load(&[("RECONCILE_INTERVAL", "1h"), ("RECONCILE_REPAIR", "maybe")]).expect_err("bad values");
        assert!(err.0.contains("RECONCILE_INTERVAL=\"1h\"") && err.0.contains("RECONCILE_REPAIR=\"maybe\""), "{err}");
        let c = load(&[("DRY_RUN", "1"), ("RECONCILE_INTERVAL", "5")]).expect("config");
        assert!(c.warnings.iter().any(|w| w.contains("RECONCILE_INTERVAL=5 lists every zone 720 times an hour")));
        let c = load(&[("REQUEST_CACHE_TTL", "5"), ("HETZNER_TIMEOUT", "2")]).expect("config");
        assert_eq!(c.request_cache_ttl, Duration::from_secs(5));
        assert_eq!(c.hetzner_timeout, Duration::from_secs(2));
    }

    #[test]
    fn hosts_are_canonical_and_the_old_name_is_accepted() {
        let c = load(&[("REGISTERED_FQDNS", "B.example.com., a.example.com,b.example.com")]).expect("config");
        assert_eq!(c.registered, vec!["a.example.com", "b.example.com"]);
        let c = load(&[("ALLOWED_FQDNS", "a.example.com")]).expect("config");
        assert_eq!(c.registered, vec!["a.example.com"]);
        assert!(c.warnings.iter().any(|w| w.contains("deprecated")));
        let err = load(&[("REGISTERED_FQDNS", "a.example.com,localhost")]).expect_err("bad host");
        assert!(err.0.contains("REGISTERED_FQDNS") && err.0.contains("\"localhost\""), "{err}");
    }

    #[test]
    fn token_mistakes_are_caught_without_printing_the_token() {
        let err = load(&[]).expect("config").check_serve().expect_err("no token");
        assert!(err.0.contains("HETZNER_TOKEN") && err.0.contains("DRY_RUN"));
        let err = load(&[("HETZNER_TOKEN", "replace-with-your-hetzner-cloud-api-token")]).expect_err("placeholder");
        assert!(err.0.contains("placeholder"));
        let err = load(&[("HETZNER_TOKEN", "\"abcdef\"")]).expect_err("quoted");
        assert!(err.0.contains("quotes") && !err.0.contains("abcdef"));
        let err = load(&[("HETZNER_API_URL", "https://dns.hetzner.com/api/v1")]).expect_err("old api");
        assert!(err.0.contains("shut down"));
        let c = load(&[("HETZNER_TOKEN", "tok123")]).expect("config");
        assert_eq!(
            c.projects.iter().map(|p| (p.name.as_str(), p.token.expose())).collect::<Vec<_>>(),
            [("default", "tok123")]
        );
        assert!(!format!("{c:?}").contains("tok123"));
        assert!(!c.summary().contains("tok123"));
        let c = load(&[
            ("HETZNER_TOKEN", "tok123"),
            ("HETZNER_API_URL", "https://proxyuser:proxypass@hetzner-proxy.example/v1"),
            ("NTFY_URL", "https://phil:ntfypass@ntfy.example.com"),
            ("NTFY_TOPIC", "t"),
        ])
        .expect("config");
        let summary = c.summary();
        assert!(!summary.contains("proxypass") && !summary.contains("ntfypass"), "{summary}");
        assert!(summary.contains("https://***@hetzner-proxy.example/v1"), "{summary}");
    }

    #[test]
    fn a_dry_run_ignores_the_token_even_a_placeholder() {
        let c =
            load(&[("DRY_RUN", "1"), ("HETZNER_TOKEN", "replace-with-your-hetzner-cloud-api-token")]).expect("config");
        assert!(c.projects.is_empty() && c.dry_run);
        assert!(c.warnings.iter().any(|w| w.contains("HETZNER_TOKEN is ignored")));
        assert!(c.check_serve().is_ok());
    }

    #[test]
    fn registered_names_must_be_host_names() {
        for bad in ["1.2.3.4", "host.123", "localhost"] {
            let err = load(&[("REGISTERED_FQDNS", bad)]).expect_err(bad);
            assert!(err.0.starts_with(&format!("REGISTERED_FQDNS: {bad:?} is not a host name")), "{err}");
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        let c = load(&[]).expect("config");
        let trusted = |ip: &str| c.trusted_proxies.iter().any(|n| n.contains(ip.parse().expect("ip")));
        assert!(trusted("127.0.0.1") && trusted("::1") && trusted("::ffff:127.0.0.2"));
        // Not private ranges: behind a port mapping every client comes from one.
        assert!(!trusted("10.88.0.1") && !trusted("172.20.0.3") && !trusted("192.168.1.1") && !trusted("fd00::1"));
        assert!(!trusted("203.0.113.9") && !trusted("2001:db8::1"));
        let c = load(&[("TRUSTED_PROXIES", "none")]).expect("config");
        assert!(c.trusted_proxies.is_empty());
        let c = load(&[("TRUSTED_PROXIES", "203.0.113.0/24, 2001:db8::/32")]).expect("config");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains("2001:db8:ffff::1".parse().expect("ip")));
        let err = load(&[("TRUSTED_PROXIES", "10.0.0.0/33")]).expect_err("bad");
        assert!(err.0.contains("TRUSTED_PROXIES") && err.0.contains("10.0.0.0/33"));
        let err = load(&[("TRUSTED_PROXIES", "0.0.0.0/0,::/0")]).expect_err("everyone");
        assert_eq!(err.0.lines().count(), 2);
        assert!(err.0.contains("trusts every address"), "{err}");
    }

    #[test]
    fn ntfy_settings_go_together() {
        assert!(load(&[]).expect("config").notifiers.is_empty());
        let c =
            load(&[("NTFY_URL", "https://ntfy.sh/"), ("NTFY_TOPIC", "dyn"), ("NTFY_TOKEN", "tk_1")]).expect("config");
        let Some(Target::Ntfy { topic_url, auth }) = c.notifiers.first() else { panic!("ntfy") };
        assert_eq!(topic_url, "https://ntfy.sh/dyn");
        assert!(matches!(auth, NtfyAuth::Token(_)));
        // NOTIFY_URLS come after ntfy; a bad entry stops the start, named.
        let c = load(&[
            ("NTFY_URL", "https://ntfy.sh/"),
            ("NTFY_TOPIC", "dyn"),
            ("NOTIFY_URLS", "discord://t@1, gotify://g.example.com/tok"),
        ])
        .expect("config");
        let labels: Vec<String> = c.notifiers.iter().map(Target::label).collect();
        assert_eq!(labels, ["ntfy (ntfy.sh)", "discord", "gotify (g.example.com)"]);
        let err = load(&[("NOTIFY_URLS", "gotify://g.example.com/tok,teams://secret@x")]).expect_err("bad entry");
        assert!(err.0.contains("NOTIFY_URLS entry \"teams://***@x\": unknown service"), "{}", err.0);
        assert!(load(&[("NTFY_URL", "https://ntfy.sh")]).expect_err("no topic").0.contains("NTFY_TOPIC"));
        let err =
            load(&[("NTFY_URL", "https://ntfy.sh"), ("NTFY_TOPIC", "t"), ("NTFY_USERNAME", "u")]).expect_err("half");
        assert!(err.0.contains("NTFY_PASSWORD"));
        let c = load(&[("PRE_SHARED_KEY_FILE", "/data/keys")]).expect("config");
        assert_eq!(c.state_file, PathBuf::from("/data/dyndns-state.json"));
        let c = load(&[("PRE_SHARED_KEY_FILE", "/data/keys"), ("DRY_RUN", "1")]).expect("config");
        assert_eq!(c.state_file, PathBuf::from("/data/dyndns-state.dry-run.json"), "a dry run keeps its state apart");
    }

    #[test]
    fn listen_address_and_admin_pair() {
        let c = load(&[("LISTEN_ADDR", "[::]"), ("LISTEN_PORT", "8080")]).expect("config");
        assert_eq!(c.listen, "[::]:8080".parse().expect("addr"));
        let err = load(&[("LISTEN_ADDR", "localhost")]).expect_err("bad addr");
        assert!(err.0.contains("LISTEN_ADDR=\"localhost\""));
        let err = load(&[("BASIC_AUTH_USERNAME", "admin")]).expect_err("half admin");
        assert!(err.0.contains("BASIC_AUTH_PASSWORD"));
        let err = load(&[("BASIC_AUTH_USERNAME", "admin"), ("BASIC_AUTH_PASSWORD", "\"correct-horse-battery\"")])
            .expect_err("quoted");
        assert!(err.0.contains("quotes") && !err.0.contains("is not; set both"), "one message, the right one: {err}");
        let err = load(&[("BASIC_AUTH_USERNAME", "admin"), ("BASIC_AUTH_PASSWORD", "pw")]).expect_err("short");
        assert!(err.0.contains("shorter than 12"), "{err}");
        let c = load(&[("BASIC_AUTH_USERNAME", "admin"), ("BASIC_AUTH_PASSWORD", "correct-horse-battery")])
            .expect("config");
        assert_eq!(c.admin.map(|a| a.username), Some("admin".into()));
    }
}
