//! The `dyndns-agent` binary as a process: exit codes and signals.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dyndns-agent");

fn run(args: &[&str], vars: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN).args(args).env_clear().envs(vars.iter().copied()).output().expect("run");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A server answering every request with `status` and `body`.
fn answering(status: u16, body: &'static str) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let _ = rq.respond(tiny_http::Response::from_string(body).with_status_code(status));
        }
    });
    url
}

#[test]
fn missing_settings_exit_2_and_name_the_variable() {
    let (code, err) = run(&[], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("BACKEND_URL is not set"), "{err}");
    let (code, err) = run(&["https://d.example.com", "home.example.com"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("PRE_SHARED_KEY is not set"), "{err}");
    let (code, err) = run(&[], &[("BACKEND_URL", "d.example.com"), ("FQDN", "h.example.com"), ("PRE_SHARED_KEY", "k")]);
    assert_eq!(code, 2);
    assert!(err.contains("BACKEND_URL=\"d.example.com\""), "{err}");
}

#[test]
fn one_shot_exit_codes_follow_the_answer() {
    let ok = answering(200, r#"{"status":"updated","fqdn":"home.example.com","type":"A","ip":"192.0.2.1"}"#);
    let (code, err) =
        run(&[&ok, "home.example.com"], &[("PRE_SHARED_KEY", "k"), ("INTERVAL", "0"), ("IP_VERSION", "4")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("home.example.com A 192.0.2.1 (updated)"), "{err}");

    let refused = answering(401, r#"{"error":"wrong pre-shared key for this host"}"#);
    let (code, err) =
        run(&[&refused, "home.example.com"], &[("PRE_SHARED_KEY", "secret-key-value"), ("INTERVAL", "0")]);
    assert_eq!(code, 1);
    assert!(err.contains("401") && err.contains("wrong pre-shared key"), "{err}");
    assert!(!err.contains("secret-key-value"), "the key was logged: {err}");
}

#[test]
fn sigterm_stops_the_loop_at_once_with_status_0() {
    let ok = answering(200, r#"{"status":"unchanged","fqdn":"home.example.com","type":"A","ip":"192.0.2.1"}"#);
    let mut child = Command::new(BIN)
        .args([&ok, "home.example.com"])
        .env_clear()
        .envs([("PRE_SHARED_KEY", "k"), ("INTERVAL", "3600"), ("IP_VERSION", "4")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the first report's log line, then signal.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("192.0.2.1") {
        let n = stderr.read(&mut buf).expect("read");
        assert!(n > 0, "agent exited early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(2));
}
