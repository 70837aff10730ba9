//! `dyndns-server [keys|--help|--version]`: parse the settings, run, map
//! errors to exit codes (2 = a setting or file the operator must fix).

use std::process::ExitCode;

use dyndns_server::config::Config;

const HELP: &str = "dyndns-server: dynamic DNS for domains hosted at Hetzner

usage:
  dyndns-server            serve (settings from the environment, see README)
  dyndns-server keys       generate missing keys, print `fqdn key` lines, exit
  dyndns-server --version  print the version

DRY_RUN=1 runs without a Hetzner token.";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("-h" | "--help" | "help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("dyndns-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        None | Some("keys") => {}
        Some(other) => {
            eprintln!("dyndns-server: unknown argument {other:?}; see --help");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dyndns-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = dyndns_server::logging::init(&config, arg.is_some()) {
        eprintln!("dyndns-server: {e}");
        return ExitCode::from(2);
    }
    if arg.as_deref() == Some("keys") {
        return print_keys(&config);
    }
    match dyndns_server::start(config) {
        Ok(running) => {
            running.wait();
            ExitCode::SUCCESS
        }
        Err(e) => fatal(&e),
    }
}

fn print_keys(config: &Config) -> ExitCode {
    let keys = match dyndns_server::ensure_keys(config) {
        Ok(k) => k,
        Err(e) => return fatal(&e),
    };
    for host in &config.registered {
        if let Some(key) = keys.get(host) {
            println!("{host} {key}");
        }
    }
    ExitCode::SUCCESS
}

/// Log the reason (one line, through the logger so `LOG_FILE` has it too)
/// and exit with status 2.
fn fatal(e: &dyn std::fmt::Display) -> ExitCode {
    log::error!("{e}");
    ExitCode::from(2)
}
