//! Why an update did not happen, as the endpoints answer it.

use std::fmt;
use std::time::Duration;

use crate::hetzner::ApiError;

/// Why an update did not happen (or could not be confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// No zone of the token's project contains the host.
    NoZone(String),
    /// The Hetzner API failed.
    Api(ApiError),
    /// Another update of the host held its gate until the deadline.
    Busy,
    /// The host used up its writes (`HOST_WRITE_BURST`,
    /// `HOST_WRITES_PER_HOUR`); the next one is possible after this time.
    TooManyWrites(Duration),
    /// A retry of a pending change found a newer report in its place.
    Superseded,
}

impl UpdateError {
    /// A short stable name of the failure, to tell repeated failures apart.
    pub fn kind(&self) -> String {
        match self {
            UpdateError::NoZone(_) => "no_zone".into(),
            UpdateError::Api(ApiError::Api { code, .. }) => code.clone(),
            UpdateError::Api(ApiError::Redirect { .. }) => "redirect".into(),
            UpdateError::Api(ApiError::Malformed { .. }) => "malformed".into(),
            UpdateError::Api(ApiError::Transport(_)) => "unreachable".into(),
            UpdateError::Api(ApiError::ActionFailed { code, .. }) => format!("action_{code}"),
            UpdateError::Api(ApiError::ActionUnconfirmed { .. }) => "unconfirmed".into(),
            UpdateError::Busy => "busy".into(),
            UpdateError::TooManyWrites(_) => "too_many_writes".into(),
            UpdateError::Superseded => "superseded".into(),
        }
    }

    /// A problem retrying will not fix without the operator (dyndns2 `dnserr`),
    /// as opposed to a passing one (`911`).
    pub fn is_permanent(&self) -> bool {
        match self {
            UpdateError::NoZone(_) => true,
            UpdateError::Api(ApiError::Api { status, .. }) => {
                (400..500).contains(status) && *status != 429 && *status != 423
            }
            UpdateError::Api(ApiError::Redirect { .. } | ApiError::ActionFailed { .. }) => true,
            UpdateError::Api(_) | UpdateError::Busy | UpdateError::TooManyWrites(_) | UpdateError::Superseded => false,
        }
    }
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::NoZone(host) => write!(
                f,
                "no zone of this Hetzner project contains {host}; create the zone in the Hetzner Console or use a token of the project that holds it"
            ),
            UpdateError::Api(e) if e.maybe_applied() => write!(f, "could not confirm the change: {e}"),
            UpdateError::Api(e) => write!(f, "failed to change the record: {e}"),
            UpdateError::Busy => f.write_str("another update of this host is still running; try again"),
            UpdateError::TooManyWrites(wait) => write!(
                f,
                "too many address changes of this host (HOST_WRITE_BURST, HOST_WRITES_PER_HOUR); the next is possible in {} s",
                wait.as_secs().max(1)
            ),
            UpdateError::Superseded => f.write_str("a newer report replaced this change"),
        }
    }
}

impl From<ApiError> for UpdateError {
    fn from(e: ApiError) -> Self {
        UpdateError::Api(e)
    }
}
