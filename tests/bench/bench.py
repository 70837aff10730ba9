#!/usr/bin/env python3
"""Benchmark of dyndns-server and dyndns-agent (run on demand; CI runs it
with --smoke as a check that it still works, without writing results).

Starts the release server against the fake Hetzner (tests/src/bin/fake-hetzner)
and measures binary sizes, memory (VmRSS/VmHWM from /proc), start-to-ready
time, throughput and latency of cached updates (wrk), and the Hetzner API
calls per operation as counted by the fake. Writes tests/bench/BENCHMARKS.md.

usage: tests/bench/bench.py [--smoke]
"""
import base64
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "--smoke" in sys.argv
DURATION = 2 if SMOKE else 10
MUSL = "x86_64-unknown-linux-musl"
TOKEN = re.search(r'TOKEN: &str = "([^"]+)"', (ROOT / "tests/src/fake_hetzner.rs").read_text()).group(1)
HOSTS = [f"h{i}.example.com" for i in range(1000)]
ROUNDS = 1 if SMOKE else 5


def sh(*cmd, env=None, check=True):
    return subprocess.run(cmd, cwd=ROOT, env=env, check=check, capture_output=True, text=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def kib(pid, field):
    return int(proc_status(pid)[field].split()[0])


def mib(k):
    return f"{k / 1024:.1f} MiB"


class Fake:
    """The fake Hetzner Cloud API as a process."""

    def __init__(self, extra_project=None):
        env = dict(os.environ, EXTRA_PROJECT=extra_project) if extra_project else None
        self.proc = subprocess.Popen([str(ROOT / "target/release/fake-hetzner"), "127.0.0.1:0", "example.com"],
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.url = self.proc.stdout.readline().strip()
        self.host, self.port = self.url.split("//")[1].split("/")[0].split(":")

    def calls(self):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        c.request("GET", "/stats")
        return int(c.getresponse().read())

    def call_list(self):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        c.request("GET", "/calls")
        return json.loads(c.getresponse().read())

    def seed(self, n, ip="198.51.100.1"):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        c.request("GET", f"/seed/{n}/{ip}")
        c.getresponse().read()

    def seed_in(self, zone, prefix, n, ip="198.51.100.1"):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        c.request("GET", f"/seed-in/{zone}/{prefix}/{n}/{ip}")
        c.getresponse().read()

    def hang(self, calls, secs):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        c.request("GET", f"/hang/{calls}/{secs}")
        c.getresponse().read()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Server:
    def __init__(self, fake, data, hosts=None, binary=None, **extra):
        self.port = free_port()
        env = {
            "HETZNER_TOKEN": TOKEN, "HETZNER_API_URL": fake.url, "LISTEN_ADDR": "127.0.0.1",
            "LISTEN_PORT": str(self.port), "PRE_SHARED_KEY_FILE": str(data / "keys"),
            "REGISTERED_FQDNS": ",".join(hosts or ["home.example.com"] + HOSTS),
            # The per-operation economy is measured without the zone reconcile
            # (its listing would run alongside); the simulated hour has it on.
            "RECONCILE_INTERVAL": "0",
        }
        env.update(extra)
        self.started = time.perf_counter()
        binary = binary or ROOT / "target" / MUSL / "release/dyndns-server"
        self.proc = subprocess.Popen([str(binary)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=more_files)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    if s.recv(64).split(b" ")[1:2] == [b"200"]:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit("the server exited at start")
            time.sleep(0.0005)
        self.ready_ms = (time.perf_counter() - self.started) * 1000
        self.keys = dict(line.split() for line in (data / "keys").read_text().splitlines() if line.strip())

    def update(self, host, ip, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", "/update", body=json.dumps({"fqdn": host, "ip": ip}),
                  headers={"X-Pre-Shared-Key": self.keys[host], "Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            raise SystemExit(f"update failed: {r.status} {body}")
        return body["status"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def more_files():
    """Room for the 1000 idle connections of the hostile scenarios."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def healthz_p99(port, n=50):
    """p99 (the slowest of n) of /healthz on new connections, in ms."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            while s.recv(4096):
                pass
        times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    times.sort()
    return times[min(len(times) - 1, int(len(times) * 0.99))]


def hostile(server, fake, nic, auth, dur):
    """Cached updates and /healthz while Hetzner hangs with 20 updates
    waiting on it, and while 1000 idle and 50 slow-body connections are open."""
    rows = {}
    fake.hang(40, 8)
    waiting = [threading.Thread(target=lambda h=h: hang_update(server, h)) for h in HOSTS[:20]]
    for t in waiting:
        t.start()
    time.sleep(0.5)
    rps, p50, p99 = wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth}", nic])
    rows["Hetzner hangs, 20 updates waiting on it"] = (rps, p50, p99, healthz_p99(server.port))
    for t in waiting:
        t.join()
    fake.hang(0, 0)

    more_files()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(1000)]
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        slow.append(s)
    time.sleep(0.5)
    status = proc_status(server.proc.pid)
    threads_rss = (int(status["Threads"]), int(status["VmRSS"].split()[0]))
    rps, p50, p99 = wrk(["-t2", "-c16", "-d", "3s", "-H", f"Authorization: {auth}", nic])
    rows["1000 idle + 50 slow-body connections open"] = (rps, p50, p99, healthz_p99(server.port))
    for s in idle + slow:
        s.close()
    return rows, threads_rss


def nginx_conf(prefix, port, upstream, cert, key):
    return f"""daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream dyndns {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://dyndns;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def stack_rss(pids):
    """VmRSS of these processes and their children (nginx's workers), KiB."""
    total = 0
    for pid in pids:
        total += kib(pid, "VmRSS")
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            for child in children.read_text().split():
                total += kib(int(child), "VmRSS")
    return total


def https_side_by_side(dur):
    """The server's own HTTPS against nginx terminating TLS (same certificate)
    in front of the plain server: cached /nic/update over keep-alive and over
    a new TLS connection per request, alternating, and the RSS of each stack."""
    if not shutil.which("nginx"):
        return None
    data = Path(tempfile.mkdtemp(prefix="dyndns-bench-tls-"))
    fake = Fake()
    procs = []
    try:
        cert, key = data / "cert.pem", data / "key.pem"
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
           "-subj", "/CN=dyndns.test", "-addext", "subjectAltName=DNS:dyndns.test", "-keyout", str(key), "-out", str(cert))
        os.chmod(key, 0o644)  # nginx's master reads it; the directory is private
        tls_port = free_port()
        (data / "a").mkdir()
        (data / "b").mkdir()
        own = Server(fake, data / "a", ["home.example.com"], LISTEN_TLS_PORT=str(tls_port),
                     TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
        procs.append(own)
        plain = Server(fake, data / "b", ["home.example.com"])
        procs.append(plain)
        nginx_port = free_port()
        (data / "nginx.conf").write_text(nginx_conf(data, nginx_port, plain.port, cert, key))
        nginx = subprocess.Popen(["nginx", "-c", str(data / "nginx.conf"), "-p", str(data)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", nginx_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        rows = {}
        try:
            for server in (own, plain):
                server.update("home.example.com", "192.0.2.2")
            auth = {s: "Basic " + base64.b64encode(f"home:{s.keys['home.example.com']}".encode()).decode()
                    for s in (own, plain)}
            path = "/nic/update?hostname=home.example.com&myip=192.0.2.2"
            targets = {"server alone": (f"https://127.0.0.1:{tls_port}{path}", own),
                       "nginx + server": (f"https://127.0.0.1:{nginx_port}{path}", plain)}
            for mode, extra in (("keep-alive", []), ("new TLS connection each", ["-H", "Connection: close"])):
                runs = {name: [] for name in targets}
                for _ in range(ROUNDS):
                    for name, (url, server) in targets.items():
                        runs[name].append(wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth[server]}",
                                               *extra, url]))
                rows[mode] = {name: tuple(sorted(r[i] for r in rs)[len(rs) // 2] for i in range(3))
                              for name, rs in runs.items()}
            memory = {"server alone": stack_rss([own.proc.pid]),
                      "nginx + server": stack_rss([nginx.pid, plain.proc.pid])}
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        return rows, memory
    finally:
        for p in procs:
            p.stop()
        fake.stop()
        shutil.rmtree(data, ignore_errors=True)


def https_lines(tls_rows):
    if not tls_rows:
        return ["Not measured (no nginx)."]
    rows, memory = tls_rows
    out = [f"Cached `/nic/update`, wrk (2 threads, 16 connections), alternating runs, {ROUNDS} each, medians; the "
           "same P-256 certificate; nginx (Debian, 2 workers, TLS 1.3, keep-alive upstream) proxies to a second, "
           "plain server. Goal: ≥ 1.0 of nginx + server on keep-alive, ≥ 0.8 on new connections, ≤ 1/5 of its memory.",
           "", "| connections | server alone req/s | nginx + server req/s | ratio | p99 alone / nginx + server |",
           "|---|---|---|---|---|"]
    for mode, r in rows.items():
        (ar, _, ap99), (nr, _, np99) = r["server alone"], r["nginx + server"]
        out.append(f"| {mode} | {ar:,.0f} | {nr:,.0f} | {ar / nr:.2f} | {ap99:.2f} / {np99:.2f} ms |")
    a, n = memory["server alone"], memory["nginx + server"]
    out += ["", f"RSS after the runs: server alone {mib(a)}, nginx (master and workers) + server {mib(n)}: "
            f"{a / n:.2f} of the stack."]
    return out


def hang_update(server, host):
    try:
        server.update(host, "203.0.113.99")
    except SystemExit:
        pass  # expected: the hanging API confirms nothing


def cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads, ended ones too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(args, pid=None):
    """rps, p50, p99 (ms) of one wrk run; with `pid`, also the CPU time that
    process spent per request (µs), which the machine's other load moves
    much less than throughput."""
    cpu = cpu_seconds(pid) if pid else 0
    out = sh("wrk", "--latency", *args).stdout
    if pid:
        cpu = cpu_seconds(pid) - cpu
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {p: re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out) for p in ("50", "99")}
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    lat = {p: float(m.group(1)) * scale[m.group(2)] for p, m in pct.items()}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} errors:\n{out}")
    if pid:
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        return rps, lat["50"], lat["99"], cpu / max(requests, 1) * 1e6
    return rps, lat["50"], lat["99"]


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def side_by_side(server, nic, auth, lua, base):
    """Cached updates against the server and against a bare tiny_http that
    answers a fixed line, alternating, ROUNDS times each; medians."""
    bare = subprocess.Popen([str(ROOT / "target" / MUSL / "release/bare-tiny-http"), "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True, preexec_fn=more_files)
    bare_addr = bare.stdout.readline().strip()
    time.sleep(0.5)
    rss = {"bare idle": kib(bare.pid, "VmRSS"), "bare idle anon": kib(bare.pid, "RssAnon")}
    bare_base = f"http://{bare_addr}"
    dur = "1s" if SMOKE else "3s"
    scenarios = {
        "/nic/update, keep-alive": (["-H", f"Authorization: {auth}"], nic),
        "/update, keep-alive": (["-s", str(lua)], f"{base}/update"),
        "/nic/update, new connection each": (["-H", f"Authorization: {auth}", "-H", "Connection: close"], nic),
        "/update, new connection each": (["-s", str(lua), "-H", "Connection: close"], f"{base}/update"),
    }
    rows = {}
    try:
        for name, (args, url) in scenarios.items():
            runs = {"bare": [], "server": []}
            for _ in range(ROUNDS):
                runs["bare"].append(wrk(["-t2", "-c16", "-d", dur, *args, url.replace(base, bare_base)], bare.pid))
                runs["server"].append(wrk(["-t2", "-c16", "-d", dur, *args, url], server.proc.pid))
            rows[name] = {side: tuple(median([r[i] for r in rs]) for i in range(4)) for side, rs in runs.items()}
        rss["bare after load"] = kib(bare.pid, "VmRSS")
    finally:
        bare.kill()
        bare.wait()
    return rows, rss


def create_all(server):
    """A record for every host of HOSTS, 100 updates at a time."""
    for batch in range(0, len(HOSTS), 100):
        threads = [threading.Thread(target=lambda h=h: server.update(h, "198.51.100.1"))
                   for h in HOSTS[batch:batch + 100]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def step(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)


def wait_calls(fake, n):
    deadline = time.time() + 10
    while fake.calls() < n and time.time() < deadline:
        time.sleep(0.01)


def api_calls(fake, action):
    before = fake.calls()
    action()
    return fake.calls() - before


def image_sizes():
    """Sizes of the two scratch images built from the static binaries with
    buildah (as .ci/image-test does); None without buildah."""
    if not shutil.which("buildah"):
        return None
    ctx = Path(tempfile.mkdtemp(prefix="dyndns-img-"))
    sizes = {}
    try:
        for b in ("dyndns-server", "dyndns-agent"):
            shutil.copy(ROOT / "target" / MUSL / "release" / b, ctx / b)
        for t in ("server", "agent"):
            tag = f"localhost/dyndns-{t}:bench"
            sh("buildah", "--storage-driver", "vfs", "bud", "--quiet", "--format", "docker", "--build-arg",
               "TARGETARCH=amd64", "--isolation", "chroot", "-f", str(ROOT / "Dockerfile.scratch"),
               "--target", f"{t}-prebuilt", "-t", tag, str(ctx))
            sizes[t] = sh("buildah", "--storage-driver", "vfs", "images", "--format", "{{.Size}}", tag).stdout.strip()
            sh("buildah", "--storage-driver", "vfs", "rmi", "-f", tag, check=False)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"bench: image sizes not measured: {e}", file=sys.stderr)
        return None
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return sizes


def call_kinds(calls):
    kinds = {"list": 0, "read": 0, "write": 0, "poll": 0}
    for c in calls:
        method, path = c.split(" ", 1)
        if method != "GET":
            kinds["write"] += 1
        elif path.startswith("/v1/actions/"):
            kinds["poll"] += 1
        elif "?" in path:
            kinds["list"] += 1
        else:
            kinds["read"] += 1
    return kinds


def simulated_hour(n, k, reconcile=True, aliases_two_projects=False):
    """N routers reporting an unchanged address every 60 s for an hour, with
    every interval of the server divided by K (so the hour takes 3600/K s):
    the Hetzner calls of that hour by kind, as the fake counts them. With
    `aliases_two_projects`: half the hosts in a zone of a second project,
    each host with one alias (HOST_ALIASES), all records in place."""
    fake = Fake("family:example.net" if aliases_two_projects else None)
    data = Path(tempfile.mkdtemp(prefix="dyndns-hour-"))
    try:
        scaled = {"REQUEST_CACHE_TTL": str(max(1, round(300 / k))), "ZONE_CACHE_TTL": str(round(86400 / k)),
                  "RECONCILE_INTERVAL": str(max(1, round(900 / k))) if reconcile else "0"}
        if aliases_two_projects:
            half = n // 2
            fake.seed_in("example.com", "h", half)
            fake.seed_in("example.com", "a", half)
            fake.seed_in("example.net", "h", n - half)
            fake.seed_in("example.net", "a", n - half)
            hosts = [f"h{i}.example.com" for i in range(half)] + [f"h{i}.example.net" for i in range(n - half)]
            tokens = data / "tokens"
            tokens.write_text("family token-of-family-0123456789abcdefghijklmnopqrstuvwxyz\n")
            tokens.chmod(0o600)
            scaled["HETZNER_TOKENS_FILE"] = str(tokens)
            scaled["HOST_ALIASES"] = ",".join(f"a{h[1:]}={h}" for h in hosts)
        else:
            fake.seed(n)
            hosts = [f"h{i}.example.com" for i in range(n)]
        server = Server(fake, data, hosts=hosts, **scaled)
        # Steady state: the start-up zone listing and first reconcile are done
        # (no call for half a second).
        before, quiet = -1, 0
        while quiet < 5:
            time.sleep(0.1)
            now = fake.calls()
            quiet = quiet + 1 if now == before and now > 0 else 0
            before = now
        out = sh(str(ROOT / "target/release/report-load"), f"http://127.0.0.1:{server.port}", str(data / "keys"),
                 str(round(60_000 / k)), str(round(3600 / k)), "4", "198.51.100.1").stdout
        calls = fake.call_list()[before:]
        server.stop()
        load = json.loads(out)
        return {**call_kinds(calls), "total": len(calls), "answers": load["answers"], "late": load["late_rounds"]}
    finally:
        fake.stop()
        shutil.rmtree(data, ignore_errors=True)


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    env = dict(os.environ, CC_x86_64_unknown_linux_musl="musl-gcc")
    sh("cargo", "build", "--release", "--locked", "-p", "dyndns-server", "-p", "dyndns-agent", "-p", "e2e", "--bin",
       "dyndns-server", "--bin", "dyndns-agent", "--bin", "fake-hetzner", "--bin", "report-load", env=env)
    sh("cargo", "build", "--release", "--locked", "--target", MUSL, "-p", "dyndns-server", "-p", "dyndns-agent", env=env)
    sh("cargo", "build", "--release", "--locked", "--target", MUSL, "-p", "e2e", "--bin", "bare-tiny-http", env=env)
    sizes = {}
    step("built")
    for b in ("dyndns-server", "dyndns-agent"):
        sizes[b] = (os.path.getsize(ROOT / "target/release" / b), os.path.getsize(ROOT / "target" / MUSL / "release" / b))

    results = {}
    fake = Fake()
    data = Path(tempfile.mkdtemp(prefix="dyndns-bench-"))
    try:
        server = Server(fake, data)
        results["ready_ms"] = server.ready_ms
        step("server ready")
        time.sleep(1)
        pid = server.proc.pid
        results["rss_idle"] = kib(pid, "VmRSS")
        results["anon_idle"] = kib(pid, "RssAnon")
        results["threads_idle"] = int(proc_status(pid)["Threads"])

        # API economy (the start-up zone listing is done by now).
        wait_calls(fake, 1)
        econ = {}
        step("api economy")
        econ["new record"] = api_calls(fake, lambda: server.update("home.example.com", "192.0.2.1"))
        econ["unchanged, within REQUEST_CACHE_TTL"] = api_calls(fake, lambda: server.update("home.example.com", "192.0.2.1"))
        econ["changed, record known"] = api_calls(fake, lambda: server.update("home.example.com", "192.0.2.2"))

        # Records for all hosts, then 10 000 cached updates over keep-alive.
        create_all(server)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        step("10k updates")
        n = 1000 if SMOKE else 10_000
        for i in range(n):
            server.update(HOSTS[i % len(HOSTS)], "198.51.100.1", conn)
        conn.close()
        results["rss_after_10k"] = kib(pid, "VmRSS")
        results["anon_after_10k"] = kib(pid, "RssAnon")

        key = server.keys["home.example.com"]
        auth = "Basic " + base64.b64encode(f"home:{key}".encode()).decode()
        base = f"http://127.0.0.1:{server.port}"
        nic = f"{base}/nic/update?hostname=home.example.com&myip=192.0.2.2"
        lua = data / "post.lua"
        lua.write_text('wrk.method = "POST"\nwrk.body = \'{"fqdn": "home.example.com", "ip": "192.0.2.2"}\'\n'
                       f'wrk.headers["X-Pre-Shared-Key"] = "{key}"\nwrk.headers["Content-Type"] = "application/json"\n')
        load = {}
        step("wrk")
        dur = f"{DURATION}s"
        load["/nic/update, keep-alive"] = wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth}", nic])
        load["/update, keep-alive"] = wrk(["-t2", "-c16", "-d", dur, "-s", str(lua), f"{base}/update"])
        load["/nic/update, new connection each"] = wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth}",
                                                        "-H", "Connection: close", nic])
        load["/update, new connection each"] = wrk(["-t2", "-c16", "-d", dur, "-s", str(lua), "-H", "Connection: close",
                                                    f"{base}/update"])
        results["rss_under_load_peak"] = kib(pid, "VmHWM")
        step("side by side with bare tiny_http")
        side = side_by_side(server, nic, auth, lua, base)
        results["threads_after_load"] = int(proc_status(pid)["Threads"])
        step("hostile")
        hostile_rows, results["idle_threads_rss"] = hostile(server, fake, nic, auth, "3s" if SMOKE else "5s")

        # Agent: RSS during its loop.
        step("agent")
        agent_env = {"BACKEND_URL": base, "FQDN": HOSTS[0], "PRE_SHARED_KEY": server.keys[HOSTS[0]], "INTERVAL": "1"}
        agent = subprocess.Popen([str(ROOT / "target" / MUSL / "release/dyndns-agent")], env=agent_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5 if SMOKE else 3.5)
        results["agent_rss"] = kib(agent.pid, "VmRSS")
        results["agent_hwm"] = kib(agent.pid, "VmHWM")
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=5)

        # After a restart: the state file remembers confirmed addresses.
        step("restart")
        server.stop()
        before = fake.calls()
        server = Server(fake, data)
        wait_calls(fake, before + 1)  # the start-up zone listing
        econ["after a restart: unchanged (within REQUEST_CACHE_TTL)"] = api_calls(
            fake, lambda: server.update("home.example.com", "192.0.2.2"))
        econ["after a restart: changed"] = api_calls(fake, lambda: server.update("home.example.com", "192.0.2.3"))
        server.stop()
        before = fake.calls()
        server = Server(fake, data, REQUEST_CACHE_TTL="0")
        wait_calls(fake, before + 1)
        econ["unchanged, after REQUEST_CACHE_TTL"] = api_calls(fake, lambda: server.update("home.example.com", "192.0.2.3"))
        server.stop()
        before = fake.calls()
        server = Server(fake, data, REQUEST_CACHE_TTL="0", RECONCILE_INTERVAL="900")
        wait_calls(fake, before + 2)  # the zone listing and the first reconcile's listing page
        time.sleep(0.5)
        econ["unchanged, after REQUEST_CACHE_TTL, zone reconciled (default)"] = api_calls(
            fake, lambda: server.update("home.example.com", "192.0.2.3"))
        server.stop()
    finally:
        fake.stop()
        shutil.rmtree(data, ignore_errors=True)

    step("https side by side with nginx")
    tls_rows = https_side_by_side("3s" if SMOKE else f"{DURATION // 2}s")
    images = image_sizes()
    step("simulated hour")
    k = 360 if SMOKE else 60
    hour = {}
    for n in ([100] if SMOKE else [100, 1000, 5000]):
        hour[(n, "on (900 s)")] = simulated_hour(n, k)
    if not SMOKE:
        hour[(1000, "off")] = simulated_hour(1000, k, reconcile=False)
    hour[(100 if SMOKE else 1000, "on, 1 alias each, 2 projects")] = simulated_hour(100 if SMOKE else 1000, k,
                                                                               aliases_two_projects=True)

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    commit = sh("git", "rev-parse", "--short", "HEAD", check=False).stdout.strip() or "unknown"
    dirty = " (with uncommitted changes)" if sh("git", "status", "--porcelain", "--", ".", ":!tests/bench/BENCHMARKS.md", check=False).stdout.strip() else ""
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `tests/bench/bench.py` on {time.strftime('%Y-%m-%d')}, commit `{commit}`{dirty}.",
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. "
        "Server, fake Hetzner and load generator (wrk, 2 threads, 16 connections) share the machine. "
        "Memory and throughput are of the static musl binaries (what the images and releases ship).",
        "",
        "## Binary size (stripped)",
        "",
        "| binary | glibc (dynamic) | x86_64 musl (static) | target |",
        "|---|---|---|---|",
        f"| dyndns-server | {sizes['dyndns-server'][0]:,} B | {sizes['dyndns-server'][1]:,} B ({sizes['dyndns-server'][1] / 1048576:.2f} MiB) | ≤ 3.2 MiB |",
        f"| dyndns-agent | {sizes['dyndns-agent'][0]:,} B | {sizes['dyndns-agent'][1]:,} B ({sizes['dyndns-agent'][1] / 1048576:.2f} MiB) | ≤ 2 MiB |",
        "",
        ("Images (`FROM scratch`, the `*-prebuilt` targets, built with buildah): "
         f"server {images['server']}, agent {images['agent']}." if images else "Images: not measured (no buildah)."),
        "",
        "## Memory and start",
        "",
        "| measurement | value | target |",
        "|---|---|---|",
        f"| server start to ready (first `/healthz` 200) | {results['ready_ms']:.1f} ms | |",
        f"| server RSS idle ({results['threads_idle']} threads); of it private (RssAnon) | {mib(results['rss_idle'])}; {mib(results['anon_idle'])} | ≤ 2 MiB |",
        f"| server RSS after 10 000 updates ({len(HOSTS) + 1} hosts); of it private | {mib(results['rss_after_10k'])}; {mib(results['anon_after_10k'])} | ≤ 4 MiB |",
        f"| server peak RSS (VmHWM) under load | {mib(results['rss_under_load_peak'])} | ≤ 8 MiB |",
        f"| agent RSS during its loop (peak) | {mib(results['agent_rss'])} ({mib(results['agent_hwm'])}) | ≤ 2 MiB |",
        "",
        "## Cached updates (`nochg`/`unchanged`, no API call)",
        "",
        "| endpoint | requests/s | p50 | p99 |",
        "|---|---|---|---|",
    ]
    for name, (rps, p50, p99) in load.items():
        lines.append(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    rows, bare_rss = side
    lines += ["", "## Side by side with a bare tiny_http (same stack, fixed answer)", "",
              f"Alternating runs, {ROUNDS} each, medians. The reference (`tests/src/bin/bare-tiny-http.rs`) is the same "
              "patched tiny_http on the server's allocator, one thread per connection, answering a fixed `nochg` line.", "",
              "| cached update | bare req/s | server req/s | ratio (≥ 0.90) | bare p50 / p99 | server p50 / p99 (p99 ≤ 2× bare and ≤ 1 ms) "
              "| CPU per request, bare / server | CPU ratio (bare / server) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        (brps, bp50, bp99, bcpu), (srps, sp50, sp99, scpu) = r["bare"], r["server"]
        lines.append(f"| {name} | {brps:,.0f} | {srps:,.0f} | {srps / brps:.2f} | {bp50:.2f} / {bp99:.2f} ms "
                     f"| {sp50:.2f} / {sp99:.2f} ms | {bcpu:.1f} / {scpu:.1f} µs | {bcpu / scpu:.2f} |")
    lines += ["", f"RSS of the bare reference: {mib(bare_rss['bare idle'])} idle "
              f"({mib(bare_rss['bare idle anon'])} private), "
              f"{mib(bare_rss['bare after load'])} after the runs (server: see above).", "",
              "## Under attack (cached `/nic/update` with keep-alive, and `/healthz` on new connections)", "",
              "| situation | requests/s | p50 | p99 | `/healthz` p99 | target |", "|---|---|---|---|---|---|"]
    for name, (rps, p50, p99, hz) in hostile_rows.items():
        lines.append(f"| {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms | {hz:.2f} ms | p99 ≤ 50 ms |")
    t, rss = results["idle_threads_rss"]
    lines += ["", f"With 1000 idle + 50 slow connections open (`MAX_CONNECTIONS=512`): {t} threads, RSS {mib(rss)}.", "",
              "## HTTPS: the server's own TLS against nginx in front of the plain server", "",
              ] + https_lines(tls_rows) + ["",
              "## Hetzner API calls per operation (counted by the fake)", "",
              "The fake's actions are `running` once before `success` (one poll). The zone list is read once at start",
              "and cached for `ZONE_CACHE_TTL` for all hosts; it is not counted here.", "",
              "| operation | calls | target |", "|---|---|---|"]
    targets = {"new record": "≤ 3", "unchanged, within REQUEST_CACHE_TTL": "0", "changed, record known": "≤ 2",
               "unchanged, after REQUEST_CACHE_TTL": "1", "unchanged, after REQUEST_CACHE_TTL, zone reconciled (default)": "0"}
    for name, calls in econ.items():
        lines.append(f"| {name} | {calls} | {targets.get(name, '')} |")
    lines += ["", "## A simulated hour of Hetzner API calls", "",
              f"N hosts in one zone (records in place) each report an unchanged address every 60 s, with default "
              f"settings, for one hour. Every interval of the server is divided by {k} (the hour takes {3600 // k} s): "
              "`REQUEST_CACHE_TTL`, `RECONCILE_INTERVAL`, `ZONE_CACHE_TTL` and the report period. Counted by the fake "
              "from the end of the start-up (zone listing, first reconcile). Hetzner allows 3,600 calls an hour per project.",
              "", "| hosts | reconcile | list | read | write | poll | calls per hour | answers | share of 3,600 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (n, mode), h in hour.items():
        answers = ", ".join(f"{v:,} {a}" for a, v in sorted(h["answers"].items()))
        lines.append(f"| {n:,} | {mode} | {h['list']} | {h['read']} | {h['write']} | {h['poll']} | {h['total']:,} "
                     f"| {answers} | {h['total'] / 3600:.1%} |")
    on = {n: h for (n, mode), h in hour.items() if mode == "on (900 s)"}
    biggest = max(on)
    per_host = max(on[biggest]["total"] - 4, 1) / biggest  # minus the reconciles' last, partial pages
    lines += ["", f"With the reconcile, an hour costs 4 listings of ⌈N/100⌉ pages (one per 100 records) and nothing per "
              f"report: {per_host:.3f} calls per host and hour at {biggest:,} hosts, so about "
              f"{int(3240 / per_host) // 1000 * 1000:,} hosts fit in the 3,600 calls less the 10 % reserve, "
              "before any address changes (each costs 2 to 3 calls). With one alias per host the listings cover twice "
              "the records (2 × ⌈N/100⌉ pages, spread over the projects' zones, each project counting against its own "
              "3,600), and an unchanged report still costs nothing."]
    report = "\n".join(lines) + "\n"
    print(report)
    if not SMOKE:
        (ROOT / "tests/bench/BENCHMARKS.md").write_text(report)
        print("written to tests/bench/BENCHMARKS.md")


if __name__ == "__main__":
    main()
