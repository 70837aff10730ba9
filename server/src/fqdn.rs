//! Host names: the one canonical form every part of the server compares.
//!
//! A name arrives from the environment, a key file, a JSON body or a dyndns2
//! query, in any case, perhaps with a trailing dot, perhaps in Unicode. It is
//! compared, cached and sent to Hetzner only in the form `canonical` returns:
//! lower case, no trailing dot, non-ASCII labels in Punycode (`xn--…`), the way
//! Hetzner spells zone and RRSet names. Unicode case folding is done with
//! `to_lowercase`; full IDNA/UTS-46 mapping (NFC, compatibility characters) is
//! not, because it needs large tables and registered names are few and chosen
//! by the operator.

use std::fmt;

/// Why a string is not a host name we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Empty, or only a dot.
    Empty,
    /// Longer than 253 characters in its ASCII form.
    TooLong,
    /// Fewer than two labels: `localhost`, `com`.
    NotQualified,
    /// A label is empty, longer than 63 bytes, starts or ends with `-`, or
    /// holds a character other than letters, digits, `-` and `_`.
    BadLabel(String),
    /// The last label has no letter (`1.2.3.4`, `host.123`): an address or a
    /// typo, never a host name (every top-level domain has letters).
    NumericTld,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "the name is empty"),
            NameError::TooLong => write!(f, "the name is longer than 253 characters"),
            NameError::NotQualified => {
                write!(f, "the name is not fully qualified (it needs a domain, like host.example.com)")
            }
            NameError::NumericTld => {
                write!(f, "the last label has no letter; an IP address or a number is not a host name")
            }
            NameError::BadLabel(label) => write!(
                f,
                "the label {label:?} is not valid (1 to 63 letters, digits, '-' or '_', not starting or ending with '-')"
            ),
        }
    }
}

/// The canonical ASCII form of a fully qualified host name.
pub fn canonical(input: &str) -> Result<String, NameError> {
    let trimmed = input.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    // Fast path for what clients nearly always send: already canonical.
    if check(trimmed).is_ok() {
        return Ok(trimmed.to_string());
    }
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let mut out = String::with_capacity(trimmed.len());
    for (i, label) in trimmed.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let lower = label.to_lowercase();
        if lower.is_ascii() {
            out.push_str(&lower);
        } else {
            out.push_str("xn--");
            out.push_str(&punycode_encode(&lower));
        }
    }
    check(&out)?;
    Ok(out)
}

/// The rules a name in canonical form (lower-case ASCII) must meet: at most
/// 253 characters, valid labels, at least two, a letter in the last. Also
/// the fast path of `canonical`: a name that passes as sent is returned as
/// is. No allocation unless it fails.
fn check(name: &str) -> Result<(), NameError> {
    if name.len() > 253 {
        return Err(NameError::TooLong);
    }
    if let Some(bad) = name.split('.').find(|label| !valid_label(label)) {
        return Err(NameError::BadLabel(bad.to_string()));
    }
    if !name.contains('.') {
        return Err(NameError::NotQualified);
    }
    if !name.rsplit('.').next().is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_lowercase())) {
        return Err(NameError::NumericTld);
    }
    Ok(())
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The first label: the short user name dyndns2 clients may send.
pub fn first_label(fqdn: &str) -> &str {
    fqdn.split('.').next().unwrap_or(fqdn)
}

/// Is `fqdn` inside `zone` on a label boundary (`a.example.com` is in
/// `example.com`, `badexample.com` is not)?
pub fn in_zone(fqdn: &str, zone: &str) -> bool {
    fqdn == zone
        || (fqdn.len() > zone.len() && fqdn.ends_with(zone) && fqdn.as_bytes()[fqdn.len() - zone.len() - 1] == b'.')
}

/// The RRSet name of `fqdn` in `zone`: the part before the zone, or `@` for
/// the apex. The caller has checked `in_zone`.
pub fn rr_name(fqdn: &str, zone: &str) -> String {
    if fqdn == zone {
        "@".to_string()
    } else {
        fqdn[..fqdn.len() - zone.len() - 1].to_string()
    }
}

/// RFC 3492 Punycode encoding of one lower-case label (without the `xn--`).
fn punycode_encode(label: &str) -> String {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    fn digit(d: u32) -> char {
        // 0..25 → a..z, 26..35 → 0..9
        let b = if d < 26 { b'a' + d as u8 } else { b'0' + (d - 26) as u8 };
        b as char
    }
    fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
        delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    }

    let chars: Vec<u32> = label.chars().map(u32::from).collect();
    let mut out: String = label.chars().filter(char::is_ascii).collect();
    let basic = out.len() as u32;
    let mut handled = basic;
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (128u32, 0u32, 72u32);
    while (handled as usize) < chars.len() {
        let m = chars.iter().copied().filter(|&c| c >= n).min().unwrap_or(n);
        delta = delta.saturating_add((m - n).saturating_mul(handled + 1));
        n = m;
        for &c in &chars {
            if c < n {
                delta = delta.saturating_add(1);
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta += 1;
        n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_lowercases_and_strips_the_root_dot() {
        assert_eq!(canonical("Home.Example.COM.").as_deref(), Ok("home.example.com"));
        assert_eq!(canonical(" home.example.com ").as_deref(), Ok("home.example.com"));
    }

    #[test]
    fn canonical_encodes_unicode_labels_as_punycode() {
        assert_eq!(canonical("München.de").as_deref(), Ok("xn--mnchen-3ya.de"));
        assert_eq!(canonical("home.bücher.example").as_deref(), Ok("home.xn--bcher-kva.example"));
        // RFC 3492 sample (Arabic), lower-cased input
        assert_eq!(canonical("ليهمابتكلموشعربي؟.com").as_deref(), Ok("xn--egbpdaj6bu4bxfgehfvwxn.com"));
        assert_eq!(canonical("例え.jp").as_deref(), Ok("xn--r8jz45g.jp"));
    }

    #[test]
    fn canonical_rejects_what_is_not_a_host_name() {
        assert_eq!(canonical(""), Err(NameError::Empty));
        assert_eq!(canonical("."), Err(NameError::Empty));
        assert_eq!(canonical("localhost"), Err(NameError::NotQualified));
        assert_eq!(canonical("1.2.3.4"), Err(NameError::NumericTld));
        assert_eq!(canonical("host.123"), Err(NameError::NumericTld));
        assert_eq!(canonical("1.example.com").as_deref(), Ok("1.example.com"));
        assert!(matches!(canonical("a..example.com"), Err(NameError::BadLabel(_))));
        assert!(matches!(canonical("-a.example.com"), Err(NameError::BadLabel(_))));
        assert!(matches!(canonical("a b.example.com"), Err(NameError::BadLabel(_))));
        assert!(matches!(canonical("a/b.example.com"), Err(NameError::BadLabel(_))));
        assert!(matches!(canonical(&format!("{}.com", "a".repeat(64))), Err(NameError::BadLabel(_))));
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert_eq!(canonical(&long), Err(NameError::TooLong));
    }

    #[test]
    fn zone_matching_respects_label_boundaries() {
        assert!(in_zone("home.example.com", "example.com"));
        assert!(in_zone("example.com", "example.com"));
        assert!(!in_zone("badexample.com", "example.com"));
        assert!(!in_zone("example.com", "home.example.com"));
        assert_eq!(rr_name("a.b.example.co.uk", "example.co.uk"), "a.b");
        assert_eq!(rr_name("example.co.uk", "example.co.uk"), "@");
        assert_eq!(first_label("home.example.com"), "home");
    }
}
