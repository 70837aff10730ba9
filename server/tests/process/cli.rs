//! The `dyndns-server` binary as a process: exit codes, the one-line fatal
//! messages, the `keys` command and a dry-run start.

use std::process::Command;

use crate::common::{http, scratch, spawn_dry_run, spawn_dry_run_with_log, BIN};

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
    let scratch = scratch("fatal");
    let dir = scratch.path();
    let keys = dir.join("keys").display().to_string();
    let base = [("PRE_SHARED_KEY_FILE", keys.as_str()), ("LISTEN_PORT", "0"), ("LISTEN_ADDR", "127.0.0.1")];

    let (code, out, _) = run(&[], &base);
    assert_eq!(code, 2);
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("[ERROR] HETZNER_TOKEN is not set") && last.contains("DRY_RUN=1"), "{out}");

    // A setting refused while the settings are read: the same channel and
    // the same shape as the errors found later.
    let (code, out, err) = run(&[], &[("HETZNER_TOKEN", "replace-with-your-hetzner-cloud-api-token")]);
    assert_eq!(code, 2);
    assert!(err.is_empty(), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("[ERROR] HETZNER_TOKEN") && out.contains("placeholder"), "{out}");
    let (code, out, err) = run(&[], &[("DRY_RUN", "1"), ("LISTEN_PORT", "99999")]);
    assert_eq!(code, 2);
    assert!(err.is_empty() && out.lines().all(|l| l.contains(" [ERROR] ")), "{out}{err}");
    assert!(out.contains("LISTEN_PORT"), "{out}");

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
fn a_lan_host_entry_that_cannot_be_used_stops_the_start_with_one_line() {
    let scratch = scratch("lan");
    let dir = scratch.path();
    let keys = dir.join("keys").display().to_string();
    let vars = [
        ("PRE_SHARED_KEY_FILE", keys.as_str()),
        ("DRY_RUN", "1"),
        ("LISTEN_PORT", "0"),
        ("REGISTERED_FQDNS", "router.example.com"),
        ("IPV6_LAN_HOSTS", "nas.example.com=::1@gateway.example.com"),
    ];
    let (code, err, _) = run(&[], &vars);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("IPV6_LAN_HOSTS: \"nas.example.com=::1@gateway.example.com\": the router gateway.example.com is not in REGISTERED_FQDNS"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let scratch = scratch("port");
    let dir = scratch.path();
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
    let scratch = scratch("keys");
    let dir = scratch.path();
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
fn keys_without_settings_says_what_is_missing() {
    let (code, out, err) = run(&["keys"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty() && err.contains("REGISTERED_FQDNS is empty"), "{err}");
    // (Without PRE_SHARED_KEY_FILE it warns that it uses /pre-shared-key;
    // not run here, since as root that would write to /.)
}

#[test]
fn keys_rotate_replaces_one_key_and_prints_it() {
    let scratch = scratch("rotate");
    let dir = scratch.path();
    let keys = dir.join("keys").display().to_string();
    let vars = [("PRE_SHARED_KEY_FILE", keys.as_str()), ("REGISTERED_FQDNS", "b.example.com,a.example.com")];
    let (_, before, _) = run(&["keys"], &vars);
    let (code, out, err) = run(&["keys", "rotate", "A.example.com."], &vars);
    assert_eq!(code, 0, "{err}");
    let new = out.trim().strip_prefix("a.example.com ").expect("a line for the host").to_string();
    assert_eq!(new.len(), 43);
    assert!(err.contains("SIGHUP") && !err.contains(&new), "{err}");
    let (_, after, _) = run(&["keys"], &vars);
    let old_b = before.lines().find(|l| l.starts_with("b.")).expect("b");
    assert!(after.contains(old_b), "the other host keeps its key");
    assert!(after.contains(&format!("a.example.com {new}")));
    assert!(!after.contains(before.lines().next().unwrap_or("?")), "the old key is gone");
    let (code, _, err) = run(&["keys", "rotate", "c.example.com"], &vars);
    assert_eq!(code, 2);
    assert!(err.contains("not in REGISTERED_FQDNS"), "{err}");
    let (code, _, err) = run(&["keys", "rotate", &format!("a\n{}.example.com", "x".repeat(300))], &vars);
    assert_eq!(code, 2);
    assert!(err.contains("is not a host name") && err.lines().count() == 1, "{err}");
    let (code, _, err) = run(&["keys", "bogus"], &vars);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn setup_prints_every_clients_settings_with_the_hosts_key() {
    let scratch = scratch("setup");
    let dir = scratch.path();
    let keys = dir.join("keys").display().to_string();
    let base = [("PRE_SHARED_KEY_FILE", keys.as_str()), ("REGISTERED_FQDNS", "home.example.com")];
    let mut vars = base.to_vec();
    vars.push(("PUBLIC_URL", "https://dyndns.example.com/"));
    let (code, out, _) = run(&["setup", "home.example.com"], &vars);
    assert_eq!(code, 0, "{out}");
    let key = key_of(dir);
    assert!(
        out.contains(&format!(
            "curl -fsS -u home:{key} \"https://dyndns.example.com/nic/update?hostname=home.example.com\""
        )),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("== ")).count(), 10, "{out}");
    // Without PUBLIC_URL: an address derived from LISTEN_*, and a warning that says what to set.
    let mut vars = base.to_vec();
    vars.push(("LISTEN_ADDR", "192.0.2.1"));
    vars.push(("LISTEN_PORT", "8080"));
    let (code, out, err) = run(&["setup", "home.example.com"], &vars);
    assert_eq!(code, 0, "{out}");
    assert!(err.contains("PUBLIC_URL is not set; using http://192.0.2.1:8080"), "{err}");
    assert!(out.contains("server=192.0.2.1:8080\nssl=no"), "{out}");
    let (code, _, err) = run(&["setup", "other.example.com"], &base);
    assert_eq!(code, 2);
    assert!(err.contains("other.example.com is not in REGISTERED_FQDNS"), "{err}");
    let (code, _, err) = run(&["setup"], &base);
    assert_eq!((code, err.trim()), (2, "dyndns-server: usage: dyndns-server setup HOST"));
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
    let scratch = scratch("sigterm");
    let dir = scratch.path();
    let (mut child, addr) = spawn_dry_run(dir, &[]);
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
    let state = std::fs::read_to_string(dir.join("dyndns-state.dry-run.json")).expect("state written at shutdown");
    assert!(!dir.join("dyndns-state.json").exists(), "a dry run never writes the live state file");
    assert!(state.contains("192.0.2.77"), "{state}");

    let (code, _, err) = run(&["healthcheck"], &[("LISTEN_PORT", &port)]);
    assert_eq!(code, 1, "nothing listens any more: {err}");
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

fn key_of(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("keys")).expect("keys");
    text.split_whitespace().nth(1).expect("key").to_string()
}

fn nic_update(addr: &str, ip: &str, key: &str) -> String {
    let answer = http(
        addr,
        &format!("GET /nic/update?hostname=home.example.com&myip={ip}&user=home&pass={key} HTTP/1.0\r\n\r\n"),
    );
    answer.rsplit("\r\n\r\n").next().unwrap_or_default().to_string()
}

#[test]
fn sighup_reloads_the_keys_so_revocation_and_rotation_take_effect_at_once() {
    let scratch = scratch("sighup");
    let dir = scratch.path();
    let (mut child, addr) = spawn_dry_run(dir, &[]);
    let old = key_of(dir);
    assert_eq!(nic_update(&addr, "192.0.2.1", &old), "good 192.0.2.1");

    // Rotate: the operator writes a new key into the file and sends SIGHUP.
    let new = "rotated-key-rotated-key-rotated-key-0123456";
    std::fs::write(dir.join("keys"), format!("home.example.com {new}\n")).expect("write keys");
    signal(&child, "HUP");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while nic_update(&addr, "192.0.2.1", &old) != "badauth" {
        assert!(std::time::Instant::now() < until, "the old key still works after SIGHUP");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(nic_update(&addr, "192.0.2.1", new), "nochg 192.0.2.1");
    assert!(child.try_wait().expect("wait").is_none(), "SIGHUP must not end the server");
    assert!(dir.join("dyndns-state.dry-run.json").exists(), "state saved on reload");

    // Revoke: delete the line.
    std::fs::write(dir.join("keys"), "# home.example.com revoked\n").expect("write keys");
    signal(&child, "HUP");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while nic_update(&addr, "192.0.2.1", new) != "badauth" {
        assert!(std::time::Instant::now() < until, "a revoked key still works after SIGHUP");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

/// A one-topic ntfy stand-in: the first `drop_first` connections are closed
/// without an answer, later ones get 200; each delivered `Title` is sent
/// on the returned channel.
fn flaky_ntfy(drop_first: usize) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (mut title, mut length) = (String::new(), 0usize);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("title:") {
                    title = line[6..].trim().to_string();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if n < drop_first {
                continue; // dropped without an answer
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
            let _ = tx.send(title);
        }
    });
    (url, rx)
}

#[test]
fn queued_notifications_are_delivered_before_the_process_ends() {
    let scratch = scratch("notify-at-exit");
    let dir = scratch.path();
    // A broken line in the key file is announced at start.
    std::fs::write(dir.join("keys"), "broken line here\n").expect("keys");
    let (url, titles) = flaky_ntfy(1);
    let (mut child, _addr) = spawn_dry_run(dir, &[("NTFY_URL", &url), ("NTFY_TOPIC", "t")]);
    // Stop at once: the first delivery failed and its retry is a second away.
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let title = titles.recv_timeout(std::time::Duration::from_millis(500));
    assert_eq!(title.as_deref(), Ok("dyndns: key file problems"), "the queued message was lost at shutdown");
}

#[test]
fn log_file_gets_the_same_lines_as_stdout() {
    let scratch = scratch("log-file");
    let dir = scratch.path();
    let log = dir.join("logs/dyndns.log");
    let (mut child, addr) = spawn_dry_run(dir, &[("LOG_FILE", log.to_str().expect("utf8"))]);
    assert!(http(&addr, "GET /healthz HTTP/1.0\r\nUser-Agent: probe\r\n\r\n").ends_with("ok"));
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let text = std::fs::read_to_string(&log).expect("log file");
    for wanted in ["listening on http://", "GET /healthz 200", "agent=\"probe\"", "stopped"] {
        assert!(text.contains(wanted), "{wanted:?} missing from the log file:\n{text}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "the log file is not world-readable: {mode:o}");
}

#[test]
fn a_private_address_from_the_connection_is_refused_or_with_the_setting_warned_about_once() {
    let scratch = scratch("private");
    let dir = scratch.path();
    let (mut child, addr, log) = spawn_dry_run_with_log(dir, &[]);
    let key = key_of(dir);
    let update = format!("GET /nic/update?hostname=home.example.com&user=home&pass={key} HTTP/1.0\r\n\r\n");
    assert!(http(&addr, &update).ends_with("\r\n\r\nbadip"), "loopback is never published by default");
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let lines: Vec<String> = log.iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("taken from the connection, 127.0.0.1, is a loopback address")
            && l.contains("TRUSTED_PROXIES")),
        "{lines:#?}"
    );

    let (mut child, addr, log) = spawn_dry_run_with_log(dir, &[("ALLOW_PRIVATE_ADDRESSES", "1")]);
    for _ in 0..3 {
        let answer = http(&addr, &update);
        assert!(answer.ends_with(" 127.0.0.1"), "{answer}");
    }
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let lines: Vec<String> = log.iter().collect();
    let warnings = lines.iter().filter(|l| l.contains("a private address taken from the connection")).count();
    assert_eq!(warnings, 1, "{lines:#?}");
}

/// Run the server with a timeout (a start that hangs is a failure, not a
/// stuck test); returns (status, stdout, stderr).
fn run_bounded(vars: &[(&str, &str)], limit: std::time::Duration) -> (i32, String, String) {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let until = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server neither started nor stopped within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_fifo_as_state_or_key_file_stops_the_start_instead_of_hanging_it() {
    let scratch = scratch("fifo");
    let dir = scratch.path();
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let fifo = fifo.display().to_string();
    let keys = dir.join("keys").display().to_string();
    let state = dir.join("state.json").display().to_string();
    let base = [
        ("DRY_RUN", "1"),
        ("LISTEN_ADDR", "127.0.0.1"),
        ("LISTEN_PORT", "0"),
        ("REGISTERED_FQDNS", "home.example.com"),
    ];
    let limit = std::time::Duration::from_secs(5);

    // A dry run keeps its state in `state.dry-run.json`: the FIFO is there.
    let dry_state = dir.join("state.dry-run.json");
    assert!(Command::new("mkfifo").arg(&dry_state).status().expect("mkfifo").success());
    let mut vars = base.to_vec();
    vars.extend([("PRE_SHARED_KEY_FILE", keys.as_str()), ("STATE_FILE", state.as_str())]);
    let (code, out, err) = run_bounded(&vars, limit);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("STATE_FILE") && out.contains("not a regular file"), "{out}{err}");

    let other_state = dir.join("other.json").display().to_string();
    let mut vars = base.to_vec();
    vars.extend([("PRE_SHARED_KEY_FILE", fifo.as_str()), ("STATE_FILE", other_state.as_str())]);
    let (code, out, err) = run_bounded(&vars, limit);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("PRE_SHARED_KEY_FILE") && out.contains("not a regular file"), "{out}{err}");
}

#[test]
fn a_huge_state_file_is_moved_aside_without_being_read() {
    let scratch = scratch("huge-state");
    let dir = scratch.path();
    let state = dir.join("state.dry-run.json");
    // 100 MB (sparse: nothing is written), which the server once read whole.
    std::fs::File::create(&state).expect("create").set_len(100 << 20).expect("size");
    let state_str = dir.join("state.json").display().to_string();
    let (mut child, addr) = spawn_dry_run(dir, &[("STATE_FILE", state_str.as_str())]);
    assert!(http(&addr, "GET /healthz HTTP/1.0\r\n\r\n").ends_with("ok"));
    let peak = crate::common::proc_status(child.id(), "VmHWM:");
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
    let _ = child.kill();
    let _ = child.wait();
    let aside: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.dry-run.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside");
    assert!(!state.exists() || std::fs::metadata(&state).expect("meta").len() < 1000);
}

#[test]
fn a_key_file_linked_to_another_users_file_is_not_rewritten() {
    use std::os::unix::fs::MetadataExt as _;
    let scratch = scratch("key-link");
    let dir = scratch.path();
    // A file of another user (as root: chown it to nobody; otherwise it is
    // root's already, e.g. a planted link to a system file).
    let victim = dir.join("victim");
    std::fs::write(&victim, "other.example.com not-ours\n").expect("victim");
    let me = std::fs::metadata(dir).expect("meta").uid();
    if me == 0 {
        std::os::unix::fs::chown(&victim, Some(65534), Some(65534)).expect("chown");
    } else {
        eprintln!("not root: the victim is our own file, so only the root case is proven");
        return;
    }
    let link = dir.join("keys");
    std::os::unix::fs::symlink(&victim, &link).expect("link");
    let keys = link.display().to_string();
    let vars = [
        ("DRY_RUN", "1"),
        ("LISTEN_ADDR", "127.0.0.1"),
        ("LISTEN_PORT", "0"),
        ("REGISTERED_FQDNS", "home.example.com"),
        ("PRE_SHARED_KEY_FILE", keys.as_str()),
    ];
    let (code, out, err) = run_bounded(&vars, std::time::Duration::from_secs(5));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("PRE_SHARED_KEY_FILE") && out.contains("belongs to user 65534"), "{out}{err}");
    let meta = std::fs::metadata(&victim).expect("victim");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "other.example.com not-ours\n", "untouched");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o644), "owner and mode unchanged");

    // A link to a file of the server's own user is still followed.
    std::fs::remove_file(&link).expect("unlink");
    let own = dir.join("own-keys");
    std::fs::write(&own, "").expect("own");
    std::os::unix::fs::symlink(&own, &link).expect("link");
    let (mut child, addr) = spawn_dry_run(dir, &[]);
    assert!(http(&addr, "GET /healthz HTTP/1.0\r\n\r\n").ends_with("ok"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(std::fs::read_to_string(&own).expect("own").starts_with("home.example.com "), "the key went to the target");
    assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink(), "the link stays");
}

#[test]
fn serving_without_a_key_file_setting_says_where_the_keys_go() {
    let scratch = scratch("default-keys");
    let dir = scratch.path();
    // A state path the server refuses stops the start right after the
    // warning, before any key is written to the default path.
    std::fs::create_dir(dir.join("state.dry-run")).expect("dir");
    let state = dir.join("state").display().to_string();
    let existed = std::path::Path::new("/pre-shared-key").exists();
    let (code, out, err) = run_bounded(
        &[("DRY_RUN", "1"), ("LISTEN_PORT", "0"), ("REGISTERED_FQDNS", "home.example.com"), ("STATE_FILE", &state)],
        std::time::Duration::from_secs(5),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("[WARN] PRE_SHARED_KEY_FILE is not set: the hosts' keys are kept in /pre-shared-key"),
        "{out}"
    );
    assert_eq!(std::path::Path::new("/pre-shared-key").exists(), existed, "nothing written there");
}

#[test]
fn keys_check_fails_when_a_reload_could_not_read_the_keys() {
    let scratch = scratch("keys-check");
    let dir = scratch.path();
    let keys = dir.join("keys");
    let keys_str = keys.display().to_string();
    let vars = [
        ("DRY_RUN", "1"),
        ("REGISTERED_FQDNS", "a.example.com,b.example.com"),
        ("PRE_SHARED_KEY_FILE", keys_str.as_str()),
    ];
    // Missing: a reload would keep the keys in use, so the check fails.
    let (code, out, err) = run(&["keys", "check"], &vars);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("[ERROR] PRE_SHARED_KEY_FILE: cannot read") && err.contains("keep the keys in use"), "{err}");
    assert!(!keys.exists(), "the check writes nothing");
    // Readable: exit 0, how many hosts have a key.
    std::fs::write(&keys, "a.example.com 0123456789abcdef0123456789abcdef0123456789a\n").expect("keys");
    let (code, out, err) = run(&["keys", "check"], &vars);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("readable; 1 of 2 registered hosts have a key"), "{out}");
    // A directory (or a FIFO) where the file should be: refused.
    std::fs::remove_file(&keys).expect("rm");
    std::fs::create_dir(&keys).expect("dir");
    let (code, _, err) = run(&["keys", "check"], &vars);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a regular file") || err.contains("Is a directory"), "{err}");
}

#[test]
fn a_notifier_url_that_cannot_work_exits_2_naming_it_with_its_secret_hidden() {
    let scratch = scratch("notify-urls");
    let dir = scratch.path();
    let keys = dir.join("keys").display().to_string();
    let vars = [
        ("DRY_RUN", "1"),
        ("PRE_SHARED_KEY_FILE", keys.as_str()),
        ("LISTEN_PORT", "0"),
        ("LISTEN_ADDR", "127.0.0.1"),
        ("REGISTERED_FQDNS", "home.example.com"),
        ("NOTIFY_URLS", "gotify://gotify.example.com/AzyoeNS.D4iJLVa,telegram://123:SeCrEtBoTkEy@telegram"),
    ];
    let (code, out, err) = run(&[], &vars);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("[ERROR] NOTIFY_URLS entry \"telegram://***@telegram\"") && out.contains("chats="), "{out}");
    assert!(!out.contains("SeCrEtBoTkEy") && !out.contains("AzyoeNS"), "{out}");
}
