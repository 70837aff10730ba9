//! The end-to-end tests: the real server in-process against the fake
//! Hetzner and ntfy services, and the real agent against the server. One
//! test binary (one link, and the slow waits of one file overlap with the
//! tests of the others).

mod acme;
mod agent;
mod aliases;
mod hostile;
mod notifications;
mod operations;
mod prefix;
mod reconcile;
mod server;
mod settings;
mod status;
mod strict_http;
mod tls;

/// The server's own allocator, so these tests exercise it under load too.
#[global_allocator]
static ALLOCATOR: dyndns_alloc::Sharded = dyndns_alloc::Sharded::new();
