//! Reporting to `POST {BACKEND_URL}/update`, over a chosen address family.
//!
//! One `ureq::Agent` per family, built once: `Ipv4Only`/`Ipv6Only` make the
//! connection itself go over that family, so the server sees (and sets) the
//! host's IPv4 and IPv6 address in turn. TLS is rustls with the built-in
//! Mozilla roots (webpki-roots), so no CA files are needed on a router or in
//! a scratch image; `CA_BUNDLE` replaces them for a private CA.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, ConfigError, Family, Ipv6Source};
use crate::ipv6;
use dyndns_common::answer::UpdateAnswer;
use dyndns_common::heartbeat::Ping;

const USER_AGENT: &str = concat!("dyndns-agent/", env!("CARGO_PKG_VERSION"));

/// What the server said to an accepted report.
pub type Accepted = UpdateAnswer;

/// Why a report did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    /// This host cannot reach the server over the family: no route, no
    /// local address or no DNS record of that family.
    Unreachable(String),
    /// Connection refused, timeout, 5xx, 429: worth retrying soon.
    Transient(String),
    /// The server refused the report (400, 401, 404 …) or TLS verification
    /// failed: retrying soon will not help.
    Rejected(String),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Unreachable(m) | ReportError::Transient(m) | ReportError::Rejected(m) => f.write_str(m),
        }
    }
}

pub struct Reporter {
    agents: HashMap<Option<Family>, ureq::Agent>,
    url: String,
    fqdn: String,
    key: String,
    ip: Option<String>,
    /// Name the IPv6 address to publish (see `ipv6`) instead of letting the
    /// server take the connection's.
    pick_ipv6: bool,
    ipv6_interface: Option<String>,
}

impl Reporter {
    pub fn new(config: &Config) -> Result<Reporter, ConfigError> {
        let tls = tls_config(config)?;
        let build = |family: ureq::config::IpFamily| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .ip_family(family)
                .tls_config(tls.clone())
                .timeout_connect(Some(Duration::from_secs(10)))
                // The server may wait up to 15 s for Hetzner.
                .timeout_global(Some(Duration::from_secs(30)))
                .user_agent(USER_AGENT)
                // ureq's default buffers are 128 KiB each, zero-filled when a
                // connection opens; the server's answers are one line.
                .input_buffer_size(16 * 1024)
                .output_buffer_size(8 * 1024)
                .build()
                .into()
        };
        let mut agents = HashMap::new();
        agents.insert(None, build(ureq::config::IpFamily::Any));
        agents.insert(Some(Family::V4), build(ureq::config::IpFamily::Ipv4Only));
        agents.insert(Some(Family::V6), build(ureq::config::IpFamily::Ipv6Only));
        Ok(Reporter {
            agents,
            url: config.update_url.clone(),
            fqdn: config.fqdn.clone(),
            key: config.key.expose().to_string(),
            ip: config.ip.map(|ip| ip.to_string()),
            pick_ipv6: config.ipv6_source == Ipv6Source::Kernel,
            ipv6_interface: config.ipv6_interface.clone(),
        })
    }

    /// The stable global IPv6 address of this host, from the kernel's list;
    /// `None` where the list cannot be read (another OS: the server takes
    /// the connection's address).
    fn stable_ipv6(&self) -> Result<Option<std::net::Ipv6Addr>, ReportError> {
        let Ok(text) = std::fs::read_to_string(ipv6::IF_INET6) else { return Ok(None) };
        match ipv6::choose(&ipv6::parse(&text), self.ipv6_interface.as_deref()) {
            ipv6::Choice::Stable(ip) => Ok(Some(ip)),
            ipv6::Choice::NoGlobal => Err(ReportError::Unreachable("this host has no global IPv6 address".into())),
            ipv6::Choice::NoneStable(text) => Err(ReportError::Rejected(text)),
        }
    }

    /// Send one report, over `family` when given.
    pub fn send(&self, family: Option<Family>) -> Result<Accepted, ReportError> {
        let mut body = json!({"fqdn": self.fqdn});
        if let Some(ip) = &self.ip {
            body["ip"] = json!(ip);
        } else if family == Some(Family::V6) && self.pick_ipv6 {
            if let Some(ip) = self.stable_ipv6()? {
                body["ip"] = json!(ip.to_string());
            }
        }
        if let Some(f) = family {
            body["type"] = json!(f.record_type());
        }
        let agent =
            self.agents.get(&family).ok_or_else(|| ReportError::Rejected("no client for this family".into()))?;
        let sent = agent
            .post(&self.url)
            .header("X-Pre-Shared-Key", &self.key)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body.to_string());
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(classify(&e, family)),
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        if status == 200 {
            // Only the answer dyndns-server documents: a status it
            // names, with an address.
            return serde_json::from_str::<UpdateAnswer>(&text).map_err(|_| {
                ReportError::Rejected(format!(
                    "{} answered 200 but not as dyndns-server does; check BACKEND_URL",
                    crate::config::redact_url(&self.url)
                ))
            });
        }
        let doc: Option<Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| doc.as_ref().and_then(|d| d.get(k)).and_then(Value::as_str).map(str::to_string);
        let message = field("error").unwrap_or_else(|| text.chars().take(120).collect::<String>().trim().to_string());
        let message = format!("server answered {status}: {message}");
        if status == 429 || status >= 500 {
            Err(ReportError::Transient(message))
        } else if (300..400).contains(&status) {
            Err(ReportError::Rejected(format!("{message} (a redirect; check BACKEND_URL, e.g. http → https)")))
        } else {
            Err(ReportError::Rejected(message))
        }
    }
}

fn tls_config(config: &Config) -> Result<ureq::tls::TlsConfig, ConfigError> {
    let mut builder = ureq::tls::TlsConfig::builder().disable_verification(!config.verify_tls);
    if let Some(path) = &config.ca_bundle {
        let pem =
            std::fs::read(path).map_err(|e| ConfigError(format!("CA_BUNDLE: cannot read {}: {e}", path.display())))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(ConfigError(format!("CA_BUNDLE: {} is not valid PEM: {e}", path.display()))),
            }
        }
        if certs.is_empty() {
            return Err(ConfigError(format!("CA_BUNDLE: {} holds no certificate", path.display())));
        }
        builder = builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(builder.build())
}

/// A heartbeat to a monitoring service (public CAs, 10 s at most). The
/// error never quotes the URL: it holds the check's secret.
pub fn ping(ping: &Ping) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(USER_AGENT)
        .input_buffer_size(16 * 1024)
        .output_buffer_size(8 * 1024)
        .build()
        .into();
    dyndns_common::heartbeat::send(&agent, ping)
}

/// Sort a transport error into unreachable / transient / rejected.
fn classify(e: &ureq::Error, family: Option<Family>) -> ReportError {
    let over = family.map(|f| format!(" over {}", f.name())).unwrap_or_default();
    let name = family.map_or("IP", Family::name);
    let record = family.map_or("address", Family::record_type);
    let text = e.to_string();
    match e {
        ureq::Error::HostNotFound => {
            ReportError::Unreachable(format!("the server's name has no {record} record, so it cannot be reached{over}"))
        }
        ureq::Error::ConnectionFailed => ReportError::Unreachable(format!("no connection to the server{over}")),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::AddrNotAvailable => {
            ReportError::Unreachable(format!("this host has no {name} address to connect from"))
        }
        ureq::Error::Io(io)
            if matches!(io.kind(), io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable) =>
        {
            ReportError::Unreachable(format!("no {name} route from this host to the server"))
        }
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => ReportError::Transient(format!(
            "the server refused the connection{over} (is it running, is the port right?)"
        )),
        _ if text.contains("certificate") || text.contains("Certificate") => {
            ReportError::Rejected(format!("TLS{over}: {text}; for a private CA set CA_BUNDLE"))
        }
        _ => ReportError::Transient(format!("cannot reach the server{over}: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind) -> ureq::Error {
        ureq::Error::Io(io::Error::from(kind))
    }

    #[test]
    fn network_errors_are_explained_in_words() {
        let v6 = Some(Family::V6);
        assert_eq!(
            classify(&io(io::ErrorKind::AddrNotAvailable), v6),
            ReportError::Unreachable("this host has no IPv6 address to connect from".into())
        );
        assert_eq!(
            classify(&io(io::ErrorKind::NetworkUnreachable), v6),
            ReportError::Unreachable("no IPv6 route from this host to the server".into())
        );
        assert_eq!(
            classify(&ureq::Error::HostNotFound, Some(Family::V4)),
            ReportError::Unreachable("the server's name has no A record, so it cannot be reached over IPv4".into())
        );
        let refused = classify(&io(io::ErrorKind::ConnectionRefused), None).to_string();
        assert!(refused.contains("refused the connection") && !refused.contains("os error"), "{refused}");
    }
}
