//! Property tests of the parsers that see untrusted input: thousands of
//! generated inputs (fixed seed, so a failure reproduces), checking that
//! nothing panics and that the results keep their promises. (cargo-fuzz
//! targets would need a nightly toolchain, which this project's CI does
//! not have; these run in CI on every change.)

use base64::Engine as _;
use dyndns_server::config::Config;
use dyndns_server::dyndns2::{percent_decode, Params};
use dyndns_server::fqdn;
use dyndns_server::keys::KeyFile;
use dyndns_server::message::Req;

const CASES: usize = 20_000;

/// Strings biased towards what the parsers care about.
fn noise(rng: &mut fastrand::Rng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        ".",
        ",",
        "-",
        "_",
        "%",
        "%3a",
        "%zz",
        "%",
        "+",
        "=",
        "&",
        "?",
        "/",
        ":",
        "::",
        "[",
        "]",
        " ",
        "\t",
        "\n",
        "#",
        "hostname=",
        "myip=",
        "myipv6=",
        "ip=",
        "user=",
        "pass=",
        "192.0.2.1",
        "2001:db8::1",
        "/64",
        "home.example.com",
        "ü",
        "例",
        "xn--",
        "\u{0}",
        "\u{feff}",
        "\"",
        "'",
        "\\",
        "é",
        "😀",
        ".com",
        "255",
        "1.2.3",
    ];
    let n = rng.usize(0..max);
    (0..n).map(|_| PIECES[rng.usize(0..PIECES.len())]).collect()
}

#[test]
fn dyndns2_queries_never_panic_and_keep_their_shape() {
    let mut rng = fastrand::Rng::with_seed(2);
    for _ in 0..CASES {
        let q = noise(&mut rng, 30);
        let p = Params::parse(&q);
        for h in p.hostnames() {
            assert!(!h.is_empty() && !h.contains(',') && h.trim() == h, "{q:?} → {h:?}");
        }
        if let Ok(Some(a)) = p.addresses() {
            let n = a.list().len();
            assert!((1..=2).contains(&n), "{q:?}");
        }
        let _ = p.credentials();
        let _ = percent_decode(&q);
    }
}

#[test]
fn canonical_names_are_stable_and_well_formed() {
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..CASES {
        let s = noise(&mut rng, 12);
        if let Ok(c) = fqdn::canonical(&s) {
            assert_eq!(fqdn::canonical(&c).as_deref(), Ok(c.as_str()), "not idempotent for {s:?}");
            assert!(c.is_ascii() && c.len() <= 253 && !c.ends_with('.') && c.contains('.'), "{s:?} → {c:?}");
            assert_eq!(c, c.to_ascii_lowercase());
            assert!(!fqdn::first_label(&c).is_empty());
        }
    }
}

#[test]
fn key_files_never_lose_a_line() {
    let mut rng = fastrand::Rng::with_seed(4);
    let registered = vec!["home.example.com".to_string(), "nas.example.com".to_string()];
    for _ in 0..2_000 {
        let lines: Vec<String> = (0..rng.usize(0..6)).map(|_| noise(&mut rng, 8)).collect();
        let text = lines.join(if rng.bool() { "\n" } else { "\r\n" });
        let mut kf = KeyFile::parse(&text);
        let before: Vec<(String, Option<String>)> =
            registered.iter().map(|h| (h.clone(), kf.get(h).map(str::to_string))).collect();
        kf.add_missing(&registered).expect("random source");
        assert!(kf.text().starts_with(&text), "a line was lost or changed:\n{text:?}\n→ {:?}", kf.text());
        for (host, old) in before {
            let now = kf.get(&host).expect("every registered host has a key");
            if let Some(old) = old {
                assert_eq!(now, old, "an existing key changed");
            }
        }
    }
}

#[test]
fn basic_auth_round_trips_and_noise_never_panics() {
    let mut rng = fastrand::Rng::with_seed(5);
    let auth = |value: &str| Req { headers: vec![("authorization", value)], ..Req::default() }.basic_auth();
    for _ in 0..CASES {
        let user = noise(&mut rng, 8).replace(':', "");
        let pass = noise(&mut rng, 12);
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        assert_eq!(auth(&format!("Basic {encoded}")), Some((user, pass)));
        let _ = auth(&format!("Basic {}", noise(&mut rng, 10)));
    }
}

#[test]
fn any_environment_gives_a_config_or_a_clear_error() {
    let mut rng = fastrand::Rng::with_seed(6);
    const VARS: &[&str] = &[
        "HETZNER_TOKEN",
        "HETZNER_API_URL",
        "REGISTERED_FQDNS",
        "LISTEN_ADDR",
        "LISTEN_PORT",
        "RECORD_TTL",
        "REQUEST_CACHE_TTL",
        "ZONE_CACHE_TTL",
        "BASIC_AUTH_USERNAME",
        "BASIC_AUTH_PASSWORD",
        "DRY_RUN",
        "NTFY_URL",
        "NTFY_TOPIC",
        "NTFY_TOKEN",
        "TRUSTED_PROXIES",
        "LOST_CONNECTION_TIMEOUT",
        "RECONCILE_INTERVAL",
        "RECONCILE_REPAIR",
        "IPV6_LAN_HOSTS",
        "ALLOW_PRIVATE_ADDRESSES",
        "ACME_ONLY_HOSTS",
    ];
    for _ in 0..5_000 {
        let mut vars = std::collections::HashMap::new();
        for v in VARS {
            if rng.u8(..) < 80 {
                vars.insert(*v, noise(&mut rng, 6));
            }
        }
        match Config::from_lookup(&|k| vars.get(k).cloned()) {
            Ok(c) => {
                assert!(c.record_ttl >= 60);
                let _ = c.summary();
            }
            Err(e) => assert!(VARS.iter().any(|v| e.0.contains(v)), "the error names no variable: {e}"),
        }
    }
}
