//! Prefix mode (`IPV6_LAN_HOSTS`, dyndns2 `ip6lanprefix`, JSON
//! `ipv6_prefix`) and the address policy (`ALLOW_PRIVATE_ADDRESSES`): the
//! real server against the fake Hetzner, with requests shaped as a
//! Fritz!Box sends them.

use std::time::Duration;

use e2e::{FakeHetzner, FakeNtfy, Setup, TestServer};

const ROUTER: &str = "router.example.com";
const LAN: &str = "nas.example.com=::211:32ff:fe12:3456@router.example.com,\
                   cam.example.com=::5:ba98:76ff:fe54:3210@router.example.com,\
                   tv.example.com=mac:02:42:ac:11:00:02@router.example.com";
const ADMIN: (&str, &str) = ("admin", "admin-password-123");

fn prefix_server() -> (FakeHetzner, TestServer) {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, &format!("{ROUTER},other.example.com"))
        .var("IPV6_LAN_HOSTS", LAN)
        .var("BASIC_AUTH_USERNAME", ADMIN.0)
        .var("BASIC_AUTH_PASSWORD", ADMIN.1)
        .start();
    fake.wait_for_zone_listing();
    (fake, server)
}

/// The update URL a Fritz!Box builds from
/// `/nic/update?hostname=<domain>&myip=<ipaddr>,<ip6addr>&ip6lanprefix=<ip6lanprefix>`.
fn fritzbox(server: &TestServer, v4: &str, v6: &str, prefix: &str, user: &str, key: &str) -> e2e::Resp {
    let prefix = prefix.replace(':', "%3A").replace('/', "%2F");
    server.get_as(&format!("/nic/update?hostname={ROUTER}&myip={v4},{v6}&ip6lanprefix={prefix}"), user, key)
}

fn aaaa(fake: &FakeHetzner, name: &str) -> Option<Vec<String>> {
    fake.rrset("example.com", name, "AAAA")
}

fn writes(fake: &FakeHetzner) -> Vec<String> {
    fake.calls().into_iter().filter(|c| c.starts_with("POST")).collect()
}

#[test]
fn a_fritzbox_report_with_its_prefix_sets_every_lan_hosts_aaaa_and_answers_one_line() {
    let (fake, server) = prefix_server();
    let key = server.key(ROUTER);
    let r = fritzbox(&server, "203.0.113.7", "2001:db8:1:200::1", "2001:db8:1:200::/56", "router", &key);
    assert_eq!(r.body, "good 203.0.113.7,2001:db8:1:200::1", "one line, the router's own");
    assert_eq!(aaaa(&fake, "nas"), Some(vec!["2001:db8:1:200:211:32ff:fe12:3456".into()]));
    assert_eq!(aaaa(&fake, "cam"), Some(vec!["2001:db8:1:205:ba98:76ff:fe54:3210".into()]), "subnet 5 of the /56");
    assert_eq!(aaaa(&fake, "tv"), Some(vec!["2001:db8:1:200:42:acff:fe11:2".into()]), "modified EUI-64 of the MAC");
    assert_eq!(fake.rrset("example.com", "nas", "A"), None, "a LAN host gets no A record");

    // The same prefix again: no call at all.
    fake.clear_calls();
    let r = fritzbox(&server, "203.0.113.7", "2001:db8:1:200::1", "2001:db8:1:200::/56", "router", &key);
    assert_eq!(r.body, "nochg 203.0.113.7,2001:db8:1:200::1");
    assert_eq!(fake.calls(), Vec::<String>::new());

    // A new prefix (now a /64): one write per LAN host, nothing else written.
    let r = fritzbox(&server, "203.0.113.7", "2001:db8:1:2ff::1", "2001:db8:1:2ff::/64", "router", &key);
    assert_eq!(r.body, "good 203.0.113.7,2001:db8:1:2ff::1");
    let w = writes(&fake);
    assert_eq!(w.len(), 4, "the router's AAAA and three LAN hosts: {w:?}");
    assert!(w.iter().all(|c| c.ends_with("/actions/set_records")), "{w:?}");
    assert_eq!(aaaa(&fake, "cam"), Some(vec!["2001:db8:1:2ff:ba98:76ff:fe54:3210".into()]));

    // The status shows LAN hosts and their router; the metrics count them.
    let status = server.get_as("/status", ADMIN.0, ADMIN.1).json();
    let cam = status["hosts"].as_array().and_then(|h| h.iter().find(|h| h["fqdn"] == "cam.example.com")).cloned();
    let cam = cam.expect("cam in /status");
    assert_eq!(cam["via"], ROUTER, "{cam}");
    assert_eq!(cam["aaaa"], "2001:db8:1:2ff:ba98:76ff:fe54:3210", "{cam}");
    assert_eq!(cam["prefix"], "2001:db8:1:2ff::/64", "{cam}");
    // Created, unchanged, moved: two changes, the last one just now.
    assert_eq!(cam["changes"], 2, "{cam}");
    assert!(cam["last_change"].as_u64().is_some_and(|t| t > 0), "{cam}");
    let metrics = server.get_as("/metrics", ADMIN.0, ADMIN.1).body;
    assert!(
        metrics.contains("dyndns_update_requests_total{endpoint=\"ipv6_prefix\",result=\"updated\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dyndns_update_requests_total{endpoint=\"ipv6_prefix\",result=\"created\"} 3"),
        "{metrics}"
    );
}

#[test]
fn another_routers_key_cannot_move_the_lan_hosts() {
    let (fake, server) = prefix_server();
    let other = server.key("other.example.com");
    // Its own name, its own key: its request carries a prefix, but no LAN host is behind it.
    let r = server.get_as(
        "/nic/update?hostname=other.example.com&myip=203.0.113.8&ip6lanprefix=2001:db8:6:600::/56",
        "other",
        &other,
    );
    assert_eq!(r.body, "good 203.0.113.8");
    assert_eq!(aaaa(&fake, "nas"), None);
    // The router's name with the other key: refused.
    let r = fritzbox(&server, "203.0.113.8", "2001:db8:6:600::1", "2001:db8:6:600::/56", "router", &other);
    assert_eq!((r.status, r.body.as_str()), (401, "badauth"));
    assert_eq!(aaaa(&fake, "nas"), None);
    assert_eq!(writes(&fake).len(), 1, "only other.example.com's own A: {:?}", fake.calls());
}

#[test]
fn a_bad_or_too_long_prefix_writes_nothing_and_an_empty_one_changes_nothing() {
    let (fake, server) = prefix_server();
    let key = server.key(ROUTER);
    for bad in ["2001:db8:1:200::/72", "2001:db8::/32", "fd00:1:2::/56", "fe80::/64", "2001:db8:1:200::1", "garbage"] {
        let r = fritzbox(&server, "203.0.113.7", "2001:db8:1:200::1", bad, "router", &key);
        assert_eq!(r.body, "badip", "{bad}");
    }
    assert_eq!(writes(&fake), Vec::<String>::new(), "not even the router's own address");
    assert_eq!(fake.rrset("example.com", "router", "A"), None);

    // A router without IPv6 sends `ip6lanprefix=` empty: its own update, nothing else.
    let r = server.get_as(&format!("/nic/update?hostname={ROUTER}&myip=203.0.113.7&ip6lanprefix="), "router", &key);
    assert_eq!(r.body, "good 203.0.113.7");
    assert_eq!(aaaa(&fake, "nas"), None);

    // JSON: the same rules, 400 and nothing written.
    let r =
        server.update(r#"{"fqdn": "router.example.com", "ip": "203.0.113.9", "ipv6_prefix": "2001:db8::/65"}"#, &key);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("/48 to /64")), "{}", r.body);
    assert_eq!(fake.rrset("example.com", "router", "A"), Some(vec!["203.0.113.7".into()]));
}

#[test]
fn the_json_endpoint_takes_a_prefix_and_lists_what_it_did() {
    let (fake, server) = prefix_server();
    let key = server.key(ROUTER);
    let r = server
        .update(r#"{"fqdn": "router.example.com", "ip": "203.0.113.7", "ipv6_prefix": "2001:db8:1:200::/56"}"#, &key);
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert_eq!(doc["status"], "created");
    let lan = doc["lan_hosts"].as_array().expect("lan_hosts");
    assert_eq!(lan.len(), 3, "{doc}");
    assert_eq!(
        lan[0],
        serde_json::json!({"fqdn": "cam.example.com", "ip": "2001:db8:1:205:ba98:76ff:fe54:3210", "status": "created"})
    );
    assert_eq!(aaaa(&fake, "tv"), Some(vec!["2001:db8:1:200:42:acff:fe11:2".into()]));
}

#[test]
fn addresses_the_internet_cannot_reach_are_refused_by_default_and_announced_once() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let ntfy = FakeNtfy::start();
    let server = Setup::new(&fake, "home.example.com").var("NTFY_URL", ntfy.url()).var("NTFY_TOPIC", "dyndns").start();
    let key = server.key("home.example.com");
    for ip in ["10.1.2.3", "192.168.178.20", "100.64.12.9", "169.254.1.1", "127.0.0.1", "fe80::1", "fd00::5"] {
        let r = server.get_as(&format!("/nic/update?hostname=home.example.com&myip={ip}"), "home", &key);
        assert_eq!(r.body, "badip", "{ip}");
        let r = server.update(&format!(r#"{{"fqdn": "home.example.com", "ip": "{ip}"}}"#), &key);
        assert_eq!(r.status, 422, "{ip}: {}", r.body);
        assert!(r.body.contains("ALLOW_PRIVATE_ADDRESSES"), "{}", r.body);
    }
    assert_eq!(fake.calls().iter().filter(|c| c.starts_with("POST")).count(), 0);
    let msg = ntfy.next(Duration::from_secs(5)).expect("announced");
    assert!(msg.body.starts_with("home.example.com reports 10.1.2.3: a private address"), "{}", msg.body);
    assert!(ntfy.next(Duration::from_millis(500)).is_none(), "announced once per host");
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "100.64.12.9"}"#, &key);
    assert!(
        r.body.contains("home.example.com reports 100.64.12.9: this router is behind carrier-grade NAT"),
        "{}",
        r.body
    );
    // Documentation ranges stay usable.
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.1,2001:db8::1", "home", &key);
    assert_eq!(r.body, "good 192.0.2.1,2001:db8::1");
}

#[test]
fn with_allow_private_addresses_they_are_set() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com").var("ALLOW_PRIVATE_ADDRESSES", "1").start();
    let key = server.key("home.example.com");
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.168.178.20,fd00::5", "home", &key);
    assert_eq!(r.body, "good 192.168.178.20,fd00::5");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.168.178.20".into()]));
}

#[test]
fn a_lan_hosts_record_changed_behind_the_servers_back_is_restored_by_the_reconcile() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, ROUTER).var("IPV6_LAN_HOSTS", LAN).var("RECONCILE_INTERVAL", "1").start();
    let key = server.key(ROUTER);
    let r = fritzbox(&server, "203.0.113.7", "2001:db8:1:200::1", "2001:db8:1:200::/56", "router", &key);
    assert_eq!(r.body, "good 203.0.113.7,2001:db8:1:200::1");
    fake.put_rrset("example.com", "cam", "AAAA", &["2001:db8:9::9"]);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while aaaa(&fake, "cam") != Some(vec!["2001:db8:1:205:ba98:76ff:fe54:3210".into()]) {
        assert!(std::time::Instant::now() < until, "not restored: {:?}", aaaa(&fake, "cam"));
        std::thread::sleep(Duration::from_millis(25));
    }
}
