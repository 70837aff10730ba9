//! The command line: parsed once into a `Command`, and each subcommand's
//! body (`main` only reads the settings, starts logging and calls `run`).
//! Every failure is logged as one line and answered with exit status 2 (a
//! setting or file the operator must fix) or 1 (the server failed).

use std::process::ExitCode;

use crate::config::Config;

pub const HELP: &str = "dyndns-server: dynamic DNS for domains hosted at Hetzner

usage:
  dyndns-server              serve (settings from the environment, see README)
  dyndns-server keys         generate missing keys, print `fqdn key` lines, exit
  dyndns-server keys rotate HOST
                             give HOST a new key, print it, exit (then send
                             SIGHUP to a running server: the old key stops working)
  dyndns-server keys check   exit 0 when the key file can be read as a reload
                             reads it (the systemd unit runs it before SIGHUP)
  dyndns-server setup HOST   print ready-to-paste settings for HOST's router or
                             client (Fritz!Box, OpenWrt, UniFi, OPNsense, Synology,
                             ddclient, inadyn, curl, the agent), key included;
                             the server's address comes from PUBLIC_URL
  dyndns-server healthcheck  exit 0 when GET /healthz on LISTEN_PORT answers 200
  dyndns-server --version    print the version

signals: SIGTERM/SIGINT stop cleanly; SIGHUP re-reads the key file.
DRY_RUN=1 runs without a Hetzner token.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Help,
    Version,
    /// `keys`: generate missing keys, print them.
    Keys,
    /// `keys rotate HOST`.
    RotateKey(String),
    /// `keys check`: can a reload read the key file?
    CheckKeys,
    /// `setup HOST`.
    Setup(String),
    Healthcheck,
}

impl Command {
    /// The arguments after the program's name; `Err` is the usage line.
    pub fn parse(args: &[String]) -> Result<Command, String> {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            [] => Ok(Command::Serve),
            ["-h" | "--help" | "help", ..] => Ok(Command::Help),
            ["-V" | "--version", ..] => Ok(Command::Version),
            ["keys"] => Ok(Command::Keys),
            ["keys", "rotate", host] => Ok(Command::RotateKey(host.to_string())),
            ["keys", "check"] => Ok(Command::CheckKeys),
            ["keys", ..] => Err("usage: dyndns-server keys [rotate HOST | check]".into()),
            ["setup", host] => Ok(Command::Setup(host.to_string())),
            ["setup", ..] => Err("usage: dyndns-server setup HOST".into()),
            ["healthcheck"] => Ok(Command::Healthcheck),
            _ => Err(format!("unknown arguments {:?}; see --help", args.join(" "))),
        }
    }

    /// Does its output go to stdout (so the log goes to stderr)?
    pub fn prints(&self) -> bool {
        *self != Command::Serve
    }
}

/// Run a command that needs the settings (all but `Help` and `Version`,
/// answered by `main`) with logging set up.
pub fn run(command: Command, config: Config) -> ExitCode {
    match command {
        Command::Serve => serve(config),
        Command::Keys => print_keys(&config),
        Command::RotateKey(host) => rotate_key(&config, &host),
        Command::CheckKeys => check_keys(&config),
        Command::Setup(host) => setup(&config, &host),
        Command::Healthcheck => healthcheck(&config),
        Command::Help | Command::Version => ExitCode::SUCCESS,
    }
}

fn serve(config: Config) -> ExitCode {
    use crate::{Event, Server};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Installed before start so a signal during start-up is not lost. The
    // server may be PID 1 in a scratch container, where SIGTERM and SIGINT
    // are ignored unless handled; SIGHUP would otherwise end the process.
    let (tx, rx) = std::sync::mpsc::channel();
    let signal_tx = tx.clone();
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    let event = match signal {
                        SIGHUP => Event::Reload,
                        SIGINT => Event::Stop("SIGINT".into()),
                        _ => Event::Stop("SIGTERM".into()),
                    };
                    if signal_tx.send(event).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => log::warn!("cannot install the signal handler ({e}); SIGTERM will not shut down cleanly"),
    }
    let server = match Server::start_with_events(config, tx, rx) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    let status = loop {
        match server.next_event() {
            Event::Reload => server.reload(),
            Event::Stop(cause) => {
                log::info!("{cause}: shutting down");
                break ExitCode::SUCCESS;
            }
            Event::Failed(why) => {
                log::error!("{why}; shutting down");
                break ExitCode::from(1);
            }
        }
    };
    server.shutdown();
    log::info!("stopped");
    status
}

/// `keys check`: can the key file be read as the server would on `SIGHUP`?
/// Run before the signal (the unit's `ExecReload=`), so that a reload that
/// would keep the old keys fails visibly instead of reporting success.
fn check_keys(config: &Config) -> ExitCode {
    use crate::keys::KeyFile;
    let path = &config.key_file;
    if let Err(e) = std::fs::metadata(path) {
        log::error!(
            "PRE_SHARED_KEY_FILE: cannot read {}: {e}; a reload would keep the keys in use (check the path, and that this user may read it)",
            path.display()
        );
        return ExitCode::from(2);
    }
    match KeyFile::load(path) {
        Ok(file) => {
            let usable = config.registered.iter().filter(|h| file.get(h).is_some()).count();
            println!(
                "{}: readable; {usable} of {} registered hosts have a key",
                path.display(),
                config.registered.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fatal(&format!("{e}; a reload would keep the keys in use")),
    }
}

fn print_keys(config: &Config) -> ExitCode {
    if config.registered.is_empty() {
        log::error!(
            "REGISTERED_FQDNS is empty, so no host has a key; set it (and PRE_SHARED_KEY_FILE) as for the server"
        );
        return ExitCode::from(2);
    }
    let keys = match keys_to_print(config, "keys printed are") {
        Ok(k) => k,
        Err(code) => return code,
    };
    for host in &config.registered {
        if let Some(key) = keys.get(host) {
            println!("{host} {key}");
        }
    }
    ExitCode::SUCCESS
}

/// `dyndns-server keys rotate HOST`: a new key for one registered host,
/// written atomically, printed as `fqdn key`.
fn rotate_key(config: &Config, host: &str) -> ExitCode {
    let host = match named_host(host, &config.registered, "is not in REGISTERED_FQDNS; only registered hosts get keys")
    {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut keys = match crate::keys::ensure(config) {
        Ok(k) => k,
        Err(e) => return fatal(&e),
    };
    let key = match keys.rotate(&host) {
        Ok(k) => k,
        Err(e) => return fatal(&format!("cannot make a new key: {e}")),
    };
    if let Err(e) = keys.save_as(&config.key_file, false) {
        return fatal(&e);
    }
    log::info!("{host} has a new key; send SIGHUP to a running server so that the old one stops working");
    println!("{host} {key}");
    ExitCode::SUCCESS
}

/// `dyndns-server setup HOST`: every client's settings for one registered
/// host, its key filled in (generated if missing, as `keys` does).
fn setup(config: &Config, host: &str) -> ExitCode {
    let rule = "is not in REGISTERED_FQDNS (or only in ACME_ONLY_HOSTS); setup is for hosts that report an address";
    let host = match named_host(host, &config.address_hosts(), rule) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let keys = match keys_to_print(config, "key printed is") {
        Ok(k) => k,
        Err(code) => return code,
    };
    let Some(key) = keys.get(&host) else {
        return fatal(&format!("{host} has no key in {}", config.key_file.display()));
    };
    let url = config.public_url.clone().or_else(|| tls_url(config)).unwrap_or_else(|| {
        let guess = derived_url(config);
        log::warn!("PUBLIC_URL is not set; using {guess}. Set PUBLIC_URL to the address routers reach the server at (usually your TLS reverse proxy, e.g. https://dyndns.example.com)");
        guess
    });
    let aliases: Vec<String> = config.aliases.iter().filter(|a| a.host == host).map(|a| a.name.clone()).collect();
    let target = crate::setup::Target {
        host: &host,
        key,
        url: &url,
        has_lan_hosts: config.lan_hosts_of(&host).next().is_some(),
        aliases: &aliases,
    };
    print!("{}", crate::setup::text(&target));
    ExitCode::SUCCESS
}

/// With `TLS_DOMAINS`: `https://<first name that is not a wildcard>[:port]`.
fn tls_url(config: &Config) -> Option<String> {
    let tls = config.tls.as_ref()?;
    let crate::config::TlsSource::Acme(acme) = &tls.source else { return None };
    let name = acme.domains.iter().find(|d| !d.starts_with("*."))?;
    Some(match tls.listen.port() {
        443 => format!("https://{name}"),
        port => format!("https://{name}:{port}"),
    })
}

/// `http://<listen address or this machine's name>[:port]`.
fn derived_url(config: &Config) -> String {
    let ip = config.listen.ip();
    let name = if ip.is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let name = if name.is_empty() { "localhost".to_string() } else { name };
    match config.listen.port() {
        80 => format!("http://{name}"),
        port => format!("http://{name}:{port}"),
    }
}

/// `dyndns-server healthcheck`: `GET /healthz` on the configured port, for
/// Docker's HEALTHCHECK in an image without curl.
pub fn healthcheck(config: &Config) -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    // HTTPS only: the TLS listener accepting a connection is the check
    // (the image has no CA bundle to verify the server's own certificate).
    let tls_only = !config.plain_http;
    let mut addr = match (&config.tls, tls_only) {
        (Some(tls), true) => tls.listen,
        _ => config.listen,
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let probe = || -> std::io::Result<bool> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        if tls_only {
            return Ok(true);
        }
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nUser-Agent: dyndns-server-healthcheck\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.take(4096).read_to_end(&mut answer)?;
        Ok(answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("dyndns-server healthcheck: {addr} answered, but not 200");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dyndns-server healthcheck: {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `host` in canonical form if it is one of `allowed`; otherwise the error
/// is logged (`rule` says why it is not) and the exit code returned.
fn named_host(host: &str, allowed: &[String], rule: &str) -> Result<String, ExitCode> {
    match crate::fqdn::canonical(host) {
        Ok(h) if allowed.contains(&h) => Ok(h),
        Ok(h) => {
            log::error!("{h} {rule}");
            Err(ExitCode::from(2))
        }
        Err(e) => {
            log::error!("{host:?} is not a host name: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The key file for a command that prints keys (`what`: "keys printed
/// are"), with a warning when it may not be the server's.
fn keys_to_print(config: &Config, what: &str) -> Result<crate::keys::KeyFile, ExitCode> {
    if config.key_file_is_default {
        log::warn!(
            "PRE_SHARED_KEY_FILE is not set: using {}; set it to the server's key file, or the {what} not the server's",
            config.key_file.display()
        );
    }
    crate::keys::ensure(config).map_err(|e| fatal(&e))
}

/// Log the reason (one line, through the logger so `LOG_FILE` has it too)
/// and exit with status 2.
fn fatal(e: &dyn std::fmt::Display) -> ExitCode {
    log::error!("{e}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        Command::parse(&args)
    }

    #[test]
    fn the_command_line_is_read_once_into_a_command() {
        assert_eq!(parse(""), Ok(Command::Serve));
        assert_eq!(parse("--help"), Ok(Command::Help));
        assert_eq!(parse("-V"), Ok(Command::Version));
        assert_eq!(parse("keys"), Ok(Command::Keys));
        assert_eq!(parse("keys rotate home.example.com"), Ok(Command::RotateKey("home.example.com".into())));
        assert_eq!(parse("keys check"), Ok(Command::CheckKeys));
        assert_eq!(parse("setup home"), Ok(Command::Setup("home".into())));
        assert_eq!(parse("healthcheck"), Ok(Command::Healthcheck));
        assert!(parse("keys rotate").is_err_and(|e| e.contains("keys [rotate HOST | check]")));
        assert!(parse("setup").is_err_and(|e| e.contains("setup HOST")));
        assert!(parse("serve now").is_err_and(|e| e.contains("unknown arguments \"serve now\"")));
        assert!(!Command::Serve.prints() && Command::Keys.prints());
    }
}
