//! Why a call to Hetzner failed, and how that reads for the operator.

use std::fmt;

/// Why a call to Hetzner failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Hetzner answered with its error document (`{"error": {...}}`).
    Api { status: u16, code: String, message: String, correlation_id: Option<String> },
    /// A 3xx answer: the URL is wrong (the old DNS API redirects to the console).
    Redirect { status: u16, location: String },
    /// An answer that is not the JSON Hetzner sends.
    Malformed { status: u16, detail: String },
    /// No answer: connection refused or reset, DNS failure, timeout.
    Transport(String),
    /// The write was accepted but its action ended in `error`.
    ActionFailed { code: String, message: String },
    /// The write was accepted but its action was still running at the deadline.
    ActionUnconfirmed { id: u64 },
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Api { status: 404, .. })
    }

    pub(super) fn code(&self) -> &str {
        match self {
            ApiError::Api { code, .. } => code,
            _ => "",
        }
    }

    /// Worth another try after a pause (what Hetzner's own client retries).
    pub(super) fn is_transient(&self) -> bool {
        match self {
            ApiError::Api { status, code, .. } => {
                matches!(status, 429 | 423 | 502 | 504) || (*status == 409 && code == "conflict")
            }
            // A bare 502/504 from a proxy in front of the API.
            ApiError::Malformed { status, .. } => matches!(status, 502 | 504),
            _ => false,
        }
    }

    /// May the write have taken effect anyway? ("could not confirm" vs "failed")
    pub fn maybe_applied(&self) -> bool {
        matches!(self, ApiError::Transport(_) | ApiError::ActionUnconfirmed { .. })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Api { status, code, message, correlation_id } => {
                write!(f, "hetzner answered {status} {code}: {message}")?;
                if let Some(id) = correlation_id {
                    write!(f, " (correlation id {id})")?;
                }
                match code.as_str() {
                    "unauthorized" => write!(f, "; check HETZNER_TOKEN"),
                    "token_readonly" => write!(f, "; the token is read-only, create one with Read & Write access"),
                    "incorrect_zone_mode" => write!(f, "; the zone is a secondary zone and cannot be changed through the API"),
                    _ => Ok(()),
                }
            }
            ApiError::Redirect { status, location } => write!(
                f,
                "hetzner API answered {status} redirect to {location:?}; HETZNER_API_URL must be the Cloud API (https://api.hetzner.cloud/v1)"
            ),
            ApiError::Malformed { status, detail } => write!(
                f,
                "hetzner API answered {status} with {detail}; check HETZNER_API_URL"
            ),
            ApiError::Transport(detail) => write!(f, "no answer from the hetzner API: {detail}"),
            ApiError::ActionFailed { code, message } => write!(f, "hetzner could not apply the change: {code}: {message}"),
            ApiError::ActionUnconfirmed { id } => {
                write!(f, "hetzner accepted the change but action {id} had not finished in time")
            }
        }
    }
}
