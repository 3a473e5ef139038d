"""Real-world mail the bot never saw before: CPython's email test corpus and our own samples.

Every file (see ``tests/support/mail_corpus.py``) goes through the bot's reading and
deciding steps — parse, guards, intent — and must end in the one outcome pinned for it
below: a reply with the scope it asks for, or silence by the one named rule. Delivered as
SMTP delivers it, each decides the same (one exception, explained). Then every message goes
through the running bot over SMTP (KashFlow and the relay included), as written and, for
our samples, from a real customer: each is settled once, exactly as pinned — which reply
went out and why, or which rule kept the bot silent. How long the reading takes is
``benchmarks/mail_corpus.py``'s business.
"""

from __future__ import annotations

from collections import Counter

from bot.guards import GuardContext
from bot.pipeline import Ignored, Replied
from bot.worker import Settled
from tests.support.bot import ACME, MakeRig
from tests.support.mail_corpus import CTX, as_relayed, corpus, decide, deliveries

Decided = tuple[str, str]
Seen = tuple[str, str]

#: A reply to a message that asks for nothing in particular: the default scope.
ASKS_NOTHING: Decided = ("reply", "default")
#: Nobody to answer: no readable From address (see bot/pipeline.py ``read``).
NO_SENDER: Decided = ("ignored", "no_sender")
#: CPython keeps images and sounds beside its messages: no mail, nobody to answer.
NOT_MAIL = (
    "python.bmp", "python.exr", "python.gif", "python.jpg", "python.pbm", "python.pgm",
    "python.png", "python.ppm", "python.ras", "python.sgi", "python.tiff", "python.webp",
    "python.xbm", "sndhdr.aifc", "sndhdr.aiff", "sndhdr.au", "sndhdr.wav",
)  # fmt: skip

#: Each file's outcome read from disk: ``("reply", scope)`` or ``("ignored", rule)``.
OFFLINE: dict[str, Decided] = {
    "msg_01.txt": ASKS_NOTHING,
    "msg_02.txt": ("ignored", "role_sender"),
    "msg_03.txt": ASKS_NOTHING,
    "msg_04.txt": ASKS_NOTHING,
    "msg_05.txt": NO_SENDER,
    "msg_06.txt": ASKS_NOTHING,
    "msg_07.txt": ASKS_NOTHING,
    "msg_08.txt": ASKS_NOTHING,
    "msg_09.txt": ASKS_NOTHING,
    "msg_10.txt": ASKS_NOTHING,
    "msg_11.txt": NO_SENDER,
    "msg_12.txt": ASKS_NOTHING,
    "msg_12a.txt": ASKS_NOTHING,
    "msg_13.txt": ASKS_NOTHING,
    "msg_14.txt": ASKS_NOTHING,
    "msg_15.txt": ASKS_NOTHING,
    "msg_16.txt": ("ignored", "null_reverse_path"),
    "msg_17.txt": ASKS_NOTHING,
    "msg_18.txt": NO_SENDER,
    "msg_19.txt": NO_SENDER,
    "msg_20.txt": ASKS_NOTHING,
    "msg_21.txt": ASKS_NOTHING,
    "msg_22.txt": ASKS_NOTHING,
    "msg_23.txt": ASKS_NOTHING,
    "msg_24.txt": ASKS_NOTHING,
    "msg_25.txt": ("ignored", "delivery_report"),
    "msg_26.txt": ASKS_NOTHING,
    "msg_27.txt": ASKS_NOTHING,
    "msg_28.txt": ASKS_NOTHING,
    "msg_29.txt": ASKS_NOTHING,
    "msg_30.txt": ASKS_NOTHING,
    "msg_31.txt": ASKS_NOTHING,
    "msg_32.txt": ("ignored", "bulk_precedence"),
    "msg_33.txt": ("ignored", "bulk_precedence"),
    "msg_34.txt": ASKS_NOTHING,
    "msg_35.txt": ASKS_NOTHING,
    "msg_36.txt": ASKS_NOTHING,
    "msg_37.txt": NO_SENDER,
    "msg_38.txt": NO_SENDER,
    "msg_39.txt": NO_SENDER,
    "msg_40.txt": NO_SENDER,
    "msg_41.txt": ASKS_NOTHING,
    "msg_42.txt": ASKS_NOTHING,
    "msg_43.txt": NO_SENDER,
    "msg_44.txt": ASKS_NOTHING,
    "msg_45.txt": ASKS_NOTHING,
    "msg_46.txt": ASKS_NOTHING,
    "apple-mail-reply.eml": ("reply", "all"),
    "auto-reply.eml": ("ignored", "auto_submitted"),
    "base64-body.eml": ("reply", "all"),
    "bot-reply-loop.eml": ("ignored", "reply_without_request"),
    "bounce-dsn.eml": ("ignored", "delivery_report"),
    "gmail-reply.eml": ("reply", "invoice"),
    "html-only.eml": ("reply", "invoice"),
    "invoice-number-request.eml": ("reply", "invoice"),
    "iphone-reply.eml": ("reply", "all"),
    "iso-2022-jp.eml": ("reply", "invoice"),
    "latin1-labelled-cp1252.eml": ("reply", "unpaid"),
    "mailing-list.eml": ("ignored", "bulk_precedence"),
    "malformed-headers.eml": NO_SENDER,
    "noreply-sender.eml": ("ignored", "role_sender"),
    "outlook-french-reply.eml": ("reply", "invoice"),
    "outlook-quoted-reply.eml": ("reply", "unpaid"),
    "reply-to-bot-reply.eml": ("reply", "unpaid"),
    "spoofed-reply-to.eml": ("reply", "all"),
    "subject-only.eml": ("reply", "unpaid"),
    "thunderbird-reply.eml": ("reply", "invoice"),
    "unpaid-request.eml": ("reply", "unpaid"),
    "windows-1252.eml": ("reply", "unpaid"),
    "x-autorespond.eml": ("ignored", "autoreply_header"),
}
OFFLINE.update(dict.fromkeys(NOT_MAIL, NO_SENDER))

#: Delivered as SMTP delivers it (CRLF, an envelope sender), each message decides as
#: stored, but one: ``Return-Path: <>`` speaks for a missing envelope only, and with an
#: envelope the delivery report inside it is what keeps the bot silent.
RELAYED: dict[str, Decided] = {**OFFLINE, "msg_16.txt": ("ignored", "delivery_report")}


def replied(*parts: str) -> Seen:
    """A reply as the activity log records it (the recipient, always ACME, left out)."""
    return ("replied", "; ".join(parts))


def ignored(reason: str) -> Seen:
    return ("ignored", reason)


UNKNOWN = ignored("unknown sender: no KashFlow customer has this address")
DUPLICATE = ignored("duplicate: a message with this Message-ID was already received")
NO_FROM = ignored("no readable sender address (no readable From address)")
ALL = "all: 220 invoices"
UNPAID = "unpaid: 7 invoices"
ENGLISH = "written in English"

#: Each delivery through the running bot (default scope "all"): CPython's messages and our
#: samples from a stranger, then our samples from ACME's address with a Message-ID of their
#: own. CPython reuses some Message-IDs (msg_03, 14, 20 and 29 are msg_01's, msg_44 is
#: msg_04's), and the invoice numbers our samples ask for are not ACME's.
RUNNING: dict[str, Seen] = {
    "msg_01.txt": UNKNOWN,
    "msg_02.txt": ignored("sender is an automatic mailbox (ppp-request)"),
    "msg_03.txt": DUPLICATE,
    "msg_04.txt": UNKNOWN,
    "msg_05.txt": NO_FROM,
    "msg_06.txt": UNKNOWN,
    "msg_07.txt": UNKNOWN,
    "msg_08.txt": UNKNOWN,
    "msg_09.txt": UNKNOWN,
    "msg_10.txt": UNKNOWN,
    "msg_11.txt": NO_FROM,
    "msg_12.txt": UNKNOWN,
    "msg_12a.txt": UNKNOWN,
    "msg_13.txt": UNKNOWN,
    "msg_14.txt": DUPLICATE,
    "msg_15.txt": UNKNOWN,
    "msg_16.txt": ignored("delivery or disposition report (multipart/report)"),
    "msg_17.txt": UNKNOWN,
    "msg_18.txt": NO_FROM,
    "msg_19.txt": ignored(
        "no readable sender address (MissingHeaderBodySeparatorDefect, no readable From address)"
    ),
    "msg_20.txt": DUPLICATE,
    "msg_21.txt": UNKNOWN,
    "msg_22.txt": UNKNOWN,
    "msg_23.txt": UNKNOWN,
    "msg_24.txt": UNKNOWN,
    "msg_25.txt": ignored("delivery or disposition report (multipart/report)"),
    "msg_26.txt": UNKNOWN,
    "msg_27.txt": UNKNOWN,
    "msg_28.txt": UNKNOWN,
    "msg_29.txt": DUPLICATE,
    "msg_30.txt": UNKNOWN,
    "msg_31.txt": UNKNOWN,
    "msg_32.txt": ignored("Precedence: bulk"),
    "msg_33.txt": ignored("Precedence: bulk"),
    "msg_34.txt": UNKNOWN,
    "msg_35.txt": UNKNOWN,
    "msg_36.txt": UNKNOWN,
    "msg_37.txt": NO_FROM,
    "msg_38.txt": ignored(
        "no readable sender address (CloseBoundaryNotFoundDefect,"
        " MissingHeaderBodySeparatorDefect, no readable From address)"
    ),
    "msg_39.txt": ignored(
        "no readable sender address (StartBoundaryNotFoundDefect, no readable From address)"
    ),
    "msg_40.txt": NO_FROM,
    "msg_41.txt": UNKNOWN,
    "msg_42.txt": UNKNOWN,
    "msg_43.txt": NO_FROM,
    "msg_44.txt": DUPLICATE,
    "msg_45.txt": UNKNOWN,
    "msg_46.txt": UNKNOWN,
    "apple-mail-reply.eml": UNKNOWN,
    "apple-mail-reply.eml from a customer": replied(ALL, ENGLISH),
    "auto-reply.eml": ignored("Auto-Submitted: auto-replied"),
    "auto-reply.eml from a customer": ignored("Auto-Submitted: auto-replied"),
    "base64-body.eml": UNKNOWN,
    "base64-body.eml from a customer": replied(ALL, ENGLISH),
    "bot-reply-loop.eml": ignored("a reply to the bot's message that asks for nothing"),
    "bot-reply-loop.eml from a customer": ignored(
        "a reply to the bot's message that asks for nothing"
    ),
    "bounce-dsn.eml": ignored("delivery or disposition report (multipart/report)"),
    "bounce-dsn.eml from a customer": ignored("delivery or disposition report (multipart/report)"),
    "gmail-reply.eml": UNKNOWN,
    "gmail-reply.eml from a customer": replied(ALL, "not found for them: 1234", ENGLISH),
    "html-only.eml": UNKNOWN,
    "html-only.eml from a customer": replied(ALL, "not found for them: 1312", ENGLISH),
    "invoice-number-request.eml": UNKNOWN,
    "invoice-number-request.eml from a customer": replied(ALL, "not found for them: 1290", ENGLISH),
    "iphone-reply.eml": UNKNOWN,
    "iphone-reply.eml from a customer": replied(ALL, ENGLISH),
    "iso-2022-jp.eml": UNKNOWN,
    "iso-2022-jp.eml from a customer": replied(ALL, "not found for them: 1401", ENGLISH),
    "latin1-labelled-cp1252.eml": UNKNOWN,
    "latin1-labelled-cp1252.eml from a customer": replied(UNPAID, ENGLISH),
    "mailing-list.eml": ignored("Precedence: list"),
    "mailing-list.eml from a customer": ignored("Precedence: list"),
    "malformed-headers.eml": ignored(
        "no readable sender address (InvalidBase64PaddingDefect, no readable From address,"
        " unknown charset 'x-no-such-charset')"
    ),
    "malformed-headers.eml from a customer": replied(ALL, "not found for them: 77", ENGLISH),
    "noreply-sender.eml": ignored("sender is an automatic mailbox (no-reply)"),
    "noreply-sender.eml from a customer": replied(ALL, "not found for them: 1234", ENGLISH),
    "outlook-french-reply.eml": UNKNOWN,
    "outlook-french-reply.eml from a customer": replied(
        ALL, "not found for them: 1234", "written in French"
    ),
    "outlook-quoted-reply.eml": UNKNOWN,
    "outlook-quoted-reply.eml from a customer": replied(UNPAID, ENGLISH),
    "reply-to-bot-reply.eml": UNKNOWN,
    "reply-to-bot-reply.eml from a customer": replied(UNPAID, ENGLISH),
    "spoofed-reply-to.eml": UNKNOWN,
    "spoofed-reply-to.eml from a customer": replied(ALL, ENGLISH),
    "subject-only.eml": UNKNOWN,
    "subject-only.eml from a customer": replied(UNPAID, ENGLISH),
    "thunderbird-reply.eml": UNKNOWN,
    "thunderbird-reply.eml from a customer": replied(ALL, "not found for them: 1250", ENGLISH),
    "unpaid-request.eml": UNKNOWN,
    "unpaid-request.eml from a customer": replied(UNPAID, ENGLISH),
    "windows-1252.eml": UNKNOWN,
    "windows-1252.eml from a customer": replied(UNPAID, ENGLISH),
    "x-autorespond.eml": ignored("X-Autorespond: invoices@northwind.example"),
    "x-autorespond.eml from a customer": ignored("X-Autorespond: invoices@northwind.example"),
}


def test_every_message_ends_in_its_one_pinned_outcome() -> None:
    files = corpus()
    outcomes = {path.name: decide(path.read_bytes()).key for path in files}
    assert len(outcomes) == len(files)
    assert outcomes == OFFLINE


def test_delivered_over_smtp_each_message_decides_the_same_but_one() -> None:
    outcomes = {}
    for path in corpus():
        raw, envelope = as_relayed(path.read_bytes())
        outcomes[path.name] = decide(raw, envelope=envelope).key
    assert outcomes == RELAYED


def test_with_authentication_required_only_what_our_server_proved_gets_a_reply() -> None:
    strict = GuardContext(
        request_address=CTX.request_address,
        our_domain=CTX.our_domain,
        trusted_authserv_id="mx.northwind.example",
    )
    outcomes = {}
    for path in corpus():
        raw, envelope = as_relayed(path.read_bytes())
        outcomes[path.name] = decide(raw, strict, envelope=envelope).key
    # Every would-be reply is now unauthenticated, but the one sample carrying our
    # receiving server's DKIM pass for its From domain; the machines stay silent as before.
    expected = {
        name: ("ignored", "require_auth") if action == "reply" else (action, rule)
        for name, (action, rule) in RELAYED.items()
    }
    expected["outlook-quoted-reply.eml"] = ("reply", "unpaid")
    assert outcomes == expected


def test_mail_with_nothing_in_it_is_still_decided() -> None:
    for raw in (b"", b"\r\n", b"From: \r\n\r\n", b"\x00" * 1000):
        assert decide(raw).key == NO_SENDER, raw[:20]
    assert decide(b"From: a@b.example\r\n\r\n").key == ASKS_NOTHING


def seen(settled: Settled) -> Seen:
    outcome = settled.outcome
    if isinstance(outcome, Replied):
        return replied(outcome.detail.replace(f" sent to {ACME}", ""))
    if isinstance(outcome, Ignored):
        return ignored(outcome.rule)
    return (settled.state, str(outcome))


async def test_every_message_goes_through_the_running_bot_to_its_pinned_outcome(
    make_rig: MakeRig,
) -> None:
    """The whole pipeline over SMTP: each message is settled once, exactly as pinned; the
    bot never crashes and the queue never stalls."""
    rig = await make_rig(per_customer_limit=100, global_limit=1000, default_scope="all")
    sent = deliveries(ACME)
    for _, raw, sender in sent:
        await rig.send(raw, mail_from=sender)

    def finished(settled: list[Settled]) -> bool:
        return sum(s.state in ("done", "parked") for s in settled) >= len(sent)

    settled = await rig.service.worker.wait_for(finished, 300)
    final = sorted((s for s in settled if s.state in ("done", "parked")), key=lambda s: s.spool_id)
    # Spool ids grow with arrival, and each message was sent once it had been accepted.
    assert len({s.spool_id for s in final}) == len(final) == len(sent)
    outcomes = {name: seen(s) for (name, _, _), s in zip(sent, final, strict=True)}
    assert outcomes == RUNNING

    replies = rig.capture.messages
    assert len(replies) == Counter(action for action, _ in RUNNING.values())["replied"]
    # Every reply went to the customer's address on file, whatever the message claimed.
    assert {tuple(r.rcpt_tos) for r in replies} == {(ACME,)}
