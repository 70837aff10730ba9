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
pub mod limiter;
pub mod logging;
pub mod monitor;
pub mod notify;
pub mod state;
pub mod status;
pub mod updater;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use config::{Config, ConfigError};
use hetzner::{Hetzner, RecordType};
use keys::KeyFile;
use monitor::HostBook;
use notify::{Message, Notifier};
use status::Metrics;
use updater::{Backend, Updater};

/// State shared by all request threads.
pub struct App {
    pub config: Config,
    keys: KeyFile,
    pub updater: Updater,
    pub hosts: HostBook,
    pub notifier: Notifier,
    pub metrics: Metrics,
    pub limiter: limiter::Limiter,
    pub started: Instant,
}

impl App {
    /// Write the state file if anything changed since the last write.
    pub fn save_state_if_dirty(&self) {
        if !self.hosts.take_dirty() {
            return;
        }
        let mut file = state::StateFile { version: state::VERSION, ..Default::default() };
        for (host, s) in self.hosts.snapshot() {
            file.hosts.insert(host, state::HostRecord { state: s, records: Default::default() });
        }
        for (host, rtype, ip, confirmed) in self.updater.export() {
            let entry = file.hosts.entry(host).or_default();
            entry.records.insert(rtype.as_str().to_string(), state::Confirmed { ip, confirmed });
        }
        if let Err(e) = state::save(&self.config.state_file, &file) {
            self.hosts.mark_dirty();
            log::error!("STATE_FILE: cannot write {}: {e}", self.config.state_file.display());
        }
    }
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
                    std::io::ErrorKind::AddrInUse =>
                        "another program uses the port; stop it or set LISTEN_PORT to a free port",
                    std::io::ErrorKind::PermissionDenied =>
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher LISTEN_PORT",
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
    let added = file.add_missing(&config.registered).map_err(|source| keys::KeyFileError {
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
    listener: http::Listener,
    addr: SocketAddr,
    housekeeping: Option<(Sender<()>, JoinHandle<()>)>,
}

/// How long shutdown waits for requests in flight (Docker allows 10 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Running {
    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop taking requests, let those in flight finish (up to
    /// `SHUTDOWN_GRACE`), write the state file, return.
    pub fn shutdown(self) {
        self.listener.stop_accepting();
        let until = Instant::now() + SHUTDOWN_GRACE;
        while self.listener.in_flight() > 0 {
            if Instant::now() >= until {
                log::warn!("requests still running after {}s; stopping anyway", SHUTDOWN_GRACE.as_secs());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(self.listener);
        if let Some((stop, handle)) = self.housekeeping {
            let _ = stop.send(());
            let _ = handle.join();
        }
        self.app.save_state_if_dirty();
    }
}

/// Check the settings, prepare the keys, bind and start serving.
pub fn start(config: Config) -> Result<Running, StartError> {
    config.check_serve()?;
    for w in &config.warnings {
        log::warn!("{w}");
    }
    log::info!("dyndns-server {} starting: {}", env!("CARGO_PKG_VERSION"), config.summary());
    let notifier = Notifier::start(&config);
    let keys = ensure_keys(&config)?;
    let mut key_problems = keys.warnings.clone();
    let stale = keys.unregistered(&config.registered);
    if !stale.is_empty() {
        key_problems.push(format!("keys of unregistered hosts kept: {}", stale.join(", ")));
    }
    if !key_problems.is_empty() {
        notifier.send(Message {
            title: "dyndns: key file problems".into(),
            body: format!("{}:\n{}", config.key_file.display(), key_problems.join("\n")),
            priority: notify::HIGH,
            tags: "warning",
        });
    }

    let socket =
        TcpListener::bind(config.listen).map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let addr = socket.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;

    let backend = match (&config.token, config.dry_run) {
        (Some(token), false) => Backend::Hetzner(Hetzner::new(&config.api_url, token.clone())),
        _ => Backend::DryRun,
    };
    if config.dry_run {
        log::warn!("DRY_RUN=1: records are kept in memory and logged as \"would set\"; Hetzner is not called");
    }
    let write_limit = updater::WriteLimit { burst: config.host_write_burst, per_hour: config.host_writes_per_hour };
    let updater = Updater::new(
        backend,
        &config.registered,
        config.record_ttl,
        config.request_cache_ttl,
        config.zone_cache_ttl,
        write_limit,
    );

    let (saved, warning) = state::load(&config.state_file);
    if let Some(w) = warning {
        log::warn!("{w}");
        notifier.send(Message {
            title: "dyndns: state file reset".into(),
            body: w,
            priority: notify::DEFAULT,
            tags: "warning",
        });
    }
    let (host_states, records) = state::split(saved);
    for (host, rtype, c) in records {
        let Some(rtype) = RecordType::parse(&rtype) else { continue };
        if config.registered.contains(&host) && RecordType::of(c.ip) == rtype {
            updater.import(&host, rtype, c.ip, c.confirmed);
        }
    }
    let hosts = HostBook::new(&config.registered, host_states);
    let app = Arc::new(App {
        config,
        keys,
        updater,
        hosts,
        notifier,
        metrics: Metrics::default(),
        limiter: Default::default(),
        started: Instant::now(),
    });

    let listener = http::Listener::start(socket, &app).map_err(|source| StartError::Listen { addr, source })?;
    let (stop_tx, stop_rx) = mpsc::channel();
    let housekeeping = match monitor::spawn_housekeeping(Arc::clone(&app), stop_rx) {
        Ok(handle) => Some((stop_tx, handle)),
        Err(e) => {
            log::error!("cannot start the housekeeping thread (lost-host checks, state file): {e}");
            None
        }
    };
    log::info!("listening on http://{addr}");
    check_zones_in_background(&app);
    Ok(Running { app, listener, addr, housekeeping })
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
