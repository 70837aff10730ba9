//! Wall-clock time as the state file, the status page and the logs show
//! it, for the server and the agent alike.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A duration for people: `45s`, `12m 3s`, `3h 12m`, `2d 1h`.
pub fn duration_text(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, or `…SS.mmmZ` with `millis` (UTC), appended to
/// `out`; the civil-from-days algorithm, no time zone database.
pub fn utc_text(out: &mut String, now: SystemTime, millis: bool) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Digits pushed directly: every log line starts with this, and padded
    // `write!` arguments cost more than the rest of the line (callgrind).
    if (0..10_000).contains(&year) {
        push_digits(out, year as u64, 4);
    } else {
        let _ = write!(out, "{year:04}");
    }
    for (sep, value) in
        [('-', month as u64), ('-', day as u64), ('T', rem / 3600), (':', rem % 3600 / 60), (':', rem % 60)]
    {
        out.push(sep);
        push_digits(out, value, 2);
    }
    if millis {
        out.push('.');
        push_digits(out, u64::from(since.subsec_millis()), 3);
    }
    out.push('Z');
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u64.pow(i) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_rfc3339() {
        let mut out = String::new();
        utc_text(&mut out, UNIX_EPOCH + std::time::Duration::from_millis(1_795_597_327_045), true);
        assert_eq!(out, "2026-11-25T09:02:07.045Z");
        out.clear();
        utc_text(&mut out, UNIX_EPOCH + std::time::Duration::from_secs(951_782_400), false); // a leap day
        assert_eq!(out, "2000-02-29T00:00:00Z");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(42), "42s");
        assert_eq!(duration_text(754), "12m 34s");
        assert_eq!(duration_text(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(duration_text(2 * 86_400 + 3600), "2d 1h");
    }
}
