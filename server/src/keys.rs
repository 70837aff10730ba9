//! The pre-shared key file: one `fqdn key` pair per line.
//!
//! The file is the only copy of every host's key, so this module never
//! destroys anything in it: comments, blank lines, malformed lines and keys
//! of hosts that are no longer registered are kept byte for byte, and new
//! keys are only ever appended. Keys are 32 bytes from the OS CSPRNG
//! (`getrandom`) in URL-safe base64 without padding (43 characters); `app`
//! compares them in constant time.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::atomic;
use crate::config::Config;
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

/// The largest key file read (a line is ~100 bytes: room for 80 000 hosts).
pub const MAX_FILE: u64 = 8 << 20;

/// What one line of the key file holds; `parse` and `rotate` read lines
/// by the same rules.
enum Line<'a> {
    /// Empty, or a `#` comment.
    Blank,
    /// Not two fields: how many there are.
    Fields(usize),
    BadName(&'a str, fqdn::NameError),
    /// A canonical host name and its key.
    Key(String, &'a str),
}

impl<'a> Line<'a> {
    fn of(raw: &'a str) -> Line<'a> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Line::Blank;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, key] = fields[..] else { return Line::Fields(fields.len()) };
        match fqdn::canonical(name) {
            Ok(host) => Line::Key(host, key),
            Err(err) => Line::BadName(name, err),
        }
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
            match Line::of(raw) {
                Line::Blank => {}
                Line::Fields(n) => warnings.push(format!(
                    "line {line_no}: expected `fqdn key`, found {n} field(s); the line is kept but ignored"
                )),
                Line::BadName(name, err) => warnings
                    .push(format!("line {line_no}: {name:?} is not a host name ({err}); the line is kept but ignored")),
                Line::Key(name, _) if keys.contains_key(&name) => {
                    warnings.push(format!("line {line_no}: a second key for {name}; the first one is used"));
                }
                Line::Key(name, key) => {
                    keys.insert(name, key.to_string());
                }
            }
        }
        KeyFile { text: text.to_string(), keys, warnings }
    }

    /// Read the file; a missing file is an empty key file.
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        match crate::atomic::read_limited(path, MAX_FILE) {
            Ok(Some(bytes)) => Ok(KeyFile::parse(&String::from_utf8_lossy(&bytes))),
            Ok(None) => Ok(KeyFile::default()),
            Err(source) => Err(KeyFileError { path: path.to_path_buf(), action: "read", source }),
        }
    }

    /// The text `save` writes.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn get(&self, fqdn: &str) -> Option<&str> {
        self.keys.get(fqdn).map(String::as_str)
    }

    /// What differs in `newer`, by host name (never a key), e.g.
    /// `revoked a.example.com; rotated b.example.com`.
    pub fn changes_to(&self, newer: &KeyFile) -> String {
        let names = |pick: &dyn Fn(&str) -> bool, keys: &HashMap<String, String>| {
            let mut v: Vec<&str> = keys.keys().map(String::as_str).filter(|h| pick(h)).collect();
            v.sort_unstable();
            v.join(", ")
        };
        let revoked = names(&|h| newer.get(h).is_none(), &self.keys);
        let added = names(&|h| self.get(h).is_none(), &newer.keys);
        let rotated = names(&|h| newer.get(h).is_some_and(|new| self.get(h) != Some(new)), &self.keys);
        let parts: Vec<String> = [("revoked", revoked), ("added", added), ("rotated", rotated)]
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(what, list)| format!("{what} {list}"))
            .collect();
        if parts.is_empty() {
            "no key changed".into()
        } else {
            parts.join("; ")
        }
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
            self.append(host, &key);
            self.keys.insert(host.clone(), key);
            added.push(host.clone());
        }
        Ok(added)
    }

    /// Append a `host key` line, after a line break if the text lacks one.
    fn append(&mut self, host: &str, key: &str) {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.text.push_str(&format!("{host} {key}\n"));
    }

    /// Give `host` a new key: its line is replaced (every other byte of the
    /// file stays), or appended when it has none. Returns the new key.
    pub fn rotate(&mut self, host: &str) -> io::Result<String> {
        let key = new_key()?;
        let mut replaced = false;
        let mut text = String::with_capacity(self.text.len() + 64);
        for line in self.text.split_inclusive('\n') {
            let is_host = !replaced && matches!(Line::of(line), Line::Key(name, _) if name == host);
            if is_host {
                let ending = if line.ends_with("\r\n") {
                    "\r\n"
                } else if line.ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                text.push_str(&format!("{host} {key}{ending}"));
                replaced = true;
            } else {
                text.push_str(line);
            }
        }
        self.text = text;
        if !replaced {
            self.append(host, &key);
        }
        self.keys.insert(host.to_string(), key.clone());
        Ok(key)
    }

    /// Write the file atomically (see `atomic`).
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        self.save_as(path, true)
    }

    /// Write the file atomically; `append_only` when the new text starts
    /// with the old (see `atomic::write`), false after a rotation.
    pub fn save_as(&self, path: &Path, append_only: bool) -> Result<(), KeyFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyFileError {
                path: dir.to_path_buf(),
                action: "create the directory",
                source,
            })?;
        }
        atomic::write(path, self.text.as_bytes(), append_only).map_err(|source| KeyFileError {
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
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Load the key file, give every registered host without a key a new one
/// and save the file if anything was added. Reports what it found.
pub fn ensure(config: &Config) -> Result<KeyFile, KeyFileError> {
    let mut file = KeyFile::load(&config.key_file)?;
    for w in &file.warnings {
        log::warn!("{}: {w}", config.key_file.display());
    }
    let added = file.add_missing(&config.registered).map_err(|source| KeyFileError {
        path: config.key_file.clone(),
        action: "generate keys for",
        source,
    })?;
    if !added.is_empty() {
        file.save(&config.key_file)?;
        log::info!(
            "generated keys for {} in {}; print them with `dyndns-server keys`",
            added.join(", "),
            config.key_file.display()
        );
    }
    let stale = file.unregistered(&config.registered);
    if !stale.is_empty() {
        log::warn!(
            "{} holds keys of hosts that are not in REGISTERED_FQDNS: {}; they are kept but cannot update (delete the lines to revoke them)",
            config.key_file.display(),
            stale.join(", ")
        );
    }
    Ok(file)
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
    fn rotation_replaces_one_line_and_keeps_the_rest() {
        let mut kf = KeyFile::parse("# mine\r\nA.example.com old1\r\nb.example.com old2\nbroken line here\n");
        let new = kf.rotate("a.example.com").expect("random");
        assert_eq!(kf.text(), format!("# mine\r\na.example.com {new}\r\nb.example.com old2\nbroken line here\n"));
        assert_eq!(KeyFile::parse(kf.text()).get("a.example.com"), Some(new.as_str()));
        let c = kf.rotate("c.example.com").expect("random");
        assert!(kf.text().ends_with(&format!("broken line here\nc.example.com {c}\n")));
    }

    #[test]
    fn changes_name_hosts_never_keys() {
        let old = KeyFile::parse("a.example.com k1\nb.example.com k2\nc.example.com k3\n");
        let new = KeyFile::parse("b.example.com k2\nc.example.com k9\nd.example.com k4\n");
        assert_eq!(old.changes_to(&new), "revoked a.example.com; added d.example.com; rotated c.example.com");
        assert_eq!(new.changes_to(&new), "no key changed");
    }

    #[test]
    fn keys_are_random_url_safe_and_43_characters() {
        let a = new_key().expect("random");
        let b = new_key().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
