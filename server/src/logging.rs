//! Log set-up: one line per record on stdout (stderr for commands whose
//! stdout is their output, `keys`), and in a rotating file when `LOG_FILE`
//! is set. Log levels: INFO is one line per request and per Hetzner write;
//! DEBUG adds internals. No level ever shows a key, the token, an
//! `Authorization` header or a query string (which may carry `pass=`).
//!
//! Request threads never wait for each other or for a write to finish: a
//! record is formatted on its own thread, outside any lock, and handed to
//! one writer thread through a bounded queue; the writer batches what has
//! queued up and flushes when the queue is empty. Lines are never dropped:
//! a full queue (the output is stuck) makes the logging thread wait, as a
//! blocking write would. `flush` (end of `main`) waits until every queued
//! line is written. Only our own crate and the HTTP layer's
//! connection-limit and accept errors are logged: rustls and ureq debug
//! output could show headers.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::Config;

/// Lines waiting for the writer thread.
const QUEUE: usize = 4096;

enum Entry {
    Line(String),
    /// Answered once everything before it is written.
    Flush(SyncSender<()>),
}

struct Logger {
    level: LevelFilter,
    tx: SyncSender<Entry>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        metadata.level() <= self.level && (target.starts_with("dyndns_server") || target.starts_with("tiny_http"))
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(160);
        crate::time::utc_text(&mut line, SystemTime::now(), true);
        let _ = write!(line, " [{}] {}", level_name(record.level()), record.args());
        line.push('\n');
        let _ = self.tx.send(Entry::Line(line));
    }

    fn flush(&self) {
        let (done_tx, done) = mpsc::sync_channel(1);
        if self.tx.send(Entry::Flush(done_tx)).is_ok() {
            let _ = done.recv();
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Install the logger; `to_stderr` for commands whose stdout is their
/// output (`keys`). A second call in one process (tests) is a no-op.
pub fn init(config: &Config, to_stderr: bool) -> Result<(), String> {
    if LOGGER.get().is_some() {
        return Ok(());
    }
    let mut file: Option<Box<dyn Write + Send>> = None;
    if let Some(path) = &config.log_file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("LOG_FILE: cannot create {}: {e}", dir.display()))?;
        }
        file = Some(Box::new(RotatingFile::new(path.clone(), config.log_max_bytes, config.log_backup_count)));
    }
    let console: Box<dyn Write + Send> =
        if to_stderr { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_all(&rx, console, file))
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let level = if config.debug { LevelFilter::Debug } else { LevelFilter::Info };
    let logger = LOGGER.get_or_init(|| Logger { level, tx });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

/// An error that stops the program before the logger exists (a setting
/// that cannot be used, a log file that cannot be opened): written at once
/// in the logger's own shape (`<time> [ERROR] …`, one line per line of
/// `text`) and to the channel it would use, so that everything that stops a
/// start reads alike and lands in one place.
pub fn early_error(text: &str, to_stderr: bool) {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        crate::time::utc_text(&mut out, SystemTime::now(), true);
        let _ = writeln!(out, " [ERROR] {line}");
    }
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(out.as_bytes())
    } else {
        std::io::stdout().lock().write_all(out.as_bytes())
    };
}

/// Wait until every line logged so far is written (before the process
/// exits).
pub fn flush() {
    if let Some(logger) = LOGGER.get() {
        logger.flush();
    }
}

/// How long the writer gathers lines after a wake-up: one wake-up (and so
/// one futex call for a logging thread) per batch instead of per line.
const BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// The writer thread: sleep until a line arrives, write it and whatever
/// follows within `BATCH`, flush, repeat.
fn write_all(rx: &Receiver<Entry>, console: Box<dyn Write + Send>, mut file: Option<Box<dyn Write + Send>>) {
    let mut console = std::io::BufWriter::with_capacity(16 * 1024, console);
    while let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(entry) = next {
            match entry {
                Entry::Line(line) => {
                    let _ = console.write_all(line.as_bytes());
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(line.as_bytes());
                    }
                }
                Entry::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
            if next.is_none() && waiting.is_empty() {
                std::thread::sleep(BATCH);
                next = rx.try_recv().ok();
            }
        }
        let _ = console.flush();
        if let Some(f) = file.as_mut() {
            let _ = f.flush();
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// `LOG_FILE` with size-based rotation: before a line would take the file
/// past `LOG_MAX_BYTES`, `path.N-1` becomes `path.N` … and `path` becomes
/// `path.1`, keeping `LOG_BACKUP_COUNT` old files (0: the file starts over),
/// and a new file is opened with mode 0640. Errors are not fatal: logging
/// must never stop the server (stdout still has every line).
struct RotatingFile {
    path: std::path::PathBuf,
    max: u64,
    backups: usize,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    fn new(path: std::path::PathBuf, max: u64, backups: usize) -> RotatingFile {
        RotatingFile { path, max, backups, file: None, size: 0 }
    }

    fn backup(&self, n: usize) -> std::path::PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        name.into()
    }

    fn rotate(&mut self) {
        self.file = None;
        if self.backups == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.backups).rev() {
                let _ = std::fs::rename(self.backup(n), self.backup(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.backup(1));
        }
        self.size = 0;
    }

    fn open(&mut self) -> std::io::Result<&mut std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(&self.path)?;
            self.size = file.metadata().map_or(0, |m| m.len());
            self.file = Some(file);
        }
        self.file.as_mut().ok_or_else(|| std::io::Error::other("no log file"))
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.open()?;
        if self.size > 0 && self.size + buf.len() as u64 > self.max {
            self.rotate();
        }
        self.open()?.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_the_backup_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dyndns-logrotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("dyndns.log");
        let mut file = RotatingFile::new(path.clone(), 100, 2);
        for i in 0..10 {
            file.write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes()).expect("write");
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        // 40-byte lines, 100 bytes a file: two lines each, newest in `path`.
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&path).starts_with("line 08"));
        assert!(read(&dir.join("dyndns.log.1")).starts_with("line 06"));
        assert!(read(&dir.join("dyndns.log.2")).starts_with("line 04"));
        assert!(!dir.join("dyndns.log.3").exists(), "only LOG_BACKUP_COUNT old files");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
