//! The answer of `POST /update` (200), as the server writes it and the
//! agent reads it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What an update did to the host's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// `{"fqdn": …, "ip": …, "status": …, "type": "A" | "AAAA"}`; a router's
/// answer also lists its LAN hosts (`lan_hosts`), which the agent ignores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAnswer {
    pub fqdn: String,
    pub ip: IpAddr,
    pub status: Outcome,
    #[serde(rename = "type")]
    pub rtype: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_as_the_server_writes_it() {
        let text = r#"{"fqdn":"home.example.com","ip":"192.0.2.1","status":"unchanged","type":"A"}"#;
        let answer: UpdateAnswer = serde_json::from_str(text).expect("answer");
        assert_eq!(answer.status, Outcome::Unchanged);
        assert_eq!(serde_json::to_string(&answer).expect("json"), text);
        for bad in [
            r#"{"fqdn":"h","ip":"x","status":"created","type":"A"}"#,
            r#"{"fqdn":"h","ip":"192.0.2.1","status":"ok","type":"A"}"#,
        ] {
            assert!(serde_json::from_str::<UpdateAnswer>(bad).is_err(), "{bad}");
        }
    }
}
