"""How long the reliability suites take, alone and together, on a quiet or a busy machine.

Runs pytest on each file docs/RELIABILITY.md reports on, one after the other, then on all
of them in one run, and prints the number of tests that passed and the wall time of each
run. With ``--busy N``, N processes spin on the CPU all the while, as other jobs on a
shared CI machine would: the suites assert order and events, never a stopwatch, so they
pass there too, only slower. The one-minute load average at the start is printed with
the figures, since the machine's other work shows in them.

    python -m benchmarks.suites [--busy 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version

from lxml import etree

from tests.support.processes import ROOT

SUITES: dict[str, str] = {
    "tests/test_reliability_links.py": "links over HTTP",
    "tests/test_reliability_kashflow.py": "KashFlow faults and PDFs",
    "tests/test_reliability_mail_corpus.py": "real-world mail",
    "tests/test_reliability_mail.py": "hostile SMTP sessions",
    "tests/test_bot_logs.py": "the bot's logs",
}
_SUMMARY = re.compile(r"(\d+) passed")
_FAILED = re.compile(r"(\d+) (?:failed|error)")


def spin() -> None:
    while True:
        pass


@contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` CPU-bound processes running until the block ends."""
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(processes)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
        for spinner in spinners:
            spinner.join()


def pytest(files: Sequence[str]) -> tuple[int, int, float]:
    """Tests passed, tests failed, wall seconds (interpreter start and collection included)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    tail = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    passed = _SUMMARY.search(tail)
    failed = _FAILED.findall(tail)
    return (int(passed.group(1)) if passed else 0), sum(int(n) for n in failed), took


def environment() -> str:
    """The machine and the versions the figures depend on."""
    with open("/proc/meminfo") as meminfo:
        kib = int(meminfo.readline().split()[1])
    libxml2 = ".".join(str(n) for n in etree.LIBXML_VERSION)
    qpdf = subprocess.run(["qpdf", "--version"], capture_output=True, text=True, check=False)
    qpdf_version = qpdf.stdout.split("\n", 1)[0].removeprefix("qpdf version ")
    packages = ", ".join(f"{name} {version(name)}" for name in ("aiohttp", "pypdf", "lxml"))
    return (
        f"{os.cpu_count()} cores, {kib / 2**20:.0f} GiB; Python {platform.python_version()},"
        f" {packages} on libxml2 {libxml2}, qpdf {qpdf_version}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes alongside")
    processes = parser.parse_args().busy
    load = os.getloadavg()[0]
    print(environment())
    print(
        f"reliability suites on {os.cpu_count()} cores, load average {load:.1f} at the start,"
        f" {processes} spinning processes alongside:"
    )
    with busy(processes):
        for path, what in SUITES.items():
            passed, failed, took = pytest([path])
            print(f"  {what:<26} {path:<40} {passed:>3} passed, {failed} failed, {took:5.1f} s")
        passed, failed, took = pytest(list(SUITES))
        everything = "all of them, one run"
        print(f"  {everything:<67} {passed:>3} passed, {failed} failed, {took:5.1f} s")


if __name__ == "__main__":
    main()
