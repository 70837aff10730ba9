//! What `dyndns-server` and `dyndns-agent` share, so the two cannot drift
//! apart: the rules for reading settings (`env`), time as text (`time`),
//! heartbeats to monitoring services (`heartbeat`)
//! and the answer of `POST /update` (`answer`).
#![forbid(unsafe_code)]

pub mod answer;
pub mod env;
pub mod heartbeat;
pub mod time;
