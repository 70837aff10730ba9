//! The agent's settings: the only module that reads arguments and the
//! environment. Positional arguments (`BACKEND_URL FQDN [IP]`) override the
//! environment. Problems become a `ConfigError` (exit status 2) that names
//! the variable, quotes the value (never a key) and says what to do.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// The key; its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The full update URL (`…/update`).
    pub update_url: String,
    pub fqdn: String,
    pub key: Key,
    pub ip: Option<IpAddr>,
    /// Zero: report once and exit.
    pub interval: Duration,
    pub ca_bundle: Option<PathBuf>,
    pub verify_tls: bool,
    pub ip_version: IpVersion,
    pub debug: bool,
    /// Things worth a warning at start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// `BACKEND_URL` with or without a trailing slash or `/update` → the update URL.
pub fn update_url(backend: &str) -> Result<String, ConfigError> {
    let trimmed = backend.trim();
    let lower = trimmed.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || trimmed.len() <= "https://".len() {
        return Err(ConfigError(format!(
            "BACKEND_URL={trimmed:?} is not an http(s) URL; use the server's address, e.g. https://dyndns.example.com"
        )));
    }
    if trimmed.contains(['?', '#', ' ']) {
        return Err(ConfigError(format!("BACKEND_URL={trimmed:?} must not contain '?', '#' or spaces")));
    }
    let base = trimmed.trim_end_matches('/');
    let base = base.strip_suffix("/update").unwrap_or(base).trim_end_matches('/');
    Ok(format!("{base}/update"))
}

impl Config {
    pub fn from_env(args: &[String]) -> Result<Config, ConfigError> {
        Config::load(args, &|name| std::env::var(name).ok())
    }

    /// `args` are the positional arguments (program name excluded).
    pub fn load(args: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut warnings = Vec::new();
        if args.len() == 1 || args.len() > 3 {
            return Err(ConfigError(format!(
                "expected no arguments or BACKEND_URL FQDN [IP], got {} argument(s); see --help",
                args.len()
            )));
        }
        let positional = |i: usize| args.get(i).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());

        let backend = positional(0).or_else(|| get("BACKEND_URL")).ok_or_else(|| {
            ConfigError("BACKEND_URL is not set; set it to your dyndns-server, e.g. https://dyndns.example.com".into())
        })?;
        let update_url = update_url(&backend)?;
        let host_part = update_url.split("://").nth(1).unwrap_or("");
        let local = ["localhost", "127.", "[::1]"].iter().any(|p| host_part.starts_with(p));
        if update_url.starts_with("http://") && !local {
            warnings.push(format!(
                "BACKEND_URL={backend:?} is plain http: the key crosses the network unencrypted; use https"
            ));
        }

        let fqdn = positional(1).or_else(|| get("FQDN")).ok_or_else(|| {
            ConfigError("FQDN is not set; set it to the host name to update, e.g. home.example.com".into())
        })?;
        if fqdn.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') || !fqdn.contains('.') {
            return Err(ConfigError(format!("FQDN={fqdn:?} is not a host name like home.example.com")));
        }

        let ip = match positional(2).map(|v| ("IP argument", v)).or_else(|| get("IP").map(|v| ("IP", v))) {
            None => None,
            Some((what, raw)) => {
                Some(raw.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().map_err(|_| {
                    ConfigError(format!(
                        "{what}={raw:?} is not an IP address; leave it unset to report the address the server sees"
                    ))
                })?)
            }
        };

        let key = match (get("PRE_SHARED_KEY"), get("PRE_SHARED_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError("PRE_SHARED_KEY and PRE_SHARED_KEY_FILE are both set; set only one".into()))
            }
            (Some(k), None) => k,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("PRE_SHARED_KEY_FILE: cannot read {path:?}: {e}")))?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(ConfigError(
                    "PRE_SHARED_KEY is not set; set it (or PRE_SHARED_KEY_FILE) to this host's key from `dyndns-server keys`".into(),
                ))
            }
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(ConfigError("PRE_SHARED_KEY must be one word (the 43-character key of this host)".into()));
        }
        if (key.starts_with('"') && key.ends_with('"')) || (key.starts_with('\'') && key.ends_with('\'')) {
            return Err(ConfigError("PRE_SHARED_KEY is wrapped in quotes; remove them".into()));
        }

        let interval = match get("INTERVAL") {
            None => 60,
            Some(raw) => raw.parse::<u64>().map_err(|_| {
                ConfigError(format!(
                    "INTERVAL={raw:?} is not a whole number of seconds; use e.g. 60, or 0 to report once"
                ))
            })?,
        };
        if interval > 0 && interval < 10 {
            warnings.push(format!("INTERVAL={interval} is very short; the server answers unchanged addresses from its cache, but 60 or more is plenty"));
        }

        let ip_version = match get("IP_VERSION").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("both" | "46" | "dual") => IpVersion::Both,
            Some("4" | "ipv4" | "v4") => IpVersion::V4,
            Some("6" | "ipv6" | "v6") => IpVersion::V6,
            Some(other) => return Err(ConfigError(format!("IP_VERSION={other:?} must be 4, 6 or both"))),
        };
        let flag = |name: &str, default: bool| -> Result<bool, ConfigError> {
            match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
                None => Ok(default),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some("0" | "false" | "no" | "off") => Ok(false),
                Some(other) => Err(ConfigError(format!("{name}={other:?} must be 0 or 1"))),
            }
        };
        let verify_tls = flag("VERIFY_SSL", true)?;
        let debug = flag("DEBUG_LOGGING", false)?;
        let ca_bundle = get("CA_BUNDLE").map(PathBuf::from);
        if let Some(path) = &ca_bundle {
            if !path.is_file() {
                return Err(ConfigError(format!("CA_BUNDLE={:?} is not a readable file", path.display().to_string())));
            }
        }

        Ok(Config {
            update_url,
            fqdn,
            key: Key(key),
            ip,
            interval: Duration::from_secs(interval),
            ca_bundle,
            verify_tls,
            ip_version,
            debug,
            warnings,
        })
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
        let vars =
            [("BACKEND_URL", "http://dyndns.example.com"), ("FQDN", "home.example.com"), ("PRE_SHARED_KEY", "k")];
        let c = load(&[], &vars).expect("config");
        assert!(c.warnings.iter().any(|w| w.contains("unencrypted")));
    }
}
