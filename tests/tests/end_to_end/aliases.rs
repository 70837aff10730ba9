//! One report, many names (`HOST_ALIASES`), per-host TTLs (`HOST_TTL`) and
//! zones in several Hetzner projects (`HETZNER_TOKENS_FILE`): the real
//! server against the fake, whose tokens each see only their own
//! project's zones and have their own rate limit.

use std::time::{Duration, Instant};

use e2e::{eventually, FakeHetzner, Setup, TestServer, ADMIN};

const HOME: &str = "home.example.com";
const ALIASES: &str =
    "example.com=home.example.com,*.home.example.com=home.example.com,www.example.com=home.example.com";
/// The RRSet names of HOME and its three aliases in example.com.
const NAMES: [&str; 4] = ["home", "@", "*.home", "www"];

fn nic(server: &TestServer, host: &str, ip: &str, key: &str) -> e2e::Resp {
    server.get_as(&format!("/nic/update?hostname={host}&myip={ip}"), host, key)
}

fn aliased(fake: &FakeHetzner) -> Setup {
    Setup::new(fake, HOME).var("HOST_ALIASES", ALIASES).with_admin()
}

fn start_error(setup: Setup) -> String {
    match dyndns_server::Server::start(setup.config()) {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_report_sets_the_host_and_its_apex_wildcard_and_www_aliases_and_an_unchanged_one_costs_nothing() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    // Actions end at once (no poll): the calls counted are the writes.
    fake.set_polls_per_action(0);
    let server = aliased(&fake).start();
    let key = server.key(HOME);

    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    for name in NAMES {
        assert_eq!(fake.rrset("example.com", name, "A"), Some(vec!["198.51.100.7".into()]), "{name}");
    }
    let v6 = "2001:db8:5::7";
    assert_eq!(nic(&server, HOME, v6, &key).body, format!("good {v6}"));
    for name in NAMES {
        assert_eq!(fake.rrset("example.com", name, "AAAA"), Some(vec![v6.to_string()]), "{name}");
    }
    // Every alias's record says whose it is.
    let comment = fake.comment("example.com", "www", "A", "198.51.100.7").expect("comment");
    assert!(comment.starts_with("hetzner-dyndns www.example.com 198.51.100.7 "), "{comment}");

    fake.clear_calls();
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "nochg 198.51.100.7");
    assert_eq!(nic(&server, HOME, v6, &key).body, format!("nochg {v6}"));
    assert_eq!(fake.calls(), Vec::<String>::new(), "unchanged reports cost no call for host or aliases");

    // A change moves all four with one write each (no reads: all known).
    assert_eq!(nic(&server, HOME, "198.51.100.8", &key).body, "good 198.51.100.8");
    for name in NAMES {
        assert_eq!(fake.rrset("example.com", name, "A"), Some(vec!["198.51.100.8".into()]), "{name}");
    }
    let writes = fake.calls_starting("POST").len();
    assert_eq!(writes, 4, "{:?}", fake.calls());
    assert!(fake
        .calls_starting("GET /v1/zones/")
        .iter()
        .all(|c| c.contains("/actions/") || c.starts_with("GET /v1/actions")));

    // The history shows the aliases under their host; the status lists them.
    let row = server.host_status(HOME);
    let aliases: Vec<&str> =
        row["aliases"].as_array().expect("aliases").iter().filter_map(|a| a["fqdn"].as_str()).collect();
    assert_eq!(aliases, ["*.home.example.com", "example.com", "www.example.com"], "{row}");
    assert!(row["aliases"].as_array().expect("aliases").iter().all(|a| a["a"] == "198.51.100.8"), "{row}");
    let history = row["history"].as_array().expect("history");
    assert!(history.iter().any(|c| c["alias"] == "www.example.com" && c["new"] == "198.51.100.8"), "{row}");
    let html = server
        .request("GET", "/status", &[("Authorization", &e2e::basic(ADMIN.0, ADMIN.1)), ("Accept", "text/html")], None)
        .body;
    assert!(html.contains("www.example.com"), "{html}");
}

#[test]
fn an_alias_hetzner_fails_is_answered_911_and_written_once_hetzner_answers() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME)
        .var("HOST_ALIASES", "www.example.com=home.example.com")
        .var("FAILED_WRITE_RETRY", "1")
        .with_admin()
        .start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    fake.hang_matching("/rrsets/www/", Duration::ZERO);
    assert_eq!(nic(&server, HOME, "198.51.100.8", &key).body, "911");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.8".into()]));
    assert_eq!(fake.rrset("example.com", "www", "A"), Some(vec!["198.51.100.7".into()]));
    let row = server.host_status(HOME);
    assert!(row["last_error"].as_str().is_some_and(|e| e.starts_with("www.example.com: ")), "{row}");
    assert!(row["history"][0]["new"] == "198.51.100.8" && row["history"][0]["alias"].is_null(), "{row}");

    fake.stop_hanging();
    eventually(10, "the alias written by the retry", || {
        fake.rrset("example.com", "www", "A") == Some(vec!["198.51.100.8".into()])
    });
    // The router's next report finds everything in place.
    eventually(5, "nochg once settled", || nic(&server, HOME, "198.51.100.8", &key).body == "nochg 198.51.100.8");
}

#[test]
fn after_a_restart_the_aliases_are_known_and_an_unchanged_report_costs_nothing() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = aliased(&fake).start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    let dir = server.stop();
    let server = Setup::in_dir(&fake, HOME, dir).var("HOST_ALIASES", ALIASES).start();
    fake.wait_for_zone_listing();
    fake.clear_calls();
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "nochg 198.51.100.7");
    assert_eq!(fake.calls(), Vec::<String>::new(), "the state file kept the aliases' confirmations");
}

#[test]
fn an_alias_has_no_key_and_cannot_report_itself() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = aliased(&fake).start();
    let key = server.key(HOME);
    assert!(!server.keys().contains_key("www.example.com"));
    let r = nic(&server, "www.example.com", "198.51.100.9", &key);
    assert_eq!(r.body, "badauth");
    let r = nic(&server, "www", "198.51.100.9", &key);
    assert_eq!(r.body, "badauth");
    assert!(fake.rrset("example.com", "www", "A").is_none());
}

#[test]
fn a_drifted_or_deleted_alias_is_set_back_by_the_reconcile() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = aliased(&fake).var("RECONCILE_INTERVAL", "1").start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");

    fake.put_rrset("example.com", "www", "A", &["192.0.2.66"]);
    fake.delete_rrset("example.com", "@", "A");
    eventually(10, "www restored and the apex re-created", || {
        fake.rrset("example.com", "www", "A") == Some(vec!["198.51.100.7".into()])
            && fake.rrset("example.com", "@", "A") == Some(vec!["198.51.100.7".into()])
    });
    // The repairs go into the host's history, each under its alias.
    eventually(10, "both repairs in the history", || {
        let row = server.host_status(HOME);
        let repaired: Vec<String> = row["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|c| c["cause"]["by"] == "repair")
            .filter_map(|c| c["alias"].as_str().map(String::from))
            .collect();
        repaired.contains(&"www.example.com".to_string()) && repaired.contains(&"example.com".to_string())
    });
}

#[test]
fn with_records_in_place_the_reconcile_keeps_host_and_aliases_confirmed_so_reports_cost_nothing() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    for name in NAMES {
        fake.put_rrset("example.com", name, "A", &["198.51.100.7"]);
    }
    // Confirmations last 2 s (two reconciles): every report after that
    // relies on the reconciles having confirmed the aliases too.
    let server = aliased(&fake).var("RECONCILE_INTERVAL", "1").var("REQUEST_CACHE_TTL", "1").start();
    let key = server.key(HOME);
    let reconciled = |n: usize| fake.calls().iter().filter(|c| c.contains("/rrsets?")).count() >= n;
    eventually(10, "two reconciles", || reconciled(2));
    fake.clear_calls();
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "nochg 198.51.100.7");
        std::thread::sleep(Duration::from_millis(100));
    }
    let other: Vec<String> = fake.calls().into_iter().filter(|c| !c.contains("/rrsets?")).collect();
    assert_eq!(other, Vec::<String>::new(), "only the reconciles' listings, no read per report");
}

#[test]
fn a_new_alias_of_a_known_host_is_written_by_the_first_reconcile() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    fake.put_rrset("example.com", "home", "A", &["198.51.100.7"]);
    let _server = aliased(&fake).var("RECONCILE_INTERVAL", "1").start();
    eventually(10, "the aliases follow the host without a report", || {
        NAMES.iter().all(|n| fake.rrset("example.com", n, "A") == Some(vec!["198.51.100.7".into()]))
    });
}

#[test]
fn every_bad_alias_entry_stops_the_start_naming_it() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let two = "home.example.com,nas.example.com";
    for (aliases, expected) in [
        ("nas.example.com=home.example.com", "nas.example.com is a host of its own"),
        ("a.example.com=www.example.com,www.example.com=home.example.com", "www.example.com is an alias itself"),
        ("www.example.com", "write alias=host"),
        ("www..example.com=home.example.com", "\"www..example.com\" is not a host name"),
        ("www.example.com=other.example.com", "other.example.com is not a registered host"),
        ("www.example.com=home.example.com,www.example.com=nas.example.com", "listed twice"),
    ] {
        let vars = [("REGISTERED_FQDNS", two), ("HOST_ALIASES", aliases)];
        let e = dyndns_server::config::Config::from_lookup(&|k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        })
        .expect_err(aliases)
        .0;
        assert!(e.contains("HOST_ALIASES") && e.contains(expected), "{aliases}: {e}");
    }
    // In no zone of any project: only Hetzner can tell.
    let e = start_error(Setup::new(&fake, HOME).var("HOST_ALIASES", "www.example.org=home.example.com"));
    assert!(e.contains("HOST_ALIASES: www.example.org=home.example.com") && e.contains("no zone"), "{e}");
}

#[test]
fn host_ttl_creates_records_with_it_and_changes_an_existing_one_once() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    fake.put_rrset("example.com", "home", "A", &["198.51.100.1"]);
    let server = Setup::new(&fake, "home.example.com,nas.example.com")
        .var("HOST_ALIASES", "www.example.com=home.example.com")
        .var("HOST_TTL", "home.example.com=300")
        .start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    assert_eq!(fake.rrset_ttl("example.com", "home", "A"), Some(300), "the existing record got the TTL");
    assert_eq!(fake.rrset_ttl("example.com", "www", "A"), Some(300), "the alias was created with it");
    assert_eq!(fake.calls_starting("POST").iter().filter(|c| c.ends_with("/change_ttl")).count(), 1);
    // Further changes cost no TTL call; a host without HOST_TTL gets RECORD_TTL.
    assert_eq!(nic(&server, HOME, "198.51.100.8", &key).body, "good 198.51.100.8");
    assert_eq!(nic(&server, HOME, "198.51.100.9", &key).body, "good 198.51.100.9");
    assert_eq!(fake.calls_starting("POST").iter().filter(|c| c.ends_with("/change_ttl")).count(), 1);
    let nas = server.key("nas.example.com");
    assert_eq!(nic(&server, "nas.example.com", "198.51.100.20", &nas).body, "good 198.51.100.20");
    assert_eq!(fake.rrset_ttl("example.com", "nas", "A"), Some(60));
    let e = dyndns_server::config::Config::from_lookup(&|k| match k {
        "REGISTERED_FQDNS" => Some(HOME.into()),
        "HOST_TTL" => Some("home.example.com=30".into()),
        _ => None,
    })
    .expect_err("short ttl")
    .0;
    assert!(e.contains("HOST_TTL: \"home.example.com=30\"") && e.contains("60..=2147483647"), "{e}");
}

#[test]
fn the_reconcile_gives_a_record_its_host_ttl_back() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let server = Setup::new(&fake, HOME)
        .var("HOST_ALIASES", "www.example.com=home.example.com")
        .var("HOST_TTL", "home.example.com=600")
        .var("RECONCILE_INTERVAL", "1")
        .start();
    let key = server.key(HOME);
    assert_eq!(nic(&server, HOME, "198.51.100.7", &key).body, "good 198.51.100.7");
    fake.set_rrset_ttl("example.com", "www", "A", 60);
    eventually(10, "www's TTL set back", || fake.rrset_ttl("example.com", "www", "A") == Some(600));
    let runs = || server.running().app.reconciles().get("example.com").map_or(0, |r| r.runs);
    let target = runs() + 2;
    eventually(10, "two more reconciles", || runs() >= target);
    let ttl_calls = fake.calls_starting("POST").iter().filter(|c| c.ends_with("/change_ttl")).count();
    assert_eq!(ttl_calls, 1, "one call, not one per reconcile: {:?}", fake.calls());
}

/// A tokens file in the server's directory, mode 0600.
fn tokens_file(setup: &Setup, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = setup.dir.join("tokens");
    std::fs::write(&path, text).expect("write tokens");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

#[test]
fn hosts_in_two_projects_are_each_written_with_their_projects_token() {
    let fake = FakeHetzner::start();
    let home_zone = fake.add_zone("example.com");
    let family = fake.add_project("family");
    let family_zone = fake.add_zone_in("family", "example.net");
    let setup = Setup::new(&fake, "home.example.com,nas.example.net")
        .var("HOST_ALIASES", "www.example.net=nas.example.net")
        .with_admin();
    let file = tokens_file(&setup, &format!("# the family's zones\nfamily {family}\n"));
    let server = setup.var("HETZNER_TOKENS_FILE", &file).start();
    let (home, nas) = (server.key(HOME), server.key("nas.example.net"));
    assert_eq!(nic(&server, HOME, "198.51.100.7", &home).body, "good 198.51.100.7");
    assert_eq!(nic(&server, "nas.example.net", "198.51.100.8", &nas).body, "good 198.51.100.8");
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["198.51.100.7".into()]));
    assert_eq!(fake.rrset("example.net", "nas", "A"), Some(vec!["198.51.100.8".into()]));
    assert_eq!(fake.rrset("example.net", "www", "A"), Some(vec!["198.51.100.8".into()]));
    // Every zone call went with its own project's token.
    let zone_calls = |project: &str| -> Vec<String> {
        fake.calls_of(project).into_iter().filter(|c| c.contains("/zones/")).collect()
    };
    assert!(!zone_calls("family").is_empty() && !zone_calls("default").is_empty());
    assert!(zone_calls("family").iter().all(|c| c.contains(&format!("/zones/{family_zone}/"))), "{:?}", fake.calls());
    assert!(zone_calls("default").iter().all(|c| c.contains(&format!("/zones/{home_zone}/"))), "{:?}", fake.calls());
    assert!(fake.calls_of("").is_empty(), "no call with an unknown token");

    let m = server.get_as("/metrics", ADMIN.0, ADMIN.1).body;
    for project in ["default", "family"] {
        assert!(m.contains(&format!("dyndns_hetzner_rate_limit{{project=\"{project}\"}} 3600")), "{m}");
        assert!(
            m.contains(&format!("dyndns_hetzner_calls_last_hour{{project=\"{project}\",kind=\"write\"}} 2"))
                || m.contains(&format!("dyndns_hetzner_calls_last_hour{{project=\"{project}\",kind=\"write\"}} 1")),
            "{m}"
        );
    }
    let status = server.get_as("/status", ADMIN.0, ADMIN.1).json();
    let names: Vec<&str> =
        status["projects"].as_array().expect("projects").iter().filter_map(|p| p["project"].as_str()).collect();
    assert_eq!(names, ["default", "family"]);
    assert!(!server.get_as("/status", ADMIN.0, ADMIN.1).body.contains(&family), "no token in the status");
}

#[test]
fn one_project_near_its_limit_never_holds_back_another() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let family = fake.add_project("family");
    fake.add_zone_in("family", "example.net");
    fake.put_rrset("example.com", "home", "A", &["198.51.100.7"]);
    let setup = Setup::new(&fake, "home.example.com,nas.example.net").var("RECONCILE_INTERVAL", "1");
    let file = tokens_file(&setup, &format!("family {family}\n"));
    // The family project has 100 calls left: below its reserve (360).
    fake.set_rate_limit_of("family", 100, 3600);
    let server = setup.var("HETZNER_TOKENS_FILE", &file).start();
    let nas = server.key("nas.example.net");
    // The first call of the family project tells the server its budget.
    assert_eq!(nic(&server, "nas.example.net", "198.51.100.8", &nas).body, "good 198.51.100.8");
    let since = Instant::now();
    eventually(10, "example.com reconciled twice", || {
        let r = server.running().app.reconciles();
        r.get("example.com").is_some_and(|r| r.at > 0) && since.elapsed() > Duration::from_millis(2500)
    });
    let reconciles = server.running().app.reconciles();
    assert!(reconciles.get("example.net").is_none_or(|r| r.at == 0), "family deferred: {reconciles:?}");
    assert!(fake.calls_of("default").iter().filter(|c| c.contains("/rrsets?")).count() >= 2, "{:?}", fake.calls());
}

#[test]
fn a_zone_two_projects_see_or_a_refused_token_stops_the_start() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let family = fake.add_project("family");
    fake.add_zone_in("family", "example.com");
    let setup = Setup::new(&fake, HOME);
    let file = tokens_file(&setup, &format!("family {family}\n"));
    let e = start_error(setup.var("HETZNER_TOKENS_FILE", &file));
    assert!(e.contains("the zone example.com is in project default and in project family"), "{e}");
    assert!(!e.contains(&family) && !e.contains(e2e::TOKEN), "{e}");

    let setup = Setup::new(&fake, HOME);
    let file = tokens_file(&setup, "family token-hetzner-never-issued-0123456789abcdef\n");
    let e = start_error(setup.var("HETZNER_TOKENS_FILE", &file));
    assert!(e.contains("HETZNER_TOKENS_FILE: project family: Hetzner refused the token"), "{e}");
    assert!(!e.contains("token-hetzner-never-issued"), "{e}");

    // A bad line is a settings error naming the line, never the token.
    let setup = Setup::new(&fake, HOME);
    let file = tokens_file(&setup, "family\n");
    let vars =
        [("HETZNER_TOKEN", e2e::TOKEN.to_string()), ("HETZNER_TOKENS_FILE", file), ("REGISTERED_FQDNS", HOME.into())];
    let e = dyndns_server::config::Config::from_lookup(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .expect_err("bad line")
        .0;
    assert!(e.contains("HETZNER_TOKENS_FILE line 1"), "{e}");
    // A file that is not there, or not text, is named too.
    for text in [None, Some(&[0xff_u8, 0xfe, 0x00, b'\n'][..])] {
        let path = setup.dir.join("other-tokens");
        if let Some(bytes) = text {
            std::fs::write(&path, bytes).expect("write");
        }
        let vars = [("HETZNER_TOKENS_FILE", path.display().to_string()), ("REGISTERED_FQDNS", HOME.into())];
        let e =
            dyndns_server::config::Config::from_lookup(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .expect_err("unreadable")
                .0;
        assert!(e.contains("HETZNER_TOKENS_FILE: cannot read"), "{e}");
    }
}
