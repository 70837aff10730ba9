//! Notifications to every target of `notifiers` (ntfy, `NOTIFY_URLS`).
//!
//! Sending never blocks a request thread: messages go into a bounded queue
//! that one thread hands to every target's own bounded queue, each drained
//! by its own thread, so a failing or slow target never delays another.
//! When a queue is full the message is dropped there and logged; when a
//! target is down a message is tried three times (0 s, 1 s, 3 s) and then
//! dropped. The same failure of the same host is
//! announced at most once per `NOTIFY_REPEAT_INTERVAL`, so a revoked token
//! does not flood the phone; only a real recovery (Hetzner accepted a write
//! for the host) announces the next failure of the same kind sooner — a
//! cached answer between two bad requests is no recovery. Whatever happens,
//! one host causes at most `HOST_MESSAGES_PER_HOUR` messages an hour. At shutdown the queue is delivered before the
//! thread ends, within a bounded wait (`close`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::notifiers::{Outgoing, Target};

/// Messages waiting for the notifier thread.
const QUEUE: usize = 64;

/// Messages about one host in one hour at most (every kind together).
pub const HOST_MESSAGES_PER_HOUR: u32 = 10;
/// What a failure announcement is about; the same kind for the same host
/// is announced once per `NOTIFY_REPEAT_INTERVAL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A misconfigured client, which no write cures.
    Client(ClientMistake),
    /// An update that failed (`UpdateError::kind`: Hetzner's error code or
    /// the way the call failed); a write Hetzner accepts ends it.
    Update(String),
    /// An ACME challenge write that failed (the same names as `Update`).
    Challenge(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMistake {
    /// dyndns2 `badip`: not an address (a prefix, a wrong family).
    BadIp,
    /// Authenticated for a name that is not a registered host.
    NoHost,
    /// An address the internet cannot reach (private, loopback, …).
    PrivateAddress,
}

pub use crate::notifiers::{Event, Message, DEFAULT, HIGH};

pub struct Notifier {
    /// The queue; `None` when ntfy is not configured or after `close`.
    tx: Mutex<Option<SyncSender<Message>>>,
    /// Signalled by the notifier thread when it has delivered everything.
    done: Mutex<Option<Receiver<()>>>,
    repeat: Duration,
    /// `(host, kind)` → when it was last announced.
    last_sent: Mutex<HashMap<(String, Kind), Instant>>,
    /// host → (start of its hour, messages in it).
    per_host: Mutex<HashMap<String, (Instant, u32)>>,
    /// Messages that could not be delivered (queue full or ntfy failing).
    failures: Arc<AtomicU64>,
    /// Set by `close`: the thread retries without pausing.
    closing: Arc<AtomicBool>,
}

impl Notifier {
    /// Start the notifier threads when a target is configured.
    pub fn start(config: &Config) -> Notifier {
        let failures = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let tx = start_threads(&config.notifiers, &failures, &closing, &done_tx);
        drop(done_tx);
        let done = tx.as_ref().map(|_| done_rx);
        Notifier {
            tx: Mutex::new(tx),
            done: Mutex::new(done),
            repeat: config.notify_repeat_interval,
            last_sent: Mutex::new(HashMap::new()),
            per_host: Mutex::new(HashMap::new()),
            failures,
            closing,
        }
    }

    fn enabled(&self) -> bool {
        lock(&self.tx).is_some()
    }

    /// Stop taking messages and wait up to `grace` for the queued ones to
    /// be delivered. Later `send`s are dropped.
    pub fn close(&self, grace: Duration) {
        self.closing.store(true, Ordering::Relaxed);
        drop(lock(&self.tx).take());
        let Some(done) = lock(&self.done).take() else { return };
        // Every target's thread holds a sender: all gone, all delivered.
        if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(grace) {
            log::warn!(
                "notify: queued notifications were still being delivered after {}s; stopping anyway",
                grace.as_secs()
            );
        }
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Queue a message; never blocks.
    pub fn send(&self, message: Message) {
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else { return };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                log::warn!("notify: queue full, dropped {:?}", m.title);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queue a message about `host`, unless the host used up its
    /// `HOST_MESSAGES_PER_HOUR`.
    pub fn send_about(&self, host: &str, mut message: Message) {
        message.host = Some(host.to_string());
        if !self.enabled() {
            return;
        }
        {
            let mut per_host = lock(&self.per_host);
            let (start, count) = per_host.entry(host.to_string()).or_insert((Instant::now(), 0));
            if start.elapsed() >= Duration::from_secs(3600) {
                (*start, *count) = (Instant::now(), 0);
            }
            *count += 1;
            if *count > HOST_MESSAGES_PER_HOUR {
                if *count == HOST_MESSAGES_PER_HOUR + 1 {
                    log::warn!("notify: {host} caused {HOST_MESSAGES_PER_HOUR} messages this hour; holding further ones back until the hour is over");
                }
                return;
            }
        }
        self.send(message);
    }

    /// Queue a failure of `kind` about `host` unless it was announced within
    /// `NOTIFY_REPEAT_INTERVAL` (and no recovery came between).
    pub fn send_once(&self, host: &str, kind: Kind, message: Message) {
        if !self.enabled() {
            return;
        }
        {
            let mut last = lock(&self.last_sent);
            let key = (host.to_string(), kind);
            if last.get(&key).is_some_and(|at| at.elapsed() < self.repeat) {
                log::debug!("notify: not repeating {:?} of {host}", key.1);
                return;
            }
            last.insert(key, Instant::now());
        }
        self.send_about(host, message);
    }

    /// Hetzner accepted a write for `host`: its update failures are over,
    /// so the next one is announced at once. A misconfigured client's
    /// failures stay muted (a write between two bad requests cures nothing).
    pub fn recovered(&self, host: &str) {
        let mut last = lock(&self.last_sent);
        if last.keys().any(|(h, _)| h == host) {
            last.retain(|(h, kind), _| h != host || matches!(kind, Kind::Client(_)));
        }
    }
}

/// Every critical section here is one map or option operation, so a panic
/// elsewhere cannot leave half a change: poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The HTTP client of notifiers and heartbeats: 10 s per request, no
/// redirects, statuses as answers, small buffers.
pub fn outbound_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(concat!("dyndns-server/", env!("CARGO_PKG_VERSION")))
        // As for Hetzner (`hetzner::INPUT_BUFFER` says why).
        .input_buffer_size(crate::hetzner::INPUT_BUFFER)
        .output_buffer_size(crate::hetzner::OUTPUT_BUFFER)
        .build()
        .into()
}

/// The dispatcher thread and one delivery thread per target; `None` when
/// there is no target (or no thread could start).
fn start_threads(
    targets: &[Target],
    failures: &Arc<AtomicU64>,
    closing: &Arc<AtomicBool>,
    done: &Sender<()>,
) -> Option<SyncSender<Message>> {
    let agent = outbound_agent();
    let mut queues = Vec::new();
    for target in targets {
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
        let label = target.label();
        let (target, agent) = (target.clone(), agent.clone());
        let (failures, closing, done) = (Arc::clone(failures), Arc::clone(closing), done.clone());
        let spawned = std::thread::Builder::new().name("notify".into()).spawn(move || {
            deliver_all(&target, &agent, &rx, &failures, &closing);
            drop(done);
        });
        match spawned {
            Ok(_) => queues.push((tx, label)),
            Err(e) => log::error!("cannot start the notification thread of {label}: {e}"),
        }
    }
    if queues.is_empty() {
        return None;
    }
    let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
    let failures = Arc::clone(failures);
    let spawned = std::thread::Builder::new().name("notifier".into()).spawn(move || {
        for message in rx {
            for (queue, label) in &queues {
                if let Err(TrySendError::Full(m)) = queue.try_send(message.clone()) {
                    failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("notify: {label}: queue full, dropped {:?}", m.title);
                }
            }
        }
    });
    spawned.map_err(|e| log::error!("cannot start the notifier thread: {e}")).ok().map(|_| tx)
}

fn deliver_all(
    target: &Target,
    agent: &ureq::Agent,
    rx: &Receiver<Message>,
    failures: &AtomicU64,
    closing: &AtomicBool,
) {
    let label = target.label();
    for message in rx {
        for request in target.requests(&message) {
            let mut delivered = false;
            for pause in [0, 1, 2] {
                pause_unless_closing(Duration::from_secs(pause), closing);
                match post(agent, &request) {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(e) => log::warn!("notify: {label}: {e}"),
                }
            }
            if !delivered {
                failures.fetch_add(1, Ordering::Relaxed);
                log::error!("notify: {label}: gave up on {:?}", message.title);
            }
        }
    }
}

/// Wait `pause` between attempts, cut short at shutdown (the queue is then
/// tried once more at once, within `close`'s grace).
fn pause_unless_closing(pause: Duration, closing: &AtomicBool) {
    let until = std::time::Instant::now() + pause;
    while !closing.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request; the error says what happened, never the URL (it may hold
/// a token: Discord, Telegram).
fn post(agent: &ureq::Agent, request: &Outgoing) -> Result<(), String> {
    let mut rq = agent.post(&request.url);
    for (name, value) in &request.headers {
        rq = rq.header(*name, value);
    }
    match rq.send(request.body.as_str()) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status().as_u16())),
        Err(e) => Err(format!("cannot reach it ({})", crate::notifiers::describe(&e))),
    }
}
