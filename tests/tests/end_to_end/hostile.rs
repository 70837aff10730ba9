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
fn guesses_from_an_address_never_lock_out_a_right_key_from_it() {
    let (fake, server) = server(&[("BASIC_AUTH_USERNAME", "boss"), ("BASIC_AUTH_PASSWORD", "a-long-admin-password")]);
    let key = server.key(HOME);
    let body = r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#;
    // The test client is behind the "proxy" 127.0.0.1 (trusted by default):
    // everyone here shares one address, as behind CGNAT.
    let shared = "203.0.113.66";
    let from = |source: &str, k: &str| {
        server.request("POST", "/update", &[("X-Pre-Shared-Key", k), ("X-Real-Ip", source)], Some(body))
    };
    let admin_from = |source: &str, pass: &str| {
        let auth = e2e::basic("boss", pass);
        server.request(
            "GET",
            "/status",
            &[("Authorization", &auth), ("X-Real-Ip", source), ("Accept", "application/json")],
            None,
        )
    };
    for _ in 0..10 {
        assert_eq!(from(shared, "guess").status, 401);
    }
    // Wrong keys are now answered at once with 429 …
    let r = from(shared, "guess");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 200)));
    // … but the right key from the same address works, on every endpoint.
    let r = from(shared, &key);
    assert_eq!(r.json()["status"], "created", "{}", r.body);
    let auth = e2e::basic("home", &key);
    let r = server.request(
        "GET",
        "/nic/update?hostname=home.example.com&myip=192.0.2.2",
        &[("Authorization", &auth), ("X-Real-Ip", shared)],
        None,
    );
    assert_eq!((r.status, r.body.as_str()), (200, "good 192.0.2.2"));
    let r = server.request(
        "GET",
        "/nic/update?hostname=home.example.com&myip=192.0.2.3",
        &[("Authorization", &e2e::basic("home", "guess")), ("X-Real-Ip", shared)],
        None,
    );
    assert_eq!(r.body, "abuse", "a wrong key from the refused source");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.2".to_string()]));
    // Host-key guesses do not lock the admin out either.
    assert_eq!(admin_from(shared, "a-long-admin-password").status, 200);

    // Guessing the admin's password: ten tries, then the admin's logins
    // from that address are refused, right or wrong …
    for _ in 0..10 {
        assert_eq!(admin_from("198.51.100.7", "wrong-password").status, 401);
    }
    let r = admin_from("198.51.100.7", "a-long-admin-password");
    assert_eq!(r.status, 429, "the right password from the guessing address: {}", r.body);
    assert_eq!(admin_from("198.51.100.7", "wrong-password").status, 429);
    // … while the admin from elsewhere, and host keys from there, still work.
    assert_eq!(admin_from("198.51.100.8", "a-long-admin-password").status, 200);
    let r = from("198.51.100.7", &key);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A request through a proxy on the same host (the test client's 127.0.0.1)
/// that appends the address it saw to `X-Forwarded-For`, as Caddy, HAProxy
/// and nginx with `$proxy_add_x_forwarded_for` do, and passes the client's
/// other headers on unchanged.
fn via_proxy(server: &TestServer, client: &str, forged: &[(&str, &str)], path: &str, key: &str) -> e2e::Resp {
    let mut forwarded = forged.iter().find(|(k, _)| *k == "X-Forwarded-For").map(|(_, v)| v.to_string());
    forwarded = Some(match forwarded {
        Some(f) => format!("{f}, {client}"),
        None => client.to_string(),
    });
    let forwarded = forwarded.unwrap_or_default();
    let mut headers: Vec<(&str, &str)> = forged.iter().filter(|(k, _)| *k != "X-Forwarded-For").copied().collect();
    headers.push(("X-Forwarded-For", &forwarded));
    let auth = e2e::basic("home", key);
    headers.push(("Authorization", &auth));
    server.request("GET", path, &headers, None)
}

#[test]
fn behind_a_proxy_a_client_cannot_choose_its_address() {
    let (fake, server) = server(&[]);
    let key = server.key(HOME);
    let update = "/nic/update?hostname=home.example.com";
    // 40 wrong keys, each with another forged X-Real-Ip and X-Forwarded-For:
    // all count against the address the proxy saw.
    let mut answers = Vec::new();
    for i in 0..40 {
        let forged_ip = format!("198.51.100.{i}");
        let forged = [("X-Real-Ip", forged_ip.as_str()), ("X-Forwarded-For", forged_ip.as_str())];
        answers.push(via_proxy(&server, "203.0.113.66", &forged, update, "guess").body);
    }
    assert_eq!(answers.iter().filter(|b| *b == "badauth").count(), 10, "{answers:?}");
    assert!(answers[10..].iter().all(|b| b == "abuse"), "{answers:?}");

    // The attacker sent its failures in a victim's name: the victim is not blocked.
    let forged = [("X-Forwarded-For", "192.0.2.44")];
    for _ in 0..10 {
        via_proxy(&server, "203.0.113.77", &forged, update, "guess");
    }
    let r = via_proxy(&server, "192.0.2.44", &[], update, &key);
    assert_eq!(r.body, "good 192.0.2.44", "the victim's right key works from its own address");

    // An update without myip takes the proven address, not a forged one.
    let forged = [("X-Real-Ip", "6.6.6.6"), ("X-Forwarded-For", "6.6.6.6")];
    let r = via_proxy(&server, "192.0.2.45", &forged, update, &key);
    assert_eq!(r.body, "good 192.0.2.45");
    let r = via_proxy(&server, "192.0.2.46", &forged, "/ip", &key);
    assert_eq!(r.body, "192.0.2.46");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.45".to_string()]));
}

#[test]
fn one_valid_key_does_not_reset_the_count_of_guesses_at_other_keys() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com,victim.example.com").start();
    let own = server.key(HOME);
    let mut answers = Vec::new();
    for i in 0..30 {
        // Every third request uses its own valid key, the others guess.
        let (host, key) = if i % 3 == 0 { (HOME, own.as_str()) } else { ("victim.example.com", "guess") };
        let body = format!(r#"{{"fqdn": "{host}", "ip": "192.0.2.1"}}"#);
        answers.push(server.request("POST", "/update", &[("X-Pre-Shared-Key", key)], Some(&body)).status);
    }
    let guesses_answered_401 = answers.iter().filter(|s| **s == 401).count();
    assert_eq!(guesses_answered_401, 10, "{answers:?}");
    assert_eq!(answers.last(), Some(&429), "{answers:?}");
}

#[test]
fn proxy_headers_count_only_from_trusted_proxies() {
    let (_fake, server) = server(&[("TRUSTED_PROXIES", "none"), ("ALLOW_PRIVATE_ADDRESSES", "1")]);
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

#[test]
fn random_requests_always_get_well_formed_answers() {
    let (_fake, server) = server(&[("DRY_RUN", "1")]);
    let key = server.key(HOME);
    let auth = e2e::basic("home", &key);
    let mut rng = fastrand::Rng::with_seed(7);
    const PIECES: &[&str] = &[
        "hostname=",
        "home.example.com",
        ",",
        "&",
        "myip=",
        "myipv6=",
        "192.0.2.",
        "2001:db8::",
        "/64",
        "%3a",
        "%",
        "user=home",
        "pass=",
        "x",
        ".",
        "=",
        "%C3%BC",
        "%FF",
        "bad_name",
        "nobody.example.com",
        "::ffff:",
        "1",
        "0",
    ];
    let codes = ["badauth", "notfqdn", "nohost", "numhost", "dnserr", "911", "badip", "abuse"];
    // Valid HTTP only: raw non-ASCII in the request line is dropped by
    // tiny_http before the server sees it (server/README.md, "Known limitation").
    for i in 0..400u32 {
        // A source of its own each round, so the failed-auth limit is not hit.
        let source = format!("10.{}.{}.1", i / 250, i % 250);
        let query: String = (0..rng.usize(0..12)).map(|_| PIECES[rng.usize(0..PIECES.len())]).collect();
        let r = server.request(
            "GET",
            &format!("/nic/update?{query}"),
            &[("Authorization", &auth), ("X-Real-Ip", &source)],
            None,
        );
        assert!([200, 401].contains(&r.status), "{query:?} → {} {}", r.status, r.body);
        for line in r.body.lines() {
            let ok = codes.contains(&line)
                || line
                    .strip_prefix("good ")
                    .or_else(|| line.strip_prefix("nochg "))
                    .is_some_and(|ips| ips.split(',').all(|ip| ip.parse::<std::net::IpAddr>().is_ok()));
            assert!(ok, "{query:?} → {line:?}");
        }
        let body: String = (0..rng.usize(0..8))
            .map(|_| {
                ["{", "}", "\"fqdn\":", "\"home.example.com\"", "\"ip\":", "\"192.0.2.9\"", ",", "null", "[", "5"]
                    [rng.usize(0..10)]
            })
            .collect();
        let headers = [("X-Pre-Shared-Key", key.as_str()), ("X-Real-Ip", source.as_str())];
        let r = server.request("POST", "/update", &headers, Some(&body));
        assert!([200, 400, 401, 404].contains(&r.status), "{body:?} → {} {}", r.status, r.body);
        let doc = r.json();
        assert!(doc.get("status").is_some() || doc.get("error").is_some(), "{body:?} → {}", r.body);
    }
}

/// Time one request and check its answer.
#[track_caller]
fn quick(what: &str, max: std::time::Duration, f: impl FnOnce() -> e2e::Resp) -> e2e::Resp {
    let started = std::time::Instant::now();
    let r = f();
    assert!(started.elapsed() < max, "{what} took {:?} ({} {})", started.elapsed(), r.status, r.body);
    r
}

#[test]
fn nobody_waits_behind_someone_elses_hetzner_call() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let hosts: Vec<String> = (0..20).map(|i| format!("h{i}.example.com")).collect();
    let server = Setup::new(&fake, &format!("{HOME},{}", hosts.join(","))).var("HETZNER_TIMEOUT", "2").start();
    fake.wait_for_zone_listing();
    let key = server.key(HOME);
    let body = r#"{"fqdn": "home.example.com", "ip": "192.0.2.1"}"#;
    assert_eq!(server.update(body, &key).json()["status"], "created");

    // Hetzner now hangs on every call (each cut off after HETZNER_TIMEOUT,
    // 2 s), and 20 hosts wait on it: more than the 8 shared workers the
    // server once had.
    for _ in 0..40 {
        fake.fail_next(e2e::Fault::Hang(std::time::Duration::from_secs(4)));
    }
    let waiting: Vec<_> = hosts
        .iter()
        .map(|h| {
            let (base, key, h) = (server.base.clone(), server.key(h), h.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"fqdn": "{h}", "ip": "198.51.100.7"}}"#);
                e2e::request(&format!("{base}/update"), "POST", &[("X-Pre-Shared-Key", &key)], Some(&body)).status
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Waiting behind a hung call would take the rest of its 2 s (1.5 s or
    // more); 1 s leaves room for a loaded 2-core runner.
    let limit = std::time::Duration::from_secs(1);
    for _ in 0..10 {
        assert_eq!(quick("/healthz", limit, || server.get("/healthz")).status, 200);
        let r = quick("a cached update", limit, || server.update(body, &key));
        assert_eq!(r.json()["status"], "unchanged", "{}", r.body);
    }
    for w in waiting {
        assert_ne!(w.join().expect("thread"), 200, "the hanging API cannot have confirmed a write");
    }
}

#[test]
fn one_host_flooding_changes_cannot_hold_up_others_or_spend_the_api_budget() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, &format!("{HOME},other.example.com")).start();
    fake.wait_for_zone_listing();
    let other_key = server.key("other.example.com");
    let other = r#"{"fqdn": "other.example.com", "ip": "203.0.113.8"}"#;
    assert_eq!(server.update(other, &other_key).json()["status"], "created");
    fake.clear_calls();

    // A leaked key: 40 parallel updates, each with a new address.
    let key = server.key(HOME);
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let (base, key) = (server.base.clone(), key.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"fqdn": "home.example.com", "ip": "192.0.2.{}"}}"#, i + 1);
                e2e::request(&format!("{base}/update"), "POST", &[("X-Pre-Shared-Key", &key)], Some(&body))
            })
        })
        .collect();
    // Waiting behind the flood would take its writes' calls and action
    // polls (half a second each, ten of them); 1 s leaves room for a
    // loaded 2-core runner.
    let limit = std::time::Duration::from_secs(1);
    for _ in 0..5 {
        assert_eq!(quick("/healthz", limit, || server.get("/healthz")).status, 200);
        let r = quick("another host's update", limit, || server.update(other, &other_key));
        assert_eq!(r.json()["status"], "unchanged");
    }
    let answers: Vec<e2e::Resp> = flood.into_iter().map(|t| t.join().expect("thread")).collect();
    let written = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&e2e::Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(written, 10, "HOST_WRITE_BURST writes go through");
    assert_eq!(refused.len(), 30, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in refused {
        let wait: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=300).contains(&wait), "{wait}");
        assert!(r.body.contains("HOST_WRITES_PER_HOUR"), "{}", r.body);
    }
    // 10 writes of a known record: set_records and its action poll each.
    let calls = fake.call_count();
    assert!(calls <= 10 * 3, "{calls} Hetzner calls for the flood: {:?}", fake.calls());

    // dyndns2 gets its own code for it.
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.99", "home", &key);
    assert_eq!(r.body, "abuse");
}

#[test]
fn a_legitimate_burst_of_changes_goes_through() {
    let (fake, server) = server(&[]);
    let key = server.key(HOME);
    // A line that flaps, reported over both families: 10 writes at once.
    for i in 0..5 {
        let q = format!("/nic/update?hostname=home.example.com&myip=192.0.2.{},2001:db8::{}", i + 1, i + 1);
        let r = server.get_as(&q, "home", &key);
        assert!(r.body.starts_with("good "), "change {i}: {}", r.body);
    }
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), Some(vec!["2001:db8::5".to_string()]));
    // The eleventh is one too many; an unchanged report still costs nothing.
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.77", "home", &key);
    assert_eq!(r.body, "abuse");
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.5", "home", &key);
    assert_eq!(r.body, "nochg 192.0.2.5");
}

/// Raw bytes on a new connection; everything the server sends until it
/// closes (or `wait` passes, which fails the test).
#[track_caller]
fn raw_exchange(server: &TestServer, bytes: &[u8], wait: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let addr = server.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(wait)).expect("timeout");
    conn.write_all(bytes).expect("send");
    // Half-closed, as a client that has nothing more to say: the server's
    // linger after a refusal then ends at once.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    match conn.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "no end of the answer to {:?} within {wait:?} ({e}); got {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn http2_and_other_versions_are_refused_and_their_connections_end() {
    let (_fake, server) = server(&[]);
    let wait = std::time::Duration::from_secs(5);
    let attempts: [&[u8]; 4] = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/0.9\r\n\r\n",
    ];
    for _ in 0..10 {
        for bytes in attempts {
            let answer = raw_exchange(&server, bytes, wait);
            assert!(answer.starts_with("HTTP/1.1 505 "), "{answer:?}");
        }
    }
    // Nothing is left behind: every one of the 40 connections was closed.
    let until = std::time::Instant::now() + wait;
    while server.running().open_connections() > 0 {
        assert!(std::time::Instant::now() < until, "{} connections still open", server.running().open_connections());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn after_a_hetzner_outage_retrying_routers_are_not_locked_out_and_their_last_report_lands() {
    let (fake, server) = server(&[("FAILED_WRITE_RETRY", "3")]);
    let key = server.key(HOME);
    let report = |n: u32| server.get_as(&format!("/nic/update?hostname={HOME}&myip=192.0.2.{n}"), "home", &key).body;
    assert_eq!(report(1), "good 192.0.2.1");
    fake.set_outage(Some(e2e::Fault::Error { status: 503, code: "unavailable" }));
    fake.clear_calls();
    // A router that retries through the outage, its address changing more
    // often than HOST_WRITE_BURST (10) allows: none of it reached Hetzner,
    // so none of it is charged to the host.
    for n in 2..30 {
        assert_eq!(report(n), "911", "report {n} during the outage");
    }
    let calls = fake.call_count();
    // 28 reports over a few seconds: one attempt per FAILED_WRITE_RETRY
    // (3 s), each with Hetzner's own retries.
    assert!(calls <= 3 * 3, "{calls} calls for 28 reports in one outage: {:?}", fake.calls());
    fake.set_outage(None);
    // The router's last report lands without its help.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fake.rrset("example.com", "home", "A") != Some(vec!["192.0.2.29".to_string()]) {
        assert!(
            std::time::Instant::now() < until,
            "the last report never landed: {:?}",
            fake.rrset("example.com", "home", "A")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(report(29), "nochg 192.0.2.29");
    // And its next change goes through at once.
    assert_eq!(report(30), "good 192.0.2.30");
}

#[test]
fn a_report_during_an_outage_is_replaced_by_a_newer_one() {
    let (fake, server) = server(&[("FAILED_WRITE_RETRY", "3")]);
    let key = server.key(HOME);
    let report = |n: u32| server.get_as(&format!("/nic/update?hostname={HOME}&myip=192.0.2.{n}"), "home", &key).body;
    assert_eq!(report(1), "good 192.0.2.1");
    fake.set_outage(Some(e2e::Fault::Reset));
    assert_eq!(report(7), "911");
    fake.set_outage(None);
    // The router went back to its old address before the server retried
    // (answered from memory: the failure was moments ago).
    assert_eq!(report(1), "911");
    // Once the server has written the newest report itself, it is settled;
    // the replaced 192.0.2.7 is never written.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while report(1) != "nochg 192.0.2.1" {
        assert!(std::time::Instant::now() < until, "the newest report was not settled");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Nothing is left for the retry thread: nothing else will be written.
    assert_eq!(server.running().app.updater.pending(), Vec::new(), "a change still pending");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]), "{:?}", fake.calls());
}

#[test]
fn a_reload_with_the_key_file_missing_keeps_the_keys_in_use() {
    let (_fake, server) = server(&[]);
    let key = server.key(HOME);
    std::fs::remove_file(server.dir.join("keys")).expect("remove the key file");
    server.running().reload();
    let r = server.get_as(&format!("/nic/update?hostname={HOME}&myip=192.0.2.1"), "home", &key);
    assert_eq!(r.body, "good 192.0.2.1", "the key was revoked by a missing file");
    // An emptied file still revokes.
    std::fs::write(server.dir.join("keys"), "").expect("empty the key file");
    server.running().reload();
    let r = server.get_as(&format!("/nic/update?hostname={HOME}&myip=192.0.2.2"), "home", &key);
    assert_eq!(r.status, 401, "{}", r.body);
}
