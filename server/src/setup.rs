//! `dyndns-server setup HOST`: ready-to-paste settings for every kind of
//! client, with the host's key and the server's address filled in.
//!
//! The address is `PUBLIC_URL` (what routers reach the server at, usually
//! the TLS reverse proxy in front of it); without it one is derived from
//! `LISTEN_ADDR`/`LISTEN_PORT` and the caller warns. Each section starts
//! with a line `== <client>`, so scripts (and the CI test that runs the
//! printed ddclient, inadyn and curl configurations) can cut them out.

use std::fmt::Write as _;

use crate::env::url_parts;
use crate::fqdn;

/// What the settings are for.
pub struct Target<'a> {
    pub host: &'a str,
    pub key: &'a str,
    /// `https://dyndns.example.com` (no trailing slash).
    pub url: &'a str,
    /// The host is a router with LAN hosts (prefix mode).
    pub has_lan_hosts: bool,
    /// Its aliases (`HOST_ALIASES`): set by its reports, never configured
    /// in a client.
    pub aliases: &'a [String],
}

/// Every client's settings, as one text.
pub fn text(t: &Target<'_>) -> String {
    let mut out = String::new();
    if !t.aliases.is_empty() {
        let _ = writeln!(
            out,
            "# Each report of {} also sets {} (HOST_ALIASES): configure only {} in the client below.",
            t.host,
            t.aliases.join(", "),
            t.host
        );
    }
    for (title, body) in routers(t).into_iter().chain(programs(t)) {
        let _ = write!(out, "== {title}\n{body}\n");
    }
    out
}

/// What the sections share: the host, its key and first label, the URL,
/// `host[:port]` (as ddclient, inadyn and UniFi take it), HTTPS or not.
fn parts<'a>(t: &Target<'a>) -> (&'a str, &'a str, &'a str, &'a str, &'a str, bool) {
    (t.host, t.key, fqdn::first_label(t.host), t.url, url_parts(t.url).1, t.url.starts_with("https://"))
}

/// Routers' and NAS' own dyndns settings.
fn routers(t: &Target<'_>) -> Vec<(&'static str, String)> {
    let (host, key, user, url, server, tls) = parts(t);
    let prefix = if t.has_lan_hosts { "&ip6lanprefix=<ip6lanprefix>" } else { "" };
    vec![
        (
            "Fritz!Box (Internet > Permit Access > DynDNS, provider \"User-defined\")",
            format!(
            "Update URL:  {url}/nic/update?hostname=<domain>&myip=<ipaddr>,<ip6addr>{prefix}\nDomain name: {host}\nUser name:   {user}\nPassword:    {key}\n"
        ),
        ),
        (
            "OpenWrt (luci-app-ddns; append to /etc/config/ddns, then /etc/init.d/ddns restart)",
            format!(
            "config service '{user}_v4'\n\toption enabled '1'\n\toption lookup_host '{host}'\n\toption domain '{host}'\n\toption username '{user}'\n\toption password '{key}'\n\toption update_url '{url}/nic/update?hostname=[DOMAIN]&myip=[IP]'\n\toption use_https '{https}'\n\toption ip_source 'network'\n\toption ip_network 'wan'\n\toption interface 'wan'\n\n\
             config service '{user}_v6'\n\toption enabled '1'\n\toption use_ipv6 '1'\n\toption lookup_host '{host}'\n\toption domain '{host}'\n\toption username '{user}'\n\toption password '{key}'\n\toption update_url '{url}/nic/update?hostname=[DOMAIN]&myip=[IP]'\n\toption use_https '{https}'\n\toption ip_source 'network'\n\toption ip_network 'wan6'\n\toption interface 'wan6'\n",
            https = u8::from(tls)
        ),
        ),
        (
            "UniFi (Settings > Internet > Dynamic DNS, service \"custom\")",
            format!(
            "Hostname: {host}\nUsername: {user}\nPassword: {key}\nServer:   {server}/nic/update?hostname=%h&myip=%i\n"
        ),
        ),
        (
            "OPNsense / pfSense (Services > Dynamic DNS, service \"Custom\")",
            format!(
            "Update URL:   {url}/nic/update?hostname={host}&myip=%IP%\nUsername:     {user}\nPassword:     {key}\nResult match: good|nochg\n"
        ),
        ),
        (
            "Synology (Control Panel > External Access > DDNS > Customize provider)",
            format!(
            "Query URL: {url}/nic/update?hostname=__HOSTNAME__&myip=__MYIP__&user=__USERNAME__&pass=__PASSWORD__\nthen add it with hostname {host}, username {user}, password {key}\n"
        ),
        ),
    ]
}

/// Programs: ddclient, inadyn, curl, the agent, lego.
fn programs(t: &Target<'_>) -> Vec<(&'static str, String)> {
    let (host, key, user, url, server, tls) = parts(t);
    vec![
        (
            "ddclient 3.10+ (/etc/ddclient.conf)",
            format!(
            "protocol=dyndns2\nserver={server}\nssl={ssl}\nlogin={user}\npassword={key}\nuse=web, web={url}/ip\n{host}\n",
            ssl = if tls { "yes" } else { "no" }
        ),
        ),
        (
            "inadyn 2.10+ (/etc/inadyn.conf)",
            format!(
            "period = 300\ncustom dyndns-server {{\n    ssl = {tls}\n    username = {user}\n    password = {key}\n    ddns-server = {server}\n    ddns-path = \"/nic/update?hostname=%h&myip=%i\"\n    checkip-server = {server}\n    checkip-path = /ip\n    checkip-ssl = {tls}\n    hostname = {{ \"{host}\" }}\n}}\n"
        ),
        ),
        (
            "curl from cron (crontab -e; a second line with curl -6 for IPv6)",
            format!("*/5 * * * * curl -fsS -u {user}:{key} \"{url}/nic/update?hostname={host}\"\n"),
        ),
        (
            "dyndns-agent (environment, e.g. /etc/dyndns-agent.env for the systemd unit in agent/systemd/)",
            format!("BACKEND_URL={url}\nFQDN={host}\nPRE_SHARED_KEY={key}\n"),
        ),
        (
            "ACME DNS-01 with lego or Traefik (see README \"Certificates for your hosts\")",
            format!("HTTPREQ_ENDPOINT={url}\nHTTPREQ_USERNAME={user}\nHTTPREQ_PASSWORD={key}\n"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_carries_the_key_and_the_server_address() {
        let t = Target {
            host: "home.example.com",
            key: "KEY43",
            url: "https://dyndns.example.com",
            has_lan_hosts: true,
            aliases: &[],
        };
        let text = text(&t);
        let sections: Vec<&str> = text.split("\n== ").collect();
        assert_eq!(sections.len(), 10, "{text}");
        for s in &sections {
            assert!(s.contains("KEY43"), "no key in {s}");
        }
        assert!(text.contains("myip=<ipaddr>,<ip6addr>&ip6lanprefix=<ip6lanprefix>"));
        assert!(text.contains("server=dyndns.example.com\nssl=yes\n"));
        assert!(text.contains("ddns-server = dyndns.example.com\n"));
        assert!(text
            .contains("curl -fsS -u home:KEY43 \"https://dyndns.example.com/nic/update?hostname=home.example.com\""));
        let plain = super::text(&Target { url: "http://127.0.0.1:8080", has_lan_hosts: false, ..t });
        assert!(plain.contains("server=127.0.0.1:8080\nssl=no\n") && plain.contains("ssl = false"), "{plain}");
        assert!(!plain.contains("ip6lanprefix") && !plain.contains("HOST_ALIASES"));
        let aliases = ["example.com".to_string(), "www.example.com".to_string()];
        let aliased = super::text(&Target { aliases: &aliases, ..t });
        assert!(
            aliased
                .starts_with("# Each report of home.example.com also sets example.com, www.example.com (HOST_ALIASES)"),
            "{aliased}"
        );
    }
}
