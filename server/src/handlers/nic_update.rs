//! dyndns2: `/nic/update` (also `/v3/update` and `//nic/update`), as
//! routers, ddclient and inadyn speak it; one answer line per host.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use crate::app::{App, REQUEST_BUDGET};
use crate::auth::{Denied, Principal};
use crate::dyndns2::{self, Addresses, Answer, Params};
use crate::fqdn;
use crate::hostbook::Cause;
use crate::lan::{self, Prefix};
use crate::message::{LogContext, Reply, Req};
use crate::metrics::Endpoint;
use crate::notify::ClientMistake;
use crate::updater::{Outcome, UpdateError};

/// dyndns2: `/nic/update`, `/v3/update`, `//nic/update`. Returns the answer
/// lines too, for `/metrics`.
pub(super) fn nic_update(app: &App, req: &Req, log: &mut LogContext) -> (Reply, Vec<Answer>) {
    if req.method != "GET" && req.method != "POST" {
        return (Reply::method_not_allowed("GET, POST", "badagent"), Vec::new());
    }
    let form = req.method == "POST"
        && req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form_text = if form { String::from_utf8_lossy(&req.body) } else { std::borrow::Cow::Borrowed("") };
    let mut params = Params::parse(req.query);
    params.extend(Params::parse(&form_text));
    let source = app.client_ip(req);
    let answers = match dyndns2_answers(app, req, &params, source, log) {
        Ok(answers) => answers,
        Err(answer) => vec![answer],
    };
    let reply = if answers == [Answer::BadAuth] {
        Reply::text(401, Answer::BadAuth.to_string()).with_header("WWW-Authenticate", "Basic realm=\"dyndns\"")
    } else {
        let mut body = String::with_capacity(32 * answers.len());
        for (i, answer) in answers.iter().enumerate() {
            if i > 0 {
                body.push('\n');
            }
            let _ = write!(body, "{answer}");
        }
        Reply::text(200, body)
    };
    (reply, answers)
}

/// One answer per requested host, or one answer for the whole request.
fn dyndns2_answers(
    app: &App,
    req: &Req,
    params: &Params<'_>,
    source: Option<IpAddr>,
    log: &mut LogContext,
) -> Result<Vec<Answer>, Answer> {
    let (user, pass) = req.basic_auth().or_else(|| params.credentials()).ok_or(Answer::BadAuth)?;
    let hosts = requested_hosts(params, &user)?;
    log.host = Some(match hosts.as_slice() {
        [Some(one)] => one.clone(),
        _ => hosts.iter().flatten().map(String::as_str).collect::<Vec<_>>().join(","),
    });
    log.authenticated = Some(false);
    if let Err(answer) = authenticate(app, &user, &pass, &hosts, source) {
        if answer == Answer::BadAuth {
            let target = hosts.first().and_then(Option::as_deref);
            log.denied = Some(app.guard.why_wrong(&user, target));
        }
        return Err(answer);
    }
    log.authenticated = Some(true);
    let (addresses, from_connection, prefix) = match addresses(app, params, &hosts, source, log) {
        Ok(found) => found,
        Err(answers) => return Ok(answers),
    };
    // Nothing is written when any address is one the internet cannot reach.
    let refused = hosts.iter().flatten().filter(|h| app.registered(h)).fold(false, |refused, h| {
        addresses.iter().fold(refused, |r, ip| app.refuse_unreachable(h, ip, from_connection).is_some() || r)
    });
    if refused {
        return Ok(vec![Answer::BadIp; hosts.len()]);
    }
    let deadline = Instant::now() + REQUEST_BUDGET;
    Ok(hosts.iter().map(|host| answer_host(app, host.as_deref(), &addresses, prefix, source, deadline)).collect())
}

/// The addresses to set (from the request, or else the connection's, and
/// whether they came from the connection) and the LAN prefix, or `badip`
/// for every host when one cannot be used.
fn addresses(
    app: &App,
    params: &Params<'_>,
    hosts: &[Option<String>],
    source: Option<IpAddr>,
    log: &LogContext,
) -> Result<(Addresses, bool, Option<Prefix>), Vec<Answer>> {
    let bad_request = |text: &dyn Fn(&str) -> String| {
        log::warn!("dyndns2 update of {}: {}", log.host.as_deref().unwrap_or(""), text("the request"));
        for h in hosts.iter().flatten() {
            app.rejected(h, ClientMistake::BadIp, text(h));
        }
        vec![Answer::BadIp; hosts.len()]
    };
    // An empty `ip6lanprefix=` is a router without IPv6: nothing to do.
    let prefix = params.get("ip6lanprefix").map(lan::parse_prefix).transpose().map_err(|e| {
        bad_request(&|h| format!("{h} sent an IPv6 prefix that cannot be used: {e}; fix the update URL"))
    })?;
    match params.addresses() {
        Ok(Some(a)) => Ok((a, false, prefix)),
        Ok(None) => {
            let mut a = Addresses::default();
            if let Some(ip) = source {
                let _ = a.add(ip);
            }
            Ok((a, true, prefix))
        }
        Err(e) => Err(bad_request(&|h| format!("{h} sent an address that cannot be used: {e}; fix the update URL"))),
    }
}

/// The answer line of one requested host (`None`: not a host name).
fn answer_host(
    app: &App,
    host: Option<&str>,
    addresses: &Addresses,
    prefix: Option<Prefix>,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Answer {
    match host {
        None => Answer::NotFqdn,
        Some(h) if !app.registered(h) => {
            app.rejected(h, ClientMistake::NoHost, format!("{h} authenticated but is not in REGISTERED_FQDNS"));
            Answer::NoHost
        }
        Some(h) if app.acme_only(h) => {
            log::warn!("{h} is in ACME_ONLY_HOSTS and may not set an address");
            Answer::NoHost
        }
        Some(h) => {
            app.host_reported(h);
            let answer = update_host(app, h, addresses, source, deadline);
            if let Some(prefix) = prefix {
                app.set_prefix(h, prefix, deadline);
            }
            answer
        }
    }
}

/// The `hostname` list in canonical form (`None` for a name that is not
/// one), or the user name when it is a full name and no list was sent.
fn requested_hosts(params: &Params<'_>, user: &str) -> Result<Vec<Option<String>>, Answer> {
    let mut hosts: Vec<Option<String>> = Vec::new();
    for name in params.hostname_items() {
        if hosts.len() == dyndns2::MAX_HOSTS {
            return Err(Answer::NumHost);
        }
        hosts.push(fqdn::canonical(name).ok());
    }
    if hosts.is_empty() {
        // Some clients send only the user name; accept it when it is a full name.
        match fqdn::canonical(user) {
            Ok(h) if user.contains('.') => hosts.push(Some(h)),
            _ => return Err(Answer::NotFqdn),
        }
    }
    Ok(hosts)
}

/// The admin credentials, or the key of the host every name in `hosts` is
/// (with the user name being that host: full name or first label).
fn authenticate(
    app: &App,
    user: &str,
    pass: &str,
    hosts: &[Option<String>],
    source: Option<IpAddr>,
) -> Result<(), Answer> {
    let target = match hosts {
        [Some(one), rest @ ..] if rest.iter().all(|h| h.as_ref() == Some(one)) => Some(one.as_str()),
        _ => None,
    };
    match app.guard.authorize(source, user, pass, target) {
        Ok(Principal::Admin) => Ok(()),
        Ok(Principal::Host(h)) if target == Some(h.as_str()) => Ok(()),
        Ok(Principal::Host(_)) | Err(Denied::Wrong) => Err(Answer::BadAuth),
        // The protocol's own code for a client that is refused.
        Err(Denied::Refused(_)) => Err(Answer::Abuse),
    }
}

/// Set every address of `addresses` on one host; one answer line.
fn update_host(app: &App, host: &str, addresses: &Addresses, source: Option<IpAddr>, deadline: Instant) -> Answer {
    let ips = addresses.iter();
    if ips.clone().next().is_none() {
        return Answer::BadIp;
    }
    let mut changed = false;
    let mut failure: Option<UpdateError> = None;
    for ip in ips.clone() {
        let cause = Cause::Report { endpoint: Endpoint::Dyndns2, source };
        match app.set_address(host, ip, cause, deadline) {
            Ok(outcome) => changed |= outcome != Outcome::Unchanged,
            Err(e) => failure = Some(e),
        }
    }
    let mut list = String::with_capacity(64);
    for (i, ip) in ips.enumerate() {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, "{ip}");
    }
    match failure {
        // The protocol's code for a client that sends too much.
        Some(UpdateError::TooManyWrites(_)) => Answer::Abuse,
        Some(e) if e.is_permanent() => Answer::DnsErr,
        Some(_) => Answer::ServerError,
        None if changed => Answer::Good(list),
        None => Answer::NoChg(list),
    }
}
