"""The labelled request corpus: each ``.eml`` with its expected outcome beside it.

``tests/data/requests/tuning/`` holds the messages the rules were written and tuned on;
``tests/data/requests/held-out/`` a tenth written apart and never tuned on. Beside each
``NAME.eml`` is ``NAME.toml``: ``outcome`` (``reply`` or ``silent``), for a reply its
``scope`` (``all``, ``unpaid``, ``invoice:<n>[,<n>…]`` or ``default``), ``understood`` and
``statement``, for silence the guard's ``rule``; and for every case its ``language``, its
``kind`` (what was asked) and the ``client`` that wrote it.

:func:`judge` runs a message through what the bot decides before asking KashFlow —
``parse``, the guards, ``understand`` — with either default scope, and says whether that
is what the label expects.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from bot.guards import GUARDS, GuardContext
from bot.mailparse import parse
from bot.pipeline import understand
from permalink.scopes import Scope

CORPUS = Path(__file__).parent.parent / "data" / "requests"
TUNING = CORPUS / "tuning"
HELD_OUT = CORPUS / "held-out"
CTX = GuardContext(request_address="invoices@northwind.example", our_domain="bot.northwind.example")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    raw: bytes
    outcome: str
    scope: str
    understood: bool
    statement: bool
    rule: str
    language: str
    kind: str
    client: str

    @property
    def expected(self) -> str:
        if self.outcome == "silent":
            return f"silent ({self.rule})"
        marks = ("" if self.understood else " not understood") + (
            " statement" if self.statement else ""
        )
        return f"{self.scope}{marks} [{self.language}]"


def load(folder: Path) -> list[Case]:
    cases = []
    for eml in sorted(folder.glob("*.eml")):
        label = tomllib.loads(eml.with_suffix(".toml").read_text(encoding="utf-8"))
        cases.append(
            Case(
                name=eml.stem,
                raw=eml.read_bytes(),
                outcome=label["outcome"],
                scope=label.get("scope", ""),
                understood=label.get("understood", True),
                statement=label.get("statement", False),
                rule=label.get("rule", ""),
                language=label["language"],
                kind=label["kind"],
                client=label["client"],
            )
        )
    return cases


def decide(raw: bytes) -> str:
    """What the bot makes of ``raw``, written the way :attr:`Case.expected` is."""
    request = parse(raw)
    for guard in GUARDS:
        if guard(request, CTX) is not None:
            return f"silent ({guard.__name__})"
    for_all = understand(request, CTX.our_domain, "all")
    for_unpaid = understand(request, CTX.our_domain, "unpaid")
    if for_all.scope == Scope("all") and for_unpaid.scope == Scope("unpaid"):
        scope = "default"
    elif for_all.scope == for_unpaid.scope:
        scope = str(for_all.scope)
    else:
        scope = f"{for_all.scope} or {for_unpaid.scope}"
    marks = ("" if for_all.understood else " not understood") + (
        " statement" if for_all.statement else ""
    )
    return f"{scope}{marks} [{for_all.language}]"


def judge(case: Case) -> tuple[bool, str]:
    """Whether the bot does what ``case`` expects, and what it does."""
    got = decide(case.raw)
    return got == case.expected, got
