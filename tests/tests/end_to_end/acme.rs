//! ACME DNS-01 through the lego `httpreq` protocol (`/present`,
//! `/cleanup`): each host writes its own `_acme-challenge` TXT values with
//! its own key, and nothing else. The fake Hetzner insists on quoted TXT
//! values, as the API does.

use e2e::{basic, FakeHetzner, FakeNtfy, Fault, Setup, TestServer};

const NAS: &str = "nas.example.com";
const V1: &str = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM";
const V2: &str = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

fn acme_server() -> (FakeHetzner, TestServer) {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, &format!("{NAS},cam.example.com"))
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    fake.wait_for_zone_listing();
    (fake, server)
}

fn post(server: &TestServer, path: &str, user: &str, key: &str, body: &str) -> e2e::Resp {
    server.request(
        "POST",
        path,
        &[("Authorization", &basic(user, key)), ("Content-Type", "application/json")],
        Some(body),
    )
}

fn challenge(value: &str) -> String {
    format!(r#"{{"fqdn": "_acme-challenge.nas.example.com.", "value": "{value}"}}"#)
}

fn txt(fake: &FakeHetzner) -> Option<Vec<String>> {
    fake.rrset("example.com", "_acme-challenge.nas", "TXT")
}

#[test]
fn present_and_cleanup_of_the_keys_own_name_with_two_values_at_once() {
    let (fake, server) = acme_server();
    let key = server.key(NAS);

    let r = post(&server, "/present", "nas", &key, &challenge(V1));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(V1), "acme.sh looks for the value in the answer: {}", r.body);
    assert_eq!(txt(&fake), Some(vec![format!("\"{V1}\"")]), "sent quoted");
    assert_eq!(fake.rrset_ttl("example.com", "_acme-challenge.nas", "TXT"), Some(60));

    // The wildcard's challenge: same name, a second value; the full name works as user too.
    let r = post(&server, "/present", NAS, &key, &challenge(V2));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(txt(&fake), Some(vec![format!("\"{V1}\""), format!("\"{V2}\"")]));

    // Presenting again leaves one value and writes nothing.
    fake.clear_calls();
    let r = post(&server, "/present", "nas", &key, &challenge(V1));
    assert_eq!(r.json()["status"], "already present");
    assert!(fake.calls().iter().all(|c| c.starts_with("GET")), "{:?}", fake.calls());
    assert_eq!(txt(&fake).map(|v| v.len()), Some(2));

    // Cleanup removes exactly its value; the last one takes the RRSet with it.
    let r = post(&server, "/cleanup", "nas", &key, &challenge(V1));
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("removed")), "{}", r.body);
    assert_eq!(txt(&fake), Some(vec![format!("\"{V2}\"")]));
    let r = post(&server, "/cleanup", "nas", &key, &challenge(V1));
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("already gone")));
    let r = post(&server, "/cleanup", "nas", &key, &challenge(V2));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(txt(&fake), None, "the RRSet is gone with its last value");

    let metrics = server.get_as("/metrics", "admin", "admin-password-123").body;
    assert!(metrics.contains("dyndns_update_requests_total{endpoint=\"acme\",result=\"present\"} 3"), "{metrics}");
}

#[test]
fn another_hosts_name_is_403_a_wrong_key_401_and_nothing_is_written() {
    let (fake, server) = acme_server();
    let cam = server.key("cam.example.com");
    let r = post(&server, "/present", "cam", &cam, &challenge(V1));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(&server, "/present", "cam", &cam, r#"{"fqdn": "www.example.com.", "value": "abc"}"#);
    assert_eq!(r.status, 403, "not a challenge name: {}", r.body);
    let r = post(&server, "/present", "nas", "wrong-key", &challenge(V1));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    let r = server.request("POST", "/present", &[], Some(&challenge(V1)));
    assert_eq!(r.status, 401);
    let r = post(&server, "/present", "nas", &server.key(NAS), r#"{"fqdn": "_acme-challenge.nas.example.com."}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(fake.calls().iter().all(|c| c.starts_with("GET /v1/zones?")), "{:?}", fake.calls());
    assert_eq!(txt(&fake), None);
    // The admin credentials act for any registered host.
    let r = post(&server, "/present", "admin", "admin-password-123", &challenge(V1));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(txt(&fake), Some(vec![format!("\"{V1}\"")]));
}

#[test]
fn lego_raw_mode_computes_the_value_and_a_host_holds_at_most_four() {
    let (fake, server) = acme_server();
    let key = server.key(NAS);
    let r = post(
        &server,
        "/present",
        "nas",
        &key,
        r#"{"domain": "*.nas.example.com", "token": "tok", "keyAuth": "tok.thumbprint"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let value = r.json()["value"].as_str().expect("value").to_string();
    assert_eq!(value.len(), 43);
    assert_eq!(txt(&fake), Some(vec![format!("\"{value}\"")]));
    for v in ["a1", "a2", "a3"] {
        assert_eq!(post(&server, "/present", "nas", &key, &challenge(v)).status, 200);
    }
    let r = post(&server, "/present", "nas", &key, &challenge("a4"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(txt(&fake).map(|v| v.len()), Some(4));
}

#[test]
fn a_failing_hetzner_is_503_and_announced() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let ntfy = FakeNtfy::start();
    let server = Setup::new(&fake, NAS).var("NTFY_URL", ntfy.url()).var("NTFY_TOPIC", "dyndns").start();
    fake.wait_for_zone_listing();
    let key = server.key(NAS);
    fake.fail_next(Fault::Error { status: 503, code: "unavailable" });
    let r = post(&server, "/present", "nas", &key, &challenge(V1));
    assert_eq!(r.status, 503, "{}", r.body);
    let msg = ntfy.next(std::time::Duration::from_secs(5)).expect("announced");
    assert!(msg.title.contains("ACME present for nas.example.com failed"), "{msg:?}");
}

#[test]
fn dry_run_keeps_challenges_in_memory() {
    let fake = FakeHetzner::start();
    let server = Setup::new(&fake, NAS).var("DRY_RUN", "1").without("HETZNER_TOKEN").start();
    let key = server.key(NAS);
    assert_eq!(post(&server, "/present", "nas", &key, &challenge(V1)).json()["status"], "added");
    assert_eq!(post(&server, "/present", "nas", &key, &challenge(V1)).json()["status"], "already present");
    assert_eq!(post(&server, "/cleanup", "nas", &key, &challenge(V1)).json()["status"], "removed");
    assert_eq!(fake.call_count(), 0);
}

#[test]
fn an_acme_only_host_writes_its_challenge_but_never_an_address() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, "home.example.com")
        .var("ACME_ONLY_HOSTS", NAS)
        .var("LOST_CONNECTION_TIMEOUT", "1")
        .var("CONNECTION_CHECK_INTERVAL", "1")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "admin-password-123")
        .start();
    fake.wait_for_zone_listing();
    let key = server.key(NAS);
    assert_eq!(post(&server, "/present", "nas", &key, &challenge(V1)).status, 200);
    assert_eq!(txt(&fake), Some(vec![format!("\"{V1}\"")]));
    let r = server.update(r#"{"fqdn": "nas.example.com", "ip": "203.0.113.5"}"#, &key);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("ACME_ONLY_HOSTS"), "{}", r.body);
    let r = server.get_as("/nic/update?hostname=nas.example.com&myip=203.0.113.5", "nas", &key);
    assert_eq!(r.body, "nohost");
    assert_eq!(fake.rrset("example.com", "nas", "A"), None);
    // Never reporting, it is never lost (home is).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let status = server.get_as("/status", "admin", "admin-password-123").json();
    let hosts: Vec<&str> =
        status["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["fqdn"].as_str()).collect();
    assert_eq!(hosts, ["home.example.com"], "{status}");
}

#[test]
fn a_value_left_behind_is_removed_after_an_hour_also_across_a_restart() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let quoted = format!("\"{V1}\"");
    let other = format!("\"{V2}\"");
    fake.put_rrset("example.com", "_acme-challenge.nas", "TXT", &[&quoted, &other]);
    // The state file of a run that presented V1 long ago and then stopped.
    let dir = e2e::scratch_dir("acme-stale");
    let state = serde_json::json!({"version": 1, "hosts": {NAS: {"challenges": [{"value": V1, "added": 1}]}}});
    std::fs::write(dir.join("dyndns-state.json"), state.to_string()).expect("state file");
    let _server = Setup::in_dir(&fake, NAS, dir).var("CONNECTION_CHECK_INTERVAL", "1").start();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while txt(&fake) != Some(vec![other.clone()]) {
        assert!(std::time::Instant::now() < until, "stale value not removed: {:?}", txt(&fake));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn one_key_cannot_spend_the_api_budget_on_challenges() {
    let (fake, server) = acme_server();
    let key = server.key(NAS);
    fake.clear_calls();
    // Cleaning up values the server never wrote costs nothing.
    for _ in 0..100 {
        let r = post(&server, "/cleanup", "nas", &key, &challenge(V2));
        assert_eq!(r.json()["status"], "already gone", "{}", r.body);
    }
    assert_eq!(fake.call_count(), 0, "{:?}", fake.calls());

    // A looping client: present and clean up, again and again.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(post(&server, "/present", "nas", &key, &challenge(V1)));
        statuses.push(post(&server, "/cleanup", "nas", &key, &challenge(V1)));
    }
    let kinds: Vec<String> =
        statuses
            .iter()
            .map(|r| {
                if r.status == 200 {
                    r.json()["status"].as_str().unwrap_or("").to_string()
                } else {
                    r.status.to_string()
                }
            })
            .collect();
    let written = kinds.iter().filter(|k| *k == "added" || *k == "removed").count();
    assert_eq!(written, 8, "{kinds:?}");
    // Past the burst every present is refused, and the cleanups after them cost nothing.
    assert!(kinds[8..].chunks(2).all(|c| c == ["429", "already gone"]), "{kinds:?}");
    let refused = statuses.iter().find(|r| r.status == 429).expect("refused");
    let wait: u64 = refused.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=300).contains(&wait), "{wait}");
    assert!(refused.body.contains("an hour"), "{}", refused.body);
    let calls = fake.call_count();
    assert!(calls <= 8 * 3, "{calls} calls for 8 operations: {:?}", fake.calls());
    assert_eq!(txt(&fake), None, "the last operation that ran was a cleanup");

    // Another host is not held back.
    let cam = r#"{"fqdn": "_acme-challenge.cam.example.com.", "value": "abc"}"#;
    let r = post(&server, "/present", "cam", &server.key("cam.example.com"), cam);
    assert_eq!(r.json()["status"], "added", "{}", r.body);
}

#[test]
fn a_hanging_challenge_of_one_host_holds_up_nobody_else() {
    let (fake, server) = {
        let fake = FakeHetzner::start();
        fake.add_zone("example.com");
        // The three hung values of one host wait in turn, 3 s each; another
        // host waiting behind them would take 2.5 s or more.
        let server = Setup::new(&fake, &format!("{NAS},cam.example.com")).var("HETZNER_TIMEOUT", "3").start();
        fake.wait_for_zone_listing();
        (fake, server)
    };
    fake.hang_matching("_acme-challenge.nas", std::time::Duration::from_secs(6));
    let key = server.key(NAS);
    let hung: Vec<_> = [V1, V2, "third-value"]
        .into_iter()
        .map(|v| {
            let (base, key, body) = (server.base.clone(), key.clone(), challenge(v));
            std::thread::spawn(move || {
                let auth = basic("nas", &key);
                e2e::request(&format!("{base}/present"), "POST", &[("Authorization", &auth)], Some(&body)).status
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));

    let started = std::time::Instant::now();
    let cam = r#"{"fqdn": "_acme-challenge.cam.example.com.", "value": "abc"}"#;
    let r = post(&server, "/present", "cam", &server.key("cam.example.com"), cam);
    assert_eq!(r.json()["status"], "added", "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "another host waited {:?}", started.elapsed());

    // A reload (SIGHUP) saves the state first: it does not wait either.
    let started = std::time::Instant::now();
    server.running().reload();
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "the reload took {:?}", started.elapsed());

    // Shutdown waits its grace for the hung requests, then writes the state
    // at once: well inside Docker's 10 s.
    let started = std::time::Instant::now();
    let dir = server.stop();
    let took = started.elapsed();
    let grace = dyndns_server::server::SHUTDOWN_GRACE;
    assert!(took < grace + std::time::Duration::from_secs(2), "shutdown took {took:?}");
    let state = std::fs::read_to_string(dir.join("dyndns-state.json")).expect("state file");
    assert!(state.contains("\"abc\""), "cam's value is kept: {state}");
    for t in hung {
        assert_ne!(t.join().expect("thread"), 200, "a hung Hetzner cannot have confirmed");
    }
}
