//! `dyndns-server [keys [rotate HOST|check]|setup HOST|healthcheck|--help|--version]`:
//! read the command line and the settings, start logging, run (`cli`), and
//! map the outcome to an exit code (2 = a setting or file the operator
//! must fix).

use std::process::ExitCode;

use dyndns_server::cli::{self, Command};
use dyndns_server::config::Config;
use dyndns_server::logging;

/// See `dyndns_alloc`: musl's malloc has one lock for all threads. The
/// features pick another for the comparison in `tests/bench/allocators.py`.
#[cfg(not(any(feature = "alloc-system", feature = "alloc-mimalloc")))]
#[global_allocator]
static ALLOCATOR: dyndns_alloc::Sharded = dyndns_alloc::Sharded::new();
#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let code = run();
    logging::flush();
    code
}

fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match Command::parse(&args) {
        Ok(Command::Help) => {
            println!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("dyndns-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(usage) => {
            eprintln!("dyndns-server: {usage}");
            return ExitCode::from(2);
        }
    };
    // Everything that stops a start is one `[ERROR]` line on the channel the
    // log uses (stdout when serving; stderr for commands whose stdout is
    // their output), in the log's shape, whether the logger exists yet or not.
    let to_stderr = command.prints();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            logging::early_error(&e.to_string(), to_stderr);
            return ExitCode::from(2);
        }
    };
    // The health check prints nothing but its failure, and logs nothing.
    if command == Command::Healthcheck {
        return cli::healthcheck(&config);
    }
    if let Err(e) = logging::init(&config, to_stderr) {
        logging::early_error(&e, to_stderr);
        return ExitCode::from(2);
    }
    cli::run(command, config)
}
