//! The server's settings: the only module that reads the environment.
//!
//! Reading happens in two steps: raw strings (from the process environment,
//! or from a map in tests) become a validated `Config` with typed values.
//! Numbers that do not parse fall back to their default with a warning that
//! names the variable and quotes the value; problems the server cannot run
//! with become a `ConfigError` that says what to do. Secrets are read once,
//! held in `Secret` (whose `Debug` is redacted) and never logged.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::fqdn;

/// The token placeholder shipped in `.secrets.example`.
pub const TOKEN_PLACEHOLDER: &str = "replace-with-your-hetzner-cloud-api-token";
/// The password placeholder shipped in `.secrets.example`.
pub const PASSWORD_PLACEHOLDER: &str = "replace-with-a-long-random-password";
pub const DEFAULT_API_URL: &str = "https://api.hetzner.cloud/v1";

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Admin credentials accepted on both update endpoints for any registered host.
#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `None` only when it is not needed (dry run, `keys`).
    pub token: Option<Secret>,
    pub api_url: String,
    /// Canonical names (see `fqdn`), sorted, no duplicates.
    pub registered: Vec<String>,
    pub key_file: PathBuf,
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
    /// Where notifications go; `None` when `NTFY_URL`/`NTFY_TOPIC` are unset.
    pub ntfy: Option<Ntfy>,
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
    /// `HOST_WRITE_BURST` and `HOST_WRITES_PER_HOUR`: Hetzner writes one host
    /// may cause at once, and refilled per hour.
    pub host_write_burst: u32,
    pub host_writes_per_hour: u32,
    /// Problems that did not stop the server, to be logged once logging is up.
    pub warnings: Vec<String>,
}

/// ntfy settings.
#[derive(Debug, Clone)]
pub struct Ntfy {
    /// `{NTFY_URL}/{NTFY_TOPIC}`.
    pub topic_url: String,
    pub auth: NtfyAuth,
}

#[derive(Debug, Clone)]
pub enum NtfyAuth {
    None,
    Basic { username: String, password: Secret },
    Token(Secret),
}

/// An address range such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (net, width) = bits(self.addr);
        let (host, host_width) = bits(ip);
        if width != host_width {
            return false;
        }
        // IPv4 sits in the top 32 bits, so a prefix counts from the top either way.
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        net & mask == host & mask
    }
}

/// Loopback and private ranges: a reverse proxy on the same host or
/// Docker network.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// A setting the server cannot run with. The text names the variable,
/// quotes the value (never a secret) and says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Raw lookups plus the warnings collected on the way.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Reader<'_> {
    /// The trimmed value, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn flag(&mut self, name: &str) -> bool {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("0" | "false" | "no" | "off") => false,
            Some("1" | "true" | "yes" | "on") => true,
            Some(other) => {
                self.warnings.push(format!("{name}={other:?} is not 0 or 1; using 0"));
                false
            }
        }
    }

    fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(_) => {
                self.warnings.push(format!("{name}={raw:?} is outside {min}..={max}; using the default {default}"));
                default
            }
            Err(_) => {
                self.warnings.push(format!("{name}={raw:?} is not a whole number; using the default {default}"));
                default
            }
        }
    }

    /// A secret from `NAME` or the file named by `NAME_FILE`, checked for
    /// the usual copy-and-paste mistakes.
    fn secret(&mut self, name: &str, placeholder: &str) -> Result<Option<Secret>, ConfigError> {
        let file_var = format!("{name}_FILE");
        let value = match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(format!("{name} and {file_var} are both set; set only one of them")))
            }
            (Some(v), None) => v,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError(format!(
                        "{file_var}: cannot read {path:?}: {e}; point it at a readable file holding only the secret"
                    ))
                })?;
                let v = text.trim().to_string();
                if v.is_empty() {
                    return Err(ConfigError(format!("{file_var}: {path:?} is empty; put the secret in it")));
                }
                if v.starts_with(&format!("{name}=")) || (v.contains('=') && v.contains('\n')) {
                    return Err(ConfigError(format!(
                        "{file_var}: {path:?} looks like an env file (KEY=value); it must hold only the secret itself"
                    )));
                }
                v
            }
            (None, None) => return Ok(None),
        };
        let quoted = value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')));
        if quoted {
            return Err(ConfigError(format!(
                "{name} is wrapped in quotes; remove them (env files and compose take the value literally)"
            )));
        }
        if value.chars().any(char::is_whitespace) {
            return Err(ConfigError(format!("{name} contains white space; it must be a single word")));
        }
        if value == placeholder {
            return Err(ConfigError(format!(
                "{name} is still the placeholder from .secrets.example; replace it with your real value"
            )));
        }
        Ok(Some(Secret(value)))
    }
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Read settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut r = Reader { lookup, warnings: Vec::new() };

        let dry_run = r.flag("DRY_RUN");
        let debug = r.flag("DEBUG_LOGGING");

        let token = r.secret("HETZNER_TOKEN", TOKEN_PLACEHOLDER)?;
        if dry_run && token.is_some() {
            r.warnings.push("DRY_RUN=1: HETZNER_TOKEN is set but not used; nothing is written to Hetzner".into());
        }

        let api_url = r.get("HETZNER_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let api_url = api_url.trim_end_matches('/').to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ConfigError(format!(
                "HETZNER_API_URL={api_url:?} is not an http(s) URL; leave it unset for {DEFAULT_API_URL}"
            )));
        }
        if api_url.contains("dns.hetzner.com") {
            return Err(ConfigError(format!(
                "HETZNER_API_URL={api_url:?} is the old DNS API, shut down in May 2026; leave it unset for {DEFAULT_API_URL} and use a Cloud API token"
            )));
        }

        let registered = registered_hosts(&mut r)?;

        let key_file = PathBuf::from(r.get("PRE_SHARED_KEY_FILE").unwrap_or_else(|| "/pre-shared-key".into()));

        let listen_ip = match r.get("LISTEN_ADDR") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(raw) => raw.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
                ConfigError(format!("LISTEN_ADDR={raw:?} is not an IP address; use 0.0.0.0, [::] or 127.0.0.1"))
            })?,
        };
        let port = r.number("LISTEN_PORT", 80, 0, 65535) as u16;

        let record_ttl = r.number("RECORD_TTL", 60, 60, 2_147_483_647) as u32;
        let zone_cache_ttl = Duration::from_secs(r.number("ZONE_CACHE_TTL", 86_400, 0, 31_536_000));
        let request_cache_ttl = Duration::from_secs(r.number("REQUEST_CACHE_TTL", 300, 0, 31_536_000));

        let admin_user = r.get("BASIC_AUTH_USERNAME");
        let admin_pass = r.secret("BASIC_AUTH_PASSWORD", PASSWORD_PLACEHOLDER)?;
        let admin = match (admin_user, admin_pass) {
            (Some(username), Some(password)) => {
                if username.contains(':') {
                    return Err(ConfigError(format!(
                        "BASIC_AUTH_USERNAME={username:?} contains ':', which basic auth cannot carry; pick another name"
                    )));
                }
                Some(Admin { username, password })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(
                    "BASIC_AUTH_USERNAME is set but BASIC_AUTH_PASSWORD is not; set both or neither".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "BASIC_AUTH_PASSWORD is set but BASIC_AUTH_USERNAME is not; set both or neither".into(),
                ))
            }
        };

        let ntfy = ntfy_settings(&mut r)?;
        let notify_on_change = r.flag("NOTIFY_ON_CHANGE");
        let notify_repeat_interval = Duration::from_secs(r.number("NOTIFY_REPEAT_INTERVAL", 3600, 0, 31_536_000));
        let connection_check_interval = Duration::from_secs(r.number("CONNECTION_CHECK_INTERVAL", 60, 1, 86_400));
        let lost_connection_timeout = Duration::from_secs(r.number("LOST_CONNECTION_TIMEOUT", 10_800, 1, 31_536_000));
        let state_file = r.get("STATE_FILE").map(PathBuf::from).unwrap_or_else(|| {
            let dir = key_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            dir.join("dyndns-state.json")
        });
        let metrics_public = r.flag("METRICS_PUBLIC");
        let proxies_raw = r.get("TRUSTED_PROXIES").unwrap_or_else(|| DEFAULT_TRUSTED_PROXIES.to_string());
        let mut trusted_proxies = Vec::new();
        for item in proxies_raw.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            trusted_proxies.push(Cidr::parse(item).ok_or_else(|| {
                ConfigError(format!("TRUSTED_PROXIES: {item:?} is not an address or CIDR like 10.0.0.0/8; use \"none\" to trust no proxy"))
            })?);
        }

        let client_timeout = Duration::from_secs(r.number("CLIENT_TIMEOUT", 10, 1, 300));
        let max_connections = r.number("MAX_CONNECTIONS", 512, 16, 65_536) as usize;
        let host_write_burst = r.number("HOST_WRITE_BURST", 10, 1, 1000) as u32;
        let host_writes_per_hour = r.number("HOST_WRITES_PER_HOUR", 12, 1, 3600) as u32;

        let log_file = r.get("LOG_FILE").map(PathBuf::from);
        let log_max_bytes = r.number("LOG_MAX_BYTES", 1_048_576, 1024, u64::MAX);
        let log_backup_count = r.number("LOG_BACKUP_COUNT", 3, 0, 1000) as usize;

        Ok(Config {
            token,
            api_url,
            registered,
            key_file,
            listen: SocketAddr::new(listen_ip, port),
            record_ttl,
            zone_cache_ttl,
            request_cache_ttl,
            admin,
            debug,
            log_file,
            log_max_bytes,
            log_backup_count,
            dry_run,
            ntfy,
            notify_on_change,
            notify_repeat_interval,
            connection_check_interval,
            lost_connection_timeout,
            state_file,
            metrics_public,
            trusted_proxies,
            client_timeout,
            max_connections,
            host_write_burst,
            host_writes_per_hour,
            warnings: r.warnings,
        })
    }

    /// What serving needs beyond what `keys` needs: a token unless dry run.
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if self.token.is_none() && !self.dry_run {
            return Err(ConfigError(
                "HETZNER_TOKEN is not set; set it (or HETZNER_TOKEN_FILE) to a Hetzner Cloud API token with Read & Write access, or set DRY_RUN=1 to try the server without one".into(),
            ));
        }
        Ok(())
    }

    /// One line with the effective settings, secrets redacted.
    pub fn summary(&self) -> String {
        format!(
            "listen={} api={} registered=[{}] key_file={} state_file={} ntfy={} notify_on_change={} lost_after={}s record_ttl={} zone_cache_ttl={}s request_cache_ttl={}s client_timeout={}s max_connections={} host_writes={}+{}/h token={} admin={} dry_run={} debug={} log_file={}",
            self.listen,
            self.api_url,
            self.registered.join(","),
            self.key_file.display(),
            self.state_file.display(),
            match &self.ntfy {
                Some(n) => format!(
                    "{} ({})",
                    n.topic_url,
                    match n.auth {
                        NtfyAuth::None => "no auth",
                        NtfyAuth::Basic { .. } => "basic auth",
                        NtfyAuth::Token(_) => "token",
                    }
                ),
                None => "off".into(),
            },
            u8::from(self.notify_on_change),
            self.lost_connection_timeout.as_secs(),
            self.record_ttl,
            self.zone_cache_ttl.as_secs(),
            self.request_cache_ttl.as_secs(),
            self.client_timeout.as_secs(),
            self.max_connections,
            self.host_write_burst,
            self.host_writes_per_hour,
            if self.token.is_some() { "set" } else { "unset" },
            match &self.admin {
                Some(a) => format!("{} (password set)", a.username),
                None => "unset".into(),
            },
            u8::from(self.dry_run),
            u8::from(self.debug),
            self.log_file.as_ref().map_or("none".into(), |p| format!(
                "{} ({} bytes x {})",
                p.display(),
                self.log_max_bytes,
                self.log_backup_count
            )),
        )
    }
}

fn ntfy_settings(r: &mut Reader<'_>) -> Result<Option<Ntfy>, ConfigError> {
    let (url, topic) = match (r.get("NTFY_URL"), r.get("NTFY_TOPIC")) {
        (None, None) => return Ok(None),
        (Some(u), Some(t)) => (u, t),
        (Some(_), None) => {
            return Err(ConfigError("NTFY_URL is set but NTFY_TOPIC is not; set both (or neither)".into()))
        }
        (None, Some(t)) => {
            return Err(ConfigError(format!(
                "NTFY_TOPIC={t:?} is set but NTFY_URL is not; set it, e.g. https://ntfy.sh"
            )))
        }
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError(format!("NTFY_URL={url:?} is not an http(s) URL, e.g. https://ntfy.sh")));
    }
    if topic.contains(['/', '?', '#', ' ']) {
        return Err(ConfigError(format!("NTFY_TOPIC={topic:?} must be a bare topic name")));
    }
    let user = r.get("NTFY_USERNAME");
    let password = r.secret("NTFY_PASSWORD", PASSWORD_PLACEHOLDER)?;
    let token = r.secret("NTFY_TOKEN", "replace-with-your-ntfy-token")?;
    let auth = match (user, password, token) {
        (None, None, None) => NtfyAuth::None,
        (Some(username), Some(password), None) => NtfyAuth::Basic { username, password },
        (None, None, Some(t)) => NtfyAuth::Token(t),
        (_, _, Some(_)) => {
            return Err(ConfigError(
                "NTFY_TOKEN and NTFY_USERNAME/NTFY_PASSWORD are both set; use one way to log in".into(),
            ))
        }
        _ => return Err(ConfigError("NTFY_USERNAME and NTFY_PASSWORD go together; set both or neither".into())),
    };
    Ok(Some(Ntfy { topic_url: format!("{}/{topic}", url.trim_end_matches('/')), auth }))
}

fn registered_hosts(r: &mut Reader<'_>) -> Result<Vec<String>, ConfigError> {
    let (var, raw) = match (r.get("REGISTERED_FQDNS"), r.get("ALLOWED_FQDNS")) {
        (Some(v), old) => {
            if old.is_some() {
                r.warnings
                    .push("ALLOWED_FQDNS is ignored because REGISTERED_FQDNS is set; remove ALLOWED_FQDNS".into());
            }
            ("REGISTERED_FQDNS", v)
        }
        (None, Some(v)) => {
            r.warnings.push("ALLOWED_FQDNS is deprecated; rename it to REGISTERED_FQDNS".into());
            ("ALLOWED_FQDNS", v)
        }
        (None, None) => {
            r.warnings.push(
                "REGISTERED_FQDNS is empty: no host may be updated and every update answers nohost; list your hosts, comma-separated".into(),
            );
            return Ok(Vec::new());
        }
    };
    let mut hosts = Vec::new();
    for item in raw.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
        let host =
            fqdn::canonical(item).map_err(|e| ConfigError(format!("{var}: {item:?} is not a host name: {e}")))?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts.sort();
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[("DRY_RUN", "1")]).expect("config");
        assert_eq!(c.listen, "0.0.0.0:80".parse().expect("addr"));
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.record_ttl, 60);
        assert_eq!(c.zone_cache_ttl, Duration::from_secs(86_400));
        assert_eq!(c.request_cache_ttl, Duration::from_secs(300));
        assert_eq!(c.key_file, PathBuf::from("/pre-shared-key"));
        assert!(c.registered.is_empty());
        assert!(c.warnings.iter().any(|w| w.contains("REGISTERED_FQDNS is empty")));
        assert!(c.check_serve().is_ok());
    }

    #[test]
    fn bad_numbers_fall_back_with_a_warning_naming_the_variable() {
        let c = load(&[("RECORD_TTL", "abc"), ("LISTEN_PORT", "99999"), ("REQUEST_CACHE_TTL", "5")]).expect("config");
        assert_eq!(c.record_ttl, 60);
        assert_eq!(c.listen.port(), 80);
        assert_eq!(c.request_cache_ttl, Duration::from_secs(5));
        assert!(c.warnings.iter().any(|w| w.contains("RECORD_TTL=\"abc\"")));
        assert!(c.warnings.iter().any(|w| w.contains("LISTEN_PORT=\"99999\"")));
        let c = load(&[("RECORD_TTL", "30")]).expect("config");
        assert_eq!(c.record_ttl, 60);
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
        let err = load(&[("HETZNER_TOKEN", TOKEN_PLACEHOLDER)]).expect_err("placeholder");
        assert!(err.0.contains("placeholder"));
        let err = load(&[("HETZNER_TOKEN", "\"abcdef\"")]).expect_err("quoted");
        assert!(err.0.contains("quotes") && !err.0.contains("abcdef"));
        let err = load(&[("HETZNER_API_URL", "https://dns.hetzner.com/api/v1")]).expect_err("old api");
        assert!(err.0.contains("shut down"));
        let c = load(&[("HETZNER_TOKEN", "tok123")]).expect("config");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok123"));
        assert!(!format!("{c:?}").contains("tok123"));
        assert!(!c.summary().contains("tok123"));
    }

    #[test]
    fn token_file_is_read_and_env_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("dyndns-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("token");
        std::fs::write(&good, "tok-from-file\n").expect("write");
        let bad = dir.join("envfile");
        std::fs::write(&bad, "HETZNER_TOKEN=tok\n").expect("write");
        let c = load(&[("HETZNER_TOKEN_FILE", good.to_str().expect("utf8"))]).expect("config");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok-from-file"));
        let err = load(&[("HETZNER_TOKEN_FILE", bad.to_str().expect("utf8"))]).expect_err("env file");
        assert!(err.0.contains("env file"));
        let err = load(&[("HETZNER_TOKEN_FILE", "/nonexistent/token")]).expect_err("missing");
        assert!(err.0.starts_with("HETZNER_TOKEN_FILE") && err.0.contains("/nonexistent/token"));
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        let c = load(&[]).expect("config");
        let trusted = |ip: &str| c.trusted_proxies.iter().any(|n| n.contains(ip.parse().expect("ip")));
        assert!(trusted("127.0.0.1") && trusted("::1") && trusted("172.20.0.3") && trusted("::ffff:10.1.2.3"));
        assert!(!trusted("203.0.113.9") && !trusted("2001:db8::1") && !trusted("172.32.0.1"));
        let c = load(&[("TRUSTED_PROXIES", "none")]).expect("config");
        assert!(c.trusted_proxies.is_empty());
        let c = load(&[("TRUSTED_PROXIES", "203.0.113.0/24, 2001:db8::/32")]).expect("config");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains("2001:db8:ffff::1".parse().expect("ip")));
        let err = load(&[("TRUSTED_PROXIES", "10.0.0.0/33")]).expect_err("bad");
        assert!(err.0.contains("TRUSTED_PROXIES") && err.0.contains("10.0.0.0/33"));
        assert_eq!(Cidr::parse("0.0.0.0/0").map(|c| c.contains("8.8.8.8".parse().expect("ip"))), Some(true));
    }

    #[test]
    fn ntfy_settings_go_together() {
        assert!(load(&[]).expect("config").ntfy.is_none());
        let c =
            load(&[("NTFY_URL", "https://ntfy.sh/"), ("NTFY_TOPIC", "dyn"), ("NTFY_TOKEN", "tk_1")]).expect("config");
        let n = c.ntfy.expect("ntfy");
        assert_eq!(n.topic_url, "https://ntfy.sh/dyn");
        assert!(matches!(n.auth, NtfyAuth::Token(_)));
        assert!(load(&[("NTFY_URL", "https://ntfy.sh")]).expect_err("no topic").0.contains("NTFY_TOPIC"));
        let err =
            load(&[("NTFY_URL", "https://ntfy.sh"), ("NTFY_TOPIC", "t"), ("NTFY_USERNAME", "u")]).expect_err("half");
        assert!(err.0.contains("NTFY_PASSWORD"));
        let c = load(&[("PRE_SHARED_KEY_FILE", "/data/keys")]).expect("config");
        assert_eq!(c.state_file, PathBuf::from("/data/dyndns-state.json"));
    }

    #[test]
    fn listen_address_and_admin_pair() {
        let c = load(&[("LISTEN_ADDR", "[::]"), ("LISTEN_PORT", "8080")]).expect("config");
        assert_eq!(c.listen, "[::]:8080".parse().expect("addr"));
        let err = load(&[("LISTEN_ADDR", "localhost")]).expect_err("bad addr");
        assert!(err.0.contains("LISTEN_ADDR=\"localhost\""));
        let err = load(&[("BASIC_AUTH_USERNAME", "admin")]).expect_err("half admin");
        assert!(err.0.contains("BASIC_AUTH_PASSWORD"));
        let c = load(&[("BASIC_AUTH_USERNAME", "admin"), ("BASIC_AUTH_PASSWORD", "pw")]).expect("config");
        assert_eq!(c.admin.map(|a| a.username), Some("admin".into()));
    }
}
