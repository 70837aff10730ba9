//! The documents Hetzner answers with, as far as the client reads them.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::Zone;

#[derive(Deserialize)]
pub(super) struct ZonesPage {
    pub(super) zones: Vec<ZoneDoc>,
    #[serde(default)]
    pub(super) meta: Option<Meta>,
}

#[derive(Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) pagination: Option<Pagination>,
}

#[derive(Deserialize)]
pub(super) struct Pagination {
    #[serde(default)]
    pub(super) next_page: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct ZoneDoc {
    pub(super) id: u64,
    pub(super) name: String,
}

impl ZoneDoc {
    pub(super) fn into_zone(self, project: usize) -> Zone {
        Zone { id: self.id, name: self.name.trim_end_matches('.').to_ascii_lowercase(), project }
    }
}

#[derive(Deserialize)]
pub(super) struct OneZone {
    pub(super) zone: ZoneDoc,
}

#[derive(Deserialize)]
pub(super) struct OneRRSet {
    pub(super) rrset: RRSetDoc,
}

#[derive(Deserialize)]
pub(super) struct RRSetDoc {
    pub(super) records: Vec<RecordDoc>,
    #[serde(default)]
    pub(super) ttl: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct RecordDoc {
    pub(super) value: String,
    #[serde(default)]
    pub(super) comment: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RRSetsPage {
    pub(super) rrsets: Vec<ListedDoc>,
    #[serde(default)]
    pub(super) meta: Option<Meta>,
}

#[derive(Deserialize)]
pub(super) struct ListedDoc {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) rtype: String,
    #[serde(default)]
    pub(super) records: Vec<RecordDoc>,
    #[serde(default)]
    pub(super) ttl: Option<u32>,
}

/// The answer to a write: the action to wait for (some answers carry none).
#[derive(Deserialize)]
pub(super) struct WriteAnswer {
    #[serde(default)]
    pub(super) action: Option<Action>,
}

#[derive(Deserialize)]
pub(super) struct OneAction {
    pub(super) action: Action,
}

#[derive(Deserialize)]
pub(super) struct Action {
    pub(super) id: u64,
    pub(super) status: String,
    #[serde(default)]
    pub(super) error: Option<ErrorDoc>,
}

/// The body of a non-2xx answer: Hetzner's error document, or any other
/// JSON (then only the status code tells what happened).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ErrorAnswer {
    Hetzner { error: ErrorDoc },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
pub(super) struct ErrorDoc {
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}
