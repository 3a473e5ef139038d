"""Link fuzzing at volume: 100 000 hostile tokens through the real web app over HTTP.

The resolver runs on a loopback port against the sandbox KashFlow, exactly as served in
production (redacting access log aside, which is switched off for speed). Tokens come in
six kinds — random strings of the token alphabet (0-600 characters), random bytes
percent-encoded, single-bit flips of valid tokens, truncated or extended valid tokens,
valid tokens relabelled with another key id, and two valid tokens spliced together. Every
one must get the byte-identical "this link is not valid" page: the same status, body and
headers (all but ``Date``) as ``/l/not-a-token``; the empty token is no link at all and
gets the plain 404. The invalid-link throttle is set high and its clock is
stepped a minute every few thousand requests, so what is measured is the token check, not
the 429. A valid link is opened before and after, to show the run poisoned nothing.

Prints counts per kind, the resolver's reasons (from its log), status counts and latency;
exits non-zero if any token opened, any answer was not the expected page, or any 5xx.

    python -m benchmarks.fuzz_links [--count 100000] [--concurrency 8] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import random
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web

from app.config import Settings
from app.runtime import build_core, close_core
from benchmarks.measure import machine
from kashflow.sandbox import DEMO, Sandbox
from permalink.keyring import Keyring
from permalink.links import new_link, seal
from permalink.scopes import Scope
from web.app import WebConfig, create_app

ALPHABET = string.ascii_letters + string.digits + "-_"
#: The throttle's allowance per minute, and how many requests go by per clock minute.
LIMIT = 10_000
PER_MINUTE = 5_000


@dataclass
class SteppedClock:
    """Real time plus whole minutes the driver adds, so the throttle window keeps moving."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    outcome: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class ReasonCount(logging.Handler):
    """Counts the resolver's "link not valid (<reason>)" lines by reason."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("link not valid") and record.args:
            self.reasons[str(record.args[0])] += 1  # type: ignore[index]


def _b64(blob: bytes) -> str:
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def token_kinds(valid: list[str]) -> dict[str, Callable[[random.Random], str]]:
    """Each kind of hostile token, as a function of the random source; weights below."""

    def random_text(rng: random.Random) -> str:
        return "".join(rng.choices(ALPHABET, k=rng.randint(0, 600)))

    def random_bytes(rng: random.Random) -> str:
        return quote(rng.randbytes(rng.randint(1, 300)), safe="")

    def bit_flip(rng: random.Random) -> str:
        blob = bytearray(_unb64(rng.choice(valid)))
        blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        return _b64(bytes(blob))

    def cut_or_grow(rng: random.Random) -> str:
        token = rng.choice(valid)
        if rng.random() < 0.5:
            return token[: rng.randrange(1, len(token))]
        return token + "".join(rng.choices(ALPHABET, k=rng.randint(1, 40)))

    def key_swap(rng: random.Random) -> str:
        blob = bytearray(_unb64(rng.choice(valid)))
        blob[1] = rng.choice([i for i in range(256) if i != blob[1]])
        return _b64(bytes(blob))

    known = set(valid)

    def spliced(rng: random.Random) -> str:
        while True:
            a, b = rng.sample(valid, 2)
            cut = rng.randrange(1, min(len(a), len(b)))
            # Both tokens open with the same version and key id: a splice inside that
            # prefix is simply ``b`` again, which is no forgery.
            if (splice := a[:cut] + b[cut:]) not in known:
                return splice

    return {
        "random text": random_text,
        "random bytes": random_bytes,
        "bit flip": bit_flip,
        "cut or grown": cut_or_grow,
        "key id swap": key_swap,
        "spliced": spliced,
    }


WEIGHTS = {
    "random text": 50,
    "random bytes": 10,
    "bit flip": 15,
    "cut or grown": 10,
    "key id swap": 5,
    "spliced": 10,
}


def plan(
    count: int, kinds: dict[str, Callable[[random.Random], str]], seed: int
) -> Iterator[tuple[str, str]]:
    rng = random.Random(seed)
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    for _ in range(count):
        kind = rng.choices(names, weights)[0]
        yield kind, kinds[kind](rng)


async def fuzz(count: int, concurrency: int, seed: int) -> int:
    reasons = ReasonCount()
    resolver_log = logging.getLogger("web.resolver")
    resolver_log.setLevel(logging.INFO)
    resolver_log.addHandler(reasons)
    resolver_log.propagate = False

    with tempfile.TemporaryDirectory() as tmp:
        clock = SteppedClock()
        async with Sandbox() as sandbox:
            keyring = Keyring.generate()
            settings = Settings(
                state_dir=Path(tmp),
                public_base_url="http://127.0.0.1:1",
                kashflow_endpoint=sandbox.url,
                pdf_hosts=sandbox.pdf_hosts,
            )
            core = build_core(settings, keyring, clock=clock)
            app = create_app(core, WebConfig(invalid_link_limit=LIMIT))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            valid = [
                seal(
                    new_link(
                        DEMO,
                        c.id,
                        c.code,
                        Scope(scope),
                        now=int(clock()),
                    ),
                    keyring,
                )
                for c in sandbox.customers("demo")
                for scope in ("all", "unpaid")
            ]
            try:
                failures = await drive(base, valid, count, concurrency, seed, clock, reasons)
            finally:
                await runner.cleanup()
                await close_core(core)
    return failures


async def drive(
    base: str,
    valid: list[str],
    count: int,
    concurrency: int,
    seed: int,
    clock: SteppedClock,
    reasons: ReasonCount,
) -> int:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        reference = await fetch(http, f"{base}/l/not-a-token")
        no_token = await fetch(http, f"{base}/l/")
        opened_before = (await fetch(http, f"{base}/l/{valid[0]}"))[0]
        work = plan(count, token_kinds(valid), seed)
        done = 0

        async def worker() -> None:
            nonlocal done
            for kind, token in work:
                started = time.perf_counter()
                got = await fetch(http, f"{base}/l/{token}")
                tally.latencies.append(time.perf_counter() - started)
                tally.sent[kind] += 1
                tally.statuses[got[0]] += 1
                if got == reference:
                    verdict = "not valid page"
                elif got == no_token and unquote(token) in ("", ".", ".."):
                    # No token at all (or a dot segment, which URLs fold away).
                    verdict = "no token: plain 404"
                elif got[:2] == reference[:2]:
                    verdict = "UNEXPECTED headers"
                else:
                    verdict = f"UNEXPECTED {got[0]}"
                tally.outcome[(kind, verdict)] += 1
                done += 1
                if done % PER_MINUTE == 0:
                    clock.offset += 61

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
        opened_after = (await fetch(http, f"{base}/l/{valid[-1]}"))[0]

    return report(tally, reasons, took, concurrency, opened_before, opened_after)


#: Headers that differ between any two answers for reasons unrelated to the request.
VOLATILE_HEADERS = frozenset({"Date"})

#: Status, body and every header but the volatile ones: what a guesser could compare.
Answer = tuple[int, bytes, tuple[tuple[str, str], ...]]


async def fetch(http: aiohttp.ClientSession, url: str) -> Answer:
    async with http.get(url, allow_redirects=False) as response:
        headers = tuple(
            sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS)
        )
        return response.status, await response.read(), headers


def report(
    tally: Tally,
    reasons: ReasonCount,
    took: float,
    concurrency: int,
    opened_before: int,
    opened_after: int,
) -> int:
    total = sum(tally.sent.values())
    print(
        f"link fuzzing: {total} requests in {took:.1f} s ({total / took:.0f} req/s), "
        f"{concurrency} at a time ({machine()})"
    )
    print(f"  {'kind':<14}{'sent':>8}   outcome")
    for kind in WEIGHTS:
        outcomes = ", ".join(
            f"{verdict} {n}" for (k, verdict), n in sorted(tally.outcome.items()) if k == kind
        )
        print(f"  {kind:<14}{tally.sent[kind]:>8}   {outcomes}")
    print("  resolver reasons: " + ", ".join(f"{r} {n}" for r, n in reasons.reasons.most_common()))
    print("  statuses: " + ", ".join(f"{s} x{n}" for s, n in sorted(tally.statuses.items())))
    lat = sorted(tally.latencies)
    p99 = lat[int(len(lat) * 0.99)] if lat else 0.0
    print(
        f"  latency p50 {statistics.median(lat) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {lat[-1] * 1000:.1f} ms"
    )
    print(f"  a valid link before and after: HTTP {opened_before} / {opened_after}")
    unexpected = sum(n for (_, verdict), n in tally.outcome.items() if verdict.startswith("UN"))
    failed = unexpected + (opened_before != 200) + (opened_after != 200)
    print(f"  result: {'FAILED' if failed else 'held'} ({unexpected} unexpected answers)")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    failures = asyncio.run(fuzz(args.count, args.concurrency, args.seed))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
