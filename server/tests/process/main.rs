//! The `dyndns-server` binary as a process, plus property tests of the
//! parsers. One test binary (one link, and the slow waits of one file
//! overlap with the tests of the others).

mod cli;
mod common;
mod internet;
mod properties;
