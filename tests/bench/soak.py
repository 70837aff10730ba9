#!/usr/bin/env python3
"""Soak: hundreds of routers report at a realistic pace while the same
server is attacked, Hetzner fails now and then and SIGHUP arrives regularly.
Loopback only, bounded in time; it tracks its own processes by PID.

What runs at once, for --minutes:
- ROUTERS routers (dyndns2 like ddclient: a new connection per report, a
  report every ~REPORT_EVERY s each, a new address now and then; on 911
  they retry the same address after a few seconds, as ddclient does). Each
  router has its own source address (X-Forwarded-For from the trusted
  loopback proxy); router 0 shares its address with a key guesser (CGNAT).
- slowloris (up to 300 connections that never finish their head, against
  MAX_CONNECTIONS=256), garbage bytes, oversized and endless bodies, HTTP/2
  prefaces, and wrong keys from rotating sources;
- a Hetzner fault every FAULT_EVERY s for FAULT_FOR s, in turn hang, 500
  and reset (the fake's /outage/KIND);
- SIGHUP every 15 s.

Reported: legitimate answers by kind, p99 of cached answers (nochg), RSS
and threads over time, Hetzner calls per written change; at the end every
router reports its address once more, and every record at the fake must
equal it.

Pass: no legitimate answer but good/nochg (911 only during a fault and up
to FAILED_WRITE_RETRY + HETZNER_TIMEOUT after it), cached p99 <= 50 ms,
RSS at the end <= 1.25 x RSS after the first minute, threads <=
MAX_CONNECTIONS + 32, every record right. Exit status 1 otherwise.

usage: tests/bench/soak.py [--minutes M] [--routers N] [--json FILE]
"""
import argparse
import base64
import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUSL = "x86_64-unknown-linux-musl"
TOKEN = re.search(r'TOKEN: &str = "([^"]+)"', (ROOT / "tests/src/fake_hetzner.rs").read_text()).group(1)
ZONE = "example.com"
MAX_CONNECTIONS = 256
HETZNER_TIMEOUT = 2
FAILED_WRITE_RETRY = 3
FAULT_EVERY = 40
FAULT_FOR = 6
GRACE = FAILED_WRITE_RETRY + HETZNER_TIMEOUT + 3
REPORT_EVERY = 4.0


def more_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def status_of(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"])


class Soak:
    def __init__(self, minutes, routers):
        self.duration = minutes * 60
        self.n = routers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = Counter()
        self.bad = []  # (router, t, answer) of legitimate answers out of place
        self.cached_ms = []
        self.samples = []  # (t, rss KiB, threads)
        self.faults = []  # (start, end) relative to t0
        self.attacks = Counter()
        self.reported = {}  # router -> the address it last reported
        self.t0 = time.monotonic()

    # -- processes --------------------------------------------------------
    def start(self):
        more_files()
        self.data = Path(tempfile.mkdtemp(prefix="dyndns-soak-"))
        self.fake = subprocess.Popen([str(ROOT / "target/release/fake-hetzner"), "127.0.0.1:0", ZONE],
                                     stdout=subprocess.PIPE, text=True)
        self.fake_url = self.fake.stdout.readline().strip()
        self.fake_addr = self.fake_url.split("//")[1].split("/")[0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.hosts = [f"r{i}.{ZONE}" for i in range(self.n)]
        env = {
            "HETZNER_TOKEN": TOKEN, "HETZNER_API_URL": self.fake_url, "LISTEN_ADDR": "127.0.0.1",
            "LISTEN_PORT": str(self.port), "PRE_SHARED_KEY_FILE": str(self.data / "keys"),
            "REGISTERED_FQDNS": ",".join(self.hosts), "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "HETZNER_TIMEOUT": str(HETZNER_TIMEOUT), "FAILED_WRITE_RETRY": str(FAILED_WRITE_RETRY),
            "RECONCILE_INTERVAL": "120",
        }
        self.log = open(self.data / "server.log", "w")
        self.server = subprocess.Popen([str(ROOT / "target" / MUSL / "release/dyndns-server")], env=env,
                                       stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=more_files)
        deadline = time.monotonic() + 20
        while not self.healthz():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {(self.data / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.keys = dict(l.split() for l in (self.data / "keys").read_text().splitlines() if l.strip())

    def end(self):
        for p in (self.server, self.fake):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is self.server else signal.SIGKILL)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.log.close()

    def healthz(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return s.recv(64).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def fake_get(self, path):
        req = urllib.request.Request(f"http://{self.fake_addr}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            return e.read()

    def now(self):
        return time.monotonic() - self.t0

    def in_fault(self, t):
        with self.lock:
            faults = list(self.faults)
        return any(start <= t and (end is None or t <= end + GRACE) for start, end in faults)

    # -- legitimate load --------------------------------------------------
    def report(self, i, ip):
        host = self.hosts[i]
        auth = base64.b64encode(f"r{i}:{self.keys[host]}".encode()).decode()
        source = "198.18.0.1" if i == 0 else f"10.{i // 250}.{i % 250}.{1 + i % 200}"
        started = time.perf_counter()
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            c.request("GET", f"/nic/update?hostname={host}&myip={ip}",
                      headers={"Authorization": f"Basic {auth}", "X-Forwarded-For": source,
                               "User-Agent": "soak-router/1.0"})
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
        except OSError as e:
            body = f"error {e.__class__.__name__}"
        ms = (time.perf_counter() - started) * 1000
        kind = body.split(" ")[0] if body else "empty"
        return kind, ms

    def router(self, i):
        rnd = random.Random(i)
        ip = f"203.0.{113 if i % 2 else 112}.{1 + i % 250}"
        changes = 0
        time.sleep(rnd.uniform(0, REPORT_EVERY))
        pending = False
        while not self.stop.is_set():
            if not pending and changes < 6 and rnd.random() < 0.12:
                ip = f"198.51.{100 + changes}.{1 + i % 250}"
                changes += 1
            with self.lock:
                self.reported[i] = ip
            t = self.now()
            kind, ms = self.report(i, ip)
            # A report that began just before a fault may meet it too.
            excused = kind == "911" and (self.in_fault(t) or self.in_fault(self.now()))
            with self.lock:
                self.answers[kind] += 1
                if kind == "nochg":
                    self.cached_ms.append(ms)
                if kind not in ("good", "nochg") and not excused:
                    self.bad.append((i, round(t, 1), kind))
            pending = kind == "911"
            self.stop.wait(rnd.uniform(2, 4) if pending else rnd.uniform(0.5, 1.5) * REPORT_EVERY)

    # -- hostile load -----------------------------------------------------
    def slowloris(self):
        conns = []
        while not self.stop.is_set():
            while len(conns) < 300:
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    conns.append(s)
                    self.attacks["slowloris"] += 1
                except OSError:
                    break
            alive = []
            for s in conns:
                try:
                    s.sendall(b"a")
                    alive.append(s)
                except OSError:
                    s.close()
            conns = alive
            self.stop.wait(3)
        for s in conns:
            s.close()

    def one_shot(self, kind, payload):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            self.attacks[kind] += 1
        except OSError:
            self.attacks[kind + " (reset)"] += 1

    def junk(self):
        rnd = random.Random(7)
        while not self.stop.is_set():
            self.one_shot("garbage", bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 600))))
            self.one_shot("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            self.one_shot("huge body", b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{")
            self.one_shot("endless chunks", b"POST /update HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + b"1000\r\n" + b"y" * 4096 + b"\r\n" + b"1000\r\n" + b"y" * 4096 + b"\r\n")
            self.stop.wait(0.2)

    def guesser(self):
        rnd = random.Random(11)
        while not self.stop.is_set():
            host = self.hosts[rnd.randrange(self.n)]
            # Every tenth guess comes from router 0's own address.
            source = "198.18.0.1" if rnd.random() < 0.1 else f"100.{rnd.randrange(64, 128)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
            auth = base64.b64encode(f"{host}:guess-{rnd.getrandbits(64):x}".encode()).decode()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", f"/nic/update?hostname={host}&myip=192.0.2.66",
                          headers={"Authorization": f"Basic {auth}", "X-Forwarded-For": source})
                body = c.getresponse().read().decode(errors="replace").strip()
                c.close()
                self.attacks[f"guess → {body.split(' ')[0]}"] += 1
            except OSError:
                self.attacks["guess (error)"] += 1
            self.stop.wait(0.05)

    # -- the environment ----------------------------------------------------
    def faults_loop(self):
        kinds = ["hang", "500", "reset"]
        k = 0
        while not self.stop.wait(FAULT_EVERY - FAULT_FOR):
            start = self.now()
            with self.lock:
                self.faults.append((start, None))
            self.fake_get(f"/outage/{kinds[k % 3]}")
            self.stop.wait(FAULT_FOR)
            self.fake_get("/outage/none")
            with self.lock:
                self.faults[-1] = (start, self.now())
            k += 1

    def sighup_loop(self):
        while not self.stop.wait(15):
            self.server.send_signal(signal.SIGHUP)

    def sampler(self):
        while True:
            try:
                rss, threads = status_of(self.server.pid)
            except (OSError, KeyError):
                break
            self.samples.append((round(self.now()), rss, threads))
            if self.stop.wait(5):
                break

    # -- the run ---------------------------------------------------------------
    def run(self):
        self.start()
        calls_at_start = int(self.fake_get("/stats"))
        threads = [threading.Thread(target=self.router, args=(i,), daemon=True) for i in range(self.n)]
        threads += [threading.Thread(target=f, daemon=True) for f in
                    (self.slowloris, self.junk, self.guesser, self.faults_loop, self.sighup_loop, self.sampler)]
        for t in threads:
            t.start()
        time.sleep(self.duration)
        self.stop.set()
        for t in threads:
            t.join(timeout=40)
        self.fake_get("/outage/none")
        # Whatever was answered 911 last is written by the server itself; then
        # every router reports its address once more, and must be answered.
        time.sleep(GRACE)
        final = {}
        for i in range(self.n):
            kind, _ = self.report(i, self.reported[i])
            final[i] = kind
        wrong_final = {i: k for i, k in final.items() if k not in ("good", "nochg")}
        wrong_records = []
        for i, host in enumerate(self.hosts):
            doc = json.loads(self.fake_get(f"/v1/zones/{ZONE}/rrsets/r{i}/A") or b"{}")
            values = [r["value"] for r in doc.get("rrset", {}).get("records", [])]
            if values != [self.reported[i]]:
                wrong_records.append((host, values, self.reported[i]))
        calls = int(self.fake_get("/stats")) - calls_at_start
        alive = self.server.poll() is None
        self.end()
        return self.verdict(final, wrong_final, wrong_records, calls, alive)

    def verdict(self, final, wrong_final, wrong_records, calls, alive):
        cached = sorted(self.cached_ms)
        p99 = cached[min(len(cached) - 1, int(len(cached) * 0.99))] if cached else 0
        after_minute = next((rss for t, rss, _ in self.samples if t >= 60), self.samples[0][1] if self.samples else 0)
        rss_end = self.samples[-1][1] if self.samples else 0
        max_threads = max((th for _, _, th in self.samples), default=0)
        written = self.answers["good"]
        result = {
            "minutes": self.duration / 60, "routers": self.n,
            "answers": dict(self.answers), "out_of_place": self.bad[:20], "out_of_place_count": len(self.bad),
            "cached_p99_ms": round(p99, 1), "cached_answers": len(cached),
            "rss_after_first_minute_kib": after_minute, "rss_end_kib": rss_end, "max_threads": max_threads,
            "samples": self.samples, "faults": [(round(a, 1), round(b, 1)) for a, b in self.faults if b],
            "hetzner_calls": calls, "calls_per_written_change": round(calls / written, 2) if written else None,
            "attacks": dict(self.attacks), "final_answers": dict(Counter(final.values())),
            "wrong_final": wrong_final, "wrong_records": wrong_records[:20], "server_alive": alive,
        }
        checks = {
            "the server stayed up": alive,
            "no legitimate answer but good/nochg (911 only in a fault)": not self.bad,
            "cached p99 <= 50 ms": p99 <= 50,
            "RSS flat (end <= 1.25 x after the first minute)": rss_end <= 1.25 * after_minute,
            f"threads <= MAX_CONNECTIONS + 32 ({MAX_CONNECTIONS + 32})": max_threads <= MAX_CONNECTIONS + 32,
            "every final report answered good/nochg": not wrong_final,
            "every record equals the router's address": not wrong_records,
        }
        result["checks"] = checks
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--routers", type=int, default=200)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        env = dict(os.environ, CC_x86_64_unknown_linux_musl="musl-gcc")
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "e2e", "--bin", "fake-hetzner"],
                       cwd=ROOT, env=env, check=True)
        subprocess.run(["cargo", "build", "--release", "--locked", "--target", MUSL, "-p", "dyndns-server"],
                       cwd=ROOT, env=env, check=True)
    soak = Soak(a.minutes, a.routers)
    try:
        result = soak.run()
    finally:
        soak.end()
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    print(f"soak: {result['minutes']:g} min, {result['routers']} routers, faults at {result['faults']}")
    print(f"  legitimate answers: {result['answers']}")
    print(f"  cached p99 {result['cached_p99_ms']} ms over {result['cached_answers']} answers")
    print(f"  RSS {result['rss_after_first_minute_kib']} KiB after 1 min, {result['rss_end_kib']} KiB at the end;"
          f" threads at most {result['max_threads']}")
    print(f"  Hetzner calls {result['hetzner_calls']}, {result['calls_per_written_change']} per written change")
    print(f"  attacks: {result['attacks']}")
    if result["out_of_place"]:
        print(f"  out of place ({result['out_of_place_count']}): {result['out_of_place']}")
    if result["wrong_records"] or result["wrong_final"]:
        print(f"  wrong at the end: {result['wrong_final']} {result['wrong_records']}")
    failed = [name for name, ok in result["checks"].items() if not ok]
    for name, ok in result["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if failed:
        print(f"  server log: {soak.data / 'server.log'}")
        sys.exit(1)
    print("soak: passed")


if __name__ == "__main__":
    main()
