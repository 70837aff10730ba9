//! The state file: per host and record type the last address Hetzner
//! confirmed (and when), plus the host book (last report, lost, last
//! error). It lets a restarted server answer unchanged addresses without
//! extra API calls and lets the host book remember who was online.
//!
//! Written atomically (see `atomic`). A file that cannot be read or parsed
//! is moved aside (`….corrupt-<unix time>`) with a warning and the server
//! starts fresh: state is a cache, never a reason not to start.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::challenges::Held;
use crate::hostbook::HostState;
use crate::time::unix_now;

pub const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateFile {
    pub version: u32,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostRecord>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    #[serde(flatten)]
    pub state: HostState,
    /// `A`/`AAAA` → the last confirmed address.
    #[serde(default)]
    pub records: BTreeMap<String, Confirmed>,
    /// ACME challenge values the host holds (removed when stale).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<Held>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmed {
    pub ip: IpAddr,
    /// Unix seconds when Hetzner confirmed it.
    pub confirmed: u64,
}

/// Read the state file. Missing: empty. Unreadable or corrupt: moved aside,
/// with the warning to log.
pub fn load(path: &Path) -> (StateFile, Option<String>) {
    let bytes = match atomic::read_limited(path, MAX_FILE) {
        Ok(Some(b)) => b,
        Ok(None) => return (StateFile::default(), None),
        Err(e) => return (StateFile::default(), Some(move_aside(path, &e.to_string()))),
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(state) if state.version == VERSION => (state, None),
        Ok(state) => (StateFile::default(), Some(move_aside(path, &format!("unknown version {}", state.version)))),
        Err(e) => (StateFile::default(), Some(move_aside(path, &e.to_string()))),
    }
}

/// The largest state file read (a host's entry is ~300 bytes: room for
/// tens of thousands of hosts); a larger one is moved aside.
pub const MAX_FILE: u64 = 16 << 20;

/// Can `path` be the state file? It must be a regular file when it exists
/// (checked at start: a FIFO would hang the read, and a device must never
/// be moved aside or replaced).
pub fn check(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(format!(
            "STATE_FILE {} is not a regular file; point STATE_FILE at a file path the server may create (e.g. /var/lib/dyndns/dyndns-state.json)",
            path.display()
        )),
        _ => Ok(()),
    }
}

fn move_aside(path: &Path, why: &str) -> String {
    let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), unix_now()));
    match std::fs::rename(path, &aside) {
        Ok(()) => format!(
            "STATE_FILE {} could not be used ({why}); moved it to {} and started fresh",
            path.display(),
            aside.display()
        ),
        Err(e) => {
            format!("STATE_FILE {} could not be used ({why}) nor moved aside ({e}); starting fresh", path.display())
        }
    }
}

pub fn save(path: &Path, state: &StateFile) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    text.push(b'\n');
    atomic::write(path, &text, false)
}

/// Loaded records: (host, record type, confirmation).
pub type Records = Vec<(String, String, Confirmed)>;

/// Loaded challenge values: (host, values).
pub type Challenges = Vec<(String, Vec<Held>)>;

/// Split loaded host records into the host book's part, the records and
/// the challenge values.
pub fn split(state: StateFile) -> (HashMap<String, HostState>, Records, Challenges) {
    let mut hosts = HashMap::new();
    let mut records = Vec::new();
    let mut challenges = Vec::new();
    for (host, rec) in state.hosts {
        for (rtype, c) in rec.records {
            records.push((host.clone(), rtype, c));
        }
        if !rec.challenges.is_empty() {
            challenges.push((host.clone(), rec.challenges));
        }
        hosts.insert(host, rec.state);
    }
    (hosts, records, challenges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_files_are_moved_aside() {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let dir = scratch.path();
        let path = dir.join("state.json");
        assert_eq!(load(&path), (StateFile::default(), None));

        let mut state = StateFile { version: VERSION, hosts: BTreeMap::new() };
        let mut rec = HostRecord::default();
        rec.state.last_seen = Some(5);
        rec.records.insert("A".into(), Confirmed { ip: "192.0.2.1".parse().expect("ip"), confirmed: 4 });
        state.hosts.insert("a.example.com".into(), rec);
        save(&path, &state).expect("save");
        assert_eq!(load(&path), (state, None));

        std::fs::write(&path, "{\"version\": 1, \"hosts\": {\"a\": ").expect("write");
        let (fresh, warning) = load(&path);
        assert_eq!(fresh, StateFile::default());
        assert!(warning.expect("warning").contains("moved it to"));
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir).expect("dir").count(), 1, "the corrupt file is kept aside");
    }
}
