//! `dyndns-server`: lets registered hosts set their own A/AAAA records at
//! Hetzner through a JSON endpoint and the dyndns2 protocol.
//!
//! The modules, callers first; every arrow points down, none back:
//!
//! ```text
//! main ─ logging (one writer thread) ─ config
//!  └ server (life: start, events, shutdown) ─ config ─ env
//!          └ http (tiny_http glue) ─ handlers ─ pages · acme
//!                                      └ message (Req, Reply)
//!                                      └ app (App: reports, state file)
//!                                          └ auth (keys, admin, failed attempts) ─ limiter
//!                                          └ inspect · challenges · updater · notify · hostbook · state
//!                                              └ hetzner
//!                                                  └ leaves: net · lan · time · keys · atomic · dyndns2 · fqdn · env
//! ```
//!
//! `message` holds `Req` and `Reply` apart from `http` so that the handlers
//! do not import the module that calls them. `env` (settings readers) and
//! `time` come from the `dyndns-common` crate, which the agent uses too, so
//! both programs share one set of settings rules and clock.
//! `Server::start` returns a handle, so tests run the real server
//! in-process on port 0.
#![forbid(unsafe_code)]

pub mod acme;
pub mod acme_client;
pub mod aliases;
pub mod app;
pub mod atomic;
pub mod auth;
pub mod certificates;
pub mod challenges;
pub mod config;
pub mod der;
pub mod dns_query;
pub mod dyndns2;
pub mod fqdn;
pub mod handlers;
pub mod heartbeat;
pub mod hetzner;
pub mod hostbook;
mod http;
pub mod inspect;
pub mod keys;
pub mod lan;
pub mod limiter;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod net;
pub mod notifiers;
pub mod notify;
pub mod pages;
pub mod projects;
pub mod reconcile;
pub mod renewal;
pub mod server;
pub mod setup;
pub mod state;
pub mod updater;
pub mod zone_check;
pub mod zones;

pub use dyndns_common::{env, time};
pub use server::{ensure_keys, Event, Server, StartError};
