//! Zone reconcile, drift repair and the API budget (`RECONCILE_INTERVAL`,
//! `RECONCILE_REPAIR`, `RateLimit-*`): the real server against the fake,
//! which holds records the server did not write and changes them behind
//! its back as someone in the Hetzner Console would.

use std::time::{Duration, Instant};

use e2e::{eventually, FakeHetzner, FakeNtfy, Setup, TestServer};

const HOME: &str = "home.example.com";
const ADMIN: (&str, &str) = ("admin", "admin-password-123");

fn nic(server: &TestServer, host: &str, ip: &str, key: &str) -> e2e::Resp {
    server.get_as(&format!("/nic/update?hostname={host}&myip={ip}"), host, key)
}

/// Wait until every zone named has finished a reconcile after `since` (Unix s).
#[track_caller]
fn wait_for_reconcile(server: &TestServer, zones: &[&str], since: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let done = server.running().app.reconciles();
        if zones.iter().all(|z| done.get(*z).is_some_and(|r| r.at >= since && r.at > 0)) {
            return;
        }
        assert!(Instant::now() < until, "no reconcile of {zones:?}: {done:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `zone` has been reconciled `more` times from now: after two,
/// a whole run began after this call.
#[track_caller]
fn wait_for_runs(server: &TestServer, zone: &str, more: u64) {
    let runs = || server.running().app.reconciles().get(zone).map_or(0, |r| r.runs);
    let target = runs() + more;
    eventually(10, &format!("{more} more reconciles of {zone}"), || runs() >= target);
}

fn metric(server: &TestServer, line_start: &str) -> Option<f64> {
    let r = server.get_as("/metrics", ADMIN.0, ADMIN.1);
    r.body.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// A server for HOME reconciling every second (admin credentials set, and
/// `vars` on top), with HOME's A record created at 198.51.100.7.
fn reconciling_server(fake: &FakeHetzner, vars: &[(&str, &str)]) -> (TestServer, String) {
    let mut setup = Setup::new(fake, HOME)
        .var("RECONCILE_INTERVAL", "1")
        .var("BASIC_AUTH_USERNAME", ADMIN.0)
        .var("BASIC_AUTH_PASSWORD", ADMIN.1);
    for (k, v) in vars {
        setup = setup.var(k, v);
    }
    let server = setup.start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    (server, key)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn a_thousand_unchanged_reports_after_the_cache_ttl_cost_only_listing_pages() {
    let fake = FakeHetzner::start();
    let zones = ["example.com", "example.net", "example.org"];
    let mut hosts = Vec::new();
    for z in zones {
        fake.add_zone(z);
    }
    for i in 0..1000 {
        let zone = zones[i % 3];
        let host = format!("h{i}.{zone}");
        let ip = format!("198.51.100.{}", i % 250 + 1);
        fake.put_rrset(zone, &format!("h{i}"), "A", &[&ip]);
        hosts.push((host, ip));
    }
    // Records of other names in the same zones, which the listing pages over.
    fake.put_rrset("example.com", "www", "A", &["203.0.113.80"]);
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let server =
        Setup::new(&fake, &names.join(",")).var("REQUEST_CACHE_TTL", "1").var("RECONCILE_INTERVAL", "600").start();
    wait_for_reconcile(&server, &zones, 0);
    // Every confirmation older than REQUEST_CACHE_TTL.
    std::thread::sleep(Duration::from_millis(1500));
    let keys = server.keys();

    std::thread::scope(|s| {
        for chunk in hosts.chunks(250) {
            let (server, keys) = (&server, &keys);
            s.spawn(move || {
                for (host, ip) in chunk {
                    let r = nic(server, host, ip, &keys[host]);
                    assert_eq!(r.body, format!("nochg {ip}"), "{host}");
                }
            });
        }
    });

    let calls = fake.calls();
    let per_host: Vec<&String> = calls.iter().filter(|c| c.contains("/rrsets/")).collect();
    assert!(per_host.is_empty(), "no per-host read: {:?}", &per_host[..per_host.len().min(5)]);
    assert!(calls.len() <= 40, "{} calls: {calls:?}", calls.len());
    let listing_pages = calls.iter().filter(|c| c.contains("/rrsets?type=A&type=AAAA")).count();
    assert_eq!(listing_pages, 12, "4 pages of 100 per zone of 334 hosts: {calls:?}");
    assert!(calls.iter().all(|c| c.starts_with("GET /v1/zones")), "listings only: {calls:?}");
}

#[test]
fn a_record_changed_or_deleted_behind_the_servers_back_is_restored_and_announced() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let ntfy = FakeNtfy::start();
    let server = Setup::new(&fake, &format!("{HOME},other.example.com"))
        .var("RECONCILE_INTERVAL", "1")
        .var("NTFY_URL", ntfy.url())
        .var("NTFY_TOPIC", "dyndns")
        .var("BASIC_AUTH_USERNAME", ADMIN.0)
        .var("BASIC_AUTH_PASSWORD", ADMIN.1)
        .start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");

    // Changed in the Console: set back within RECONCILE_INTERVAL + a few seconds, no report needed.
    fake.put_rrset("example.com", "home", "A", &["203.0.113.9"]);
    let changed = Instant::now();
    eventually(5, "restored", || fake.rrset("example.com", "home", "A") == Some(vec!["198.51.100.7".into()]));
    assert!(changed.elapsed() < Duration::from_secs(4), "{:?}", changed.elapsed());
    let msg = ntfy.next(Duration::from_secs(5)).expect("drift announced");
    assert_eq!(msg.body, "home.example.com was changed outside the server: 203.0.113.9 → restored 198.51.100.7");

    // Deleted: created again.
    fake.delete_rrset("example.com", "home", "A");
    eventually(5, "re-created", || fake.rrset("example.com", "home", "A") == Some(vec!["198.51.100.7".into()]));
    let msg = ntfy.next(Duration::from_secs(5)).expect("deletion announced");
    assert!(msg.body.contains("was deleted outside the server → re-created with 198.51.100.7"), "{}", msg.body);
    assert_eq!(metric(&server, "dyndns_drift_total{action=\"restored\"}"), Some(1.0));
    assert_eq!(metric(&server, "dyndns_drift_total{action=\"recreated\"}"), Some(1.0));

    // Announced once: further reconciles find nothing to say.
    wait_for_runs(&server, "example.com", 2);
    assert!(ntfy.next(Duration::from_millis(100)).is_none(), "repeated announcement");
    // The other host has no record: nothing to compare, nothing created.
    assert_eq!(fake.rrset("example.com", "other", "A"), None);
    // The status shows when each zone was reconciled.
    let status = server.get_as("/status", ADMIN.0, ADMIN.1).json();
    let zone = &status["reconcile"]["zones"][0];
    assert_eq!(zone["zone"], "example.com");
    assert!(zone["last_run"].as_u64().is_some_and(|t| t + 5 >= unix_now()), "{zone}");
    let calls = &status["hetzner"]["calls_last_hour"];
    assert!(calls["list"].as_u64().is_some_and(|n| n >= 3), "{calls}");
    assert_eq!(calls["write"], 3, "create + set back + re-create: {calls}");
}

#[test]
fn without_repair_drift_is_reported_and_the_hosts_next_report_writes() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let (server, key) = reconciling_server(&fake, &[("RECONCILE_REPAIR", "0")]);
    fake.put_rrset("example.com", "home", "A", &["203.0.113.9"]);
    eventually(5, "reported", || metric(&server, "dyndns_drift_total{action=\"reported\"}") == Some(1.0));
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.9".into()]), "not set back");
    // The host's own address is a change now, not a cached `nochg`.
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.7".into()]));
}

#[test]
fn a_lost_hosts_drifted_record_is_left_alone() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let (server, _) =
        reconciling_server(&fake, &[("LOST_CONNECTION_TIMEOUT", "1"), ("CONNECTION_CHECK_INTERVAL", "1")]);
    eventually(10, "host lost", || metric(&server, "dyndns_hosts{state=\"lost\"}") == Some(1.0));
    fake.put_rrset("example.com", "home", "A", &["203.0.113.9"]);
    eventually(5, "seen", || metric(&server, "dyndns_drift_total{action=\"left_lost\"}") == Some(1.0));
    wait_for_runs(&server, "example.com", 2);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["203.0.113.9".into()]));
}

#[test]
fn a_low_api_budget_defers_reconciles_and_reads_but_a_change_goes_through() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let (server, key) = reconciling_server(&fake, &[("REQUEST_CACHE_TTL", "0")]);
    wait_for_reconcile(&server, &["example.com"], unix_now());

    // 100 calls left of 3600, the reserve is 360: the next answer says so.
    fake.set_rate_limit(100, 3600);
    eventually(5, "deferred", || metric(&server, "dyndns_reconcile_deferred_total").is_some_and(|n| n >= 1.0));
    fake.clear_calls();
    let deferred = metric(&server, "dyndns_reconcile_deferred_total").unwrap_or(0.0);
    eventually(10, "two more deferrals", || {
        metric(&server, "dyndns_reconcile_deferred_total").is_some_and(|n| n >= deferred + 2.0)
    });
    assert_eq!(fake.calls(), Vec::<String>::new(), "no reconcile while the budget is low");
    // An unchanged address whose confirmation is older than two intervals is not read back.
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "nochg 198.51.100.7");
    assert_eq!(fake.calls(), Vec::<String>::new(), "no per-host read while the budget is low");
    // A real change still goes through.
    assert_eq!(nic(&server, HOME, "198.51.100.8", &key).body, "good 198.51.100.8");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.8".into()]));
    let status = server.get_as("/status", ADMIN.0, ADMIN.1).json();
    assert_eq!(status["hetzner"]["budget_low"], true, "{status}");
    assert!(status["hetzner"]["rate_limit_remaining"].as_i64().is_some_and(|n| n < 360), "{status}");
}

#[test]
fn after_a_restart_known_records_are_not_read_back_one_by_one_while_the_first_reconcile_runs() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME).start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    let dir = server.stop();
    // The saved confirmation is older than REQUEST_CACHE_TTL at the restart.
    std::thread::sleep(Duration::from_millis(1100));
    fake.clear_calls();
    // The start-up zone listing takes 2 s; the first reconcile waits for it.
    fake.fail_next(e2e::Fault::Hang(Duration::from_secs(2)));
    let server = Setup::in_dir(&fake, HOME, dir).var("REQUEST_CACHE_TTL", "1").var("RECONCILE_INTERVAL", "600").start();
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "nochg 198.51.100.7");
    let reads: Vec<String> = fake.calls().into_iter().filter(|c| c.contains("/rrsets/")).collect();
    assert_eq!(reads, Vec::<String>::new(), "no per-host read after a restart");
    wait_for_reconcile(&server, &["example.com"], 0);
    assert!(fake.calls().iter().all(|c| !c.contains("/rrsets/")), "{:?}", fake.calls());
}

/// Every value the server writes carries a comment naming the project, the
/// host, the value and the time; a record holding the server's own write
/// (its confirmation lost, say) is taken as it is, while a value changed in
/// the Console (its comment no longer matches) is drift and set back.
#[test]
fn written_values_carry_a_comment_that_tells_own_writes_from_drift() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME).var("RECONCILE_INTERVAL", "1").start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    let comment = fake.comment("example.com", "home", "A", "198.51.100.7").expect("a comment");
    let mut now = String::new();
    dyndns_server::time::utc_text(&mut now, std::time::SystemTime::now(), false);
    let year = &now[..4];
    assert!(comment.starts_with(&format!("hetzner-dyndns {HOME} 198.51.100.7 {year}-")), "{comment}");
    assert!(comment.ends_with('Z') && comment.len() < 80, "{comment}");

    // The server's own write of another value (as a second run with a
    // restored state file would leave it): adopted, not set back.
    let own = format!("hetzner-dyndns {HOME} 198.51.100.8 2026-12-05T08:00Z");
    fake.put_rrset_with_comment("example.com", "home", "A", "198.51.100.8", &own);
    wait_for_runs(&server, "example.com", 2);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.8".into()]));
    assert_eq!(nic(&server, HOME, "198.51.100.8", &key).body, "nochg 198.51.100.8", "taken as confirmed");

    // Changed in the Console keeping the old comment: drift, set back.
    let stale = format!("hetzner-dyndns {HOME} 198.51.100.8 2026-12-05T08:00Z");
    fake.put_rrset_with_comment("example.com", "home", "A", "203.0.113.9", &stale);
    eventually(5, "restored", || fake.rrset("example.com", "home", "A") == Some(vec!["198.51.100.8".into()]));
}
