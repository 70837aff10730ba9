//! `dyndns-server`: lets registered hosts set their own A/AAAA records at
//! Hetzner through a JSON endpoint and the dyndns2 protocol.
//!
//! The modules, callers first; every arrow points down, none back:
//!
//! ```text
//! main ─ cli (Command, subcommand bodies) ─ logging (one writer thread)
//!  └ server (life: start, events, shutdown)
//!     ├ zone_check (the start's zone checks) · reconcile (loop, drift notes)
//!     │  · renewal (HTTPS certificate) ─ acme_client ─ der · heartbeat
//!     └ http (tiny_http glue)
//!        └ handlers (route; update: POST /update; nic_update: dyndns2)
//!          · acme (/present, /cleanup) · pages (/status: html; /metrics)
//!           └ message (Req, Reply)
//!           └ app (App: reports, notes, state file; prefix: LAN fan-out)
//!              ├ auth (keys, admin, failed attempts) ─ limiter · keys
//!              ├ inspect · challenges · notify ─ notifiers · hostbook · state
//!              └ updater (gate · write · drift · error) ─ zones
//!                 └ hetzner (call · budget · wire · error)
//! config (tls · hosts · hetzner · notifications), read by all above
//!  └ leaves: env · time (dyndns-common) · net · lan · aliases · projects
//!    · notifiers · fqdn · dyndns2 · atomic · metrics · certificates
//!    · dns_query · setup
//! ```
//!
//! A directory beside a file (`updater/`, `hetzner/`, `config/`,
//! `handlers/`, `pages/`) holds that module's parts; they see its private
//! fields, and nothing outside does.
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
pub mod cli;
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
pub use keys::ensure as ensure_keys;
pub use server::{Event, Server, StartError};
