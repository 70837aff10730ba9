//! Helpers shared by the process-level tests: the real `dyndns-server`
//! binary on a free loopback port, and raw HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_dyndns-server");

/// A fresh directory for one test, removed when it is dropped.
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("dyndns-cli-{tag}-")).tempdir().expect("dir")
}

/// Threads of a process.
pub fn threads(pid: u32) -> usize {
    proc_status(pid, "Threads:")
}

/// A number from `/proc/PID/status` (`VmHWM:` and `VmRSS:` are in KiB).
pub fn proc_status(pid: u32, field: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").parse().expect("number")))
        .unwrap_or_else(|| panic!("no {field} line"))
}

/// A child process killed (and reaped) when dropped, so a failing test
/// never leaves a server running (it would also hold the test's output
/// pipe open).
pub struct Proc(pub std::process::Child);

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A dry-run server process on a free port, with room for 4096 open files
/// and `extra` settings; returns it and its address.
pub fn spawn_dry_run(dir: &std::path::Path, extra: &[(&str, &str)]) -> (Proc, String) {
    let (child, addr, _log) = spawn_dry_run_with_log(dir, extra);
    (child, addr)
}

/// Like `spawn_dry_run`, and every later line of its stdout on a channel.
pub fn spawn_dry_run_with_log(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (Proc, String, std::sync::mpsc::Receiver<String>) {
    let keys = dir.join("keys").display().to_string();
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n 4096 2>/dev/null; exec {BIN}")])
        .env_clear()
        .envs([
            ("DRY_RUN", "1"),
            ("LISTEN_ADDR", "127.0.0.1"),
            ("LISTEN_PORT", "0"),
            ("PRE_SHARED_KEY_FILE", keys.as_str()),
            ("REGISTERED_FQDNS", "home.example.com"),
        ])
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("listening on http://").nth(1).map(str::to_string))
        .expect("listening line");
    // Keep draining stdout so the server never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Proc(child), addr, rx)
}

/// A raw HTTP/1.0 request; returns the whole answer.
pub fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}
