//! patches 2, 3 and 5 (PATCHES.md): what one client may make the server
//! hold, the deadline of a request, and the table of open connections that
//! lets idle ones make room when the connection limit is reached.

use std::collections::HashMap;
use std::convert::TryFrom;
use std::io::{Error as IoError, ErrorKind, Result as IoResult};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Bounds on what one connection may make the server hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line in bytes; longer ones are answered 414.
    pub max_request_line: usize,
    /// Most bytes of all header lines together; beyond it 431.
    pub max_header_bytes: usize,
    /// Most header fields; beyond it 431.
    pub max_headers: usize,
    /// Largest body read into memory; a larger one is answered 413 without
    /// being read.
    pub max_body: usize,
    /// Time for a whole request (head and body) to arrive, counted from the
    /// moment the connection became idle (accepted, or the previous answer
    /// written). An idle connection is closed when it passes; a request
    /// cut short is answered 408. Also the write timeout of answers.
    pub timeout: Option<Duration>,
    /// Most open connections, 0 for no limit. At the limit, the connection
    /// idle for longest is closed to make room; when none is idle, the new
    /// one is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            timeout: None,
            max_connections: 0,
        }
    }
}

/// A point in time shared by a connection's reader and its owner, in
/// milliseconds after `base` plus one; 0 is "no deadline".
#[derive(Clone)]
pub(crate) struct Deadline {
    at: Arc<AtomicU64>,
    base: Instant,
}

impl Deadline {
    pub(crate) fn new(base: Instant) -> Deadline {
        Deadline { at: Arc::new(AtomicU64::new(0)), base }
    }

    /// `after` from now, or no deadline.
    pub(crate) fn set(&self, after: Option<Duration>) {
        let at = after.map_or(0, |d| millis(self.base.elapsed() + d) + 1);
        self.at.store(at, Ordering::Relaxed);
    }

    /// Time left: `None` without a deadline, `TimedOut` once it passed.
    pub(crate) fn left(&self) -> Option<IoResult<Duration>> {
        let at = self.at.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let now = millis(self.base.elapsed()) + 1;
        Some(if at > now {
            Ok(Duration::from_millis(at - now))
        } else {
            Err(IoError::new(ErrorKind::TimedOut, "deadline passed"))
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// One open connection as the table sees it.
pub(crate) struct Slot {
    id: u64,
    /// A handle on the socket, to close it from another thread.
    socket: Connection,
    /// Milliseconds after the table's base plus one since which the
    /// connection waits for a request; 0 while a request is handled.
    idle_since: AtomicU64,
    base: Instant,
}

impl Slot {
    /// A request arrived: not to be closed for room until it is answered.
    pub(crate) fn busy(&self) {
        self.idle_since.store(0, Ordering::Relaxed);
    }

    /// The answer is written; the connection waits for the next request.
    pub(crate) fn idle(&self) {
        self.idle_since.store(millis(self.base.elapsed()) + 1, Ordering::Relaxed);
    }
}

/// Every open connection, so that the limit can be kept and idle
/// connections closed to make room, or closed at shutdown. A thread that
/// panics while holding the lock leaves a consistent map (each critical
/// section is one map operation), so poisoning is ignored.
pub(crate) struct Connections {
    max: usize,
    base: Instant,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Counted since the last log line, which comes at most once a minute.
    report: Mutex<Report>,
}

#[derive(Default)]
struct Report {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

/// How often the connection limit is reported in the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

impl Connections {
    pub(crate) fn new(max: usize) -> Connections {
        Connections {
            max,
            base: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            report: Mutex::new(Report::default()),
        }
    }

    pub(crate) fn base(&self) -> Instant {
        self.base
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take a new connection into the table, closing the longest-idle one
    /// when the table is full. `None` when it is full of busy connections.
    pub(crate) fn admit(&self, socket: &Connection) -> Option<Arc<Slot>> {
        let handle = socket.try_clone().ok()?;
        let mut open = self.open();
        let mut evicted = false;
        if self.max > 0 && open.len() >= self.max {
            let oldest = open
                .values()
                .filter(|s| s.idle_since.load(Ordering::Relaxed) != 0)
                .min_by_key(|s| s.idle_since.load(Ordering::Relaxed))
                .map(|s| s.id);
            match oldest.and_then(|id| open.remove(&id)) {
                Some(slot) => {
                    // Its thread sees end-of-file and ends.
                    let _ = slot.socket.shutdown(Shutdown::Both);
                    evicted = true;
                }
                None => {
                    drop(open);
                    self.note(false);
                    return None;
                }
            }
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            socket: handle,
            idle_since: AtomicU64::new(0),
            base: self.base,
        });
        slot.idle();
        open.insert(slot.id, Arc::clone(&slot));
        drop(open);
        if evicted {
            self.note(true);
        }
        Some(slot)
    }

    /// The connection ended.
    pub(crate) fn remove(&self, slot: &Slot) {
        self.open().remove(&slot.id);
    }

    /// Close every connection that waits for a request (shutdown).
    pub(crate) fn close_idle(&self) {
        for slot in self.open().values() {
            if slot.idle_since.load(Ordering::Relaxed) != 0 {
                let _ = slot.socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Connections whose request is being handled.
    pub(crate) fn busy(&self) -> usize {
        self.open().values().filter(|s| s.idle_since.load(Ordering::Relaxed) == 0).count()
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.open().len()
    }

    /// Count an eviction or a refusal; log the counts once a minute.
    fn note(&self, evicted: bool) {
        let mut r = self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if evicted {
            r.evicted += 1;
        } else {
            r.refused += 1;
        }
        if r.last.map_or(true, |at| at.elapsed() >= REPORT_EVERY) {
            log::warn!(
                "connection limit ({}) reached: closed {} idle connection(s) to make room and refused {} new one(s) since the last report",
                self.max,
                r.evicted,
                r.refused
            );
            *r = Report { last: Some(Instant::now()), evicted: 0, refused: 0 };
        }
    }
}
