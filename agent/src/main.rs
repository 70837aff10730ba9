//! `dyndns-agent [BACKEND_URL FQDN [IP]]`: read the settings, install the
//! SIGTERM/SIGINT handler (the agent may be PID 1 in a scratch container,
//! where the default action is to ignore them), run, exit with its code.

use std::process::ExitCode;

use dyndns_agent::config::Config;

const HELP: &str = "dyndns-agent: reports this host's addresses to a dyndns-server

usage: dyndns-agent [BACKEND_URL FQDN [IP]]

environment:
  BACKEND_URL          the server, e.g. https://dyndns.example.com
  FQDN                 the host name to update
  PRE_SHARED_KEY       its key (or PRE_SHARED_KEY_FILE)
  IP                   an explicit address (default: the one the server sees)
  INTERVAL             seconds between reports (default 60; 0 = once)
  IP_VERSION           4, 6 or both (default both)
  IPV6_SOURCE          kernel: this host's stable global IPv6 address (default on Linux);
                       connection: the address the server sees
  IPV6_INTERFACE       take the IPv6 address from this interface (e.g. eth0)
  CA_BUNDLE            PEM file with the CA(s) to trust instead of the built-in roots
  VERIFY_SSL           0 disables certificate verification (do not)
  DEBUG_LOGGING        1 for a line per cycle

exit status (INTERVAL=0): 0 accepted, 1 rejected or unreachable, 2 bad settings";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("dyndns-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::from_env(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dyndns-agent: {e}");
            return ExitCode::from(2);
        }
    };
    // `run` stops when a message arrives (or every sender is gone), so
    // main keeps one sender for as long as `run` runs.
    let (tx, rx) = std::sync::mpsc::channel();
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]) {
        Ok(mut signals) => {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    let _ = tx.send(());
                }
            });
        }
        Err(e) => eprintln!("dyndns-agent: cannot install the signal handler: {e}"),
    }
    let exit = dyndns_agent::run(&config, &rx);
    drop(tx);
    ExitCode::from(exit as u8)
}
