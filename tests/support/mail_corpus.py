"""Real-world mail and what the bot's reading and deciding steps make of each message.

The corpus is every file of CPython's ``test_email/data`` (Debian's libpython3.11-testsuite:
messages with broken boundaries, missing headers, odd charsets — and, in the same folder,
images and sounds that are no mail at all) and every ``tests/data/mail/*.eml``.
:func:`decide` runs one message through ``bot.mailparse.parse``, ``bot.guards`` and
``bot.intent.read_intent`` as the pipeline does; :func:`deliveries` is what the running-bot
test sends over SMTP. Shared by ``tests/test_reliability_mail_corpus.py`` and
``benchmarks/mail_corpus.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.guards import GUARDS, GuardContext, first_stop
from bot.intent import read_intent
from bot.mailparse import parse

CPYTHON_MAIL = Path("/usr/lib/python3.11/test/test_email/data")
OWN_MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"
CTX = GuardContext(request_address="invoices@northwind.example", our_domain="bot.northwind.example")
#: The pipeline's first rule, before any guard: nobody to answer (see bot/pipeline.py ``read``).
NO_SENDER = "no_sender"
#: A reply's "rule" when the message asks for nothing in particular: the default scope.
DEFAULT = "default"
#: What strangers' deliveries claim as their envelope sender.
STRANGER = "someone@corpus.example"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the bot would do: a reply (``rule`` is the scope read, or ``default``), or the
    message ignored (``rule`` is the guard's name, or ``no_sender``); ``detail`` is the
    guard's reason or the parser's defects."""

    action: Literal["reply", "ignored"]
    rule: str
    detail: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.action, self.rule


def decide(raw: bytes, ctx: GuardContext = CTX, *, envelope: str | None = None) -> Outcome:
    """The bot's reading and deciding steps on one message, each outcome checked whole."""
    request = parse(raw, envelope_sender=envelope)
    stopped = [(g.__name__, reason) for g in GUARDS if (reason := g(request, ctx)) is not None]
    # first_stop is the first guard that objects, and only that.
    assert first_stop(request, ctx) == (stopped[0][1] if stopped else None)
    if not request.from_address:
        return Outcome("ignored", NO_SENDER, ", ".join(request.defects[:3]))
    if stopped:
        name, reason = stopped[0]
        # Reasons reach the log and the settings page: one short line.
        assert reason and "\n" not in reason and len(reason) <= 120, reason
        return Outcome("ignored", name, reason)
    intent = read_intent(request.new_text, request.subject, "all")
    assert (intent.invoice is not None) == (intent.kind == "invoice")
    if intent.invoice is not None:
        assert 0 <= intent.invoice < 10**9
    return Outcome("reply", intent.kind if intent.understood else DEFAULT)


def corpus() -> list[Path]:
    """CPython's files, then ours; raises when Debian's test suite package is missing."""
    if not CPYTHON_MAIL.is_dir():
        raise FileNotFoundError(
            f"{CPYTHON_MAIL} is missing: install Debian's libpython3.11-testsuite "
            "(scripts/system-packages)"
        )
    return sorted(p for p in CPYTHON_MAIL.iterdir() if p.is_file()) + own_samples()


def own_samples() -> list[Path]:
    return sorted(OWN_MAIL.glob("*.eml"))


def as_relayed(raw: bytes) -> tuple[bytes, str]:
    """The message as SMTP delivers it: CRLF line endings, and an envelope sender."""
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return crlf, parse(crlf).from_address or "relay@mx.example"


def from_customer(raw: bytes, address: str) -> bytes:
    """``raw`` sent by a known customer: their From, and a Message-ID of its own (or the bot
    would rightly take it for the same message again)."""
    raw = re.sub(rb"(?im)^From:.*$", f"From: Client <{address}>".encode(), raw, count=1)
    return re.sub(rb"(?im)^(Message-ID:\s*<?)", rb"\1customer-", raw, count=1)


def deliveries(customer: str) -> list[tuple[str, bytes, str]]:
    """``(name, raw, envelope sender)`` for the running bot: CPython's messages from a
    stranger, then each of our samples as written (a stranger) and from ``customer``.

    CPython's images and sounds are no mail: SMTP itself refuses their over-long lines
    (500, RFC 5321 section 4.5.3.1.6) before the bot would see them.
    """
    sent = [
        (path.name, path.read_bytes(), STRANGER)
        for path in corpus()
        if path.parent == CPYTHON_MAIL and path.name.startswith("msg_")
    ]
    for path in own_samples():
        raw = path.read_bytes()
        sent.append((path.name, raw, STRANGER))
        sent.append((f"{path.name} from a customer", from_customer(raw, customer), customer))
    return [(name, re.sub(rb"\r?\n", b"\r\n", raw), sender) for name, raw, sender in sent]


__all__ = [
    "CPYTHON_MAIL",
    "CTX",
    "DEFAULT",
    "NO_SENDER",
    "OWN_MAIL",
    "STRANGER",
    "Outcome",
    "as_relayed",
    "corpus",
    "decide",
    "deliveries",
    "from_customer",
    "own_samples",
]
