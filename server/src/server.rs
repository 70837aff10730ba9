//! The server's life, owned by one type.
//!
//! `Server::start` checks the settings, prepares the keys, binds, and starts
//! the listener, the housekeeping thread and the notifier, or returns why it
//! could not. From then on everything that concerns the process as a whole
//! — a signal, a request to reload the keys, a listener that died — arrives
//! as an `Event` on one channel, which `main` waits on (`next_event`).
//! `shutdown` stops taking requests, lets those in flight finish, writes the
//! state file and delivers queued notifications, each wait bounded, so the
//! whole stays within the 10 s a container runtime allows.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::certificates::{self, CertStore, FileStamp};
use crate::config::{Config, ConfigError, TlsSource};
use crate::http::Listener;
use crate::keys::{self, KeyFile};
use crate::notify::{self, Message, Notifier};
use crate::renewal;

/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued notifications.
pub const NOTIFY_GRACE: Duration = Duration::from_secs(3);
/// The state file is written at most this often (and at shutdown).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Something that concerns the whole process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Stop (SIGTERM, SIGINT); the text names the cause for the log.
    Stop(String),
    /// Reload the key file (SIGHUP).
    Reload,
    /// The server cannot go on (the listener died); exit non-zero.
    Failed(String),
}

/// Why the server could not start. Every variant is fatal (exit status 2)
/// and its text says what to do.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Keys(keys::KeyFileError),
    /// The listening socket could not be opened; `what` names the settings.
    Listen {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Keys(e) => write!(f, "{e}"),
            StartError::Listen { addr, what, source } => write!(
                f,
                "{what}: cannot listen on {addr}: {source}; {}",
                match source.kind() {
                    std::io::ErrorKind::AddrInUse =>
                        "another program uses the port; stop it or choose a free port",
                    std::io::ErrorKind::PermissionDenied =>
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities= in systemd); or use a higher port",
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

/// A running server.
pub struct Server {
    pub app: Arc<App>,
    listener: Arc<Listener>,
    addr: SocketAddr,
    housekeeping: Option<(Sender<()>, JoinHandle<()>)>,
    /// Dropped at shutdown, which ends the reconcile thread after the
    /// zone it is working on (it is not waited for: its calls are bounded
    /// by their deadline, and nothing it does needs to reach the disk).
    reconcile_stop: Option<Sender<()>>,
    /// Dropped at shutdown, which ends the thread that writes changes
    /// answered 911 (not waited for, as the reconcile).
    retry_stop: Option<Sender<()>>,
    /// Dropped at shutdown, which ends the certificate renewal thread.
    renewal_stop: Option<Sender<()>>,
    /// Dropped at shutdown, which ends the heartbeats (not waited for: a
    /// ping in flight is bounded by its timeout).
    heartbeat_stop: Option<Sender<()>>,
    tls_addr: Option<SocketAddr>,
    /// In a mutex only so that `Server` can be shared between threads.
    events: Mutex<Receiver<Event>>,
    events_tx: Sender<Event>,
}

impl Server {
    /// Start with a channel of its own (tests; `events()` feeds it).
    pub fn start(config: Config) -> Result<Server, StartError> {
        let (tx, rx) = mpsc::channel();
        Server::start_with_events(config, tx, rx)
    }

    /// Start, with events arriving on a channel made before the start, so
    /// that a signal during start-up is not lost.
    pub fn start_with_events(
        config: Config,
        events_tx: Sender<Event>,
        events: Receiver<Event>,
    ) -> Result<Server, StartError> {
        config.check_serve()?;
        announce(&config);
        crate::state::check(&config.state_file).map_err(|e| StartError::Config(ConfigError(e)))?;
        let notifier = Notifier::start(&config);
        let keys = keys::ensure(&config)?;
        report_key_problems(&config, &keys, &notifier);
        let (plain, tls_socket, addr) = bind_all(&config)?;
        let store = tls_store(&config)?;
        let tls_addr = tls_socket.as_ref().and_then(|s| s.local_addr().ok());
        let app = Arc::new(App::new(config, keys, notifier));
        if let Some(store) = &store {
            let _ = app.certificates.set(Arc::clone(store));
        }
        crate::zone_check::at_start(&app).map_err(StartError::Config)?;
        let tls = match (tls_socket, &store) {
            (Some(socket), Some(store)) => {
                let config = store.server_config().map_err(|e| StartError::Config(ConfigError(format!("TLS: {e}"))))?;
                Some((socket, config))
            }
            _ => None,
        };
        let listener = Arc::new(Listener::start(plain, tls, &app).map_err(|source| StartError::Listen {
            addr,
            what: "LISTEN_ADDR/LISTEN_PORT",
            source,
        })?);
        let housekeeping = spawn_housekeeping(&app, &listener, events_tx.clone());
        if app.config.plain_http {
            log::info!("listening on http://{addr}");
        }
        if let Some(a) = tls_addr {
            log::info!("listening on https://{a}");
        }
        let renewal_stop = spawn_renewal(&app);
        let reconcile_stop = crate::reconcile::spawn(&app);
        let retry_stop = spawn_retry(&app);
        let (heartbeat_tx, heartbeat_rx) = mpsc::channel();
        let heartbeat_stop = crate::heartbeat::spawn(&app, heartbeat_rx).map(|_| heartbeat_tx);
        Ok(Server {
            app,
            listener,
            addr,
            housekeeping,
            reconcile_stop,
            retry_stop,
            renewal_stop,
            heartbeat_stop,
            tls_addr,
            events: Mutex::new(events),
            events_tx,
        })
    }

    /// The address actually bound (port 0 resolved): plain HTTP's, or
    /// with HTTPS only, the HTTPS one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTPS address bound, when the server serves HTTPS.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// `SIGHUP`: the key file, and `TLS_CERT_FILE`/`TLS_KEY_FILE`.
    pub fn reload(&self) {
        self.app.reload_keys();
        reload_tls_files(&self.app);
    }

    /// Connections open now, idle or busy.
    pub fn open_connections(&self) -> usize {
        self.listener.open()
    }

    /// Where to send events (a signal thread, a test).
    pub fn events(&self) -> Sender<Event> {
        self.events_tx.clone()
    }

    /// Wait for the next event.
    pub fn next_event(&self) -> Event {
        // We hold a sender ourselves, so the channel never disconnects.
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.recv().unwrap_or_else(|_| Event::Stop("event channel closed".into()))
    }

    /// Stop taking requests, let those in flight finish (up to
    /// `SHUTDOWN_GRACE`), write the state file, deliver queued
    /// notifications (up to `NOTIFY_GRACE`), return.
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
        drop(self.reconcile_stop);
        drop(self.retry_stop);
        drop(self.renewal_stop);
        drop(self.heartbeat_stop);
        if let Some((stop, handle)) = self.housekeeping {
            let _ = stop.send(());
            let _ = handle.join();
        }
        drop(self.listener);
        self.app.save_state_if_dirty();
        self.app.notifier.close(NOTIFY_GRACE);
    }
}

/// One notification listing what is wrong in the key file, if anything.
fn report_key_problems(config: &Config, keys: &KeyFile, notifier: &Notifier) {
    let mut problems = keys.warnings.clone();
    let stale = keys.unregistered(&config.registered);
    if !stale.is_empty() {
        problems.push(format!("keys of unregistered hosts kept: {}", stale.join(", ")));
    }
    if !problems.is_empty() {
        notifier.send(Message {
            title: "dyndns: key file problems".into(),
            body: format!("{}:\n{}", config.key_file.display(), problems.join("\n")),
            priority: notify::HIGH,
            event: notify::Event::KeyFile,
            host: None,
        });
    }
}

/// Every `FLUSH_EVERY` (or sooner): check that the listener still accepts,
/// look for lost hosts every `CONNECTION_CHECK_INTERVAL`, write the state
/// file when something changed; until told to stop. A thread that cannot
/// start is logged: the server still answers, only without these chores.
fn spawn_housekeeping(
    app: &Arc<App>,
    listener: &Arc<Listener>,
    events: Sender<Event>,
) -> Option<(Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop) = mpsc::channel::<()>();
    let (app, listener) = (Arc::clone(app), Arc::clone(listener));
    let spawned = std::thread::Builder::new().name("housekeeping".into()).spawn(move || {
        let check_every = app.config.connection_check_interval;
        let tick = check_every.min(FLUSH_EVERY);
        let mut next_check = Instant::now() + check_every;
        let mut reported = false;
        let tls_files = match app.config.tls.as_ref().map(|t| &t.source) {
            Some(TlsSource::Files { cert, key }) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        let mut stamp = tls_files.as_ref().map(|(c, k)| FileStamp::of(c, k));
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
            if let Some((cert, key)) = &tls_files {
                let now = FileStamp::of(cert, key);
                if stamp.as_ref() != Some(&now) {
                    stamp = Some(now);
                    reload_tls_files(&app);
                }
            }
            if !listener.accepting() && !reported {
                reported = true;
                let _ = events.send(Event::Failed("the listener stopped accepting connections".into()));
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + check_every;
                app.check_lost();
                app.expire_challenges();
            }
            app.save_state_if_dirty();
        }
    });
    match spawned {
        Ok(handle) => Some((stop_tx, handle)),
        Err(e) => {
            log::error!("cannot start the housekeeping thread (lost-host checks, state file): {e}");
            None
        }
    }
}

fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, what, source })
}

/// The start's log lines: problems found in the settings, the effective
/// settings, and what deserves a warning.
fn announce(config: &Config) {
    for w in &config.warnings {
        log::warn!("{w}");
    }
    log::info!("dyndns-server {} starting: {}", env!("CARGO_PKG_VERSION"), config.summary());
    if config.key_file_is_default {
        log::warn!(
            "PRE_SHARED_KEY_FILE is not set: the hosts' keys are kept in {}; set PRE_SHARED_KEY_FILE to a file on storage that outlives the server (e.g. /var/lib/dyndns/keys), or every key changes when it is lost",
            config.key_file.display()
        );
    }
    if config.dry_run {
        log::warn!("DRY_RUN=1: records are kept in memory and logged as \"would set\"; Hetzner is not called");
    }
}

/// The plain HTTP and the HTTPS socket (each when configured), and the
/// address the server answers on (plain HTTP's, else HTTPS').
fn bind_all(config: &Config) -> Result<(Option<TcpListener>, Option<TcpListener>, SocketAddr), StartError> {
    let plain = match config.plain_http {
        true => Some(bind(config.listen, "LISTEN_ADDR/LISTEN_PORT")?),
        false => None,
    };
    let tls = match &config.tls {
        Some(tls) => Some(bind(tls.listen, "LISTEN_ADDR/LISTEN_TLS_PORT")?),
        None => None,
    };
    let addr = match (&plain, &tls) {
        (Some(s), _) | (None, Some(s)) => s.local_addr(),
        (None, None) => Err(std::io::Error::other("nothing to listen on")),
    }
    .map_err(|source| StartError::Listen { addr: config.listen, what: "LISTEN_ADDR/LISTEN_PORT", source })?;
    Ok((plain, tls, addr))
}

/// The certificate store of HTTPS, with what can be served at once:
/// `TLS_CERT_FILE` (which must be good: exit 2 otherwise) or the stored
/// ACME certificate.
fn tls_store(config: &Config) -> Result<Option<Arc<CertStore>>, StartError> {
    let Some(tls) = &config.tls else { return Ok(None) };
    match &tls.source {
        TlsSource::Files { cert, key } => {
            let store = CertStore::new(Vec::new());
            let loaded = certificates::read_files(cert, key).map_err(|e| StartError::Config(ConfigError(e)))?;
            store.install(loaded);
            Ok(Some(store))
        }
        TlsSource::Acme(acme) => {
            let store = CertStore::new(acme.domains.clone());
            renewal::load_stored(acme, &store);
            Ok(Some(store))
        }
    }
}

/// `SIGHUP` or a change of the files: serve them anew; a bad file keeps
/// the certificate in use and says so.
fn reload_tls_files(app: &App) {
    let (Some(store), Some(TlsSource::Files { cert, key })) =
        (app.certificates.get(), app.config.tls.as_ref().map(|t| &t.source))
    else {
        return;
    };
    if let Err(e) = certificates::reload_files(store, cert, key) {
        log::error!("TLS: {e}; keeping the certificate in use");
    }
}

/// Get and renew the certificate of `TLS_DOMAINS` (`renewal`), until the
/// returned sender is dropped.
fn spawn_renewal(app: &Arc<App>) -> Option<Sender<()>> {
    let Some(TlsSource::Acme(acme)) = app.config.tls.as_ref().map(|t| t.source.clone()) else { return None };
    let store = Arc::clone(app.certificates.get()?);
    let (stop_tx, stop) = mpsc::channel::<()>();
    let app = Arc::clone(app);
    let spawned =
        std::thread::Builder::new().name("certificates".into()).spawn(move || renewal::run(&app, &acme, &store, &stop));
    match spawned {
        Ok(_) => Some(stop_tx),
        Err(e) => {
            log::error!("cannot start the certificate thread: {e}");
            None
        }
    }
}

/// How often changes answered 911 are looked at again (each host is tried
/// no sooner than `RETRY_AFTER_FAILURE` after its last failure).
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Write the changes answered with a passing error once Hetzner answers
/// again (`App::retry_pending`), until the returned sender is dropped.
fn spawn_retry(app: &Arc<App>) -> Option<Sender<()>> {
    if app.updater.projects().is_empty() {
        return None;
    }
    let (stop_tx, stop) = mpsc::channel::<()>();
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new().name("retry".into()).spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(RETRY_EVERY) {
            app.retry_pending(Instant::now() + Duration::from_secs(30));
        }
    });
    match spawned {
        Ok(_) => Some(stop_tx),
        Err(e) => {
            log::error!("cannot start the retry thread (changes answered 911 wait for the next report): {e}");
            None
        }
    }
}
