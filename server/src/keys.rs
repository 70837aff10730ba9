//! The pre-shared key file: one `fqdn key` pair per line.
//!
//! The file is the only copy of every host's key, so this module never
//! destroys anything in it: comments, blank lines, malformed lines and keys
//! of hosts that are no longer registered are kept byte for byte, and new
//! keys are only ever appended. Keys are 32 bytes from the OS CSPRNG
//! (`getrandom`) in URL-safe base64 without padding (43 characters), and are
//! compared in constant time.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::fqdn;

/// The parsed key file, with its original text kept for rewriting.
#[derive(Debug, Default)]
pub struct KeyFile {
    text: String,
    keys: HashMap<String, String>,
    /// Problems found while parsing, each naming its line number.
    pub warnings: Vec<String>,
}

/// A key file that could not be read or written.
#[derive(Debug)]
pub struct KeyFileError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: io::Error,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PRE_SHARED_KEY_FILE: cannot {} {}: {} (check that the path is right and that this user may read and write it)",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl KeyFile {
    /// Parse key file text. Never fails: what cannot be used is reported in
    /// `warnings` and kept in the text.
    pub fn parse(text: &str) -> KeyFile {
        let mut keys = HashMap::new();
        let mut warnings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, key] = fields[..] else {
                warnings.push(format!(
                    "line {line_no}: expected `fqdn key`, found {} field(s); the line is kept but ignored",
                    fields.len()
                ));
                continue;
            };
            let name = match fqdn::canonical(name) {
                Ok(n) => n,
                Err(err) => {
                    warnings.push(format!(
                        "line {line_no}: {name:?} is not a host name ({err}); the line is kept but ignored"
                    ));
                    continue;
                }
            };
            if keys.contains_key(&name) {
                warnings.push(format!("line {line_no}: a second key for {name}; the first one is used"));
                continue;
            }
            keys.insert(name, key.to_string());
        }
        KeyFile { text: text.to_string(), keys, warnings }
    }

    /// Read the file; a missing file is an empty key file.
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(KeyFile::parse(&String::from_utf8_lossy(&bytes))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(KeyFile::default()),
            Err(source) => Err(KeyFileError { path: path.to_path_buf(), action: "read", source }),
        }
    }

    pub fn get(&self, fqdn: &str) -> Option<&str> {
        self.keys.get(fqdn).map(String::as_str)
    }

    /// Hosts that have a key but are not in `registered`.
    pub fn unregistered<'a>(&'a self, registered: &[String]) -> Vec<&'a str> {
        let mut hosts: Vec<&str> = self.keys.keys().filter(|h| !registered.contains(h)).map(String::as_str).collect();
        hosts.sort_unstable();
        hosts
    }

    /// Give every registered host without a key a new one, appended to the
    /// text. Returns the hosts that got a key.
    pub fn add_missing(&mut self, registered: &[String]) -> io::Result<Vec<String>> {
        let mut added = Vec::new();
        for host in registered {
            if self.keys.contains_key(host) {
                continue;
            }
            let key = new_key()?;
            if !self.text.is_empty() && !self.text.ends_with('\n') {
                self.text.push('\n');
            }
            self.text.push_str(&format!("{host} {key}\n"));
            self.keys.insert(host.clone(), key);
            added.push(host.clone());
        }
        Ok(added)
    }

    /// Write the file atomically (see `atomic`).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyFileError {
                path: dir.to_path_buf(),
                action: "create the directory",
                source,
            })?;
        }
        atomic::write(path, self.text.as_bytes(), true).map_err(|source| KeyFileError {
            path: path.to_path_buf(),
            action: "write",
            source,
        })
    }
}

/// A new key: 32 bytes from the OS CSPRNG, URL-safe base64, no padding.
pub fn new_key() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("the OS random source failed: {e}")))?;
    Ok(base64_url(&bytes))
}

/// URL-safe base64 without padding (RFC 4648 §5).
pub fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    encode_base64(bytes, ALPHABET)
}

/// Standard base64 with padding (RFC 4648 §4), as `Authorization: Basic` uses.
pub fn base64_std(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = encode_base64(bytes, ALPHABET);
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

fn encode_base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let sextets = chunk.len() + 1;
        for i in 0..sextets {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Standard base64 decoding (for `Authorization: Basic`), padding optional.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.trim_end_matches('=').as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Compare two secrets without an early exit on the first differing byte.
/// The length is not hidden (keys have a fixed, public length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_comments_and_reports_bad_lines_by_number() {
        let kf = KeyFile::parse(
            "# keys\n\nHome.Example.com. k1\nbroken\nx.example.com k2 extra\nnot_a_name k3\nhome.example.com k4\n",
        );
        assert_eq!(kf.get("home.example.com"), Some("k1"));
        assert_eq!(kf.get("x.example.com"), None);
        assert_eq!(kf.warnings.len(), 4, "{:?}", kf.warnings);
        assert!(kf.warnings[0].starts_with("line 4:"));
        assert!(kf.warnings[1].starts_with("line 5:"));
        assert!(kf.warnings[2].starts_with("line 6:"));
        assert!(kf.warnings[3].starts_with("line 7:") && kf.warnings[3].contains("second key"));
    }

    #[test]
    fn adding_keys_keeps_every_existing_line() {
        let original = "# keep me\nold.example.com oldkey\ngarbage line here\nstale.example.com stalekey";
        let mut kf = KeyFile::parse(original);
        let registered = vec!["old.example.com".to_string(), "new.example.com".to_string()];
        let added = kf.add_missing(&registered).expect("random");
        assert_eq!(added, vec!["new.example.com"]);
        assert!(kf.text.starts_with(original));
        assert_eq!(kf.get("old.example.com"), Some("oldkey"));
        let new = kf.get("new.example.com").expect("new key");
        assert_eq!(new.len(), 43);
        assert_eq!(kf.unregistered(&registered), vec!["stale.example.com"]);
        // The rewritten text parses to the same keys.
        let again = KeyFile::parse(&kf.text);
        assert_eq!(again.get("new.example.com"), Some(new));
        assert!(kf.add_missing(&registered).expect("random").is_empty());
    }

    #[test]
    fn keys_are_random_url_safe_and_43_characters() {
        let a = new_key().expect("random");
        let b = new_key().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_url(b"\xfb\xff\xfe"), "-__-");
        assert_eq!(base64_url(b"ab"), "YWI");
        assert_eq!(base64_std(b"ab"), "YWI=");
        assert_eq!(base64_std(b"home:k"), "aG9tZTpr");
        assert_eq!(base64_decode("dXNlcjpwYXNz").as_deref(), Some(&b"user:pass"[..]));
        assert_eq!(base64_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("a*b"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }
}
