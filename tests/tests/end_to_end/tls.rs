//! HTTPS served by the server itself: a certificate from files, and one
//! obtained and renewed from pebble (Debian's ACME test CA) by DNS-01
//! through the fake Hetzner, whose TXT records pebble reads by real DNS
//! from pebble-challtestsrv. Hostile TLS clients and bad settings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{FakeHetzner, Setup};

const NAME: &str = "dyndns.example.com";

/// A client configuration trusting only the PEM certificates in `roots`.
fn client(roots: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(roots).expect("roots") {
        store.add(cert.expect("root")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// The answers to `requests`, sent one after another on one TLS
/// connection to `addr` for `NAME`, and the serial of the certificate seen.
fn https(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, requests: &[&str]) -> (Vec<String>, String) {
    let name = rustls::pki_types::ServerName::try_from(NAME).expect("name");
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut answers = Vec::new();
    for path in requests {
        let rq = format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\n\r\n");
        tls.write_all(rq.as_bytes()).expect("send");
        answers.push(read_answer(&mut tls));
    }
    let der = tls.conn.peer_certificates().and_then(|c| c.first().cloned()).expect("a certificate");
    let serial = dyndns_server::der::cert_info(&der).expect("readable").serial;
    (answers, serial)
}

/// One HTTP answer (head and `Content-Length` body) off a stream.
fn read_answer(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("answer head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("answer body");
    format!("{}{}", head.lines().next().unwrap_or_default(), String::from_utf8_lossy(&body))
}

/// A certificate for `NAME` from a new throwaway CA, made with openssl:
/// (chain, key, CA).
fn certificate(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let script = format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {tag}-ca.key -out {tag}-ca.pem -days 2 -subj /CN=test-ca-{tag} && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {tag}.key -out {tag}.csr -subj /CN={NAME} && \
         printf 'subjectAltName=DNS:{NAME}\\n' > {tag}.san && \
         openssl x509 -req -in {tag}.csr -CA {tag}-ca.pem -CAkey {tag}-ca.key -CAcreateserial -out {tag}.pem -days 2 -extfile {tag}.san"
    );
    let ok = Command::new("sh").arg("-c").arg(&script).current_dir(dir).stderr(Stdio::null()).status();
    assert!(ok.expect("sh").success(), "openssl (apt-get install openssl)");
    (dir.join(format!("{tag}.pem")), dir.join(format!("{tag}.key")), dir.join(format!("{tag}-ca.pem")))
}

/// A server on HTTPS only with a certificate from files made for the test
/// (`certificate(dir, tag)`), and what it was started with.
struct FilesServer {
    server: e2e::TestServer,
    dir: e2e::Scratch,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    _fake: FakeHetzner,
}

fn files_server(tag: &str) -> FilesServer {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let dir = e2e::scratch_dir(&format!("tls-{tag}"));
    let (cert, key, ca) = certificate(&dir, tag);
    let server = tls_server(&fake, &cert, &key);
    FilesServer { server, dir, cert, key, ca, _fake: fake }
}

fn tls_server(fake: &FakeHetzner, cert: &Path, key: &Path) -> e2e::TestServer {
    Setup::new(fake, "home.example.com")
        .without("LISTEN_PORT")
        .var("LISTEN_TLS_PORT", "0")
        .var("CLIENT_TIMEOUT", "2")
        .var("TLS_CERT_FILE", &cert.display().to_string())
        .var("TLS_KEY_FILE", &key.display().to_string())
        .start()
}

fn tls_addr(server: &e2e::TestServer) -> SocketAddr {
    server.running().tls_addr().expect("HTTPS is on")
}

#[test]
fn certificate_files_are_served_with_keep_alive_and_replaced_without_a_restart() {
    let FilesServer { server, dir, cert, key, ca, .. } = files_server("one");
    let addr = tls_addr(&server);
    // Without LISTEN_PORT, HTTPS is all there is.
    assert_eq!(server.running().addr(), addr);
    let config = client(&ca);
    // Read request, write answer, read the next: three on one connection.
    let (answers, first) = https(addr, &config, &["/healthz", "/healthz", "/healthz"]);
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200")), "{answers:?}");

    // New files: served from the next handshake on, the old connection
    // keeps working.
    let (cert2, key2, ca2) = certificate(&dir, "two");
    std::fs::copy(&cert2, &cert).expect("copy");
    std::fs::copy(&key2, &key).expect("copy");
    server.running().reload();
    let (answers, second) = https(addr, &client(&ca2), &["/healthz"]);
    assert!(answers[0].starts_with("HTTP/1.1 200"), "{answers:?}");
    assert_ne!(first, second, "the new certificate is served");

    // A bad file on reload keeps the certificate in use.
    std::fs::write(&key, "not a key").expect("write");
    server.running().reload();
    let (_, third) = https(addr, &client(&ca2), &["/healthz"]);
    assert_eq!(third, second);
}

#[test]
fn hostile_tls_clients_cost_one_connection_and_end_on_time() {
    let FilesServer { server, ca, dir: _dir, .. } = files_server("hostile");
    let addr = tls_addr(&server);
    let ends_within = |bytes: &[u8], limit: Duration| {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        tcp.write_all(bytes).expect("send");
        let started = Instant::now();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
        assert!(
            started.elapsed() < limit,
            "{:?} held the connection {:?}",
            String::from_utf8_lossy(bytes),
            started.elapsed()
        );
    };
    // Nothing, half a ClientHello, plaintext HTTP, garbage.
    ends_within(b"", Duration::from_secs(4));
    ends_within(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], Duration::from_secs(4));
    ends_within(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(4));
    ends_within(&[0xff; 600], Duration::from_secs(4));
    // Many silent ones at once are held to CLIENT_TIMEOUT and then gone.
    let silent: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let (answers, _) = https(addr, &client(&ca), &["/healthz"]);
    assert!(answers[0].starts_with("HTTP/1.1 200"));
    let until = Instant::now() + Duration::from_secs(8);
    while server.running().open_connections() > 0 {
        assert!(Instant::now() < until, "{} TLS connections left open", server.running().open_connections());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(silent);
}

#[test]
fn bad_tls_settings_stop_the_start_naming_the_setting() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let dir = e2e::scratch_dir("tls-bad");
    let (cert, _, _) = certificate(&dir, "a");
    let (_, other_key, _) = certificate(&dir, "b");
    let start = |vars: &[(&str, &str)]| {
        let mut setup = Setup::new(&fake, "home.example.com").var("LISTEN_TLS_PORT", "0");
        for (k, v) in vars {
            setup = setup.var(k, v);
        }
        match dyndns_server::Server::start(setup.config()) {
            Ok(_) => panic!("started with {vars:?}"),
            Err(e) => e.to_string(),
        }
    };
    let (c, k) = (cert.display().to_string(), other_key.display().to_string());
    let e = start(&[("TLS_CERT_FILE", &c), ("TLS_KEY_FILE", &k)]);
    assert!(e.contains("TLS_CERT_FILE") && e.contains("does not belong"), "{e}");
    let e = start(&[("TLS_CERT_FILE", &k), ("TLS_KEY_FILE", &k)]);
    assert!(e.contains("TLS_CERT_FILE") && e.contains("no PEM certificate"), "{e}");
    let e = start(&[("TLS_DOMAINS", "dyndns.elsewhere.org")]);
    assert!(e.contains("TLS_DOMAINS") && e.contains("dyndns.elsewhere.org"), "{e}");
    let e = dyndns_server::config::Config::from_lookup(&|k| if k == "TLS_CERT_FILE" { Some(c.clone()) } else { None });
    assert!(e.expect_err("half").0.contains("TLS_KEY_FILE"));
}

/// pebble and pebble-challtestsrv on free ports, ended (by PID) on drop.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    ca: PathBuf,
    dns: String,
    management: String,
    mgmt_api: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Pebble {
    fn start(dir: &Path) -> Pebble {
        // pebble's own HTTPS: a throwaway CA from openssl.
        let sh = |script: &str| {
            let ok = Command::new("sh").arg("-c").arg(script).current_dir(dir).stderr(Stdio::null()).status();
            assert!(ok.expect("sh").success(), "{script}");
        };
        sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=pebble-test-ca");
        sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pebble.key -out pebble.csr -subj /CN=localhost");
        sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san && openssl x509 -req -in pebble.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out pebble.pem -days 2 -extfile san");
        let (acme, mgmt, chall) = (free_port(), free_port(), free_port());
        let dns = format!("127.0.0.1:{}", free_udp_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"), "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.join("pebble.pem"), "privateKey": dir.join("pebble.key"),
            "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": false}});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("config");
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log");
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &dns, "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{chall}")])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let mut pebble = Pebble {
            children: vec![challtestsrv],
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca: dir.join("ca.pem"),
            dns: dns.clone(),
            management: format!("http://127.0.0.1:{chall}"),
            mgmt_api: format!("https://127.0.0.1:{mgmt}"),
        };
        // Validation by real DNS: no PEBBLE_VA_ALWAYS_VALID.
        let child = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &dns])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "10")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt-get install pebble)");
        pebble.children.push(child);
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", acme)).is_err() || TcpStream::connect(("127.0.0.1", chall)).is_err() {
            assert!(Instant::now() < until, "pebble did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }

    /// pebble's root (the issuer of the certificates it signs), PEM.
    fn root(&self, dir: &Path) -> PathBuf {
        let out = Command::new("curl")
            .args(["-fsS", "--cacert"])
            .arg(&self.ca)
            .arg(format!("{}/roots/0", self.mgmt_api))
            .output()
            .expect("curl");
        assert!(out.status.success(), "pebble root");
        let path = dir.join("pebble-root.pem");
        std::fs::write(&path, out.stdout).expect("root");
        path
    }
}

#[test]
fn a_certificate_is_obtained_by_dns01_served_renewed_and_kept_across_a_restart_without_the_ca() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let dir = e2e::scratch_dir("tls-acme");
    let pebble = Pebble::start(&dir);
    fake.mirror_txt_to(&pebble.management);
    let (directory, ca, dns) = (pebble.directory.clone(), pebble.ca.display().to_string(), pebble.dns.clone());
    let setup = |dir: e2e::Scratch, renew: Option<&str>| {
        let mut s = Setup::in_dir(&fake, "home.example.com", dir)
            .without("LISTEN_PORT")
            .var("LISTEN_TLS_PORT", "0")
            .var("TLS_DOMAINS", NAME)
            .var("TLS_ACME_DIRECTORY", &directory)
            .var("TLS_ACME_CA_FILE", &ca)
            .var("TLS_DNS_RESOLVER", &dns)
            .var("TLS_ACME_EMAIL", "ops@example.com")
            .var("METRICS_PUBLIC", "1");
        if let Some(days) = renew {
            s = s.var("TLS_RENEW_DAYS", days);
        }
        s
    };
    let server = setup(dir.clone(), None).start();
    let addr = tls_addr(&server);
    let store = Arc::clone(server.running().app.certificates.get().expect("store"));
    let until = Instant::now() + Duration::from_secs(90);
    while !store.has_certificate() {
        let last = store.snapshot().last_attempt;
        assert!(Instant::now() < until, "no certificate: {last:?}");
        assert!(!matches!(last, Some((_, Err(_)))), "the order failed: {last:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let root = pebble.root(&dir);
    let (answers, first) = https(addr, &client(&root), &["/healthz", "/healthz"]);
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200")), "{answers:?}");
    // The challenge value is gone from the zone.
    assert_eq!(fake.rrset("example.com", "_acme-challenge.dyndns", "TXT").unwrap_or_default(), Vec::<String>::new());
    let (answers, _) = https(addr, &client(&root), &["/metrics"]);
    assert!(
        answers[0].contains("dyndns_tls_certificate_expiry_timestamp_seconds 1")
            && answers[0].contains("dyndns_tls_renewal_success 1"),
        "{answers:?}"
    );
    let stored = dir.join("tls-certificate.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&stored).expect("stored").permissions().mode() & 0o777, 0o600);
    let data = server.stop();

    // Restarted with TLS_RENEW_DAYS beyond pebble's lifetime: the stored
    // certificate is served at once, then renewed without a restart.
    let server = setup(data.clone(), Some("3650")).start();
    let addr = tls_addr(&server);
    let (_, served) = https(addr, &client(&root), &["/healthz"]);
    assert_eq!(served, first, "the stored certificate is served at once");
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let (answers, serial) = https(addr, &client(&root), &["/healthz"]);
        assert!(answers[0].starts_with("HTTP/1.1 200"));
        if serial != first {
            break;
        }
        assert!(
            Instant::now() < until,
            "not renewed: {:?}",
            server.running().app.certificates.get().map(|s| s.snapshot())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let data = server.stop();

    // The CA gone: the stored certificate still serves.
    drop(pebble);
    let server = setup(data, Some("3650")).start();
    let (answers, _) = https(tls_addr(&server), &client(&root), &["/healthz"]);
    assert!(answers[0].starts_with("HTTP/1.1 200"));
}

#[test]
fn an_unreachable_ca_at_the_first_start_leaves_the_server_serving_and_retrying() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let ntfy = e2e::FakeNtfy::start();
    // Nothing listens on this port: the directory cannot be fetched.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let server = Setup::new(&fake, "home.example.com")
        .var("LISTEN_TLS_PORT", "0")
        .var("TLS_DOMAINS", NAME)
        .var("TLS_ACME_DIRECTORY", &dead)
        .var("NTFY_URL", ntfy.url())
        .var("NTFY_TOPIC", "dyndns")
        .var("BASIC_AUTH_USERNAME", "admin")
        .var("BASIC_AUTH_PASSWORD", "a-long-admin-password")
        .start();
    // Plain HTTP (LISTEN_PORT is set by the test set-up) answers at once.
    let key = server.key("home.example.com");
    assert_eq!(
        server.get_as("/nic/update?hostname=home.example.com&myip=192.0.2.4", "home", &key).body,
        "good 192.0.2.4"
    );
    // The failure is recorded with its reason and a next attempt, and announced.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let tls = loop {
        let r = server.request(
            "GET",
            "/status",
            &[("Authorization", &e2e::basic("admin", "a-long-admin-password")), ("Accept", "application/json")],
            None,
        );
        let tls = r.json()["tls"].clone();
        if tls["last_renewal_result"].is_string() {
            break tls;
        }
        assert!(std::time::Instant::now() < until, "no renewal attempt recorded: {tls}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let result = tls["last_renewal_result"].as_str().unwrap_or_default();
    assert_ne!(result, "ok");
    assert!(result.contains("127.0.0.1"), "the reason names the CA: {result}");
    assert!(tls["next_renewal"].as_u64().is_some(), "it keeps trying: {tls}");
    assert!(tls["serial"].is_null());
    let message = ntfy.next(std::time::Duration::from_secs(10)).expect("the first failure is announced");
    assert!(format!("{message:?}").contains("certificate"), "{message:?}");
    // The HTTPS port has nothing to serve yet: the handshake fails, the server stays.
    let addr = tls_addr(&server);
    let _ = std::net::TcpStream::connect(addr).map(|mut s| {
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(3)));
        let _ = s.write_all(b"\x16\x03\x01\x00\x05hello");
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    });
    assert_eq!(server.get("/healthz").status, 200);
}

/// pebble's directory with `renewalInfo` added (pebble 2.4 has no ARI),
/// served over HTTPS with pebble's own certificate; its renewal
/// information answers `window` and records the identifiers asked for.
struct AriDirectory {
    url: String,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    window: Arc<std::sync::Mutex<(u64, u64)>>,
    _server: Arc<tiny_http::Server>,
}

fn rfc3339(unix: u64) -> String {
    let mut out = String::new();
    dyndns_server::time::utc_text(&mut out, std::time::UNIX_EPOCH + Duration::from_secs(unix), false);
    out
}

impl AriDirectory {
    fn start(dir: &Path, pebble: &Pebble) -> AriDirectory {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("pebble.pem")).expect("pem").map(|c| c.expect("cert")).collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("pebble.key")).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let server = Arc::new(
            tiny_http::Server::with_tls(listener, tiny_http::Limits::default(), None, Some(Arc::new(config)), None)
                .expect("server"),
        );
        let out = Command::new("curl").args(["-fsS", "--cacert"]).arg(&pebble.ca).arg(&pebble.directory).output();
        let mut directory: serde_json::Value = serde_json::from_slice(&out.expect("curl").stdout).expect("directory");
        directory["renewalInfo"] = serde_json::json!(format!("{url}/ari"));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let window = Arc::new(std::sync::Mutex::new((0, 0)));
        let (s, a, w) = (Arc::clone(&server), Arc::clone(&asked), Arc::clone(&window));
        std::thread::spawn(move || {
            for rq in s.incoming_requests() {
                let body = if let Some(id) = rq.url().strip_prefix("/ari/") {
                    a.lock().expect("asked").push(id.to_string());
                    let (start, end) = *w.lock().expect("window");
                    serde_json::json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}).to_string()
                } else {
                    directory.to_string()
                };
                let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header");
                let _ = rq.respond(tiny_http::Response::from_string(body).with_header(header));
            }
        });
        AriDirectory { url: format!("{url}/dir"), asked, window, _server: server }
    }
}

#[test]
fn the_cas_renewal_window_decides_when_to_renew() {
    let fake = FakeHetzner::start();
    fake.add_zone("example.com");
    let dir = e2e::scratch_dir("tls-ari");
    let pebble = Pebble::start(&dir);
    fake.mirror_txt_to(&pebble.management);
    let ari = AriDirectory::start(&dir, &pebble);
    let now = dyndns_server::time::unix_now();
    *ari.window.lock().expect("window") = (now + 30 * 86_400, now + 31 * 86_400);
    let (ca, dns) = (pebble.ca.display().to_string(), pebble.dns.clone());
    let setup = |dir: e2e::Scratch| {
        Setup::in_dir(&fake, "home.example.com", dir)
            .without("LISTEN_PORT")
            .var("LISTEN_TLS_PORT", "0")
            .var("TLS_DOMAINS", NAME)
            .var("TLS_ACME_DIRECTORY", &ari.url)
            .var("TLS_ACME_CA_FILE", &ca)
            .var("TLS_DNS_RESOLVER", &dns)
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let server = setup(dir.clone()).start();
    let store = Arc::clone(server.running().app.certificates.get().expect("store"));
    wait_for("a certificate", &|| store.has_certificate());
    let first = store.snapshot().info.expect("info");
    let id = first.ari_id.clone().expect("pebble's certificates have an authority key identifier");
    // The CA is asked about exactly this certificate, and the renewal is
    // planned inside its window, not at a third of pebble's 5 years.
    wait_for("the renewal information asked", &|| ari.asked.lock().expect("asked").contains(&id));
    wait_for("a renewal planned", &|| store.snapshot().next_attempt.is_some_and(|t| t > now + 86_400));
    let next = store.snapshot().next_attempt.expect("next");
    assert!((now + 30 * 86_400..=now + 31 * 86_400).contains(&next), "{next} outside the window");
    let data = server.stop();

    // The window moves into the past: after a restart (no 12-hour gap for a
    // certificate got in an earlier run) it is renewed at once.
    *ari.window.lock().expect("window") = (now - 7200, now - 3600);
    let server = setup(data).start();
    let store = Arc::clone(server.running().app.certificates.get().expect("store"));
    wait_for("renewed by the window", &|| store.snapshot().info.is_some_and(|i| i.serial != first.serial));
    let second = store.snapshot().info.expect("info");
    assert!(second.not_after > 0 && second.ari_id.is_some_and(|n| n != id));
}

/// The patched tiny_http without a handler (requests taken from
/// `incoming_requests` by another thread, as the ARI fake above does): a
/// TLS connection answers each request before reading the next. Its reader
/// held the stream's lock while it waited for the next request, so no
/// answer was ever written (tiny-http #144's deadlock, in the queue path).
#[test]
fn tls_requests_taken_from_the_queue_are_answered_with_keep_alive() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = e2e::scratch_dir("tls-queue");
    let (chain, key, ca) = certificate(&dir, "queue");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&chain).expect("pem").map(|c| c.expect("cert")).collect();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from_pem_file(&key).expect("key"))
        .expect("config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = tiny_http::Limits { timeout: Some(Duration::from_secs(5)), ..tiny_http::Limits::default() };
    let server =
        Arc::new(tiny_http::Server::with_tls(listener, limits, None, Some(Arc::new(config)), None).expect("server"));
    let s = Arc::clone(&server);
    std::thread::spawn(move || {
        for rq in s.incoming_requests() {
            let body = format!("answer to {}", rq.url());
            let _ = rq.respond(tiny_http::Response::from_string(body));
        }
    });
    let started = Instant::now();
    let (answers, _) = https(addr, &client(&ca), &["/one", "/two", "/three"]);
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (answer, path) in answers.iter().zip(["/one", "/two", "/three"]) {
        assert!(answer.ends_with(&format!("answer to {path}")), "{answer:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "answers waited for the read timeout");
}
