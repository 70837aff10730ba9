//! Log set-up: one line per record on stdout (stderr for commands whose
//! stdout is their output, `keys`), and in a rotating file when `LOG_FILE`
//! is set. Log levels: INFO is one line per request and per Hetzner write;
//! DEBUG adds internals. No level ever shows a key, the token, an
//! `Authorization` header or a query string (which may carry `pass=`).
//!
//! `simplelog` formats each record (`2026-12-05T07:24:29.541Z [INFO] …`)
//! into a queue, never onto a disk: one writer thread drains the queue
//! into stdout and, through `file-rotate`, into `LOG_FILE`. So request
//! threads never wait for a write: simplelog's own lock is held only while
//! a line is formatted and handed over. The writer batches what has queued
//! up and flushes when the queue is empty. Lines are never dropped: a full
//! queue (the output is stuck) makes the logging thread wait, as a blocking
//! write would. `flush` (end of `main`) waits until every queued line is
//! written. Only our own crate and the HTTP layer's connection-limit and
//! accept errors are logged: rustls and ureq debug output could show
//! headers.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::SystemTime;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use log::LevelFilter;
use simplelog::{ConfigBuilder, LevelPadding, WriteLogger};

use crate::config::Config;

/// Lines waiting for the writer thread.
const QUEUE: usize = 4096;

enum Entry {
    Line(Vec<u8>),
    /// Answered once everything before it is written.
    Flush(SyncSender<()>),
}

/// What simplelog writes into: the pieces of one record are gathered into
/// a line, and the line goes to the writer thread whole.
struct Queue {
    tx: SyncSender<Entry>,
    line: Vec<u8>,
}

impl Write for Queue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        if self.line.ends_with(b"\n") {
            let line = std::mem::replace(&mut self.line, Vec::with_capacity(160));
            self.tx.send(Entry::Line(line)).map_err(|_| std::io::Error::other("the log writer ended"))?;
        }
        Ok(buf.len())
    }

    /// Wait until the writer thread has written everything queued.
    fn flush(&mut self) -> std::io::Result<()> {
        let (done_tx, done) = mpsc::sync_channel(1);
        if self.tx.send(Entry::Flush(done_tx)).is_ok() {
            let _ = done.recv();
        }
        Ok(())
    }
}

/// Set once the logger is installed (a second `init` in one process, as in
/// the tests, is a no-op).
static INSTALLED: OnceLock<()> = OnceLock::new();

/// The time stamp of every line: UTC with milliseconds, as the state file
/// and the status page write it.
const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Install the logger; `to_stderr` for commands whose stdout is their
/// output (`keys`). A second call in one process (tests) is a no-op.
pub fn init(config: &Config, to_stderr: bool) -> Result<(), String> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let file = match &config.log_file {
        Some(path) => Some(rotating_file(path, config.log_max_bytes, config.log_backup_count)?),
        None => None,
    };
    let console: Box<dyn Write + Send> =
        if to_stderr { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_all(&rx, console, file))
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let level = if config.debug { LevelFilter::Debug } else { LevelFilter::Info };
    let format = ConfigBuilder::new()
        .set_time_format_custom(TIME_FORMAT)
        .set_level_padding(LevelPadding::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str("dyndns_server")
        .add_filter_allow_str("tiny_http")
        .build();
    if INSTALLED.set(()).is_ok() {
        let logger = WriteLogger::new(level, format, Queue { tx, line: Vec::with_capacity(160) });
        if log::set_boxed_logger(logger).is_ok() {
            log::set_max_level(level);
        }
    }
    Ok(())
}

/// `LOG_FILE` through file-rotate: once the file has passed
/// `LOG_MAX_BYTES` (whole lines: it ends at the first line past the size),
/// `path.N-1` becomes `path.N` … and `path` becomes `path.1`, keeping
/// `LOG_BACKUP_COUNT` old files (0: the file starts over); new files are
/// opened with mode 0640. The directory is created here, so that a
/// directory that cannot be made stops the start with its reason.
fn rotating_file(path: &Path, max: u64, backups: usize) -> Result<FileRotate<AppendCount>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // file-rotate wants a parent directory: `dyndns.log` is `./dyndns.log`.
    let path: PathBuf = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => path.to_path_buf(),
        _ => Path::new(".").join(path),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("LOG_FILE: cannot create {}: {e}", dir.display()))?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.read(true).create(true).append(true).mode(0o640);
    // A first open here, for the reason when it fails (file-rotate would
    // keep quiet and log nothing).
    open.open(&path).map_err(|e| format!("LOG_FILE: cannot open {}: {e}", path.display()))?;
    let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
    Ok(FileRotate::new(
        path,
        AppendCount::new(backups),
        ContentLimit::BytesSurpassed(max),
        Compression::None,
        Some(open),
    ))
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
    if INSTALLED.get().is_some() {
        log::logger().flush();
    }
}

/// How long the writer gathers lines after a wake-up: one wake-up (and so
/// one futex call for a logging thread) per batch instead of per line.
const BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// The writer thread: sleep until a line arrives, write it and whatever
/// follows within `BATCH`, flush, repeat. A log file that fails (file-rotate
/// panics when its directory is gone) is given up with one line on the
/// console; the console keeps every line.
fn write_all(rx: &Receiver<Entry>, console: Box<dyn Write + Send>, mut file: Option<FileRotate<AppendCount>>) {
    let mut console = std::io::BufWriter::with_capacity(16 * 1024, console);
    let to_file = |file: &mut Option<FileRotate<AppendCount>>, line: &[u8], console: &mut dyn Write| {
        let Some(f) = file.as_mut() else { return };
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.write_all(line)));
        if written.is_err() {
            *file = None;
            let mut note = String::new();
            crate::time::utc_text(&mut note, SystemTime::now(), true);
            note.push_str(" [ERROR] LOG_FILE: the log file cannot be written any more; logging to the console only\n");
            let _ = console.write_all(note.as_bytes());
        }
    };
    while let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(entry) = next {
            match entry {
                Entry::Line(line) => {
                    let _ = console.write_all(&line);
                    to_file(&mut file, &line, &mut console);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_the_backup_count() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().expect("scratch dir");
        let dir = scratch.path();
        let path = dir.join("logs/dyndns.log");
        let mut file = rotating_file(&path, 100, 2).expect("file");
        for i in 0..10 {
            file.write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes()).expect("write");
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        // 40-byte lines; a file is rotated once it has passed 100 bytes:
        // three lines each, newest in `path`, never a line cut.
        assert_eq!(read(&path), format!("line 09 {}\n", "x".repeat(30)));
        assert!(read(&dir.join("logs/dyndns.log.1")).starts_with("line 06"));
        assert_eq!(read(&dir.join("logs/dyndns.log.1")).lines().count(), 3);
        assert!(read(&dir.join("logs/dyndns.log.2")).starts_with("line 03"));
        assert!(!dir.join("logs/dyndns.log.3").exists(), "only LOG_BACKUP_COUNT old files");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);

        // No backups: the file starts over.
        let single = dir.join("single.log");
        let mut file = rotating_file(&single, 100, 0).expect("file");
        for i in 0..10 {
            file.write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes()).expect("write");
        }
        assert!(read(&single).starts_with("line 09"));
        assert!(!dir.join("single.log.1").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_says_why() {
        let e = rotating_file(Path::new("/proc/dyndns-test/x.log"), 100, 1).err().expect("an error");
        assert!(e.starts_with("LOG_FILE: cannot create /proc/dyndns-test"), "{e}");
    }
}
