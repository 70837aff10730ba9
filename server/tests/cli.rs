//! The `dyndns-server` binary as a process: exit codes, the one-line fatal
//! messages, the `keys` command and a dry-run start.

mod common;

use std::process::Command;

use common::{http, scratch, spawn_dry_run, BIN};

/// Run with exactly these variables; returns (status, stdout, stderr).
fn run(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env_clear().envs(vars.iter().copied()).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fatal_settings_exit_2_with_one_line_naming_the_variable() {
    let dir = scratch("fatal");
    let keys = dir.join("keys").display().to_string();
    let base = [("PRE_SHARED_KEY_FILE", keys.as_str()), ("LISTEN_PORT", "0"), ("LISTEN_ADDR", "127.0.0.1")];

    let (code, out, _) = run(&[], &base);
    assert_eq!(code, 2);
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("[ERROR] HETZNER_TOKEN is not set") && last.contains("DRY_RUN=1"), "{out}");

    let (code, _, err) = run(&[], &[("HETZNER_TOKEN", "replace-with-your-hetzner-cloud-api-token")]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("placeholder"), "{err}");

    // The key file path is a directory: unreadable.
    let mut vars = base.to_vec();
    let dir_str = dir.display().to_string();
    vars[0] = ("PRE_SHARED_KEY_FILE", dir_str.as_str());
    vars.push(("DRY_RUN", "1"));
    vars.push(("REGISTERED_FQDNS", "home.example.com"));
    let (code, out, _) = run(&[], &vars);
    assert_eq!(code, 2);
    assert!(out.contains("PRE_SHARED_KEY_FILE") && out.contains(&dir_str), "{out}");

    let (code, _, err) = run(&["--bogus"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"));
}

#[test]
fn a_port_in_use_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dir = scratch("port");
    let keys = dir.join("keys").display().to_string();
    let (code, out, _) = run(
        &[],
        &[("DRY_RUN", "1"), ("LISTEN_ADDR", "127.0.0.1"), ("LISTEN_PORT", &port), ("PRE_SHARED_KEY_FILE", &keys)],
    );
    assert_eq!(code, 2);
    assert!(out.contains("LISTEN_PORT") && out.contains("in use"), "{out}");
}

#[test]
fn keys_prints_only_key_lines_on_stdout_and_keeps_them() {
    let dir = scratch("keys");
    let keys = dir.join("sub/keys").display().to_string();
    let vars = [("PRE_SHARED_KEY_FILE", keys.as_str()), ("REGISTERED_FQDNS", "b.example.com,a.example.com")];
    let (code, out, err) = run(&["keys"], &vars);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("a.example.com ") && lines[1].starts_with("b.example.com "));
    assert!(err.contains("generated keys"), "logs go to stderr: {err}");
    assert!(!err.contains(lines[0].split(' ').nth(1).unwrap_or("?")), "a key was logged");
    let (_, again, _) = run(&["keys"], &vars);
    assert_eq!(again, out, "keys are stable");
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!((code, out.trim()), (0, concat!("dyndns-server ", env!("CARGO_PKG_VERSION"))));
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("keys"));
}

#[test]
fn dry_run_serves_and_sigterm_stops_cleanly_with_state_saved() {
    let dir = scratch("sigterm");
    let (mut child, addr) = spawn_dry_run(&dir, &[]);
    assert!(http(&addr, "GET /healthz HTTP/1.0\r\n\r\n").ends_with("ok"));

    let key = std::fs::read_to_string(dir.join("keys")).expect("keys");
    let key = key.split_whitespace().nth(1).expect("key");
    let answer = http(
        &addr,
        &format!("GET /nic/update?hostname=home.example.com&myip=192.0.2.77&user=home&pass={key} HTTP/1.0\r\n\r\n"),
    );
    assert!(answer.ends_with("good 192.0.2.77"), "{answer}");

    let port = addr.rsplit(':').next().expect("port").to_string();
    let (code, _, _) = run(&["healthcheck"], &[("LISTEN_PORT", &port)]);
    assert_eq!(code, 0, "healthcheck against the running server");

    let signalled = std::time::Instant::now();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0));
    assert!(signalled.elapsed() < std::time::Duration::from_secs(3), "{:?}", signalled.elapsed());
    let state = std::fs::read_to_string(dir.join("dyndns-state.json")).expect("state written at shutdown");
    assert!(state.contains("192.0.2.77"), "{state}");

    let (code, _, err) = run(&["healthcheck"], &[("LISTEN_PORT", &port)]);
    assert_eq!(code, 1, "nothing listens any more: {err}");
}
