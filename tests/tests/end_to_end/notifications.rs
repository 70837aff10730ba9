//! Notifications to the services of NOTIFY_URLS (Shoutrrr URLs) beside
//! ntfy, through one queue, dedupe and cap; heartbeats to Healthchecks and
//! Uptime Kuma.

use std::time::{Duration, Instant};

use e2e::{FakeNtfy, FakeService, Fault, Service, Setup};

use crate::operations::{fake, update, HOME, WAIT};

#[test]
fn every_message_reaches_every_notifier_and_a_hanging_one_delays_none() {
    let fake = fake();
    let ntfy = FakeNtfy::start();
    let webhook = FakeService::start(Service::Webhook);
    let gotify = FakeService::start(Service::Gotify { token: "AzyoeNS.D4iJLVa" });
    let urls = format!(
        "generic+{}/hooks/dyndns?src=dyn, gotify://{}/AzyoeNS.D4iJLVa?disabletls=yes, ntfy://:tk_secret@{}/alerts?scheme=http",
        webhook.url(),
        gotify.authority(),
        ntfy.url().trim_start_matches("http://")
    );
    let server = Setup::new(&fake, HOME).var("NOTIFY_URLS", &urls).var("NOTIFY_ON_CHANGE", "1").start();
    // The generic webhook hangs for 5 s: the others are not held up.
    webhook.hang(Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(update(&server, "192.0.2.1").json()["status"], "created");

    let g = gotify.next(WAIT).expect("gotify");
    assert!(started.elapsed() < Duration::from_secs(3), "gotify waited for the webhook: {:?}", started.elapsed());
    assert_eq!((g.method.as_str(), g.url.as_str(), g.status), ("POST", "/message", 200));
    assert_eq!(g.header("X-Gotify-Key"), Some("AzyoeNS.D4iJLVa"));
    assert_eq!(g.json()["title"], "home.example.com A is now 192.0.2.1");
    assert_eq!(g.json()["priority"], 5);
    let n = ntfy.next(WAIT).expect("ntfy");
    assert_eq!((n.topic.as_str(), n.authorization.as_deref()), ("alerts", Some("Bearer tk_secret")));
    assert_eq!(n.title, "home.example.com A is now 192.0.2.1");

    let w = webhook.next(WAIT).expect("webhook");
    assert_eq!((w.method.as_str(), w.url.as_str()), ("POST", "/hooks/dyndns?src=dyn"));
    assert_eq!(w.header("Content-Type"), Some("application/json"));
    let doc = w.json();
    assert_eq!(doc["title"], "home.example.com A is now 192.0.2.1");
    assert_eq!(
        (doc["host"].as_str(), doc["kind"].as_str(), doc["priority"].as_u64()),
        (Some(HOME), Some("change"), Some(3))
    );
    assert!(doc["message"].as_str().is_some_and(|m| m.contains("192.0.2.1")), "{doc}");
    webhook.hang(Duration::ZERO);

    // A failure: high priority everywhere, announced once (dedupe) for all.
    for _ in 0..3 {
        fake.fail_next(Fault::Error { status: 401, code: "unauthorized" });
        assert_eq!(update(&server, "192.0.2.2").status, 502);
    }
    let g = gotify.next(WAIT).expect("gotify failure");
    assert_eq!(
        (g.json()["title"].as_str(), g.json()["priority"].as_u64()),
        (Some("dyndns: update of home.example.com failed"), Some(8))
    );
    let w = webhook.next(WAIT).expect("webhook failure");
    assert_eq!(w.json()["kind"], "update_failed");
    assert!(gotify.next(Duration::from_secs(2)).is_none(), "a repeated failure is muted for every notifier");
}

const UUID: &str = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
const PUSH: &str = "Xy12AbC";

#[test]
fn heartbeats_follow_health_failure_recovery_failure_within_seconds() {
    let fake = fake();
    let hc = FakeService::start(Service::Healthchecks { uuid: UUID });
    let kuma = FakeService::start(Service::UptimeKuma { token: PUSH });
    let server = Setup::new(&fake, HOME)
        .var("HEALTHCHECKS_URL", &format!("{}/{UUID}", hc.url()))
        .var("UPTIME_KUMA_URL", &format!("{}/api/push/{PUSH}?status=up&msg=OK&ping=", kuma.url()))
        .var("CONNECTION_CHECK_INTERVAL", "60")
        // Hetzner's recovery is seen at the next write, not 10 s later.
        .var("FAILED_WRITE_RETRY", "1")
        .start();
    let start = hc.next(WAIT).expect("start ping");
    assert_eq!(
        (start.method.as_str(), start.url.as_str(), start.status),
        ("POST", format!("/{UUID}/start").as_str(), 200)
    );
    let up = hc.next(WAIT).expect("healthy ping");
    assert_eq!((up.url.as_str(), up.status), (format!("/{UUID}").as_str(), 200));
    let k = kuma.next_matching(&format!("/api/push/{PUSH}?status=up"), WAIT).expect("kuma up");
    assert_eq!((k.method.as_str(), k.status), ("GET", 200));

    for round in 1..=2 {
        // Hetzner fails: a failing ping with the reason, within seconds.
        fake.set_outage(Some(Fault::Error { status: 500, code: "server_error" }));
        let _ = update(&server, &format!("192.0.2.{round}"));
        let t = Instant::now();
        let fail =
            hc.next_matching(&format!("/{UUID}/fail"), WAIT).unwrap_or_else(|| panic!("round {round}: fail ping"));
        assert!(t.elapsed() < Duration::from_secs(3), "round {round}: {:?}", t.elapsed());
        assert!(fail.body.contains("Hetzner"), "{}", fail.body);
        let down = kuma.next_matching(&format!("/api/push/{PUSH}?status=down"), WAIT).expect("kuma down");
        assert!(down.url.contains("msg=the%20last%20call%20to%20Hetzner%20failed"), "{}", down.url);
        // Hetzner answers again: healthy within seconds.
        fake.set_outage(None);
        let until = Instant::now() + WAIT;
        while update(&server, &format!("192.0.2.{}", 10 + round)).status != 200 {
            assert!(Instant::now() < until, "Hetzner back");
            std::thread::sleep(Duration::from_millis(200));
        }
        let t = Instant::now();
        let ok = hc.next_matching(&format!("/{UUID}"), WAIT).unwrap_or_else(|| panic!("round {round}: healthy again"));
        assert_eq!(ok.url, format!("/{UUID}"));
        assert!(t.elapsed() < Duration::from_secs(3), "round {round}: {:?}", t.elapsed());
        assert!(kuma.next_matching(&format!("/api/push/{PUSH}?status=up"), WAIT).is_some(), "kuma up again");
    }
}

#[test]
fn a_monitor_that_hangs_or_refuses_never_holds_up_the_server() {
    let fake = fake();
    let hc = FakeService::start(Service::Healthchecks { uuid: UUID });
    hc.hang(Duration::from_secs(20));
    let server = Setup::new(&fake, HOME)
        .var("HEALTHCHECKS_URL", &format!("{}/{UUID}", hc.url()))
        // Uptime Kuma answers 404 for an unknown token: logged, not fatal.
        .var("UPTIME_KUMA_URL", "http://127.0.0.1:9/api/push/nothing-listens")
        .start();
    let t = Instant::now();
    assert_eq!(update(&server, "192.0.2.1").status, 200);
    assert_eq!(server.get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let t = Instant::now();
    drop(server);
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown waited for a ping: {:?}", t.elapsed());
}
