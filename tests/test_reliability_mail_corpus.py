"""Real-world mail the bot never saw before: CPython's email test corpus and our own samples.

Every file of CPython's ``test_email/data`` (Debian's libpython3.11-testsuite: messages
with broken boundaries, missing headers, odd charsets — and, in the same folder, images and
sounds that are no mail at all) and every ``tests/data/mail/*.eml`` goes through the bot's
reading and deciding steps: ``bot.mailparse.parse``, ``bot.guards.first_stop`` and
``bot.intent.read_intent``. None may raise, and each must end in exactly one outcome: a
reply would go out (with a scope), or the message is ignored by one named rule. Then every
message goes through the running bot over SMTP (KashFlow and the relay included) and must
be settled once: replied, ignored by a named rule, or parked with a reason.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from bot.guards import GUARDS, GuardContext, first_stop
from bot.intent import read_intent
from bot.mailparse import parse
from bot.pipeline import Failed, Ignored, Replied
from bot.worker import Settled
from tests.support.bot import ACME, MakeRig

CPYTHON_MAIL = Path("/usr/lib/python3.11/test/test_email/data")
OWN_MAIL = Path(__file__).parent / "data" / "mail"
CTX = GuardContext(request_address="invoices@northwind.example", our_domain="bot.northwind.example")
#: The pipeline's first rule, before any guard: nobody to answer (see bot/pipeline.py ``read``).
NO_SENDER = "no_sender"
RULES = frozenset({NO_SENDER, *(guard.__name__ for guard in GUARDS)})
#: Far beyond what any message takes (a few ms); only a pathological pattern could reach it.
HANG_GUARD_SECONDS = 2.0

#: Our own samples' outcome: a scope for a reply, a rule's name for an ignored message.
EXPECTED_OWN: dict[str, str] = {
    "apple-mail-reply.eml": "all",
    "auto-reply.eml": "auto_submitted",
    "base64-body.eml": "all",
    "bot-reply-loop.eml": "reply_without_request",
    "bounce-dsn.eml": "delivery_report",
    "gmail-reply.eml": "invoice",
    "html-only.eml": "invoice",
    "invoice-number-request.eml": "invoice",
    "iphone-reply.eml": "all",
    "iso-2022-jp.eml": "invoice",
    "latin1-labelled-cp1252.eml": "unpaid",
    "mailing-list.eml": "bulk_precedence",
    "malformed-headers.eml": NO_SENDER,
    "noreply-sender.eml": "role_sender",
    "outlook-french-reply.eml": "invoice",
    "outlook-quoted-reply.eml": "unpaid",
    # A person answering the bot's own reply: answered since the guards tell people from
    # machines by what machines do (it was silenced as a possible loop before).
    "reply-to-bot-reply.eml": "unpaid",
    "spoofed-reply-to.eml": "all",
    "subject-only.eml": "unpaid",
    "thunderbird-reply.eml": "invoice",
    "unpaid-request.eml": "unpaid",
    "windows-1252.eml": "unpaid",
    "x-autorespond.eml": "autoreply_header",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the bot would do: ``rule`` is the scope of a reply, or the rule that ignored it."""

    action: Literal["reply", "ignored"]
    rule: str
    detail: str


def decide(raw: bytes, ctx: GuardContext, *, envelope: str | None = None) -> Outcome:
    """The bot's reading and deciding steps on one message, each outcome checked whole."""
    request = parse(raw, envelope_sender=envelope)
    stopped = [(g.__name__, reason) for g in GUARDS if (reason := g(request, ctx)) is not None]
    first = first_stop(request, ctx)
    # first_stop is the first guard that objects, and only that.
    assert first == (stopped[0][1] if stopped else None)
    if not request.from_address:
        return Outcome("ignored", NO_SENDER, ", ".join(request.defects[:3]))
    if stopped:
        name, reason = stopped[0]
        assert reason and "\n" not in reason and len(reason) <= 120, reason
        return Outcome("ignored", name, reason)
    intent = read_intent(request.new_text, request.subject, "all")
    assert intent.kind in ("all", "unpaid", "invoice")
    assert (intent.invoice is not None) == (intent.kind == "invoice")
    if intent.invoice is not None:
        assert 0 <= intent.invoice < 10**9
    return Outcome("reply", intent.kind, "" if intent.understood else "default scope")


def corpus() -> list[Path]:
    if not CPYTHON_MAIL.is_dir():
        pytest.fail(
            f"{CPYTHON_MAIL} is missing: install Debian's libpython3.11-testsuite "
            "(scripts/system-packages)"
        )
    files = sorted(p for p in CPYTHON_MAIL.iterdir() if p.is_file())
    assert sum(p.name.startswith("msg_") for p in files) >= 40
    own = sorted(OWN_MAIL.glob("*.eml"))
    assert len(own) >= 20
    return files + own


def run(files: list[Path], ctx: GuardContext, *, relayed: bool) -> dict[str, Outcome]:
    """Every file's outcome; ``relayed`` delivers it as SMTP would (CRLF, an envelope)."""
    outcomes: dict[str, Outcome] = {}
    for path in files:
        raw = path.read_bytes()
        envelope = None
        if relayed:
            raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            envelope = parse(raw).from_address or "relay@mx.example"
        started = time.monotonic()
        outcome = decide(raw, ctx, envelope=envelope)
        assert time.monotonic() - started < HANG_GUARD_SECONDS, path.name
        assert outcome.action in ("reply", "ignored")
        scopes = {"all", "unpaid", "invoice"}
        assert outcome.rule in (RULES if outcome.action == "ignored" else scopes)
        outcomes[path.name] = outcome
    return outcomes


def test_every_message_ends_in_a_reply_or_one_named_rule() -> None:
    files = corpus()
    outcomes = run(files, CTX, relayed=False)

    assert len(outcomes) == len(files)
    actions = Counter(o.action for o in outcomes.values())
    assert actions["reply"] >= 40 and actions["ignored"] >= 20
    # Images and sounds in the same folder are no mail: nobody to answer.
    for name, outcome in outcomes.items():
        if not name.startswith("msg_") and not name.endswith(".eml"):
            assert outcome == Outcome("ignored", NO_SENDER, outcome.detail), name
    for name, expected in EXPECTED_OWN.items():
        assert outcomes[name].rule == expected, name


def test_delivered_over_smtp_each_message_decides_the_same() -> None:
    files = corpus()
    stored = run(files, CTX, relayed=False)
    relayed = run(files, CTX, relayed=True)

    for name, outcome in stored.items():
        if outcome.rule == "null_reverse_path":
            # Return-Path: <> speaks only when the envelope is unknown; relayed, it is known.
            assert relayed[name].action in ("reply", "ignored")
            continue
        assert (relayed[name].action, relayed[name].rule) == (outcome.action, outcome.rule), name


def test_with_authentication_required_only_what_our_server_proved_gets_a_reply() -> None:
    strict = GuardContext(
        request_address=CTX.request_address,
        our_domain=CTX.our_domain,
        trusted_authserv_id="mx.northwind.example",
    )
    outcomes = run(corpus(), strict, relayed=True)

    replies = {name for name, o in outcomes.items() if o.action == "reply"}
    # The one sample carrying our receiving server's DKIM pass for its From domain.
    assert replies == {"outlook-quoted-reply.eml"}
    assert Counter(o.rule for o in outcomes.values())["require_auth"] >= 40


def test_mail_with_nothing_in_it_is_still_decided() -> None:
    for raw in (b"", b"\r\n", b"From: \r\n\r\n", b"\x00" * 1000, b"From: a@b.example\r\n\r\n"):
        outcome = decide(raw, CTX)
        assert outcome.action in ("reply", "ignored")
    assert decide(b"From: a@b.example\r\n\r\n", CTX) == Outcome("reply", "all", "default scope")


async def test_every_message_goes_through_the_running_bot_to_one_outcome(
    make_rig: MakeRig,
) -> None:
    """The whole pipeline over SMTP: each message is settled once, as replied, ignored by a
    named rule, or parked with a reason; the bot never crashes and the queue never stalls.
    Our samples go twice: as written (strangers to KashFlow) and from a real customer."""
    rig = await make_rig(per_customer_limit=100, global_limit=1000, default_scope="all")
    deliveries: list[tuple[str, bytes, str]] = [
        (path.name, path.read_bytes(), "someone@corpus.example")
        for path in corpus()
        # The images and sounds beside the messages are no mail: SMTP refuses their
        # over-long lines (500, RFC 5321 4.5.3.1.6) before the bot would see them.
        if path.parent == CPYTHON_MAIL and path.name.startswith("msg_")
    ]
    for path in sorted(OWN_MAIL.glob("*.eml")):
        raw = path.read_bytes()
        deliveries.append((path.name, raw, "someone@corpus.example"))
        as_customer = re.sub(rb"(?im)^From:.*$", f"From: Client <{ACME}>".encode(), raw, count=1)
        # A new Message-ID, or the bot would rightly take it for the same message again.
        as_customer = re.sub(rb"(?im)^(Message-ID:\s*<)", rb"\1customer-", as_customer, count=1)
        deliveries.append((f"{path.name} from a customer", as_customer, ACME))
    for _, raw, sender in deliveries:
        await rig.send(re.sub(rb"\r?\n", b"\r\n", raw), mail_from=sender)

    def finished(settled: list[Settled]) -> bool:
        return sum(s.state in ("done", "parked") for s in settled) >= len(deliveries)

    settled = await rig.service.worker.wait_for(finished, 90)
    final = [s for s in settled if s.state in ("done", "parked")]
    assert sorted(s.spool_id for s in final) == sorted({s.spool_id for s in final})
    assert len(final) == len(deliveries)
    kinds: Counter[str] = Counter()
    for s in final:
        outcome = s.outcome
        if isinstance(outcome, Replied):
            kinds["replied"] += 1
        elif isinstance(outcome, Ignored):
            assert outcome.rule, s
            kinds["ignored"] += 1
        else:
            assert isinstance(outcome, Failed) and outcome.reason and s.state == "parked", s
            kinds["parked"] += 1
    replies = rig.capture.messages
    assert kinds["replied"] == len(replies) > 0
    # Every reply went to the customer's address on file, whatever the message claimed.
    assert {tuple(r.rcpt_tos) for r in replies} == {(ACME,)}
