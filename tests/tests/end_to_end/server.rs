//! End to end: the real server on port 0 against the fake Hetzner Cloud
//! API. Each test asserts the HTTP answer, the records the fake holds
//! afterwards and, where it matters, the API calls the server made.

use e2e::{basic, FakeHetzner, Fault, Setup, TestServer};

const HOME: &str = "home.example.com";

/// A fake with `example.com` and a server for `hosts`.
fn setup(hosts: &str) -> (FakeHetzner, TestServer) {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, hosts).start();
    (fake, server)
}

/// Calls other than the zone listing (made once per ZONE_CACHE_TTL for all
/// hosts, possibly by the start-up check running in parallel).
fn record_calls(fake: &FakeHetzner) -> Vec<String> {
    fake.calls().into_iter().filter(|c| !c.starts_with("GET /v1/zones?")).collect()
}

fn nic(server: &TestServer, query: &str, user: &str, key: &str) -> e2e::Resp {
    server.get_as(&format!("/nic/update?{query}"), user, key)
}

#[test]
fn json_update_creates_the_record_then_answers_from_cache_with_no_call() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);

    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "198.51.100.7"}"#, &key);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({"status": "created", "fqdn": HOME, "type": "A", "ip": "198.51.100.7"}));
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.7".to_string()]));
    assert_eq!(fake.rrset_ttl("example.com", "home", "A"), Some(60));
    let calls = record_calls(&fake);
    assert_eq!(calls.len(), 3, "GET rrset + create + one action poll: {calls:?}");
    assert!(calls[0].starts_with("GET /v1/zones/100/rrsets/home/A"));
    assert_eq!(calls[1], "POST /v1/zones/100/rrsets");
    assert!(calls[2].starts_with("GET /v1/actions/"));
    let zone_lists = fake.calls().iter().filter(|c| c.starts_with("GET /v1/zones?")).count();
    assert_eq!(zone_lists, 1);

    fake.clear_calls();
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "198.51.100.7", "type": "A"}"#, &key);
    assert_eq!(r.json()["status"], "unchanged");
    assert_eq!(fake.call_count(), 0, "an unchanged address within REQUEST_CACHE_TTL costs no call");
}

#[test]
fn a_changed_address_of_a_known_record_costs_set_records_and_one_poll() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    server.update(r#"{"fqdn": "home.example.com", "ip": "198.51.100.7"}"#, &key);
    fake.clear_calls();

    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "198.51.100.8"}"#, &key);
    assert_eq!(r.json()["status"], "updated");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.8".to_string()]));
    let calls = fake.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], "POST /v1/zones/100/rrsets/home/A/actions/set_records");
    assert!(calls[1].starts_with("GET /v1/actions/"));
}

#[test]
fn an_existing_record_with_the_same_address_is_read_once_and_left_alone() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    fake.put_rrset("example.com", "home", "AAAA", &["2001:db8:0:0::1"]);
    let server = Setup::new(&fake, HOME).var("REQUEST_CACHE_TTL", "0").start();
    let key = server.key(HOME);

    // Same address in another textual form: compared as parsed addresses.
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "2001:db8::1"}"#, &key);
    assert_eq!(r.json()["status"], "unchanged");
    assert_eq!(r.json()["type"], "AAAA");
    assert_eq!(record_calls(&fake).len(), 1);
    // With REQUEST_CACHE_TTL=0 every unchanged update is confirmed by one read.
    fake.clear_calls();
    server.update(r#"{"fqdn": "home.example.com", "ip": "2001:db8::1"}"#, &key);
    assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
}

#[test]
fn a_record_with_several_values_is_replaced_by_the_one_address() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    fake.put_rrset("example.com", "home", "A", &["192.0.2.1", "192.0.2.2"]);
    let server = Setup::new(&fake, HOME).start();
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &server.key(HOME));
    assert_eq!(r.json()["status"], "updated");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]));
}

#[test]
fn json_update_takes_the_address_from_proxy_headers_or_the_connection() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    // The connection's address here is loopback.
    let server = Setup::new(&fake, HOME).var("ALLOW_PRIVATE_ADDRESSES", "1").start();
    let key = server.key(HOME);
    let body = r#"{"fqdn": "home.example.com"}"#;
    let r = server.request(
        "POST",
        "/update",
        &[("X-Pre-Shared-Key", &key), ("X-Forwarded-For", "198.51.100.66, 203.0.113.5, 127.0.0.1")],
        Some(body),
    );
    // From the right: our proxy (loopback) appended what it saw; the entry
    // left of it is the client; what the client wrote itself is ignored.
    assert_eq!(r.json()["ip"], "203.0.113.5");
    let r = server.request("POST", "/update", &[("X-Pre-Shared-Key", &key), ("X-Real-Ip", "203.0.113.6")], Some(body));
    assert_eq!(r.json()["ip"], "203.0.113.6");
    let r = server.update(r#"{"url": "home.example.com"}"#, &key);
    assert_eq!(r.json()["ip"], "127.0.0.1", "`url` is an alias of `fqdn`; the peer address is the fallback");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["127.0.0.1".to_string()]));
}

#[test]
fn json_errors_are_clear_and_never_500() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "not valid JSON"),
        ("[1,2]", 400, "JSON object"),
        (r#"{"ip": "192.0.2.1"}"#, 400, "missing \"fqdn\""),
        (r#"{"fqdn": 5}"#, 400, "must be a string"),
        (r#"{"fqdn": "localhost"}"#, 400, "not fully qualified"),
        (r#"{"fqdn": "home.example.com", "ip": "300.1.1.1"}"#, 400, "not an IP address"),
        (r#"{"fqdn": "home.example.com", "ip": "2001:db8::/64"}"#, 400, "network prefix"),
        (r#"{"fqdn": "home.example.com", "ip": "192.0.2.1", "type": "AAAA"}"#, 400, "is an A address"),
        (r#"{"fqdn": "home.example.com", "type": "MX"}"#, 400, "\"type\" must be"),
    ];
    for (body, status, text) in cases {
        let r = server.update(body, &key);
        assert_eq!(r.status, *status, "{body} → {}", r.body);
        assert!(r.json()["error"].as_str().is_some_and(|e| e.contains(text)), "{body} → {}", r.body);
    }
    let big = format!(r#"{{"fqdn": "home.example.com", "pad": "{}"}}"#, "x".repeat(5000));
    assert_eq!(server.update(&big, &key).status, 413);
    let r = server.get("/update");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert!(record_calls(&fake).is_empty());
}

#[test]
fn json_auth_does_not_tell_registered_from_unregistered_hosts() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com,other.example.com")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    let home_key = server.key(HOME);
    let other_key = server.key("other.example.com");
    let body = r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#;

    let missing = server.request("POST", "/update", &[], Some(body));
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"], "missing X-Pre-Shared-Key header");
    let wrong = server.update(body, "wrong");
    let other = server.update(body, &other_key);
    let upper = server.update(body, &home_key.to_uppercase());
    let unregistered = server.update(r#"{"fqdn": "nobody.example.com", "ip": "192.0.2.1"}"#, &home_key);
    for r in [&wrong, &other, &upper, &unregistered] {
        assert_eq!(r.status, 401);
        assert_eq!(r.body, wrong.body, "same answer for every failed authentication");
    }
    assert!(record_calls(&fake).is_empty(), "nothing reached Hetzner: {:?}", fake.calls());

    // Admin credentials work for any registered host and learn about unregistered ones.
    let admin = basic("admin", "admin-password-123");
    let r = server.request("POST", "/update", &[("Authorization", &admin)], Some(body));
    assert_eq!(r.json()["status"], "created");
    let r = server.request("POST", "/update", &[("Authorization", &admin)], Some(r#"{"fqdn": "nobody.example.com"}"#));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("not registered")));
    let r = server.request("POST", "/update", &[("Authorization", &basic("admin", "nope"))], Some(body));
    assert_eq!(r.status, 401);
}

#[test]
fn dyndns2_good_then_nochg_with_short_or_full_user_name() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    let r = nic(&server, "hostname=home.example.com&myip=203.0.113.10&system=dyndns&wildcard=NOCHG", "home", &key);
    assert_eq!((r.status, r.body.as_str()), (200, "good 203.0.113.10"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("17"));
    assert_eq!(r.header("transfer-encoding"), None);
    let r = nic(&server, "hostname=home.example.com&myip=203.0.113.10", "home.example.com", &key);
    assert_eq!(r.body, "nochg 203.0.113.10");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.10".to_string()]));
    // Upper case and a trailing dot name the same host.
    let r = nic(&server, "hostname=HOME.Example.com.&myip=203.0.113.10", "HOME", &key);
    assert_eq!(r.body, "nochg 203.0.113.10");
    // The UniFi path and Dyn's newer path.
    let r = server.get_as("//nic/update?hostname=home.example.com&myip=203.0.113.11", "home", &key);
    assert_eq!(r.body, "good 203.0.113.11");
    let r = server.get_as("/v3/update?hostname=home.example.com&myip=203.0.113.11", "home", &key);
    assert_eq!(r.body, "nochg 203.0.113.11");
}

#[test]
fn dyndns2_dual_stack_in_one_request_and_one_family_never_touches_the_other() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    let r = nic(&server, "hostname=home.example.com&myip=203.0.113.10,2001:db8::10", "home", &key);
    assert_eq!(r.body, "good 203.0.113.10,2001:db8::10");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.10".to_string()]));
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), Some(vec!["2001:db8::10".to_string()]));

    // Fritz!Box style: v6 alone, percent-encoded as inadyn does.
    let r = nic(&server, "hostname=home.example.com&myip=2001%3adb8%3a%3a11", "home", &key);
    assert_eq!(r.body, "good 2001:db8::11");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.10".to_string()]), "A untouched");
    // myip + myipv6, one unchanged and one changed → good.
    let r = nic(&server, "hostname=home.example.com&myip=203.0.113.10&myipv6=2001:db8::12", "home", &key);
    assert_eq!(r.body, "good 203.0.113.10,2001:db8::12");
    // Empty myip (ddclient 3.10 with IPv6 only) → the connection's address,
    // here loopback, which no record may hold by default.
    let r = nic(&server, "hostname=home.example.com&myip=", "home", &key);
    assert_eq!(r.body, "badip");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.10".to_string()]), "A untouched");
}

#[test]
fn dyndns2_one_line_per_host_in_order() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "a.example.com,b.example.com")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    let r = nic(
        &server,
        "hostname=b.example.com,a.example.com,nobody.example.com,bad_name&myip=192.0.2.9",
        "admin",
        "admin-password-123",
    );
    assert_eq!(r.body, "good 192.0.2.9\ngood 192.0.2.9\nnohost\nnotfqdn");
    assert_eq!(fake.rrset("example.com", "a", "A"), Some(vec!["192.0.2.9".to_string()]));
    assert_eq!(fake.rrset("example.com", "b", "A"), Some(vec!["192.0.2.9".to_string()]));
    let many = (0..21).map(|i| format!("h{i}.example.com")).collect::<Vec<_>>().join(",");
    assert_eq!(nic(&server, &format!("hostname={many}"), "admin", "admin-password-123").body, "numhost");
    assert_eq!(nic(&server, "myip=192.0.2.9", "admin", "admin-password-123").body, "notfqdn");
}

#[test]
fn dyndns2_credentials_in_the_query_and_the_401_challenge() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    let r = server.get("/nic/update?hostname=home.example.com&myip=192.0.2.1");
    assert_eq!((r.status, r.body.as_str()), (401, "badauth"));
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"dyndns\""));
    // user without pass: still a challenge (the original let this through).
    let r = server.get("/nic/update?hostname=home.example.com&user=home&myip=192.0.2.1");
    assert_eq!(r.status, 401);
    assert!(record_calls(&fake).is_empty());

    let r = server.get(&format!("/nic/update?hostname=home.example.com&myip=192.0.2.1&user=home&pass={key}"));
    assert_eq!(r.body, "good 192.0.2.1");
    let r = server
        .get(&format!("/nic/update?hostname=home.example.com&myip=192.0.2.1&username=home.example.com&password={key}"));
    assert_eq!(r.body, "nochg 192.0.2.1");
    // No hostname, but the user is the full name (some routers).
    let r = server.get(&format!("/nic/update?myip=192.0.2.1&user=home.example.com&pass={key}"));
    assert_eq!(r.body, "nochg 192.0.2.1");
    // POST with a form body.
    let form = format!("hostname=home.example.com&myip=192.0.2.2&user=home&pass={key}");
    let r =
        server.request("POST", "/nic/update", &[("Content-Type", "application/x-www-form-urlencoded")], Some(&form));
    assert_eq!(r.body, "good 192.0.2.2");
}

#[test]
fn dyndns2_wrong_credentials_never_reach_hetzner() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com,other.example.com").start();
    let key = server.key(HOME);
    let other = server.key("other.example.com");
    let cases = [
        ("hostname=home.example.com", "home", "wrong".to_string()),
        ("hostname=home.example.com", "home", other.clone()),
        ("hostname=home.example.com", "home", key.to_uppercase()),
        ("hostname=home.example.com", "home", String::new()),
        ("hostname=home.example.com", "other", key.clone()),
        ("hostname=nobody.example.com", "nobody", key.clone()),
        ("hostname=home.example.com,other.example.com", "home", key.clone()),
        ("hostname=h%C3%B6me.example.com", "home", key.clone()),
    ];
    for (query, user, pass) in &cases {
        let r = nic(&server, &format!("{query}&myip=192.0.2.1"), user, pass);
        assert_eq!((r.status, r.body.as_str()), (401, "badauth"), "{query} as {user}");
    }
    assert!(record_calls(&fake).is_empty(), "{:?}", fake.calls());
}

#[test]
fn dyndns2_refuses_a_prefix_and_keeps_the_record() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    nic(&server, "hostname=home.example.com&myipv6=2001:db8::1", "home", &key);
    let r = nic(&server, "hostname=home.example.com&myipv6=2001:db8:1:2::/64", "home", &key);
    assert_eq!((r.status, r.body.as_str()), (200, "badip"));
    let r = nic(&server, "hostname=home.example.com&myip=not-an-ip", "home", &key);
    assert_eq!(r.body, "badip");
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), Some(vec!["2001:db8::1".to_string()]));
}

#[test]
fn head_never_updates_and_other_paths_answer_404() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    let auth = basic("home", &key);
    let r = server.request(
        "HEAD",
        "/nic/update?hostname=home.example.com&myip=192.0.2.1",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 405);
    assert_eq!(fake.rrset("example.com", "home", "A"), None);
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.request("DELETE", "/nic/update", &[], None).status, 405);
    let r = server.get("/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = server.request("GET", "/ip", &[("X-Forwarded-For", "2001:db8::77")], None);
    assert_eq!(r.body, "2001:db8::77");
    assert_eq!(server.get("/ip").body, "127.0.0.1");
}

#[test]
fn the_zone_list_is_read_again_after_zone_cache_ttl() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME).var("ZONE_CACHE_TTL", "1").start();
    let key = server.key(HOME);
    let listings = || fake.calls().iter().filter(|c| c.starts_with("GET /v1/zones?")).count();
    fake.wait_for_zone_listing();
    let ip = |n: u8| format!(r#"{{"fqdn": "home.example.com", "ip": "192.0.2.{n}"}}"#);
    server.update(&ip(1), &key);
    assert_eq!(listings(), 1, "a fresh list is used: {:?}", fake.calls());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(server.update(&ip(2), &key).json()["status"], "updated");
    assert_eq!(listings(), 2, "an expired list is read again: {:?}", fake.calls());
}

#[test]
fn a_write_waits_for_its_action_to_finish() {
    let (fake, server) = setup(HOME);
    fake.set_polls_per_action(2);
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &server.key(HOME));
    assert_eq!(r.json()["status"], "created");
    let polls = fake.calls().iter().filter(|c| c.starts_with("GET /v1/actions/")).count();
    assert_eq!(polls, 2, "answered only once the action succeeded: {:?}", fake.calls());
}

#[test]
fn a_secondary_zone_is_refused_with_a_clear_reason() {
    let fake = FakeHetzner::start();
    fake.add_zone_with_mode("example.com", "secondary");
    let server = Setup::new(&fake, HOME).start();
    let key = server.key(HOME);
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &key);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("secondary zone")), "{}", r.body);
    assert_eq!(nic(&server, "hostname=home.example.com&myip=192.0.2.1", "home", &key).body, "dnserr");
}

#[test]
fn concurrent_first_updates_of_one_host_create_once() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.50"}"#, &key)))
            .collect();
        let statuses: Vec<String> =
            handles.into_iter().map(|h| h.join().expect("thread").json()["status"].to_string()).collect();
        assert_eq!(statuses.iter().filter(|s| s.contains("created")).count(), 1, "{statuses:?}");
    });
    let creates = fake.calls().iter().filter(|c| *c == "POST /v1/zones/100/rrsets").count();
    assert_eq!(creates, 1);
}

#[test]
fn zones_are_found_on_label_boundaries_across_pages_apex_and_idn() {
    let fake = FakeHetzner::start();
    for i in 0..60 {
        fake.add_zone(&format!("filler{i}.com"));
    }
    fake.add_zone("ample.com");
    fake.add_zone("example.co.uk");
    fake.add_zone("xn--mnchen-3ya.de");
    let hosts = "a.b.example.co.uk,example.co.uk,home.münchen.de";
    let server = Setup::new(&fake, hosts).start();
    for (host, zone, name) in [
        ("a.b.example.co.uk", "example.co.uk", "a.b"),
        ("example.co.uk", "example.co.uk", "@"),
        ("home.xn--mnchen-3ya.de", "xn--mnchen-3ya.de", "home"),
    ] {
        let r = server.update(&format!(r#"{{"fqdn": "{host}", "ip": "192.0.2.3"}}"#), &server.key(host));
        assert_eq!(r.json()["status"], "created", "{host}: {}", r.body);
        assert_eq!(fake.rrset(zone, name, "A"), Some(vec!["192.0.2.3".to_string()]), "{host}");
    }
    // The Unicode spelling authenticates as the same host.
    let key = server.key("home.xn--mnchen-3ya.de");
    let r = server.update(r#"{"fqdn": "Home.München.de.", "ip": "192.0.2.3"}"#, &key);
    assert_eq!(r.json()["status"], "unchanged");
    let pages: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("GET /v1/zones?")).collect();
    assert_eq!(pages, vec!["GET /v1/zones?page=1&per_page=50", "GET /v1/zones?page=2&per_page=50"]);
}

#[test]
fn a_host_without_a_zone_is_a_dns_error_not_a_wrong_match() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.badexample.com").start();
    let key = server.key("home.badexample.com");
    let r = nic(&server, "hostname=home.badexample.com&myip=192.0.2.1", "home", &key);
    assert_eq!(r.body, "dnserr");
    let r = server.update(r#"{"fqdn": "home.badexample.com", "ip": "192.0.2.1"}"#, &key);
    assert_eq!(r.status, 502);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("no zone")), "{}", r.body);
    assert_eq!(fake.rrset("example.com", "home", "A"), None);
}

#[test]
fn hetzner_errors_are_surfaced_nothing_is_cached_and_recovery_writes() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    // Every report goes to Hetzner, even right after a failure.
    let server = Setup::new(&fake, HOME).var("FAILED_WRITE_RETRY", "0").start();
    let key = server.key(HOME);
    server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &key);

    fake.fail_next(Fault::Error { status: 500, code: "server_error" });
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!((r.status, r.body.as_str()), (200, "911"));

    fake.fail_next(Fault::Error { status: 401, code: "unauthorized" });
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.2"}"#, &key);
    assert_eq!(r.status, 502);
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("unauthorized") && error.contains("check HETZNER_TOKEN") && error.contains("correlation id"),
        "{error}"
    );
    assert!(!error.contains(e2e::TOKEN));

    fake.fail_next(Fault::Html { status: 502 });
    fake.fail_next(Fault::Html { status: 502 });
    fake.fail_next(Fault::Html { status: 502 });
    fake.fail_next(Fault::Html { status: 502 });
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!(r.body, "911");

    fake.fail_next(Fault::ActionError);
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.2"}"#, &key);
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]));

    // Healthy again: the next request reads the truth and writes.
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!(r.body, "good 192.0.2.2");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.2".to_string()]));
}

#[test]
fn rate_limits_and_conflicts_are_retried_within_the_request() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &key);
    fake.fail_next(Fault::RateLimited { reset_in: 1 });
    fake.fail_next(Fault::Error { status: 409, code: "conflict" });
    let started = std::time::Instant::now();
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.9"}"#, &key);
    assert_eq!(r.json()["status"], "updated", "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.9".to_string()]));
}

#[test]
fn a_redirect_or_a_non_json_answer_says_the_url_is_wrong() {
    let (fake, server) = setup(HOME);
    let key = server.key(HOME);
    server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &key);
    fake.fail_next(Fault::Redirect);
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.2"}"#, &key);
    assert_eq!(r.status, 502);
    assert!(r.body.contains("HETZNER_API_URL"), "{}", r.body);
    fake.fail_next(Fault::InvalidJson);
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.2"}"#, &key);
    assert!(r.status >= 502 && r.body.contains("not JSON"), "{}", r.body);
}

#[test]
fn a_create_race_falls_back_to_set_records() {
    let (fake, server) = setup("home.example.com,other.example.com");
    // Let the zone list be cached first.
    server.update(r#"{"fqdn": "other.example.com", "ip": "192.0.2.1"}"#, &server.key("other.example.com"));
    // Someone creates the record between our read (404) and our create (409).
    fake.put_rrset("example.com", "home", "A", &["192.0.2.99"]);
    fake.fail_next(Fault::Error { status: 404, code: "not_found" });
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.5"}"#, &server.key(HOME));
    assert_eq!(r.json()["status"], "updated", "{}", r.body);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.5".to_string()]));
}

#[test]
fn keys_are_generated_once_kept_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeHetzner::start();
    let setup = Setup::new(&fake, "a.example.com");
    let path = setup.dir.join("keys");
    std::fs::write(&path, "# my keys\nold.example.com oldkey-oldkey-oldkey\nthis line is broken\n").expect("seed");
    let server = setup.start();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# my keys\nold.example.com oldkey-oldkey-oldkey\nthis line is broken\n"), "{text}");
    let key = server.key("a.example.com");
    assert_eq!(key.len(), 43);
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    let _dir = server.stop();
    // A restart with another host keeps the first key.
    let again = Setup::new(&fake, "a.example.com,b.example.com");
    std::fs::copy(&path, again.dir.join("keys")).expect("copy");
    let server = again.start();
    assert_eq!(server.key("a.example.com"), key);
    assert_ne!(server.key("b.example.com"), key);
}

#[test]
fn dry_run_needs_no_token_and_keeps_records_in_memory() {
    let fake = FakeHetzner::start();
    let server = Setup::new(&fake, HOME).without("HETZNER_TOKEN").var("DRY_RUN", "1").start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, "hostname=home.example.com&myip=192.0.2.1", "home", &key).body, "good 192.0.2.1");
    assert_eq!(nic(&server, "hostname=home.example.com&myip=192.0.2.1", "home", &key).body, "nochg 192.0.2.1");
    assert_eq!(fake.call_count(), 0);
}

#[test]
fn invalid_input_hangs_and_resets_end_promptly_and_cache_nothing() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME).var("HETZNER_TIMEOUT", "1").var("FAILED_WRITE_RETRY", "0").start();
    let key = server.key(HOME);
    server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#, &key);

    fake.fail_next(Fault::Error { status: 422, code: "invalid_input" });
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!(r.body, "dnserr", "422 is not fixed by retrying");

    fake.fail_next(Fault::Reset);
    let started = std::time::Instant::now();
    let r = server.update(r#"{"fqdn": "home.example.com", "ip": "192.0.2.2"}"#, &key);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.starts_with("could not confirm")), "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "a reset is seen at once: {:?}", started.elapsed());

    fake.fail_next(Fault::Hang(std::time::Duration::from_secs(30)));
    let started = std::time::Instant::now();
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!(r.body, "911");
    let held = started.elapsed();
    assert!(
        held >= std::time::Duration::from_secs(1) && held < std::time::Duration::from_secs(3),
        "HETZNER_TIMEOUT=1 held {held:?}"
    );

    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]));
    let r = nic(&server, "hostname=home.example.com&myip=192.0.2.2", "home", &key);
    assert_eq!(r.body, "good 192.0.2.2", "recovered: nothing wrong was cached");
}
