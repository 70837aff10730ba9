//! Hostile input end to end: key guessing, spoofed proxy headers, oversized
//! requests.

use e2e::{FakeHetzner, Setup, TestServer};

const HOME: &str = "home.example.com";

fn server(extra: &[(&str, &str)]) -> (FakeHetzner, TestServer) {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let mut setup = Setup::new(&fake, HOME);
    for (k, v) in extra {
        setup = setup.var(k, v);
    }
    (fake, setup.start())
}

#[test]
fn key_guessing_is_refused_per_source_without_locking_out_others() {
    let (fake, server) = server(&[]);
    let key = server.key(HOME);
    let body = r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#;
    // The test client is behind the "proxy" 127.0.0.1 (trusted by default).
    let from = |source: &str, k: &str| {
        server.request("POST", "/update", &[("X-Pre-Shared-Key", k), ("X-Real-Ip", source)], Some(body))
    };
    for _ in 0..10 {
        assert_eq!(from("203.0.113.66", "guess").status, 401);
    }
    let r = from("203.0.113.66", &key);
    assert_eq!(r.status, 429, "blocked even with the right key: {}", r.body);
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 200)));
    let auth = e2e::basic("home", &key);
    let r = server.request(
        "GET",
        "/nic/update?hostname=home.example.com&myip=192.0.2.1",
        &[("Authorization", &auth), ("X-Real-Ip", "203.0.113.66")],
        None,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "abuse"));
    // Another source with the right key is not affected.
    let r = from("198.51.100.5", &key);
    assert_eq!(r.json()["status"], "created", "{}", r.body);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]));
}

#[test]
fn proxy_headers_count_only_from_trusted_proxies() {
    let (_fake, server) = server(&[("TRUSTED_PROXIES", "none")]);
    let key = server.key(HOME);
    let r = server.request(
        "POST",
        "/update",
        &[("X-Pre-Shared-Key", &key), ("X-Forwarded-For", "203.0.113.5"), ("X-Real-Ip", "203.0.113.6")],
        Some(r#"{"fqdn": "home.example.com"}"#),
    );
    assert_eq!(r.json()["ip"], "127.0.0.1", "spoofed headers from an untrusted peer are ignored");
    let r = server.request("GET", "/ip", &[("X-Real-Ip", "203.0.113.6")], None);
    assert_eq!(r.body, "127.0.0.1");
}

#[test]
fn oversized_requests_get_clear_answers() {
    let (_fake, server) = server(&[]);
    let long = format!("/nic/update?hostname={}", "a".repeat(5000));
    assert_eq!(server.get(&long).status, 414);
    let many = (0..25).map(|i| format!("h{i}.example.com")).collect::<Vec<_>>().join(",");
    let r = server.get_as(&format!("/nic/update?hostname={many}"), "home", &server.key(HOME));
    assert_eq!(r.body, "numhost");
}
