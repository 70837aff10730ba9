//! `dyndns-server`: lets registered hosts set their own A/AAAA records at
//! Hetzner through a JSON endpoint and the dyndns2 protocol.
//!
//! `start` does everything `main` needs and returns a handle, so tests run
//! the real server in-process on port 0.
#![forbid(unsafe_code)]

pub mod atomic;
pub mod config;
pub mod dyndns2;
pub mod fqdn;
pub mod handlers;
pub mod hetzner;
mod http;
pub mod keys;
pub mod logging;
pub mod updater;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use config::{Config, ConfigError};
use hetzner::Hetzner;
use keys::KeyFile;
use updater::{Backend, Updater};

/// State shared by all request threads.
pub struct App {
    pub config: Config,
    keys: KeyFile,
    pub updater: Updater,
}

/// Why the server could not start. Every variant is fatal (exit status 2)
/// and its text says what to do.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Keys(keys::KeyFileError),
    /// The listening socket could not be opened.
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Keys(e) => write!(f, "{e}"),
            StartError::Listen { addr, source } => write!(
                f,
                "LISTEN_ADDR/LISTEN_PORT: cannot listen on {addr}: {source}; {}",
                match source.kind() {
                    std::io::ErrorKind::AddrInUse => "another program uses the port; stop it or set LISTEN_PORT to a free port",
                    std::io::ErrorKind::PermissionDenied => "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher LISTEN_PORT",
                    _ => "check LISTEN_ADDR",
                }
            ),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

impl From<keys::KeyFileError> for StartError {
    fn from(e: keys::KeyFileError) -> Self {
        StartError::Keys(e)
    }
}

/// Load the key file, give every registered host without a key a new one
/// and save the file if anything was added. Reports what it found.
pub fn ensure_keys(config: &Config) -> Result<KeyFile, keys::KeyFileError> {
    let mut file = KeyFile::load(&config.key_file)?;
    for w in &file.warnings {
        log::warn!("{}: {w}", config.key_file.display());
    }
    let added = file
        .add_missing(&config.registered)
        .map_err(|source| keys::KeyFileError {
            path: config.key_file.clone(),
            action: "generate keys for",
            source,
        })?;
    if !added.is_empty() {
        file.save(&config.key_file)?;
        log::info!(
            "generated keys for {} in {}; print them with `dyndns-server keys`",
            added.join(", "),
            config.key_file.display()
        );
    }
    let stale = file.unregistered(&config.registered);
    if !stale.is_empty() {
        log::warn!(
            "{} holds keys of hosts that are not in REGISTERED_FQDNS: {}; they are kept but cannot update (delete the lines to revoke them)",
            config.key_file.display(),
            stale.join(", ")
        );
    }
    Ok(file)
}

/// A running server.
pub struct Running {
    pub app: Arc<App>,
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let the workers finish their requests, return.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Serve until the workers stop.
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// Check the settings, prepare the keys, bind and start serving.
pub fn start(config: Config) -> Result<Running, StartError> {
    config.check_serve()?;
    for w in &config.warnings {
        log::warn!("{w}");
    }
    log::info!(
        "dyndns-server {} starting: {}",
        env!("CARGO_PKG_VERSION"),
        config.summary()
    );
    let keys = ensure_keys(&config)?;

    let listener = TcpListener::bind(config.listen).map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| StartError::Listen {
            addr,
            source: std::io::Error::other(e.to_string()),
        })?;

    let backend = match (&config.token, config.dry_run) {
        (Some(token), false) => Backend::Hetzner(Hetzner::new(&config.api_url, token.clone())),
        _ => Backend::DryRun,
    };
    if config.dry_run {
        log::warn!("DRY_RUN=1: records are kept in memory and logged as \"would set\"; Hetzner is not called");
    }
    let updater = Updater::new(
        backend,
        &config.registered,
        config.record_ttl,
        config.request_cache_ttl,
        config.zone_cache_ttl,
    );
    let app = Arc::new(App {
        config,
        keys,
        updater,
    });

    let server = Arc::new(server);
    let stopping = Arc::new(AtomicBool::new(false));
    let workers = http::spawn_workers(&server, &app, &stopping);
    log::info!("listening on http://{addr}");
    check_zones_in_background(&app);
    Ok(Running {
        app,
        server,
        addr,
        stopping,
        workers,
    })
}

/// Read the zone list once at start: it checks the token, tells the
/// operator which registered hosts have no zone, and saves the first update
/// the lookup. Failures are logged, never fatal (Hetzner may be down).
fn check_zones_in_background(app: &Arc<App>) {
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new().name("zone-check".into()).spawn(move || {
        let Some(result) = app.updater.prefetch_zones(Instant::now() + Duration::from_secs(30)) else { return };
        match result {
            Ok(zones) => {
                let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                log::info!("hetzner: token accepted; {} zone(s): {}", zones.len(), names.join(", "));
                for host in &app.config.registered {
                    if app.updater.cached_zone(host).is_none() {
                        log::warn!("{host} is registered but no zone of this Hetzner project contains it; its updates will fail");
                    }
                }
            }
            Err(e) => log::error!("hetzner: cannot list zones: {e}"),
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the zone check: {e}");
    }
}
