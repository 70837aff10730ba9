//! Routers reporting at a steady pace, for the benchmark's simulated hour:
//! `report-load BASE KEYFILE PERIOD_MS SECONDS THREADS IP` sends, every
//! PERIOD_MS, one `/nic/update` per host of KEYFILE (`host key` lines) with
//! address IP, over one keep-alive connection per thread, for SECONDS.
//! Prints `{"answers": {...}, "late_rounds": n}` (answers by their first
//! word; a round that did not fit its period is late).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, keyfile, period, seconds, threads, ip] = args.as_slice() else {
        eprintln!("usage: report-load BASE KEYFILE PERIOD_MS SECONDS THREADS IP");
        std::process::exit(2);
    };
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let period = Duration::from_millis(period.parse().expect("PERIOD_MS"));
    let until = Instant::now() + Duration::from_secs(seconds.parse().expect("SECONDS"));
    let threads: usize = threads.parse().expect("THREADS");
    let text = std::fs::read_to_string(keyfile).expect("key file");
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(host, key)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{host}:{key}"));
            format!(
                "GET /nic/update?hostname={host}&myip={ip} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let chunk = requests.len().div_ceil(threads.max(1)).max(1);
    let results: Vec<(BTreeMap<String, u64>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|mine| {
                let addr = &addr;
                s.spawn(move || run(addr, mine, period, until))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("load thread")).collect()
    });
    let mut answers = BTreeMap::new();
    let mut late = 0;
    for (a, l) in results {
        for (k, v) in a {
            *answers.entry(k).or_insert(0) += v;
        }
        late += l;
    }
    println!("{}", serde_json::json!({"answers": answers, "late_rounds": late}));
}

fn run(addr: &str, requests: &[Vec<u8>], period: Duration, until: Instant) -> (BTreeMap<String, u64>, u64) {
    let mut answers = BTreeMap::new();
    let mut late = 0;
    let mut conn = connect(addr);
    let mut next = Instant::now();
    while Instant::now() < until {
        for rq in requests {
            let word = match ask(&mut conn, rq) {
                Some(w) => w,
                None => {
                    conn = connect(addr);
                    ask(&mut conn, rq).unwrap_or_else(|| "no-answer".into())
                }
            };
            *answers.entry(word).or_insert(0) += 1;
        }
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => {
                late += 1;
                next = Instant::now();
            }
        }
    }
    (answers, late)
}

fn connect(addr: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    BufReader::new(stream)
}

/// One request; the first word of the answer's body.
fn ask(conn: &mut BufReader<TcpStream>, rq: &[u8]) -> Option<String> {
    conn.get_mut().write_all(rq).ok()?;
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body);
    Some(body.split_whitespace().next().unwrap_or("").to_string())
}
