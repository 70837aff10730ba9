//! The agent's settings: the only module that reads arguments and the
//! environment. Positional arguments (`BACKEND_URL FQDN [IP]`) override the
//! environment. Problems become a `ConfigError` (exit status 2) that names
//! the variable, quotes the value (never a key) and says what to do.
//!
//! The rules for flags, numbers and secrets are the server's own: this
//! module reads them with `dyndns_common::env` (one crate, so the two cannot drift).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use dyndns_common::env;
use dyndns_common::heartbeat::Monitor;
use env::url_host;
use env::Env;
pub use env::{redact_url, ConfigError, Secret};

/// Which address families to report when no `IP` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
    Both,
}

/// One address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn record_type(self) -> &'static str {
        match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// `IPV6_SOURCE`: which IPv6 address is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Source {
    /// This host's stable global address, read from the kernel (Linux).
    Kernel,
    /// The address the server sees the IPv6 connection come from (the
    /// default where the kernel's list cannot be read).
    Connection,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The full update URL (`…/update`).
    pub update_url: String,
    pub fqdn: String,
    pub key: Secret,
    pub ip: Option<IpAddr>,
    /// Zero: report once and exit.
    pub interval: Duration,
    pub ca_bundle: Option<PathBuf>,
    pub verify_tls: bool,
    pub ip_version: IpVersion,
    /// Where the IPv6 address to report comes from when `IP` is not set.
    pub ipv6_source: Ipv6Source,
    /// `IPV6_INTERFACE`: take the IPv6 address from this interface.
    pub ipv6_interface: Option<String>,
    pub debug: bool,
    /// Heartbeats after each cycle (`HEALTHCHECKS_URL`, `UPTIME_KUMA_URL`).
    pub monitors: Vec<Monitor>,
    /// Things worth a warning at start.
    pub warnings: Vec<String>,
}

/// The dyndns2 paths a router's update URL ends in; the agent speaks the
/// JSON endpoint instead, so such a suffix is replaced (with a warning).
const ROUTER_PATHS: &[&str] = &["/nic/update", "/v3/update"];

/// `BACKEND_URL` with or without a trailing slash or `/update` → the update URL.
pub fn update_url(backend: &str) -> Result<String, ConfigError> {
    let trimmed = backend.trim();
    let shown = redact_url(trimmed);
    let lower = trimmed.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url_host(trimmed).is_empty() {
        return Err(ConfigError(format!(
            "BACKEND_URL={shown:?} is not an http(s) URL; use the server's address, e.g. https://dyndns.example.com"
        )));
    }
    if trimmed.contains(['?', '#', ' ']) {
        return Err(ConfigError(format!("BACKEND_URL={shown:?} must not contain '?', '#' or spaces")));
    }
    let base = trimmed.trim_end_matches('/');
    let base = ROUTER_PATHS.iter().find_map(|p| base.strip_suffix(p)).unwrap_or(base);
    let base = base.strip_suffix("/update").unwrap_or(base).trim_end_matches('/');
    Ok(format!("{base}/update"))
}

/// Does the URL name this machine (so plain http never leaves it)?
fn is_local(url: &str) -> bool {
    let host = url_host(url);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// From the process environment; variables that look like a misspelt
    /// setting are named (a warning, or with the errors).
    pub fn from_env(args: &[String]) -> Result<Config, ConfigError> {
        let prefixes = ["BACKEND_", "PRE_SHARED_", "IPV4_", "IPV6_", "CA_", "FQDN", "HEALTHCHECKS_", "UPTIME_"];
        env::from_process(&prefixes, |lookup| Config::load(args, lookup), |c| &mut c.warnings)
    }

    /// `args` are the positional arguments (program name excluded).
    pub fn load(args: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if args.len() == 1 || args.len() > 3 {
            return Err(ConfigError(format!(
                "expected no arguments or BACKEND_URL FQDN [IP], got {} argument(s); see --help",
                args.len()
            )));
        }
        let positional = |i: usize| args.get(i).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let mut env = Env::new(lookup);
        let backend = positional(0).or_else(|| env.text("BACKEND_URL"));
        let update_url = backend_url(&mut env, backend);
        let fqdn = host_name(&mut env, positional(1));
        let ip = explicit_ip(&mut env, positional(2));
        let key = env.secret("PRE_SHARED_KEY");
        if key.is_none() && env.text("PRE_SHARED_KEY").is_none() && env.text("PRE_SHARED_KEY_FILE").is_none() {
            env.error("PRE_SHARED_KEY is not set; set it (or PRE_SHARED_KEY_FILE) to this host's key from `dyndns-server keys`");
        }
        let interval = env.number("INTERVAL", 60, 0, 86_400);
        if interval > 0 && interval < 10 {
            env.warn(format!("INTERVAL={interval} is very short; the server answers unchanged addresses from its cache, but 60 or more is plenty"));
        }
        let (ip_version, ipv6_source) = families(&mut env);
        let ipv6_interface = env.text("IPV6_INTERFACE");
        if ipv6_interface.is_some() && ipv6_source == Ipv6Source::Connection {
            env.warn("IPV6_INTERFACE is ignored with IPV6_SOURCE=connection");
        }
        let verify_tls = env.flag("VERIFY_SSL", true);
        let debug = env.flag("DEBUG_LOGGING", false);
        let monitors = dyndns_common::heartbeat::monitors(&mut env);
        let ca_bundle = env.text("CA_BUNDLE").map(PathBuf::from);
        if let Some(path) = ca_bundle.as_ref().filter(|p| !p.is_file()) {
            env.error(format!("CA_BUNDLE={:?} is not a readable file", path.display().to_string()));
        }
        let config = Config {
            update_url,
            fqdn,
            key: key.unwrap_or_else(|| Secret::new("")),
            ip,
            interval: Duration::from_secs(interval),
            ca_bundle,
            verify_tls,
            ip_version,
            ipv6_source,
            ipv6_interface,
            debug,
            monitors,
            warnings: Vec::new(),
        };
        let (mut config, warnings) = env.finish(config)?;
        config.warnings = warnings;
        Ok(config)
    }

    /// The families to report each cycle (none to force when `IP` is set).
    pub fn families(&self) -> Vec<Option<Family>> {
        if self.ip.is_some() {
            return vec![None];
        }
        match self.ip_version {
            IpVersion::V4 => vec![Some(Family::V4)],
            IpVersion::V6 => vec![Some(Family::V6)],
            IpVersion::Both => vec![Some(Family::V4), Some(Family::V6)],
        }
    }
}

/// `IP_VERSION` and `IPV6_SOURCE`.
fn families(env: &mut Env<'_>) -> (IpVersion, Ipv6Source) {
    let ip_version = match env.text("IP_VERSION").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("both" | "46" | "dual") => IpVersion::Both,
        Some("4" | "ipv4" | "v4") => IpVersion::V4,
        Some("6" | "ipv6" | "v6") => IpVersion::V6,
        Some(other) => {
            env.error(format!("IP_VERSION={other:?} must be 4, 6 or both"));
            IpVersion::Both
        }
    };
    let default_source = if cfg!(target_os = "linux") { Ipv6Source::Kernel } else { Ipv6Source::Connection };
    let ipv6_source = match env.text("IPV6_SOURCE").map(|v| v.to_ascii_lowercase()).as_deref() {
        None => default_source,
        Some("kernel" | "interface" | "stable") => Ipv6Source::Kernel,
        Some("connection" | "server") => Ipv6Source::Connection,
        Some(other) => {
            env.error(format!(
                "IPV6_SOURCE={other:?} must be kernel (this host's stable address) or connection (the address the server sees)"
            ));
            default_source
        }
    };
    (ip_version, ipv6_source)
}

fn backend_url(env: &mut Env<'_>, backend: Option<String>) -> String {
    let Some(backend) = backend else {
        env.error("BACKEND_URL is not set; set it to your dyndns-server, e.g. https://dyndns.example.com");
        return String::new();
    };
    let url = match update_url(&backend) {
        Ok(u) => u,
        Err(e) => {
            env.error(e.0);
            return String::new();
        }
    };
    let trimmed = backend.trim().trim_end_matches('/');
    if ROUTER_PATHS.iter().any(|p| trimmed.ends_with(p)) {
        env.warn(format!(
            "BACKEND_URL={:?} is a router's dyndns2 URL; the agent uses {:?} (set BACKEND_URL to the server's address)",
            redact_url(&backend),
            redact_url(&url)
        ));
    }
    if url.starts_with("http://") && !is_local(&url) {
        env.warn(format!(
            "BACKEND_URL={:?} is plain http: the key crosses the network unencrypted; use https",
            redact_url(&backend)
        ));
    }
    url
}

fn host_name(env: &mut Env<'_>, positional: Option<String>) -> String {
    let Some(fqdn) = positional.or_else(|| env.text("FQDN")) else {
        env.error("FQDN is not set; set it to the host name to update, e.g. home.example.com");
        return String::new();
    };
    if fqdn.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') || !fqdn.contains('.') {
        env.error(format!("FQDN={fqdn:?} is not a host name like home.example.com"));
    }
    fqdn
}

fn explicit_ip(env: &mut Env<'_>, positional: Option<String>) -> Option<IpAddr> {
    let (what, raw) = positional.map(|v| ("IP argument", v)).or_else(|| env.text("IP").map(|v| ("IP", v)))?;
    let parsed = raw.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
    if parsed.is_err() {
        env.error(format!("{what}={raw:?} is not an IP address; leave it unset to report the address the server sees"));
    }
    parsed.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Config::load(&args, &move |k| map.get(k).cloned())
    }

    const BASE: &[(&str, &str)] =
        &[("BACKEND_URL", "https://dyndns.example.com"), ("FQDN", "home.example.com"), ("PRE_SHARED_KEY", "k")];

    #[test]
    fn update_url_accepts_every_spelling() {
        for backend in [
            "https://d.example.com",
            "https://d.example.com/",
            "https://d.example.com/update",
            "https://d.example.com/update/",
        ] {
            assert_eq!(update_url(backend).as_deref(), Ok("https://d.example.com/update"), "{backend}");
        }
        assert_eq!(update_url("http://10.0.0.1:8080/dyn/").as_deref(), Ok("http://10.0.0.1:8080/dyn/update"));
        assert_eq!(update_url("https://d.example.com/nic/update").as_deref(), Ok("https://d.example.com/update"));
        assert!(update_url("dyndns.example.com").is_err());
        assert!(update_url("ftp://x").is_err());
        assert!(update_url("https://").is_err());
        assert!(update_url("https://x/?a=b").is_err());
    }

    #[test]
    fn defaults_and_positional_override() {
        let c = load(&[], BASE).expect("config");
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.ip_version, IpVersion::Both);
        assert!(c.verify_tls);
        assert_eq!(c.families(), vec![Some(Family::V4), Some(Family::V6)]);
        let c = load(&["http://127.0.0.1:8080", "nas.example.com", "192.0.2.1"], BASE).expect("config");
        assert_eq!(c.update_url, "http://127.0.0.1:8080/update");
        assert_eq!(c.fqdn, "nas.example.com");
        assert_eq!(c.ip, Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(c.families(), vec![None]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn errors_name_the_variable_and_never_show_the_key() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[], &[], "BACKEND_URL is not set"),
            (&[], &[("BACKEND_URL", "https://d.example.com")], "FQDN is not set"),
            (
                &[],
                &[("BACKEND_URL", "https://d.example.com"), ("FQDN", "home.example.com")],
                "PRE_SHARED_KEY is not set",
            ),
            (&["https://d.example.com"], BASE, "expected no arguments"),
            (&["https://d.example.com", "home.example.com", "nope"], BASE, "IP argument=\"nope\""),
        ];
        for (args, vars, text) in cases {
            let err = load(args, vars).expect_err("error");
            assert!(err.0.contains(text), "{err}");
        }
        let mut vars = BASE.to_vec();
        vars.push(("INTERVAL", "5m"));
        assert!(load(&[], &vars).expect_err("interval").0.contains("INTERVAL=\"5m\""));
        let mut vars = BASE.to_vec();
        vars.push(("IP_VERSION", "7"));
        assert!(load(&[], &vars).expect_err("version").0.contains("IP_VERSION"));
        let vars = [
            ("BACKEND_URL", "https://d.example.com"),
            ("FQDN", "home.example.com"),
            ("PRE_SHARED_KEY", "\"secret-key\""),
        ];
        let err = load(&[], &vars).expect_err("quoted");
        assert!(err.0.contains("quotes") && !err.0.contains("secret-key"));
        let c = load(&[], BASE).expect("config");
        assert!(!format!("{c:?}").contains("\"k\""));
    }

    #[test]
    fn plain_http_to_another_host_is_warned_about() {
        let warned = |url: &str| {
            let vars = [("BACKEND_URL", url), ("FQDN", "home.example.com"), ("PRE_SHARED_KEY", "k")];
            load(&[], &vars).expect("config").warnings.iter().any(|w| w.contains("unencrypted"))
        };
        assert!(warned("http://dyndns.example.com"));
        assert!(warned("http://localhost.attacker.example"), "the host is parsed, not matched by prefix");
        assert!(warned("http://127.0.0.1.nip.io:8080"));
        assert!(warned("http://localhost@attacker.example/"));
        assert!(!warned("http://localhost:8080"));
        assert!(!warned("http://127.0.0.1:8080/"));
        assert!(!warned("http://[::1]:8080"));
        assert!(!warned("https://dyndns.example.com"));
    }

    #[test]
    fn a_routers_update_url_is_corrected_with_a_warning() {
        let vars = [
            ("BACKEND_URL", "https://d.example.com/nic/update"),
            ("FQDN", "home.example.com"),
            ("PRE_SHARED_KEY", "k"),
        ];
        let c = load(&[], &vars).expect("config");
        assert_eq!(c.update_url, "https://d.example.com/update");
        assert!(c.warnings.iter().any(|w| w.contains("router's dyndns2 URL")), "{:?}", c.warnings);
    }
}
