"""How long each KashFlow fault takes to explain, and how the gateway paces its retries.

The web app runs on a loopback port against the sandbox KashFlow with its fault switches,
through a gateway with the reliability suite's knobs: a 0.3 s timeout, 2 retries, a
0.05 s backoff that doubles (with ±50 % jitter). ``tests/test_reliability_kashflow.py``
asserts what a visitor sees and how often KashFlow is asked; this prints how long:

* KashFlow slower than the timeout (1.2 s a call): the page and both PDF routes at once,
  each until its "KashFlow isn't answering" page;
* KashFlow hung: one gateway call until it gives up, and the three routes;
* HTTP 500, malformed XML, connection reset: the gaps between attempts (stamped by the
  sandbox as each arrives) next to the nominal backoff, and the time to the page;
* HTTP 429 with ``Retry-After: 1`` once: how long the gateway waited before asking again;
* HTTP 429 with ``Retry-After: 3600`` on every call: the time to the page (nothing
  retried: an hour is beyond the gateway's bound on waiting).

    python -m benchmarks.kashflow_faults [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from benchmarks.measure import machine, served, spread
from kashflow.errors import Unavailable
from tests.support import WebRig, web_rig

TIMEOUT = 0.3
RETRIES = 2
RETRY_DELAY = 0.05
#: One call's deadline: every attempt timing out, every backoff at its longest.
DEADLINE = (RETRIES + 1) * TIMEOUT + sum(RETRY_DELAY * 2**k * 1.5 for k in range(RETRIES))
NOT_ANSWERING = "KashFlow isn't answering"


def routes(rig: WebRig) -> list[str]:
    token = rig.mint("FOX01")
    number = rig.sandbox.invoices("demo", "FOX01")[0].number
    return [f"/l/{token}", f"/l/{token}/invoice/{number}.pdf", f"/l/{token}/all.pdf"]


async def timed(http: aiohttp.ClientSession, url: str) -> tuple[float, int, bool]:
    """Seconds to the whole answer, its status, and whether it is the not-answering page."""
    started = time.perf_counter()
    async with http.get(url) as response:
        text = await response.text(errors="replace")
    took = time.perf_counter() - started
    return took, response.status, NOT_ANSWERING in text.replace("&#39;", "'")


async def all_routes(
    http: aiohttp.ClientSession, base: str, rig: WebRig
) -> list[tuple[float, int, bool]]:
    """The page and both PDF routes at once, as a visitor's browser might ask."""
    return list(await asyncio.gather(*(timed(http, base + path) for path in routes(rig))))


def arrivals(rig: WebRig, operation: str) -> list[float]:
    return [c.at for c in rig.sandbox.calls if c.operation == operation]


def times(seen: list[tuple[float, int, bool]], unit: str = "s") -> str:
    return spread([took for took, _, _ in seen], unit=unit)


def pages(seen: list[tuple[float, int, bool]]) -> str:
    statuses = sorted(
        {f"{status}{' not answering' if explained else ''}" for _, status, explained in seen}
    )
    return ", ".join(statuses)


async def slow(http: aiohttp.ClientSession, base: str, rig: WebRig, rounds: int) -> None:
    rig.sandbox.faults.latency_ms = 4 * TIMEOUT * 1000
    seen = [answer for _ in range(rounds) for answer in await all_routes(http, base, rig)]
    rig.sandbox.faults.clear()
    print(f"  slower than the timeout (1.2 s a call), 3 routes at once: {pages(seen)};")
    print(f"    to the page {times(seen)}")


async def hung(http: aiohttp.ClientSession, base: str, rig: WebRig, rounds: int) -> None:
    account = rig.kashflow.account(rig.sandbox.credentials("demo"))
    rig.sandbox.faults.hang = float("inf")
    calls: list[float] = []
    attempts: set[int] = set()
    seen: list[tuple[float, int, bool]] = []
    for _ in range(rounds):
        rig.sandbox.calls.clear()
        started = time.perf_counter()
        try:
            await account.company_details()
        except Unavailable:
            calls.append(time.perf_counter() - started)
        attempts.add(len(arrivals(rig, "GetCompanyDetails")))
        seen += await all_routes(http, base, rig)
    rig.sandbox.faults.clear()
    print(f"  hung: one call gave up after {sorted(attempts)} attempts, {spread(calls, unit='s')}")
    print(f"    3 routes at once: {pages(seen)}; to the page {times(seen)}")


async def transport(http: aiohttp.ClientSession, base: str, rig: WebRig, rounds: int) -> None:
    account = rig.kashflow.account(rig.sandbox.credentials("demo"))
    for fault in ("http_500", "malformed_xml", "reset"):
        gaps: dict[int, list[float]] = {k: [] for k in range(RETRIES)}
        attempts: set[int] = set()
        seen: list[tuple[float, int, bool]] = []
        for _ in range(rounds):
            rig.sandbox.calls.clear()
            setattr(rig.sandbox.faults, fault, True)
            with contextlib.suppress(Unavailable):
                await account.company_details()
            stamps = arrivals(rig, "GetCompanyDetails")
            attempts.add(len(stamps))
            for k, (earlier, later) in enumerate(itertools.pairwise(stamps)):
                gaps[k].append(later - earlier)
            seen += await all_routes(http, base, rig)
            rig.sandbox.faults.clear()
        said = "; ".join(
            f"gap {k + 1} (nominal {RETRY_DELAY * 2**k * 1000:.0f} ms,"
            f" {RETRY_DELAY * 2**k * 500:.0f}-{RETRY_DELAY * 2**k * 1500:.0f} with jitter)"
            f" {spread(values)}"
            for k, values in gaps.items()
        )
        print(f"  {fault}: {sorted(attempts)} attempts; {said}")
        print(f"    3 routes: {pages(seen)}; to the page {times(seen)}")


async def throttled(http: aiohttp.ClientSession, base: str, rig: WebRig, rounds: int) -> None:
    waits: list[float] = []
    statuses: set[int] = set()
    for _ in range(rounds):
        rig.sandbox.calls.clear()
        rig.sandbox.faults.throttle = 1
        rig.sandbox.faults.retry_after = "1"
        rig.sandbox.faults.operations = frozenset({"GetCustomerByID"})
        _, status, _ = await timed(http, base + routes(rig)[0])
        statuses.add(status)
        first, second = arrivals(rig, "GetCustomerByID")
        waits.append(second - first)
        rig.sandbox.faults.clear()
    print(f"  429 with Retry-After: 1, once: page {sorted(statuses)};")
    print(f"    asked again after {spread(waits, unit='s')}")

    seen: list[tuple[float, int, bool]] = []
    asked: list[int] = []
    for _ in range(rounds):
        rig.sandbox.calls.clear()
        rig.sandbox.faults.throttle = 100
        rig.sandbox.faults.retry_after = "3600"
        seen += await all_routes(http, base, rig)
        asked.append(len(rig.sandbox.calls))
        rig.sandbox.faults.clear()
    print(
        f"  429 with Retry-After: 3600 on every call, 3 routes: {pages(seen)};"
        f" {statistics.median(asked):.0f} KashFlow calls in all for the 3 routes;"
    )
    print(f"    to the page {times(seen, unit='ms')}")


Scenario = Callable[[aiohttp.ClientSession, str, WebRig, int], Awaitable[None]]


async def run(rounds: int) -> None:
    gateway = {"timeout": TIMEOUT, "retries": RETRIES, "retry_delay": RETRY_DELAY}
    print(
        f"KashFlow faults: timeout {TIMEOUT} s, {RETRIES} retries from {RETRY_DELAY} s"
        f" doubling (±50 % jitter): one call's deadline {DEADLINE:.3f} s ({machine()})"
    )
    scenarios: tuple[Scenario, ...] = (slow, hung, transport, throttled)
    async with aiohttp.ClientSession() as http:
        for scenario in scenarios:
            # A fresh sandbox and app for each: no hung call of one outlives it into the next.
            with tempfile.TemporaryDirectory() as tmp:
                async with web_rig(Path(tmp), gateway=gateway) as rig, served(rig.app) as base:
                    await scenario(http, base, rig, rounds)


def main() -> None:
    # The gateway's and the resolver's warnings are what the faults are meant to cause.
    logging.getLogger().addHandler(logging.NullHandler())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
