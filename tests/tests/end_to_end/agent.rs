//! The agent library against the real server (in-process, port 0) and the
//! fake Hetzner, and against a small fake server that answers errors.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dyndns_agent::config::Config;
use dyndns_agent::Exit;
use e2e::{FakeHetzner, Setup, TestServer};

const HOME: &str = "home.example.com";

/// A dual-stack server ([::], so 127.0.0.1 and ::1 both reach it).
fn dual_stack_server() -> (FakeHetzner, TestServer) {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    // Loopback is what the agent connects from here.
    let server = Setup::new(&fake, HOME).var("LISTEN_ADDR", "::").var("ALLOW_PRIVATE_ADDRESSES", "1").start();
    (fake, server)
}

fn port(server: &TestServer) -> u16 {
    server.running().addr().port()
}

/// The agent's settings; its IPv6 address is the connection's (::1 here),
/// unless a test says otherwise (the kernel's choice is unit-tested).
fn agent_config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.entry("IPV6_SOURCE".into()).or_insert_with(|| "connection".into());
    Config::load(&[], &move |k| map.get(k).cloned()).expect("agent config")
}

/// Run once (INTERVAL=0); returns the exit and how long it took.
fn run_once(vars: &[(&str, &str)]) -> (Exit, Duration) {
    let mut vars = vars.to_vec();
    vars.push(("INTERVAL", "0"));
    let (_tx, rx) = mpsc::channel();
    let started = Instant::now();
    let exit = dyndns_agent::run(&agent_config(&vars), &rx);
    (exit, started.elapsed())
}

#[test]
fn over_ipv4_it_sets_a_and_an_unreachable_ipv6_is_not_a_failure() {
    let (fake, server) = dual_stack_server();
    let key = server.key(HOME);
    let url = format!("http://127.0.0.1:{}", port(&server));
    let (exit, _) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", &key)]);
    assert_eq!(exit, Exit::Ok);
    assert_eq!(fake.rrset("example.com", "home", "A"), Some(vec!["127.0.0.1".to_string()]));
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), None);
}

#[test]
fn over_ipv6_it_sets_aaaa_with_the_right_type() {
    let (fake, server) = dual_stack_server();
    let key = server.key(HOME);
    let url = format!("http://[::1]:{}/update/", port(&server));
    let (exit, _) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", &key)]);
    assert_eq!(exit, Exit::Ok);
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), Some(vec!["::1".to_string()]));
    assert_eq!(fake.rrset("example.com", "home", "A"), None);
}

#[test]
fn asking_for_exactly_an_unreachable_family_is_a_failure() {
    let (_fake, server) = dual_stack_server();
    let key = server.key(HOME);
    let url = format!("http://127.0.0.1:{}", port(&server));
    let (exit, _) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", &key), ("IP_VERSION", "6")]);
    assert_eq!(exit, Exit::Failed);
}

#[test]
fn an_explicit_ip_is_reported_as_given() {
    let (fake, server) = dual_stack_server();
    let key = server.key(HOME);
    let url = format!("http://127.0.0.1:{}", port(&server));
    let (exit, _) =
        run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", &key), ("IP", "2001:db8::42")]);
    assert_eq!(exit, Exit::Ok);
    assert_eq!(fake.rrset("example.com", "home", "AAAA"), Some(vec!["2001:db8::42".to_string()]));
}

#[test]
fn a_rejected_report_fails_at_once_without_retries() {
    let (fake, server) = dual_stack_server();
    let url = format!("http://127.0.0.1:{}", port(&server));
    let (exit, took) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", "wrong-key")]);
    assert_eq!(exit, Exit::Failed);
    assert!(took < Duration::from_secs(3), "no backoff for a 401: {took:?}");
    let (exit, _) =
        run_once(&[("BACKEND_URL", &url), ("FQDN", "other.example.com"), ("PRE_SHARED_KEY", &server.key(HOME))]);
    assert_eq!(exit, Exit::Failed);
    assert_eq!(fake.rrset("example.com", "home", "A"), None);
}

/// A server that answers `statuses` in turn (then 200 OK as dyndns-server).
fn scripted_server(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = statuses.get(n).copied().unwrap_or(200);
            let body = if status == 200 {
                r#"{"status":"unchanged","fqdn":"home.example.com","type":"A","ip":"127.0.0.1"}"#.to_string()
            } else {
                format!(r#"{{"error":"scripted {status}"}}"#)
            };
            let _ = rq.respond(tiny_http::Response::from_string(body).with_status_code(status));
        }
    });
    (url, count)
}

#[test]
fn a_200_with_an_undocumented_status_is_not_a_success() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let body = r#"{"status":"ok\n\u001b[31mforged","ip":"127.0.0.1"}"#;
            let _ = rq.respond(tiny_http::Response::from_string(body));
        }
    });
    let (exit, _) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", "k"), ("IP_VERSION", "4")]);
    assert_eq!(exit, Exit::Failed, "only created/updated/unchanged with an address count as success");
}

#[test]
fn transient_errors_are_retried_with_backoff_within_the_budget() {
    let (url, count) = scripted_server(vec![503, 502]);
    let (exit, took) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", "k"), ("IP_VERSION", "4")]);
    assert_eq!(exit, Exit::Ok);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn an_unreachable_server_fails_within_the_one_shot_budget() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (exit, took) = run_once(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", "k")]);
    assert_eq!(exit, Exit::Failed);
    assert!(took < Duration::from_secs(12), "{took:?}");
}

#[test]
fn the_loop_reports_then_stops_at_once_when_told() {
    let (fake, server) = dual_stack_server();
    let key = server.key(HOME);
    let url = format!("http://127.0.0.1:{}", port(&server));
    let config = agent_config(&[("BACKEND_URL", &url), ("FQDN", HOME), ("PRE_SHARED_KEY", &key), ("INTERVAL", "3600")]);
    let (tx, rx) = mpsc::channel();
    let agent = std::thread::spawn(move || dyndns_agent::run(&config, &rx));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.rrset("example.com", "home", "A").is_none() {
        assert!(Instant::now() < deadline, "the first report never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = Instant::now();
    tx.send(()).expect("send stop");
    assert_eq!(agent.join().expect("agent thread"), Exit::Ok);
    assert!(stopped.elapsed() < Duration::from_secs(1));
}

/// After each run: the Healthchecks URL on success, `/fail` with the reason
/// when a family failed (a refused key here), and Uptime Kuma alike.
#[test]
fn the_agent_pings_its_heartbeat_on_success_and_fail_with_the_reason() {
    use e2e::{FakeService, Service};
    let (_fake, server) = dual_stack_server();
    let hc = FakeService::start(Service::Healthchecks { uuid: "0d5a6b7c-agent" });
    let kuma = FakeService::start(Service::UptimeKuma { token: "agentpush" });
    let hc_url = format!("{}/0d5a6b7c-agent", hc.url());
    let kuma_url = format!("{}/api/push/agentpush?status=up&msg=OK&ping=", kuma.url());
    let url = format!("http://127.0.0.1:{}", port(&server));
    let key = server.key(HOME);
    let base = [
        ("BACKEND_URL", url.as_str()),
        ("FQDN", HOME),
        ("IP_VERSION", "4"),
        ("HEALTHCHECKS_URL", hc_url.as_str()),
        ("UPTIME_KUMA_URL", kuma_url.as_str()),
    ];
    let with_key = |k: &str| {
        let mut v = base.to_vec();
        v.push(("PRE_SHARED_KEY", k));
        run_once(&v).0
    };
    assert_eq!(with_key(&key), Exit::Ok);
    let ok = hc.next(Duration::from_secs(5)).expect("success ping");
    assert_eq!((ok.method.as_str(), ok.url.as_str(), ok.status), ("POST", "/0d5a6b7c-agent", 200));
    let up = kuma.next(Duration::from_secs(5)).expect("kuma up");
    assert!(up.url.starts_with("/api/push/agentpush?status=up&msg="), "{}", up.url);

    let wrong = "x".repeat(43);
    assert_eq!(with_key(&wrong), Exit::Failed);
    let fail = hc.next(Duration::from_secs(5)).expect("fail ping");
    assert_eq!(fail.url, "/0d5a6b7c-agent/fail");
    assert!(fail.body.contains("home.example.com A") && fail.body.contains("401"), "{}", fail.body);
    let down = kuma.next(Duration::from_secs(5)).expect("kuma down");
    assert!(down.url.starts_with("/api/push/agentpush?status=down&msg=home.example.com%20A"), "{}", down.url);
}
