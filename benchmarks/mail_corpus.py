"""Real-world mail through the bot: what it decides for each message, and how long it takes.

The corpus is CPython's email test data (Debian's libpython3.11-testsuite) and our samples
in ``tests/data/mail/`` (see ``tests/support/mail_corpus.py``). First every file goes
through the bot's reading and deciding steps (parse, guards, intent) as stored, then as
SMTP delivers it, then with authentication required; the outcomes are counted per part of
the corpus, and the whole corpus is timed over ``--rounds`` rounds. Then the messages go
through the running bot over SMTP (the sandbox KashFlow and a capture relay included), as
written and, for our samples, from a real customer; the settled outcomes are counted.
``tests/test_reliability_mail_corpus.py`` pins every outcome; this prints the totals and
the times.

    python -m benchmarks.mail_corpus [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.measure import machine, ms
from bot.guards import GuardContext
from bot.pipeline import Ignored, Replied
from bot.worker import Settled
from kashflow.client import KashFlow
from kashflow.sandbox import Sandbox
from tests.support.bot import ACME, bot_rigs
from tests.support.mail_corpus import (
    CPYTHON_MAIL,
    CTX,
    DEFAULT,
    NO_SENDER,
    Outcome,
    as_relayed,
    corpus,
    decide,
    deliveries,
)


def part(path: Path) -> str:
    if path.parent != CPYTHON_MAIL:
        return "our samples"
    return "CPython, messages" if path.name.startswith("msg_") else "CPython, images and sounds"


def tally(outcomes: list[Outcome]) -> str:
    replies = Counter(o.rule for o in outcomes if o.action == "reply")
    ignored = Counter(o.rule for o in outcomes if o.action == "ignored")
    said = f"reply {sum(replies.values())}"
    if replies:
        scopes = ", ".join(
            f"{'default scope' if rule == DEFAULT else rule} {n}"
            for rule, n in replies.most_common()
        )
        said += f" ({scopes})"
    said += f"; ignored {sum(ignored.values())}"
    if ignored:
        rules = ", ".join(
            f"{'no readable sender' if rule == NO_SENDER else rule} {n}"
            for rule, n in ignored.most_common()
        )
        said += f" ({rules})"
    return said


def package() -> str:
    """The Debian package CPython's corpus comes from, with its version."""
    name = "libpython3.11-testsuite"
    found = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True, check=False
    )
    return f"{name} {found.stdout.strip() or '(version unknown)'}"


def offline(rounds: int) -> None:
    files = corpus()
    raws = {path: path.read_bytes() for path in files}
    stored = {path: decide(raw) for path, raw in raws.items()}
    print(
        f"real-world mail, read and decided ({len(files)} files; CPython's from {package()};"
        f" {machine()}):"
    )
    for name in ("CPython, messages", "CPython, images and sounds", "our samples"):
        chosen = [o for path, o in stored.items() if part(path) == name]
        print(f"  {name}, {len(chosen)}: {tally(chosen)}")

    relayed = {}
    for path, raw in raws.items():
        crlf, envelope = as_relayed(raw)
        relayed[path] = decide(crlf, envelope=envelope)
    changed = [p for p in files if relayed[p].key != stored[p].key]
    print(f"  delivered as SMTP delivers it: {len(files) - len(changed)} decide the same", end="")
    print("".join(f"; {p.name}: {stored[p].key} -> {relayed[p].key}" for p in changed))

    strict = GuardContext(CTX.request_address, CTX.our_domain, "mx.northwind.example")
    answered = []
    for path, raw in raws.items():
        crlf, envelope = as_relayed(raw)
        if decide(crlf, strict, envelope=envelope).action == "reply":
            answered.append(path.name)
    print(f"  with authentication required: {len(answered)} would get a reply ({answered})")

    totals: list[float] = []
    slowest: dict[Path, list[float]] = {path: [] for path in files}
    for _ in range(rounds):
        started = time.perf_counter()
        for path, raw in raws.items():
            one = time.perf_counter()
            decide(raw)
            slowest[path].append(time.perf_counter() - one)
        totals.append(time.perf_counter() - started)
    worst = max(files, key=lambda p: statistics.median(slowest[p]))
    print(
        f"  time for all {len(files)} files: median {ms(statistics.median(totals))} over"
        f" {rounds} rounds; slowest file {worst.name}, {ms(statistics.median(slowest[worst]))}"
    )


def settled_as(settled: Settled) -> str:
    outcome = settled.outcome
    if isinstance(outcome, Replied):
        return "replied"
    if isinstance(outcome, Ignored):
        return f"ignored: {outcome.rule.split(':')[0].split(' (')[0]}"
    return f"{settled.state}: {outcome}"


async def running(tmp: Path) -> None:
    sent = deliveries(ACME)
    async with (
        Sandbox() as sandbox,
        KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts) as kashflow,
        bot_rigs(tmp, sandbox, kashflow) as make,
    ):
        rig = await make(per_customer_limit=100, global_limit=1000, default_scope="all")
        started = time.perf_counter()
        for _, raw, sender in sent:
            await rig.send(raw, mail_from=sender)
        accepted = time.perf_counter() - started

        def finished(settled: list[Settled]) -> bool:
            return sum(s.state in ("done", "parked") for s in settled) >= len(sent)

        settled = await rig.service.worker.wait_for(finished, 600)
        took = time.perf_counter() - started
        final = [s for s in settled if s.state in ("done", "parked")]
        outcomes = Counter(settled_as(s) for s in final)
        replies = rig.capture.messages
        to_acme = sum(r.rcpt_tos == (ACME,) for r in replies)
    print(
        f"through the running bot over SMTP: {len(sent)} deliveries, {len(final)} settled"
        f" once each, {outcomes['replied']} replied ({to_acme} of {len(replies)} replies to"
        " the customer's address on file)"
    )
    for outcome, count in sorted(outcomes.items(), key=lambda item: (-item[1], item[0])):
        if outcome != "replied":
            print(f"  {outcome}: {count}")
    print(f"  sent in {accepted:.1f} s, all settled {took:.1f} s after the first was sent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    offline(args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(running(Path(tmp)))


if __name__ == "__main__":
    main()
