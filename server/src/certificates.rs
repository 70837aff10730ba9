//! The certificate HTTPS is served with: loaded from PEM, checked (the key
//! matches the certificate, it is not expired), handed to rustls through a
//! resolver that every new handshake asks, and replaced whole while the
//! server runs — a new certificate is used from the next handshake on, open
//! connections keep theirs. Also what `/status` and `/metrics` show of it.
//!
//! Where the PEM comes from is not this module's business: `TLS_CERT_FILE`
//! and `TLS_KEY_FILE` (`reload_files`), or `renewal` (ACME).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::der::{self, CertInfo};
use crate::time::unix_now;

/// Largest PEM file read (a chain with its key is a few KiB).
const MAX_PEM: u64 = 1024 * 1024;

/// What is known of the certificate in use and of its renewal.
#[derive(Debug, Clone, Default)]
pub struct CertStatus {
    pub names: Vec<String>,
    pub info: Option<CertInfo>,
    /// Unix seconds and text of the last renewal attempt's end.
    pub last_attempt: Option<(u64, Result<(), String>)>,
    /// Unix seconds of the next planned renewal attempt.
    pub next_attempt: Option<u64>,
}

/// The certificate in use, shared by the TLS listener and the renewal.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    status: Mutex<CertStatus>,
}

/// A certificate and key read from PEM and checked.
pub struct Loaded {
    key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Read a PEM certificate chain and a PEM private key (PKCS#8, SEC1 or
/// PKCS#1) and check that they belong together.
pub fn parse(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain ({e})"))?;
    let Some(leaf) = chain.first() else { return Err("holds no PEM certificate".into()) };
    let info = der::cert_info(leaf).ok_or("its first certificate cannot be read")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("holds no PEM private key ({e})"))?;
    let signer = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used ({e})"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| "the private key does not belong to the certificate".to_string())?;
    Ok(Loaded { key: Arc::new(certified), info })
}

/// `parse` of two files, each read with a size limit; the error names the
/// settings.
pub fn read_files(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let read = |path: &Path, var: &str| -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("{var}={}: cannot read it: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_PEM + 1).read_to_end(&mut bytes).map_err(|e| format!("{var}={}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_PEM {
            return Err(format!("{var}={}: larger than {MAX_PEM} bytes; is it the right file?", path.display()));
        }
        Ok(bytes)
    };
    let (cert_pem, key_pem) = (read(cert, "TLS_CERT_FILE")?, read(key, "TLS_KEY_FILE")?);
    parse(&cert_pem, &key_pem)
        .map_err(|e| format!("TLS_CERT_FILE={} with TLS_KEY_FILE={}: {e}", cert.display(), key.display()))
}

impl CertStore {
    pub fn new(names: Vec<String>) -> Arc<CertStore> {
        let store = CertStore::default();
        store.status.lock().unwrap_or_else(PoisonError::into_inner).names = names;
        Arc::new(store)
    }

    /// Serve `loaded` from the next handshake on.
    pub fn install(&self, loaded: Loaded) {
        let expires = loaded.info.not_after;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(loaded.key);
        let mut status = self.status();
        status.info = Some(loaded.info);
        drop(status);
        if expires <= unix_now() {
            log::warn!("the certificate in use expired; clients will refuse it");
        }
    }

    pub fn has_certificate(&self) -> bool {
        self.current.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// A copy of the status, for pages and the renewal.
    pub fn snapshot(&self) -> CertStatus {
        self.status().clone()
    }

    pub fn note_attempt(&self, result: Result<(), String>, next: Option<u64>) {
        let mut status = self.status();
        status.last_attempt = Some((unix_now(), result));
        status.next_attempt = next;
    }

    pub fn note_next(&self, next: Option<u64>) {
        self.status().next_attempt = next;
    }

    fn status(&self) -> std::sync::MutexGuard<'_, CertStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rustls configuration of the TLS listener: TLS 1.2 and 1.3 with
    /// ring's safe defaults, only `http/1.1` offered, certificates from this
    /// store at every handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No certificate yet (the first order is under way): the handshake
        // fails, the server stays up.
        self.0.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// `TLS_CERT_FILE`/`TLS_KEY_FILE` as last read: their modification times,
/// to notice a change without reading them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileStamp(Option<(std::time::SystemTime, std::time::SystemTime)>);

impl FileStamp {
    pub fn of(cert: &Path, key: &Path) -> FileStamp {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        FileStamp(modified(cert).zip(modified(key)))
    }
}

/// Read the files again and serve them; a failure keeps what is served and
/// says why.
pub fn reload_files(store: &CertStore, cert: &Path, key: &Path) -> Result<(), String> {
    let loaded = read_files(cert, key)?;
    let serial = loaded.info.serial.clone();
    store.install(loaded);
    log::info!("TLS: serving the certificate from {} (serial {serial})", cert.display());
    Ok(())
}
