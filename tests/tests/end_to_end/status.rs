//! What a router owner sees on /status: each host's change history (kept
//! across a restart), its last answer with why a login failed, times with
//! the UTC time on hover, a dry-run banner, no 404 for the favicon.

use std::time::{Duration, Instant};

use e2e::{FakeHetzner, Setup, TestServer, ADMIN};

const HOME: &str = "home.example.com";

fn nic(server: &TestServer, user: &str, key: &str, ip: &str) -> String {
    server.get_as(&format!("/nic/update?hostname={HOME}&myip={ip}"), user, key).body
}

fn html(server: &TestServer) -> String {
    let auth = e2e::basic(ADMIN.0, ADMIN.1);
    server.request("GET", "/status", &[("Authorization", &auth), ("Accept", "text/html")], None).body
}

#[test]
fn the_history_names_each_change_and_its_cause_newest_first_across_a_restart() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let dir = e2e::scratch_dir("status-history");
    let setup = |dir| Setup::in_dir(&fake, HOME, dir).with_admin().var("RECONCILE_INTERVAL", "1");
    let server = setup(dir.clone()).start();
    let key = server.key(HOME);
    // JSON from a proxy-named source, dyndns2, then a drift repair.
    let r = server.request(
        "POST",
        "/update",
        &[("X-Pre-Shared-Key", &key), ("X-Forwarded-For", "203.0.113.50")],
        Some(r#"{"fqdn": "home.example.com", "ip": "198.51.100.1"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(nic(&server, "home", &key, "198.51.100.2"), "good 198.51.100.2");
    fake.put_rrset("example.com", "home", "A", &["192.0.2.99"]);
    let until = Instant::now() + Duration::from_secs(10);
    while fake.rrset("example.com", "home", "A") != Some(vec!["198.51.100.2".into()]) {
        assert!(Instant::now() < until, "repaired");
        std::thread::sleep(Duration::from_millis(100));
    }
    let changes =
        || server.get_as("/status", ADMIN.0, ADMIN.1).json()["hosts"][0]["history"].as_array().map_or(0, Vec::len);
    while changes() < 3 {
        assert!(Instant::now() < until, "the repair in the history");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = server.stop();

    let server = setup(data).start();
    let status = server.get_as("/status", ADMIN.0, ADMIN.1).json();
    let history = status["hosts"][0]["history"].as_array().expect("history").clone();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!((history[0]["cause"]["by"].as_str(), history[0]["old"].as_str()), (Some("repair"), Some("192.0.2.99")));
    assert_eq!(history[0]["new"], "198.51.100.2");
    assert_eq!(history[1]["cause"], serde_json::json!({"by": "report", "endpoint": "dyndns2", "source": "127.0.0.1"}));
    assert_eq!((history[1]["old"].as_str(), history[1]["type"].as_str()), (Some("198.51.100.1"), Some("A")));
    assert_eq!(history[2]["cause"], serde_json::json!({"by": "report", "endpoint": "json", "source": "203.0.113.50"}));
    assert!(history[2]["old"].is_null(), "created");
    let page = html(&server);
    assert!(page.contains("history (3)") && page.contains("restored by the reconcile"), "{page}");
    assert!(page.contains("198.51.100.1 → 198.51.100.2") && page.contains("dyndns2 report from 127.0.0.1"), "{page}");
}

#[test]
fn a_failed_login_shows_in_red_with_which_part_was_wrong() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME).with_admin().var("DRY_RUN", "1").start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, "home", &key, "198.51.100.1"), "good 198.51.100.1");
    let page = html(&server);
    assert!(page.contains("class=\"ok answer\">good 198.51.100.1"), "{page}");
    assert!(page.contains("class=\"banner\">Dry run"), "{page}");
    assert!(page.contains("<span title=\"20"), "absolute time on hover: {page}");

    assert_eq!(nic(&server, "home", "wrong-key", "198.51.100.2"), "badauth");
    let page = html(&server);
    assert!(
        page.contains(
            "class=\"fail answer\">badauth (user name &quot;home&quot; is right (home.example.com); the key is wrong)"
        ),
        "{page}"
    );
    assert_eq!(nic(&server, "hom", &key, "198.51.100.2"), "badauth");
    let page = html(&server);
    assert!(page.contains("badauth (user name &quot;hom&quot; names no registered host"), "{page}");
    // Never in the answer itself.
    assert_eq!(server.get("/favicon.ico").status, 204);
}
