//! Operations end to end: ntfy notifications, the lost-host monitor, the
//! state file across restarts, the status page and metrics.

use std::time::{Duration, Instant};

use e2e::{basic, FakeHetzner, FakeNtfy, Fault, Setup, TestServer};

pub(crate) const HOME: &str = "home.example.com";
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn fake() -> FakeHetzner {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    fake
}

fn with_ntfy(setup: Setup, ntfy: &FakeNtfy) -> Setup {
    setup.var("NTFY_URL", ntfy.url()).var("NTFY_TOPIC", "dyndns").var("NTFY_TOKEN", "tk_secret_token")
}

pub(crate) fn update(server: &TestServer, ip: &str) -> e2e::Resp {
    server.update(&format!(r#"{{"fqdn": "{HOME}", "ip": "{ip}"}}"#), &server.key(HOME))
}

#[test]
fn a_hetzner_failure_is_notified_once_and_changes_only_when_asked() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy).var("NOTIFY_ON_CHANGE", "1").start();

    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");
    let change = ntfy.next(WAIT).expect("change notification");
    assert_eq!(change.topic, "dyndns");
    assert_eq!(change.title, "home.example.com A is now 192.0.2.1");
    assert_eq!(change.priority, "3");
    assert_eq!(change.authorization.as_deref(), Some("Bearer tk_secret_token"));

    for _ in 0..3 {
        fake.fail_next(Fault::Error { status: 401, code: "unauthorized" });
        assert_eq!(update(&server, "192.0.2.2").status, 502);
    }
    let failure = ntfy.next(WAIT).expect("failure notification");
    assert_eq!(failure.title, "dyndns: update of home.example.com failed");
    assert_eq!(failure.priority, "4");
    assert!(failure.body.contains("unauthorized") && failure.body.contains("check HETZNER_TOKEN"), "{}", failure.body);
    assert!(!failure.body.contains(e2e::TOKEN));

    // An unchanged address announces nothing; the next message is the next
    // change, not a repeat of the failure.
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "unchanged");
    assert_eq!(update(&server, "192.0.2.3").json()["status"], "updated");
    let next = ntfy.next(WAIT).expect("change notification");
    assert_eq!(next.title, "home.example.com A is now 192.0.2.3");
}

#[test]
fn unauthenticated_requests_never_notify_but_misconfigured_clients_do() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy).start();
    let r = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.1", "home", "wrong");
    assert_eq!(r.status, 401);
    let r = server.get_as("/nic/update?hostname=home.example.com&myipv6=2001:db8:1::/64", "home", &server.key(HOME));
    assert_eq!(r.body, "badip");
    let m = ntfy.next(WAIT).expect("notification");
    assert_eq!(m.title, "dyndns: rejected an update of home.example.com");
    assert!(m.body.contains("network prefix"), "{}", m.body);
}

#[test]
fn ntfy_down_never_slows_updates_and_is_counted() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    ntfy.fail_next(100);
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy)
        .var("NOTIFY_ON_CHANGE", "1")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    let started = Instant::now();
    for i in 1..=3 {
        assert_eq!(update(&server, &format!("192.0.2.{i}")).status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // Each message is tried three times (0 s, 1 s, 2 s later), then counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    let auth = basic("admin", "admin-password-123");
    loop {
        let metrics = server.request("GET", "/metrics", &[("Authorization", &auth)], None).body;
        if metrics.contains("dyndns_notification_failures_total 1")
            || metrics.contains("dyndns_notification_failures_total 2")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ntfy.attempts.load(std::sync::atomic::Ordering::SeqCst) >= 3);
}

#[test]
fn a_silent_host_is_reported_lost_once_then_back_online() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy)
        .var("LOST_CONNECTION_TIMEOUT", "1")
        .var("CONNECTION_CHECK_INTERVAL", "1")
        .start();
    let lost = ntfy.next(WAIT).expect("lost notification");
    assert_eq!(lost.title, "home.example.com is offline");
    assert_eq!(lost.priority, "4");
    // Another check passes (one a second): the outage is not announced again.
    assert!(ntfy.next(Duration::from_millis(1300)).is_none(), "announced more than once");

    update(&server, "192.0.2.1");
    let back = ntfy.next(WAIT).expect("back online");
    assert_eq!(back.title, "home.example.com is back online");
    assert_eq!(back.priority, "3");
    assert!(back.body.contains("after"), "{}", back.body);
}

#[test]
fn a_client_alternating_bad_and_good_requests_cannot_flood_the_phone() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy).start();
    let key = server.key(HOME);
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");
    for _ in 0..20 {
        let bad = server.get_as("/nic/update?hostname=home.example.com&myip=2001:db8::/64", "home", &key);
        assert_eq!(bad.body, "badip");
        let good = server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.1", "home", &key);
        assert_eq!(good.body, "nochg 192.0.2.1");
    }
    assert_eq!(ntfy.next(WAIT).expect("one message").title, "dyndns: rejected an update of home.example.com");
    assert!(ntfy.next(Duration::from_millis(500)).is_none(), "a cached answer re-armed the announcement");
}

#[test]
fn one_host_causes_at_most_ten_messages_an_hour() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server =
        with_ntfy(Setup::new(&fake, HOME), &ntfy).var("NOTIFY_ON_CHANGE", "1").var("HOST_WRITE_BURST", "100").start();
    fake.set_polls_per_action(0);
    for i in 1..=15 {
        assert_eq!(update(&server, &format!("192.0.2.{i}")).status, 200);
    }
    let mut titles = Vec::new();
    while let Some(m) = ntfy.next(Duration::from_millis(700)) {
        titles.push(m.title);
    }
    assert_eq!(titles.len(), 10, "{titles:?}");
}

#[test]
fn ntfy_basic_auth_is_sent_as_ntfy_expects() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = Setup::new(&fake, HOME)
        .var("NTFY_URL", ntfy.url())
        .var("NTFY_TOPIC", "dyndns")
        .var("NTFY_USERNAME", "phil")
        .var("NTFY_PASSWORD", "pw:with:colons")
        .var("NOTIFY_ON_CHANGE", "1")
        .start();
    update(&server, "192.0.2.1");
    let m = ntfy.next(WAIT).expect("notification");
    // base64("phil:pw:with:colons")
    assert_eq!(m.authorization.as_deref(), Some("Basic cGhpbDpwdzp3aXRoOmNvbG9ucw=="));
}

#[test]
fn a_failure_is_announced_again_once_notify_repeat_interval_has_passed() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy).var("NOTIFY_REPEAT_INTERVAL", "1").start();
    fake.wait_for_zone_listing();
    let fail = |ip: &str| {
        fake.fail_next(Fault::Error { status: 403, code: "forbidden" });
        assert_eq!(update(&server, ip).status, 502);
    };
    fail("192.0.2.1");
    assert_eq!(ntfy.next(WAIT).expect("first").title, "dyndns: update of home.example.com failed");
    fail("192.0.2.2");
    assert!(ntfy.next(Duration::from_millis(300)).is_none(), "repeated within the interval");
    std::thread::sleep(Duration::from_millis(1100));
    fail("192.0.2.3");
    assert_eq!(ntfy.next(WAIT).expect("after the interval").title, "dyndns: update of home.example.com failed");
}

#[test]
fn a_live_run_never_trusts_what_a_dry_run_wrote() {
    let fake = fake();
    let dry = Setup::new(&fake, HOME).without("HETZNER_TOKEN").var("DRY_RUN", "1").start();
    assert_eq!(update(&dry, "192.0.2.1").json()["status"], "created");
    let dir = dry.stop();
    // Live on the same directory: the address was never at Hetzner.
    let live = Setup::in_dir(&fake, HOME, dir).start();
    assert_eq!(update(&live, "192.0.2.1").json()["status"], "created");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["192.0.2.1".to_string()]));
}

#[test]
fn state_survives_a_restart_and_saves_api_calls() {
    let fake = fake();
    let server = Setup::new(&fake, HOME).start();
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");
    let dir = server.stop();
    let state = std::fs::read_to_string(dir.join("dyndns-state.json")).expect("state file");
    assert!(state.contains("192.0.2.1") && state.contains("last_seen"), "{state}");

    // Within REQUEST_CACHE_TTL: no call at all after the restart.
    let server = Setup::in_dir(&fake, HOME, dir).start();
    fake.clear_calls();
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "unchanged");
    let record_calls: Vec<String> = fake.calls().into_iter().filter(|c| !c.starts_with("GET /v1/zones?")).collect();
    assert!(record_calls.is_empty(), "{record_calls:?}");
    // The record is known: a change costs set_records + one poll.
    fake.clear_calls();
    assert_eq!(update(&server, "192.0.2.2").json()["status"], "updated");
    let record_calls: Vec<String> = fake.calls().into_iter().filter(|c| !c.starts_with("GET /v1/zones?")).collect();
    assert_eq!(record_calls.len(), 2, "{record_calls:?}");
    let dir = server.stop();

    // With REQUEST_CACHE_TTL=0 the first update after a restart is confirmed by one read.
    let server = Setup::in_dir(&fake, HOME, dir).var("REQUEST_CACHE_TTL", "0").start();
    fake.clear_calls();
    assert_eq!(update(&server, "192.0.2.2").json()["status"], "unchanged");
    let record_calls: Vec<String> = fake.calls().into_iter().filter(|c| !c.starts_with("GET /v1/zones?")).collect();
    assert_eq!(record_calls.len(), 1, "{record_calls:?}");
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_server_starts() {
    let fake = fake();
    let dir = e2e::scratch_dir("corrupt");
    std::fs::write(dir.join("dyndns-state.json"), "{\"version\": 1, \"hosts\": {").expect("write");
    let server = Setup::in_dir(&fake, HOME, dir.clone()).start();
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");
    let aside = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside);
}

#[test]
fn the_status_page_needs_admin_credentials_and_shows_no_key() {
    let fake = fake();
    let server = Setup::new(&fake, "home.example.com,nas.example.com").start();
    assert_eq!(server.get("/status").status, 404, "no admin credentials configured");
    assert_eq!(server.get("/metrics").status, 404);

    let server = Setup::new(&fake, "home.example.com,nas.example.com")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    update(&server, "192.0.2.1");
    server.update(r#"{"fqdn": "home.example.com", "ip": "2001:db8::1"}"#, &server.key(HOME));
    assert_eq!(server.get("/status").status, 401);
    let auth = basic("admin", "admin-password-123");
    let r = server.request("GET", "/status", &[("Authorization", &auth)], None);
    let doc = r.json();
    let home = &doc["hosts"][0];
    assert_eq!(
        (home["fqdn"].as_str(), home["a"].as_str(), home["aaaa"].as_str()),
        (Some(HOME), Some("192.0.2.1"), Some("2001:db8::1"))
    );
    assert_eq!(home["state"], "online");
    assert_eq!(doc["hosts"][1]["state"], "never seen");
    for key in [server.key(HOME), server.key("nas.example.com")] {
        assert!(!r.body.contains(&key));
    }
    let r = server.request("GET", "/status", &[("Authorization", &auth), ("Accept", "text/html,*/*")], None);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(r.body.contains("<td>home.example.com</td><td>192.0.2.1</td>"), "{}", r.body);
    assert!(!r.body.contains(&server.key(HOME)));

    let m = server.request("GET", "/metrics", &[("Authorization", &auth)], None).body;
    assert!(m.contains("dyndns_update_requests_total{endpoint=\"json\",result=\"created\"} 2"), "{m}");
    assert!(m.contains("dyndns_hetzner_api_calls_total{project=\"default\",outcome=\"success\"}"), "{m}");
    assert!(m.contains("dyndns_hetzner_rate_limit_remaining{project=\"default\"} "), "{m}");
    assert!(m.contains("dyndns_hosts{state=\"online\"} 1"), "{m}");
}

#[test]
fn metrics_can_be_public() {
    let fake = fake();
    let server = Setup::new(&fake, HOME).var("METRICS_PUBLIC", "1").start();
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("dyndns_notification_failures_total 0"));
}

#[test]
fn the_request_inspector_shows_what_a_router_sent_without_its_key() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME)
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    let key = server.key(HOME);
    let nic = |pass: &str| {
        let auth = basic("home", pass);
        server.request(
            "GET",
            "/nic/update?hostname=home.example.com&myip=203.0.113.5",
            &[("Authorization", &auth), ("User-Agent", "Fritz!Box DDNS/1.0")],
            None,
        )
    };
    assert_eq!(nic("not-the-key").body, "badauth");
    assert_eq!(nic(&key).body, "good 203.0.113.5");
    assert_eq!(nic(&key).body, "nochg 203.0.113.5");
    assert_eq!(nic(&key).body, "nochg 203.0.113.5");

    let r = server.get_as("/status", "admin", "admin-password-123");
    assert!(!r.body.contains(&key) && !r.body.contains("not-the-key"), "a key on the status page: {}", r.body);
    let doc = r.json();
    let home = &doc["hosts"][0];
    assert_eq!((home["changes"].as_u64(), home["last_change"].is_u64()), (Some(1), true), "{home}");
    let requests = home["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(requests[0]["authenticated"], false);
    assert_eq!(requests[0]["answer"], "badauth (user name \"home\" is right (home.example.com); the key is wrong)");
    assert_eq!(requests[0]["agent"], "Fritz!Box DDNS/1.0");
    assert_eq!(requests[0]["addresses"], "myip=203.0.113.5");
    assert_eq!(requests[0]["source_from"], "connection");
    assert_eq!(
        (requests[1]["answer"].as_str(), requests[1]["authenticated"].as_bool()),
        (Some("good 203.0.113.5"), Some(true))
    );
    assert_eq!((requests[2]["answer"].as_str(), requests[2]["repeats"].as_u64()), (Some("nochg 203.0.113.5"), Some(1)));
    let html = server.request(
        "GET",
        "/status",
        &[("Authorization", &basic("admin", "admin-password-123")), ("Accept", "text/html")],
        None,
    );
    assert!(html.body.contains("last requests") && html.body.contains("Fritz!Box DDNS/1.0"), "{}", html.body);
}

/// "Hetzner did not answer" and "the client reported a private address"
/// were one kind ("unreachable"), muted like a client's mistake: after an
/// outage was announced and Hetzner recovered, the next outage was silent
/// for NOTIFY_REPEAT_INTERVAL.
#[test]
fn a_second_hetzner_outage_after_a_recovery_is_announced_again() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let server = with_ntfy(Setup::new(&fake, HOME), &ntfy).var("FAILED_WRITE_RETRY", "0").start();
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");
    for (round, ip) in [(1, "192.0.2.2"), (2, "192.0.2.3")] {
        fake.set_outage(Some(Fault::Reset));
        assert_ne!(update(&server, ip).status, 200, "round {round}");
        let m = ntfy.next(WAIT).unwrap_or_else(|| panic!("outage {round} announced"));
        assert_eq!(m.title, "dyndns: update of home.example.com failed");
        fake.set_outage(None);
        let until = Instant::now() + WAIT;
        while fake.rrset("example.com", "home", "A") != Some(vec![ip.to_string()]) {
            assert!(Instant::now() < until, "round {round}: {ip} never written");
            let _ = update(&server, ip);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // A private address is still a client's mistake, announced once.
    let private = server.update(&format!(r#"{{"fqdn": "{HOME}", "ip": "10.0.0.1"}}"#), &server.key(HOME));
    assert_ne!(private.status, 200);
    assert!(ntfy.next(WAIT).is_some_and(|m| m.title.starts_with("dyndns: rejected")));
    let _ = server.update(&format!(r#"{{"fqdn": "{HOME}", "ip": "10.0.0.2"}}"#), &server.key(HOME));
    assert!(ntfy.next(Duration::from_secs(2)).is_none(), "a repeated client mistake is muted");
}
