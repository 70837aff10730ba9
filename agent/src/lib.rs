//! `dyndns-agent`: reports this host's addresses to a `dyndns-server`.
//!
//! Each cycle reports once per address family (forcing the connection's
//! family, so the server sets A from the IPv4 connection; for AAAA the agent
//! names this host's stable global IPv6 address itself, see `ipv6`), then waits `INTERVAL` on a channel that a signal (or a test)
//! interrupts at once. Transient failures are retried with exponential
//! backoff and jitter within the interval; refusals wait for the next cycle.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod ipv6;
mod log;

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use client::{ReportError, Reporter};
use config::{Config, Family, IpVersion};
use dyndns_common::answer::Outcome;
use dyndns_common::heartbeat::Beat;
use log::{debug, error, info, warning};

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every attempted family was accepted, or a signal stopped the loop.
    Ok = 0,
    /// The server refused a report or could not be reached (one-shot).
    Failed = 1,
    /// A setting is wrong.
    Config = 2,
}

/// Retry budget of a one-shot run (cron must not hang).
const ONE_SHOT_BUDGET: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Run until stopped (or once when `INTERVAL=0`).
pub fn run(config: &Config, stop: &Receiver<()>) -> Exit {
    log::set_debug(config.debug);
    for w in &config.warnings {
        warning!("{w}");
    }
    if !config.verify_tls {
        warning!("VERIFY_SSL=0: the server's certificate is NOT verified; anyone in between can read the key");
    }
    let reporter = match Reporter::new(config) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return Exit::Config;
        }
    };
    debug!(
        "reporting {} to {} every {}s",
        config.fqdn,
        config::redact_url(&config.update_url),
        config.interval.as_secs()
    );
    let mut last: HashMap<Option<Family>, String> = HashMap::new();
    loop {
        let outcome = match cycle(config, &reporter, &mut last, stop) {
            Some(outcome) => outcome,
            None => return Exit::Ok,
        };
        let pings = heartbeat(config, &outcome);
        if config.interval.is_zero() {
            // A one-shot run waits for its pings (each bounded by its timeout).
            for p in pings {
                let _ = p.join();
            }
            return if outcome.is_ok() { Exit::Ok } else { Exit::Failed };
        }
        if wait(stop, config.interval) {
            return Exit::Ok;
        }
    }
}

/// The cycle's outcome to each monitor, each on its own thread so that a
/// monitor that hangs never delays the next report: the URL on success,
/// `…/fail` (`status=down`) with the reasons when any family failed.
fn heartbeat(config: &Config, outcome: &Result<(), String>) -> Vec<std::thread::JoinHandle<()>> {
    let note = format!("{}: reported", config.fqdn);
    let mut handles = Vec::new();
    for monitor in &config.monitors {
        let ping = match outcome {
            Ok(()) => monitor.ping(Beat::Up(&note)),
            Err(why) => monitor.ping(Beat::Down(why)),
        };
        let (monitor, debug_on) = (monitor.clone(), config.debug);
        let spawned = std::thread::Builder::new().name("heartbeat".into()).spawn(move || {
            if let Err(e) = client::ping(&ping) {
                // Each failure, since the agent has no memory between cron runs.
                warning!("heartbeat: cannot reach {} ({e})", monitor.label());
            } else if debug_on {
                debug!("heartbeat: {} pinged", monitor.label());
            }
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => warning!("heartbeat: cannot start a thread ({e})"),
        }
    }
    handles
}

/// One report per family: `Ok` when every attempted family was accepted,
/// else why not (every failed family). `None` when a stop arrived while
/// waiting.
fn cycle(
    config: &Config,
    reporter: &Reporter,
    last: &mut HashMap<Option<Family>, String>,
    stop: &Receiver<()>,
) -> Option<Result<(), String>> {
    let budget = if config.interval.is_zero() { ONE_SHOT_BUDGET } else { config.interval };
    let end = Instant::now() + budget;
    let families = config.families();
    let (mut accepted, mut failed) = (0, Vec::new());
    for family in families.iter().copied() {
        let label = match family {
            Some(f) => format!("{} {}", config.fqdn, f.record_type()),
            None => config.fqdn.clone(),
        };
        let outcome = report_family(config, reporter, family, &label, last, end, stop)?;
        match outcome {
            Ok(None) => {}
            Ok(Some(a)) => {
                accepted += 1;
                let line = format!("{} {} {}", config.fqdn, a.rtype, a.ip);
                if last.get(&family) != Some(&line) || a.status != Outcome::Unchanged {
                    info!("{line} ({})", a.status.as_str());
                } else {
                    debug!("{line} (unchanged)");
                }
                last.insert(family, line);
            }
            Err(m) => {
                failed.push(format!("{label}: {m}"));
                let line = format!("error: {m}");
                // Repeated identical errors are logged once per change in a
                // long-running loop, always in a one-shot run.
                if last.get(&family) != Some(&line) || config.interval.is_zero() {
                    error!("{label}: {m}");
                }
                last.insert(family, line);
            }
        }
    }
    if accepted == 0 && failed.is_empty() {
        let why =
            format!("{}: could not reach {} over IPv4 or IPv6", config.fqdn, config::redact_url(&config.update_url));
        error!("{why}");
        return Some(Err(why));
    }
    Some(if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) })
}

/// One family's report, retried with backoff while passing errors last
/// and `end` allows: the answer, `Ok(None)` for a family this host does
/// not have (with `IP_VERSION=both`), or the error. `None`: stopped.
fn report_family(
    config: &Config,
    reporter: &Reporter,
    family: Option<Family>,
    label: &str,
    last: &mut HashMap<Option<Family>, String>,
    end: Instant,
    stop: &Receiver<()>,
) -> Option<Result<Option<client::Accepted>, String>> {
    let mut backoff = Duration::from_secs(1);
    let outcome = loop {
        match reporter.send(family) {
            Err(ReportError::Transient(m)) => {
                let pause = jitter(backoff);
                if Instant::now() + pause >= end {
                    break Err(m);
                }
                debug!("{label}: {m}; retrying in {:.1}s", pause.as_secs_f32());
                if wait(stop, pause) {
                    return None;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(ReportError::Unreachable(m)) if config.ip_version == IpVersion::Both && family.is_some() => {
                // Said once (then at debug), so that a host without
                // that family, or a server on loopback, is not silent.
                let note = format!("{label}: skipped: {m}");
                if last.get(&family) == Some(&note) {
                    debug!("{note}");
                } else {
                    info!("{note}");
                    last.insert(family, note);
                }
                break Ok(None);
            }
            Err(e) => break Err(e.to_string()),
            Ok(a) => break Ok(Some(a)),
        }
    };
    Some(outcome)
}

/// ±25 % so many agents restarted together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// Wait up to `d`; true when a stop arrived (or the sender is gone).
fn wait(stop: &Receiver<()>, d: Duration) -> bool {
    match stop.recv_timeout(d) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        Err(RecvTimeoutError::Timeout) => false,
    }
}
