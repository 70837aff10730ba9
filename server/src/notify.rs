//! Notifications through ntfy (`POST {NTFY_URL}/{NTFY_TOPIC}` with `Title`,
//! `Priority` and `Tags` headers).
//!
//! Sending never blocks a request thread: messages go into a bounded queue
//! that one notifier thread drains. When the queue is full the message is
//! dropped and logged; when ntfy is down a message is tried three times
//! (0 s, 1 s, 3 s) and then dropped. The same failure of the same host is
//! announced at most once per `NOTIFY_REPEAT_INTERVAL`, so a revoked token
//! does not flood the phone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, Ntfy, NtfyAuth};
use crate::keys;

/// Messages waiting for the notifier thread.
const QUEUE: usize = 64;

/// ntfy priorities.
pub const HIGH: u8 = 4;
pub const DEFAULT: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
    pub priority: u8,
    pub tags: &'static str,
}

pub struct Notifier {
    tx: Option<SyncSender<Message>>,
    repeat: Duration,
    last_sent: Mutex<HashMap<String, Instant>>,
    /// Messages that could not be delivered (queue full or ntfy failing).
    failures: Arc<AtomicU64>,
}

impl Notifier {
    /// Start the notifier thread when ntfy is configured.
    pub fn start(config: &Config) -> Notifier {
        let failures = Arc::new(AtomicU64::new(0));
        let tx = config.ntfy.clone().and_then(|ntfy| {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            let failures = Arc::clone(&failures);
            std::thread::Builder::new()
                .name("notifier".into())
                .spawn(move || deliver_all(&ntfy, &rx, &failures))
                .map_err(|e| log::error!("cannot start the notifier thread: {e}"))
                .ok()
                .map(|_| tx)
        });
        Notifier { tx, repeat: config.notify_repeat_interval, last_sent: Mutex::new(HashMap::new()), failures }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Queue a message; never blocks.
    pub fn send(&self, message: Message) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                log::warn!("ntfy: queue full, dropped {:?}", m.title);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queue a message unless the same `key` was sent within
    /// `NOTIFY_REPEAT_INTERVAL`.
    pub fn send_once(&self, key: &str, message: Message) {
        if self.tx.is_none() {
            return;
        }
        {
            let mut last = self.last_sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.get(key).is_some_and(|at| at.elapsed() < self.repeat) {
                log::debug!("ntfy: not repeating {key}");
                return;
            }
            last.insert(key.to_string(), Instant::now());
        }
        self.send(message);
    }

    /// Forget `key`, so its next failure is announced again (after recovery).
    pub fn clear(&self, key_prefix: &str) {
        let mut last = self.last_sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.retain(|k, _| !k.starts_with(key_prefix));
    }
}

fn deliver_all(ntfy: &Ntfy, rx: &Receiver<Message>, failures: &AtomicU64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(concat!("dyndns-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for message in rx {
        let mut delivered = false;
        for pause in [0, 1, 2] {
            std::thread::sleep(Duration::from_secs(pause));
            match post(&agent, ntfy, &message) {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => log::warn!("ntfy: {e}"),
            }
        }
        if !delivered {
            failures.fetch_add(1, Ordering::Relaxed);
            log::error!("ntfy: gave up on {:?}", message.title);
        }
    }
}

fn post(agent: &ureq::Agent, ntfy: &Ntfy, m: &Message) -> Result<(), String> {
    let mut rq = agent
        .post(&ntfy.topic_url)
        .header("Title", header_safe(&m.title))
        .header("Priority", m.priority.to_string())
        .header("Tags", m.tags);
    rq = match &ntfy.auth {
        NtfyAuth::None => rq,
        NtfyAuth::Basic { username, password } => rq.header(
            "Authorization",
            format!("Basic {}", keys::base64_std(format!("{username}:{}", password.expose()).as_bytes())),
        ),
        NtfyAuth::Token(t) => rq.header("Authorization", format!("Bearer {}", t.expose())),
    };
    match rq.send(m.body.as_str()) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{} answered {}", ntfy.topic_url, r.status().as_u16())),
        Err(e) => Err(format!("cannot reach {}: {e}", ntfy.topic_url)),
    }
}

/// Header values must be one line of visible ASCII.
fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}
