"""What a request asks for: all invoices, the unpaid ones, or one invoice by number.

The words are read from what the sender just wrote; the subject speaks only when the text
says nothing, so a bare reply to "Invoice 1234 from Northwind" asks for invoice 1234 while
"send me everything" under the same subject asks for all of them. Whether an invoice number
belongs to the sender is the worker's question, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["all", "unpaid", "invoice"]


@dataclass(frozen=True, slots=True)
class Intent:
    """``understood`` is False when nothing was recognised and ``kind`` is the default."""

    kind: Kind
    invoice: int | None = None
    understood: bool = True


# "invoice 1234", "invoice #1234", "inv. 1234", "invoice no. 1234", "invoices 12, 13 and 14".
_INVOICE_NUMBERS = re.compile(
    r"\b(?:invoices?|inv)\b\.?\s*(?:(?:no|nos|nr|num|number|numbers)\b\.?\s*)?[#:\-]?\s*#?"
    r"[0-9]{1,9}\b(?:\s*(?:,|&|\+|and)\s*#?[0-9]{1,9}\b)*",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[0-9]{1,9}")
_WORD = re.compile(r"[a-z]+")
_ALL_WORDS = frozenset({"all", "every", "everything"})
_UNPAID_WORDS = frozenset(
    {"unpaid", "outstanding", "overdue", "owe", "owed", "owing", "due", "arrears"}
)
# Everyday phrases that carry a keyword without asking for anything.
_IDIOMS = re.compile(
    r"\b(?:all the best|all best|best of all|hi all|hello all|dear all|thanks all|thank you all"
    r"|that'?s all|that is all|all good|all well|all is well|at all|all right|after all"
    r"|all set|due to|due course)\b",
    re.IGNORECASE,
)


def _read(text: str) -> Intent | None:
    numbers = list(
        dict.fromkeys(
            int(number)
            for match in _INVOICE_NUMBERS.finditer(text)
            for number in _NUMBER.findall(match.group(0))
        )
    )
    words = set(_WORD.findall(_IDIOMS.sub(" ", text.replace("’", "'")).lower()))
    asks_all, asks_unpaid = bool(words & _ALL_WORDS), bool(words & _UNPAID_WORDS)
    # "All I owe" narrows "all"; "all" asks for a superset of any one invoice; but "due" and
    # "owe" alone often describe the invoice named ("invoice 1234 is due"), so a number
    # outranks them.
    if asks_all:
        return Intent("unpaid" if asks_unpaid else "all")
    if len(numbers) == 1:
        return Intent("invoice", numbers[0])
    if len(numbers) > 1:
        # One reply holds one scope: the full list is the smallest that has them all.
        return Intent("all")
    if asks_unpaid:
        return Intent("unpaid")
    return None


def read_intent(text: str, subject: str, default: Kind) -> Intent:
    """The request in ``text`` (the sender's new text), else in ``subject``, else ``default``."""
    return _read(text) or _read(subject) or Intent(default, understood=False)
