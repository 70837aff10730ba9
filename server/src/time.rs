//! Wall-clock time as the state file and the status page show it.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(42), "42s");
        assert_eq!(duration_text(754), "12m 34s");
        assert_eq!(duration_text(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(duration_text(2 * 86_400 + 3600), "2d 1h");
    }
}
