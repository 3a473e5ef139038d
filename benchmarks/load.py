"""The resolver under load: 200 concurrent clients for 60 s on loopback (Debian's ``wrk``).

Next to it, in the same run, a bare aiohttp handler on the same machine: the ceiling the
framework itself sets. The server's resident memory is sampled every few seconds to show
whether the footprint is stable. The sandbox KashFlow runs in its own process.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import sandbox_process


@contextmanager
def server(kashflow_url: str | None) -> Iterator[tuple[str, int]]:
    cmd = [sys.executable, "-m", "benchmarks.serve_app"]
    if kashflow_url:
        cmd += ["--kashflow-url", kashflow_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_wrk(url: str, connections: int, seconds: int, pid: int) -> dict[str, object]:
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5):
            samples.append(rss_mib(pid))

    before = rss_mib(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stop.set()
    sampler.join()

    def grab(pattern: str) -> str:
        found = re.search(pattern, out)
        return found.group(1) if found else "0"

    errors = grab(r"Socket errors: (.*)") if "Socket errors" in out else "none"
    return {
        "requests": grab(r"(\d+) requests in"),
        "rps": grab(r"Requests/sec:\s+([\d.]+)"),
        "p50": grab(r"50%\s+([\d.]+\w+)"),
        "p99": grab(r"99%\s+([\d.]+\w+)"),
        "non2xx": grab(r"Non-2xx or 3xx responses: (\d+)"),
        "socket_errors": errors,
        "rss": f"{before:.0f} -> " + " / ".join(f"{s:.0f}" for s in samples) + " MiB",
    }


def report(name: str, r: dict[str, object]) -> None:
    print(
        f"{name}: {r['rps']} req/s ({r['requests']} requests), p50 {r['p50']}, p99 {r['p99']}, "
        f"non-2xx {r['non2xx']}, socket errors {r['socket_errors']}"
    )
    print(f"  server RSS {r['rss']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs Debian's wrk: apt-get install wrk")
    print(f"{args.connections} concurrent clients, {args.seconds} s each, loopback, 2 cores")
    with server(None) as (url, pid):
        report("bare aiohttp handler", run_wrk(url, args.connections, args.seconds, pid))
    with sandbox_process(0) as kashflow_url, server(kashflow_url) as (url, pid):
        report("resolver list page  ", run_wrk(url, args.connections, args.seconds, pid))


if __name__ == "__main__":
    main()
