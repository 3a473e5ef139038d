"""How well the bot reads what clients write: accuracy on the labelled request corpus.

Every message of ``tests/data/requests/`` goes through the bot's reading and deciding steps
(parse, guards, intent; see ``tests/support/requests.py``) and is right when it comes out as
labelled: silent by the named rule, or a reply with the labelled scope, statement mark and
language. Accuracy is printed per language, per kind (what was asked) and per client, for
the tuning part and, apart, for the held-out part that no rule was tuned on; then the time
one message takes.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable

from tests.support.requests import HELD_OUT, TUNING, Case, judge, load


def table(title: str, cases: list[Case], key: Callable[[Case], str]) -> None:
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for case in cases:
        group = key(case)
        total[group] += 1
        right[group] += judge(case)[0]
    print(f"   {title}")
    for group in sorted(total):
        share = right[group] / total[group]
        print(f"     {group:<14} {right[group]:>4}/{total[group]:<4} {share:7.1%}")


def report(name: str, cases: list[Case]) -> None:
    verdicts = [(case, *judge(case)) for case in cases]
    right = sum(ok for _, ok, _ in verdicts)
    print(f"== {name}: {right}/{len(cases)} right ({right / len(cases):.1%})")
    table("per language", cases, lambda c: c.language)
    table("per kind", cases, lambda c: c.kind)
    table("per client", cases, lambda c: c.client)
    for case, ok, got in verdicts:
        if not ok:
            print(f"   wrong: {case.name}: expected {case.expected}, got {got}")


def speed(cases: list[Case], rounds: int) -> None:
    started = time.perf_counter()
    for _ in range(rounds):
        for case in cases:
            judge(case)
    elapsed = time.perf_counter() - started
    per = elapsed / (rounds * len(cases))
    print(f"== speed: {per * 1e3:.2f} ms a message (parse, guards, intent; {rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds for the speed figure")
    args = parser.parse_args()
    tuning, held_out = load(TUNING), load(HELD_OUT)
    report("tuning part", tuning)
    report("held-out part (never tuned on)", held_out)
    speed(tuning + held_out, args.rounds)


if __name__ == "__main__":
    main()
