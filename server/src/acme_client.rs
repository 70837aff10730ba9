//! An ACME client (RFC 8555), synchronous, on ureq and ring: account,
//! order, DNS-01 authorizations, finalize with a CSR, download. It speaks
//! to the CA only; writing the challenge TXT records through Hetzner and
//! deciding when to renew is `certificates`' job. (The `/present` and
//! `/cleanup` endpoints in `acme` serve other ACME clients, such as lego;
//! they are another thing.)
//!
//! No crate fits: instant-acme needs tokio, acme-micro OpenSSL, and
//! small-acme is on ureq 2. JWS is ES256 (P-256, the fixed 64-byte
//! signature RFC 7518 3.4 asks for); every answer is read as hostile
//! (bounded bodies, typed documents, problem details quoted shortened).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::der;

/// Largest answer read from the CA (a certificate chain is a few KiB).
const MAX_ANSWER: u64 = 256 * 1024;
/// Longest one call to the CA may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the CA; the text says what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeError(pub String);

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(text: impl Into<String>) -> AcmeError {
    AcmeError(text.into())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new P-256 key, PKCS#8 DER.
pub fn new_key() -> Result<Vec<u8>, AcmeError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|k| k.as_ref().to_vec())
        .map_err(|_| err("cannot generate a P-256 key"))
}

/// A PKCS#10 request for `names`, signed with `pkcs8` (a P-256 key).
pub fn csr(names: &[String], pkcs8: &[u8]) -> Result<Vec<u8>, AcmeError> {
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
        .map_err(|_| err("the certificate key is not a P-256 key"))?;
    let info = der::csr_info(names, key.public_key().as_ref());
    let signature = key.sign(&rng, &info).map_err(|_| err("cannot sign the certificate request"))?;
    Ok(der::csr(&info, signature.as_ref()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
    /// ACME renewal information (RFC 9773), where the CA offers it.
    renewal_info: Option<String>,
}

/// When the CA suggests renewing a certificate (RFC 9773 4.2), Unix
/// seconds, and when to ask again (its `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: u64,
    pub end: u64,
    pub retry_after: Option<u64>,
}

/// An order (RFC 8555 7.1.3).
#[derive(Debug, Deserialize)]
pub struct Order {
    pub status: String,
    #[serde(default)]
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
    pub error: Option<Problem>,
    /// The order's URL (the `Location` of its creation), not in the body.
    #[serde(skip)]
    pub url: String,
}

/// An authorization (RFC 8555 7.1.4).
#[derive(Debug, Deserialize)]
pub struct Authorization {
    pub status: String,
    pub identifier: Identifier,
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    #[serde(default)]
    pub wildcard: bool,
}

#[derive(Debug, Deserialize)]
pub struct Identifier {
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct Challenge {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub status: String,
    pub error: Option<Problem>,
}

/// A problem document (RFC 7807), as the CA explains a refusal.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.trim_start_matches("urn:ietf:params:acme:error:");
        let detail: String = self.detail.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
        write!(f, "{kind}: {detail}")
    }
}

/// One answer: status, `Location`, `Retry-After` seconds, body.
struct Answer {
    status: u16,
    location: Option<String>,
    retry_after: Option<u64>,
    body: String,
}

/// A session with one CA under one account key.
pub struct AcmeClient {
    agent: ureq::Agent,
    directory: Directory,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The account's URL once known (`kid` of the JWS header).
    kid: Option<String>,
    nonce: Option<String>,
}

impl AcmeClient {
    /// Read the directory at `url`, trusting `ca_file` (PEM) for its HTTPS
    /// instead of the built-in roots when given; `account_key` is PKCS#8.
    pub fn connect(url: &str, ca_file: Option<&Path>, account_key: &[u8]) -> Result<AcmeClient, AcmeError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("dyndns-server/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| err(format!("TLS_ACME_CA_FILE {}: {e}", path.display())))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(err(format!("TLS_ACME_CA_FILE {} holds no PEM certificate", path.display())));
            }
            let roots = ureq::tls::RootCerts::new_with_certs(&certs);
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        let agent: ureq::Agent = config.build().into();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, account_key, &rng)
            .map_err(|_| err("the stored ACME account key is not a P-256 key"))?;
        let answer = get(&agent, url)?;
        if answer.status != 200 {
            return Err(err(format!("the ACME directory {url} answered {}", answer.status)));
        }
        let directory: Directory = serde_json::from_str(&answer.body)
            .map_err(|e| err(format!("the ACME directory {url} is not a directory ({e})")))?;
        Ok(AcmeClient { agent, directory, key, rng, kid: None, nonce: None })
    }

    /// The CA's renewal window for the certificate with this ARI
    /// identifier (`der::CertInfo::ari_id`); `None` when the CA offers no
    /// renewal information. Unauthenticated GET, as RFC 9773 4.2 says.
    pub fn renewal_window(&self, ari_id: &str) -> Result<Option<RenewalWindow>, AcmeError> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "suggestedWindow")]
            window: Window,
        }
        #[derive(Deserialize)]
        struct Window {
            start: String,
            end: String,
        }
        let Some(base) = &self.directory.renewal_info else { return Ok(None) };
        let url = format!("{}/{ari_id}", base.trim_end_matches('/'));
        let answer = get(&self.agent, &url)?;
        if answer.status != 200 {
            return Err(err(format!("the CA's renewal information {url} answered {}", answer.status)));
        }
        let info: Info = parse(&answer.body, "renewal information")?;
        let time = |text: &str| {
            rfc3339(text).ok_or_else(|| err(format!("the CA's renewal information has a bad time {:?}", short(text))))
        };
        let (start, end) = (time(&info.window.start)?, time(&info.window.end)?);
        if end < start {
            return Err(err("the CA's renewal window ends before it starts"));
        }
        Ok(Some(RenewalWindow { start, end, retry_after: answer.retry_after }))
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    /// The TXT value of a DNS-01 challenge: base64url(SHA-256(token "."
    /// thumbprint)), RFC 8555 8.1 and 8.4.
    pub fn dns_value(&self, token: &str) -> String {
        let jwk = self.jwk();
        // RFC 7638: the required members, sorted, no spaces.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        let thumbprint = b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
        let authorization = format!("{token}.{thumbprint}");
        b64(ring::digest::digest(&ring::digest::SHA256, authorization.as_bytes()).as_ref())
    }

    fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let url = self.directory.new_nonce.clone();
        let resp = self.agent.head(&url).call().map_err(|e| err(format!("cannot reach {url}: {e}")))?;
        header(&resp, "replay-nonce").ok_or_else(|| err(format!("{url} sent no Replay-Nonce")))
    }

    /// A signed POST; `None` is POST-as-GET. A `badNonce` refusal is tried
    /// again with the nonce it carried (RFC 8555 6.5), a few times.
    fn post(&mut self, url: &str, payload: Option<&Value>) -> Result<Answer, AcmeError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let nonce = self.fresh_nonce()?;
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            match &self.kid {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = self.jwk(),
            }
            let protected = b64(protected.to_string().as_bytes());
            let payload = payload.map(|p| b64(p.to_string().as_bytes())).unwrap_or_default();
            let signed = format!("{protected}.{payload}");
            let signature =
                self.key.sign(&self.rng, signed.as_bytes()).map_err(|_| err("cannot sign an ACME request"))?;
            let body = json!({"protected": protected, "payload": payload, "signature": b64(signature.as_ref())});
            let resp = self
                .agent
                .post(url)
                .header("Content-Type", "application/jose+json")
                .send(body.to_string())
                .map_err(|e| err(format!("cannot reach {url}: {e}")))?;
            // Every answer carries the nonce of the next request.
            self.nonce = header(&resp, "replay-nonce");
            let answer = read(resp, url)?;
            if answer.status >= 400 {
                let problem: Option<Problem> = serde_json::from_str(&answer.body).ok();
                if problem.as_ref().is_some_and(|p| p.kind.ends_with(":badNonce")) && attempts < 4 {
                    continue;
                }
                return Err(err(match problem {
                    Some(p) => format!("the CA refused {url} ({}): {p}", answer.status),
                    None => format!("the CA answered {url} with {}", answer.status),
                }));
            }
            return Ok(answer);
        }
    }

    /// Find or create the account of this key (terms of service agreed).
    pub fn account(&mut self, email: Option<&str>) -> Result<(), AcmeError> {
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some(e) = email {
            payload["contact"] = json!([format!("mailto:{e}")]);
        }
        let url = self.directory.new_account.clone();
        let answer = self.post(&url, Some(&payload))?;
        let kid = answer.location.ok_or_else(|| err(format!("{url} gave the account no Location")))?;
        self.kid = Some(kid);
        Ok(())
    }

    /// A new order for `names`; `replaces`: the ARI identifier of the
    /// certificate it renews (RFC 9773 5), when the CA offers ARI.
    pub fn new_order(&mut self, names: &[String], replaces: Option<&str>) -> Result<Order, AcmeError> {
        let identifiers: Vec<Value> = names.iter().map(|n| json!({"type": "dns", "value": n})).collect();
        let url = self.directory.new_order.clone();
        let mut body = json!({ "identifiers": identifiers });
        if let Some(id) = replaces.filter(|_| self.directory.renewal_info.is_some()) {
            body["replaces"] = json!(id);
        }
        let answer = self.post(&url, Some(&body))?;
        let mut order: Order = parse(&answer.body, "order")?;
        order.url = answer.location.ok_or_else(|| err(format!("{url} gave the order no Location")))?;
        Ok(order)
    }

    pub fn authorization(&mut self, url: &str) -> Result<Authorization, AcmeError> {
        let answer = self.post(url, None)?;
        parse(&answer.body, "authorization")
    }

    /// Tell the CA the challenge is ready to be validated.
    pub fn respond(&mut self, challenge_url: &str) -> Result<(), AcmeError> {
        self.post(challenge_url, Some(&json!({}))).map(|_| ())
    }

    /// Wait for an authorization to leave `pending`/`processing`.
    pub fn wait_authorization(&mut self, url: &str, until: Instant) -> Result<Authorization, AcmeError> {
        loop {
            let answer = self.post(url, None)?;
            let authz: Authorization = parse(&answer.body, "authorization")?;
            if authz.status != "pending" && authz.status != "processing" {
                return Ok(authz);
            }
            pause(answer.retry_after, until, "the authorization")?;
        }
    }

    pub fn finalize(&mut self, order: &Order, csr_der: &[u8]) -> Result<(), AcmeError> {
        let finalize = order.finalize.clone();
        self.post(&finalize, Some(&json!({"csr": b64(csr_der)}))).map(|_| ())
    }

    /// Wait while an order's status is one of `through` (`pending` before
    /// finalizing, `processing` after).
    pub fn wait_order(&mut self, url: &str, through: &[&str], until: Instant) -> Result<Order, AcmeError> {
        loop {
            let answer = self.post(url, None)?;
            let mut order: Order = parse(&answer.body, "order")?;
            order.url = url.to_string();
            if !through.contains(&order.status.as_str()) {
                return Ok(order);
            }
            pause(answer.retry_after, until, "the order")?;
        }
    }

    /// The certificate chain, PEM.
    pub fn download(&mut self, url: &str) -> Result<String, AcmeError> {
        let answer = self.post(url, None)?;
        if !answer.body.contains("-----BEGIN CERTIFICATE-----") {
            return Err(err(format!("{url} did not send a PEM certificate chain")));
        }
        Ok(answer.body)
    }
}

/// Sleep as the CA asks (`Retry-After`, 1 to 10 s), or fail at `until`.
fn pause(retry_after: Option<u64>, until: Instant, what: &str) -> Result<(), AcmeError> {
    let wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 10));
    if Instant::now() + wait > until {
        return Err(err(format!("{what} was not done in time")));
    }
    std::thread::sleep(wait);
    Ok(())
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// An RFC 3339 time (`2026-12-02T04:00:00Z`, fractions and offsets too) as
/// Unix seconds; `None` if it is not one.
pub fn rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) => {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            let total = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let local = der::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(local as i64 - offset).ok()
}

fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, AcmeError> {
    serde_json::from_str(body).map_err(|e| err(format!("the CA sent an unreadable {what} ({e})")))
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Answer, AcmeError> {
    let resp = agent.get(url).call().map_err(|e| err(format!("cannot reach {url}: {e}")))?;
    read(resp, url)
}

fn read(mut resp: ureq::http::Response<ureq::Body>, url: &str) -> Result<Answer, AcmeError> {
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    let retry_after = header(&resp, "retry-after").and_then(|v| v.trim().parse().ok());
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| err(format!("the answer of {url} broke off ({e})")))?;
    Ok(Answer { status, location, retry_after, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3339_times_are_read_with_fractions_and_offsets() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2026-12-02T18:52:31Z"), Some(1_796_237_551));
        assert_eq!(rfc3339("2026-12-02T18:52:31.123456Z"), Some(1_796_237_551));
        assert_eq!(rfc3339("2026-12-02T19:52:31+01:00"), Some(1_796_237_551));
        assert_eq!(rfc3339("2026-12-02T17:52:31-01:00"), Some(1_796_237_551));
        for bad in [
            "2026-12-02",
            "2026-13-02T00:00:00Z",
            "2026-12-02T00:00:00",
            "2026-12-02T00:00:00+0100",
            "x026-12-02T00:00:00Z",
            "2026-12-02T00:00:00.Z",
            "1970-01-01T00:00:00+01:00",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }
}
