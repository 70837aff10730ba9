//! Minimal logging to stderr with a UTC timestamp (milliseconds, as the
//! server's). The agent logs little
//! (one line per address change or error), so it does without a logging
//! crate. `DEBUG` is set once at start and only read afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use dyndns_common::time;

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Most characters of one message (server text included) in a line.
const MAX_LINE: usize = 600;

pub fn line(level: &str, message: &str) {
    eprintln!("{} [{level}] {}", timestamp(), escape(message));
}

/// The message as one safe line: control characters (newlines, ANSI
/// escapes — the server's text is part of many messages) become `\xNN`,
/// and it is cut at `MAX_LINE` characters.
fn escape(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LINE));
    for c in message.chars().take(MAX_LINE) {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    if message.chars().nth(MAX_LINE).is_some() {
        out.push('…');
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` from the system clock.
fn timestamp() -> String {
    let mut out = String::with_capacity(20);
    time::utc_text(&mut out, SystemTime::now(), true);
    out
}

macro_rules! info {
    ($($arg:tt)*) => { $crate::log::line("INFO", &format!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::line("WARN", &format!($($arg)*)) };
}
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::line("ERROR", &format!($($arg)*)) };
}
macro_rules! debug {
    ($($arg:tt)*) => { if $crate::log::debug_enabled() { $crate::log::line("DEBUG", &format!($($arg)*)) } };
}
pub(crate) use {debug, error, info, warning};

#[cfg(test)]
mod tests {
    #[test]
    fn server_text_cannot_break_or_color_a_line() {
        assert_eq!(super::escape("bad\n2026 [INFO] forged\x1b[31m"), "bad\\x0a2026 [INFO] forged\\x1b[31m");
        assert_eq!(super::escape("ünïcode ok"), "ünïcode ok");
        assert_eq!(super::escape(&"x".repeat(700)).chars().count(), super::MAX_LINE + 1);
    }

    #[test]
    fn timestamp_has_the_rfc3339_shape() {
        let t = super::timestamp();
        assert_eq!(t.len(), 24, "{t}"); // with milliseconds, as the server's
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T");
    }
}
