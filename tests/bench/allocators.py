#!/usr/bin/env python3
"""The server's allocator (server/alloc, dyndns-alloc) side by side with the
usual answers for a static musl binary: musl's own malloc and mimalloc.

Builds the static server three times (features alloc-system and
alloc-mimalloc of dyndns-server), then, for each binary in turn and
alternating ROUNDS times, runs the same load as tests/bench/bench.py
(1,000 hosts with their records in place, cached updates through wrk, 2
threads, 16 connections, keep-alive and a new connection each) and reads
the server's memory from /proc. Throughput is given as a ratio to
dyndns-alloc measured in the same run (absolute numbers on a shared
machine swing 2x). Prints a Markdown table; the numbers are kept in
tests/bench/BENCHMARKS.md by hand.

usage: tests/bench/allocators.py [--smoke]
"""
import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import MUSL, ROOT, SMOKE, Fake, Server, create_all, kib, median, sh, wrk  # noqa: E402

VARIANTS = {"dyndns-alloc (server/alloc)": None, "musl malloc": "alloc-system", "mimalloc": "alloc-mimalloc"}


def build():
    env = dict(os.environ, CC_x86_64_unknown_linux_musl="musl-gcc")
    out = {}
    keep = Path(tempfile.mkdtemp(prefix="dyndns-alloc-bins-"))
    for name, feature in VARIANTS.items():
        args = ["cargo", "build", "--release", "--locked", "--target", MUSL, "-p", "dyndns-server"]
        if feature:
            args += ["--features", feature]
        sh(*args, env=env)
        binary = keep / (feature or "default")
        shutil.copy(ROOT / "target" / MUSL / "release/dyndns-server", binary)
        out[name] = binary
    sh("cargo", "build", "--release", "--locked", "-p", "e2e", "--bin", "fake-hetzner", env=env)
    return out, keep


def measure(binary, dur):
    fake = Fake()
    data = Path(tempfile.mkdtemp(prefix="dyndns-alloc-"))
    try:
        server = Server(fake, data, binary=binary)
        time.sleep(1)
        pid = server.proc.pid
        idle = kib(pid, "VmRSS")
        create_all(server)
        key = server.keys["home.example.com"]
        server.update("home.example.com", "192.0.2.2")
        auth = "Basic " + base64.b64encode(f"home:{key}".encode()).decode()
        nic = f"http://127.0.0.1:{server.port}/nic/update?hostname=home.example.com&myip=192.0.2.2"
        keep_alive = wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth}", nic], pid)
        new_conn = wrk(["-t2", "-c16", "-d", dur, "-H", f"Authorization: {auth}", "-H", "Connection: close", nic], pid)
        result = {"idle": idle, "after": kib(pid, "VmRSS"), "peak": kib(pid, "VmHWM"),
                  "keep_alive": keep_alive, "new_conn": new_conn}
        server.stop()
        return result
    finally:
        fake.stop()
        shutil.rmtree(data, ignore_errors=True)


def main():
    binaries, keep = build()
    dur = "2s" if SMOKE else "5s"
    rounds = 1 if SMOKE else 3
    runs = {name: [] for name in binaries}
    sizes = {name: os.path.getsize(binary) for name, binary in binaries.items()}
    try:
        for _ in range(rounds):
            for name, binary in binaries.items():
                bench.step(f"{name}")
                runs[name].append(measure(binary, dur))
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    base = list(runs)[0]
    med = {name: {
        "ka_rps": median([r["keep_alive"][0] for r in rs]), "ka_p99": median([r["keep_alive"][2] for r in rs]),
        "nc_rps": median([r["new_conn"][0] for r in rs]), "nc_p99": median([r["new_conn"][2] for r in rs]),
        "ka_cpu": median([r["keep_alive"][3] for r in rs]),
        "idle": median([r["idle"] for r in rs]), "after": median([r["after"] for r in rs]),
        "peak": median([r["peak"] for r in rs]), "size": sizes[name],
    } for name, rs in runs.items()}
    lines = [f"Allocators, medians of {rounds} alternating rounds of {dur} each (wrk -t2 -c16), "
             f"throughput as a ratio to {base}:", "",
             "| allocator | keep-alive req/s (ratio) | p99 | CPU µs/req | new connection req/s (ratio) | p99 "
             "| RSS idle | RSS after load | peak RSS | static binary |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in med.items():
        b = med[base]
        lines.append(f"| {name} | {m['ka_rps']:,.0f} ({m['ka_rps'] / b['ka_rps']:.2f}) | {m['ka_p99']:.2f} ms "
                     f"| {m['ka_cpu']:.0f} | {m['nc_rps']:,.0f} ({m['nc_rps'] / b['nc_rps']:.2f}) | {m['nc_p99']:.2f} ms "
                     f"| {m['idle'] / 1024:.1f} MiB | {m['after'] / 1024:.1f} MiB | {m['peak'] / 1024:.1f} MiB "
                     f"| {m['size']:,} B |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
