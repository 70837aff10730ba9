//! HTTPS settings: `LISTEN_TLS_PORT` with `TLS_CERT_FILE`/`TLS_KEY_FILE`,
//! or `TLS_DOMAINS` and the ACME settings for a certificate the server
//! obtains itself.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::hosts::host_list;
use crate::env::Env;

/// Let's Encrypt's ACME directories; `TLS_ACME_DIRECTORY` takes the
/// short names `letsencrypt` and `letsencrypt-staging` (or `staging`).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// HTTPS served by the server itself (`LISTEN_TLS_PORT`).
#[derive(Debug, Clone)]
pub struct Tls {
    /// `LISTEN_ADDR` with `LISTEN_TLS_PORT` (443 unless set).
    pub listen: SocketAddr,
    pub source: TlsSource,
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM), read again on `SIGHUP`
    /// and when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// `TLS_DOMAINS`: obtained and renewed by DNS-01 through the token.
    Acme(Acme),
}

#[derive(Debug, Clone)]
pub struct Acme {
    /// Canonical names, in the order given (the first is the subject).
    pub domains: Vec<String>,
    /// `TLS_ACME_DIRECTORY`.
    pub directory: String,
    /// `TLS_ACME_CA_FILE`: trust for the directory's HTTPS (PEM).
    pub ca_file: Option<PathBuf>,
    /// `TLS_ACME_EMAIL`.
    pub email: Option<String>,
    /// `TLS_DNS_RESOLVER`: where the challenge TXT is looked for before
    /// the CA is asked to validate; `None`: Hetzner's authoritative servers.
    pub resolver: Option<String>,
    /// `TLS_RENEW_DAYS`; `None`: a third of the lifetime left.
    pub renew_days: Option<u32>,
    /// Account key, certificate and key live here (the state file's folder).
    pub dir: PathBuf,
}

/// `TLS_DOMAINS` or `TLS_CERT_FILE` + `TLS_KEY_FILE`, and the settings
/// that go with them; `None` when neither is set.
pub(super) fn tls(env: &mut Env<'_>, ip: IpAddr, state_file: &std::path::Path) -> Option<Tls> {
    let port = env.number("LISTEN_TLS_PORT", 443, 0, 65535) as u16;
    let listen = SocketAddr::new(ip, port);
    let files = (env.text("TLS_CERT_FILE").map(PathBuf::from), env.text("TLS_KEY_FILE").map(PathBuf::from));
    let domains = host_list(env, "TLS_DOMAINS");
    let acme_vars = ["TLS_ACME_DIRECTORY", "TLS_ACME_CA_FILE", "TLS_ACME_EMAIL", "TLS_DNS_RESOLVER", "TLS_RENEW_DAYS"];
    let source = match (files, domains.is_empty()) {
        ((Some(_), Some(_)), false) => {
            env.error("TLS_DOMAINS and TLS_CERT_FILE are both set; use one: TLS_DOMAINS to have the server get its certificate, or TLS_CERT_FILE and TLS_KEY_FILE for one from elsewhere");
            return None;
        }
        ((Some(cert), Some(key)), true) => TlsSource::Files { cert, key },
        ((Some(_), None), _) => {
            env.error("TLS_CERT_FILE is set but TLS_KEY_FILE is not; set both (PEM files) or neither");
            return None;
        }
        ((None, Some(_)), _) => {
            env.error("TLS_KEY_FILE is set but TLS_CERT_FILE is not; set both (PEM files) or neither");
            return None;
        }
        ((None, None), false) => TlsSource::Acme(acme(env, domains, state_file)),
        ((None, None), true) => {
            for var in acme_vars.iter().chain(&["LISTEN_TLS_PORT"]) {
                if env.text(var).is_some() {
                    env.warn(format!("{var} is set but HTTPS is off; set TLS_DOMAINS (or TLS_CERT_FILE and TLS_KEY_FILE) to serve HTTPS"));
                }
            }
            return None;
        }
    };
    if let TlsSource::Files { .. } = source {
        for var in acme_vars {
            if env.text(var).is_some() {
                env.warn(format!("{var} is ignored: the certificate comes from TLS_CERT_FILE"));
            }
        }
    }
    Some(Tls { listen, source })
}

pub(super) fn acme(env: &mut Env<'_>, domains: Vec<String>, state_file: &std::path::Path) -> Acme {
    let directory = match env.text("TLS_ACME_DIRECTORY").as_deref() {
        None | Some("letsencrypt") => LETS_ENCRYPT.to_string(),
        Some("letsencrypt-staging" | "staging") => LETS_ENCRYPT_STAGING.to_string(),
        Some(url) if url.starts_with("https://") => url.to_string(),
        Some(other) => {
            env.error(format!(
                "TLS_ACME_DIRECTORY={other:?} is not an https:// URL; use the CA's directory URL, or letsencrypt / letsencrypt-staging"
            ));
            String::new()
        }
    };
    let resolver = env.text("TLS_DNS_RESOLVER").map(|r| {
        if !is_host_port(&r) {
            env.error(format!("TLS_DNS_RESOLVER={r:?} is not host:port; use e.g. 1.1.1.1:53 or [2606:4700::1111]:53"));
        }
        r
    });
    let email = env.text("TLS_ACME_EMAIL");
    if let Some(e) = &email {
        if !e.contains('@') || e.contains(char::is_whitespace) || e.contains(',') {
            env.error(format!("TLS_ACME_EMAIL={e:?} is not an e-mail address; set one address or leave it unset"));
        }
    }
    let renew_days = env.text("TLS_RENEW_DAYS").map(|_| env.number("TLS_RENEW_DAYS", 30, 1, 3650) as u32);
    for d in &domains {
        if d.starts_with("*.") {
            continue;
        }
        if d.contains('*') {
            env.error(format!("TLS_DOMAINS: {d:?} has a '*' that is not its first label"));
        }
    }
    let dir =
        state_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).to_path_buf();
    Acme {
        domains,
        directory,
        ca_file: env.text("TLS_ACME_CA_FILE").map(PathBuf::from),
        email,
        resolver,
        renew_days,
        dir,
    }
}

/// `host:port` with a numeric port (the host is resolved when used).
pub(super) fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
