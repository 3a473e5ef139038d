"""The bot stays silent for auto-replies, bounces, lists, itself and (optionally) forgeries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from bot import guards
from bot.compose import compose_reply
from bot.guards import GUARDS, Guard, GuardContext, first_stop
from bot.intent import Intent
from bot.mailparse import Request, parse
from kashflow.models import CompanyDetails, Customer, Invoice

MAIL = Path(__file__).parent / "data" / "mail"
CTX = GuardContext(request_address="invoices@northwind.example", our_domain="bot.northwind.example")
HUMAN_REQUESTS = [
    "outlook-quoted-reply.eml",
    "gmail-reply.eml",
    "apple-mail-reply.eml",
    "thunderbird-reply.eml",
    "iphone-reply.eml",
    "html-only.eml",
    "base64-body.eml",
    "windows-1252.eml",
    "iso-2022-jp.eml",
    "invoice-number-request.eml",
    "unpaid-request.eml",
    "spoofed-reply-to.eml",
]


def request(
    name: str = "gmail-reply.eml", *, headers: str = "", envelope: str | None = None
) -> Request:
    """A sample request, with extra header lines put on top as a relay would add them."""
    raw = (MAIL / name).read_bytes()
    return parse(headers.encode() + raw, envelope_sender=envelope)


@pytest.mark.parametrize("name", HUMAN_REQUESTS)
def test_requests_from_people_pass_every_guard(name: str) -> None:
    assert first_stop(request(name, envelope="someone@example.com"), CTX) is None


# guard -> a normal request changed in the one way that guard must catch
CASES: list[tuple[Guard, Callable[[], Request]]] = [
    (guards.null_reverse_path, lambda: request(envelope="")),
    (guards.null_reverse_path, lambda: request(headers="Return-Path: <>\n")),
    (guards.auto_submitted, lambda: request(headers="Auto-Submitted: auto-replied\n")),
    (guards.auto_submitted, lambda: request(headers="Auto-Submitted: Auto-Generated\n")),
    (guards.auto_submitted, lambda: request(headers="Auto-Submitted: auto-notified; x=1\n")),
    (guards.bulk_precedence, lambda: request(headers="Precedence: bulk\n")),
    (guards.bulk_precedence, lambda: request(headers="Precedence: list\n")),
    (guards.bulk_precedence, lambda: request(headers="Precedence: JUNK\n")),
    (guards.mailing_list, lambda: request(headers="List-Id: <members.lists.example>\n")),
    (guards.mailing_list, lambda: request(headers="List-Unsubscribe: <mailto:u@l.example>\n")),
    (guards.role_sender, lambda: request(headers="From: MAILER-DAEMON@mx.example\n")),
    (guards.role_sender, lambda: request(headers="From: Postmaster <postmaster@x.example>\n")),
    (guards.role_sender, lambda: request(headers="From: NoReply@x.example\n")),
    (guards.role_sender, lambda: request(headers="From: no-reply@x.example\n")),
    (guards.role_sender, lambda: request(envelope="mailer-daemon@mx.example")),
    (guards.our_own_address, lambda: request(headers="From: Invoices@Northwind.example\n")),
    (guards.our_own_address, lambda: request(envelope="invoices@northwind.example")),
    (
        guards.references_our_message,
        lambda: request(headers="References: <1.2.3@BOT.northwind.example>\n"),
    ),
    (
        guards.references_our_message,
        lambda: request(headers="In-Reply-To: <1.2.3@bot.northwind.example>\n"),
    ),
    (
        guards.references_our_message,
        lambda: request(headers="Message-ID: <9.9@bot.northwind.example>\n"),
    ),
    (guards.autoreply_header, lambda: request(headers="X-Autoreply: yes\n")),
    (guards.autoreply_header, lambda: request(headers="X-Autorespond: vacation\n")),
    (
        guards.delivery_report,
        lambda: request(
            headers="Content-Type: multipart/report; report-type=delivery-status; boundary=b\n"
        ),
    ),
]


@pytest.mark.parametrize(
    ("guard", "make"), CASES, ids=[f"{g.__name__}-{i}" for i, (g, _) in enumerate(CASES)]
)
def test_each_guard_stops_its_case_and_only_that(guard: Guard, make: Callable[[], Request]) -> None:
    stopped = make()
    assert guard(stopped, CTX) is not None
    assert first_stop(stopped, CTX) is not None
    assert guard(request(envelope="sam@okafor-cycles.example"), CTX) is None


def test_every_guard_has_a_case_and_is_listed_once() -> None:
    covered = {guard for guard, _ in CASES} | {guards.require_auth}
    assert set(GUARDS) == covered
    assert len(GUARDS) == len(set(GUARDS))


@pytest.mark.parametrize(
    ("name", "envelope", "reason"),
    [
        (
            "auto-reply.eml",
            "jane.holloway@hollyhock-bakery.example",
            "Auto-Submitted: auto-replied",
        ),
        (
            "x-autorespond.eml",
            "ops@okafor-cycles.example",
            "X-Autorespond: invoices@northwind.example",
        ),
        ("bounce-dsn.eml", "", "null reverse-path (MAIL FROM:<>)"),
        ("bounce-dsn.eml", None, "delivery or disposition report (multipart/report)"),
        ("mailing-list.eml", "members-bounces@lists.chamber.example", "Precedence: list"),
        (
            "noreply-sender.eml",
            "bounces@payments.example",
            "sender is an automatic mailbox (no-reply)",
        ),
        (
            "bot-reply-loop.eml",
            "sam@okafor-cycles.example",
            "loop: the message refers to one of the bot's own messages",
        ),
    ],
)
def test_automatic_samples_are_stopped_with_a_readable_reason(
    name: str, envelope: str | None, reason: str
) -> None:
    assert first_stop(request(name, envelope=envelope), CTX) == reason


def test_auto_submitted_no_is_a_person() -> None:
    assert first_stop(request(headers="Auto-Submitted: no\n", envelope="a@b.example"), CTX) is None


def test_precedence_other_than_bulk_list_junk_passes() -> None:
    assert guards.bulk_precedence(request(headers="Precedence: first-class\n"), CTX) is None


def test_reasons_quote_hostile_headers_short_and_on_one_line() -> None:
    stopped = request(headers="Auto-Submitted: " + "x" * 500 + "\n")
    reason = guards.auto_submitted(stopped, CTX)
    assert reason is not None and len(reason) < 100 and "\n" not in reason


def test_our_own_reply_coming_back_is_stopped() -> None:
    company = CompanyDetails(name="Northwind Traders Ltd", email="accounts@northwind.example")
    customer = Customer(id=1, code="OKA01", name="Okafor Cycles")
    invoice = Invoice(
        id=1,
        number=1234,
        customer_id=1,
        customer_name="Okafor Cycles",
        issued=date(2025, 3, 3),
        due=date(2025, 4, 2),
        net=Decimal("400"),
        vat=Decimal("80"),
        paid_amount=Decimal(0),
        paid=False,
    )
    reply = compose_reply(
        request=request(),
        to="sam@okafor-cycles.example",
        from_addr="invoices@northwind.example",
        company=company,
        customer=customer,
        invoices=[invoice],
        link_url="https://invoices.northwind.example/l/x",
        pdf=None,
        pdf_filename="invoices.pdf",
        intent=Intent("invoice", 1234),
        our_domain=CTX.our_domain,
        today=date(2025, 3, 20),
        wording=None,
    )
    echoed = parse(bytes(reply), envelope_sender="invoices@northwind.example")
    assert first_stop(echoed, CTX) is not None
    # Even stripped of the markers a responder might drop, its Message-ID gives it away.
    bare = replace(
        echoed, auto_submitted="", envelope_sender="x@y.example", from_address="x@y.example"
    )
    assert guards.references_our_message(bare, CTX) is not None


AUTH_CTX = replace(CTX, trusted_authserv_id="mx.northwind.example")


def with_auth(*results: str, sender: str = "jane@hollyhock-bakery.example") -> Request:
    headers = "".join(f"Authentication-Results: {r}\n" for r in results)
    return request(headers=f"From: Jane <{sender}>\n{headers}", envelope=sender)


@pytest.mark.parametrize(
    "result",
    [
        "mx.northwind.example; dkim=pass header.d=hollyhock-bakery.example",
        "mx.northwind.example; spf=pass smtp.mailfrom=jane@hollyhock-bakery.example",
        "mx.northwind.example; spf=pass smtp.mailfrom=hollyhock-bakery.example",
        "mx.northwind.example; dmarc=pass header.from=hollyhock-bakery.example",
        "MX.Northwind.example 1; dkim=pass (2048-bit key; unprotected)"
        " header.d=HOLLYHOCK-bakery.example",
        "mx.northwind.example; dkim=pass header.d=mail.hollyhock-bakery.example",
        "mx.northwind.example; spf=fail smtp.mailfrom=x.example;"
        " dkim=pass header.d=hollyhock-bakery.example",
    ],
)
def test_require_auth_accepts_an_aligned_pass(result: str) -> None:
    assert guards.require_auth(with_auth(result), AUTH_CTX) is None
    assert first_stop(with_auth(result), AUTH_CTX) is None


@pytest.mark.parametrize(
    "results",
    [
        (),
        ("mx.northwind.example; dkim=fail header.d=hollyhock-bakery.example",),
        ("mx.northwind.example; dkim=pass header.d=mallory.example",),
        ("mx.northwind.example; spf=pass smtp.mailfrom=mallory.example",),
        ("mx.northwind.example; dkim=pass header.d=example",),
        ("mx.mallory.example; dkim=pass header.d=hollyhock-bakery.example",),
        ("mx.northwind.example; spf=softfail smtp.mailfrom=hollyhock-bakery.example",),
        ("mx.northwind.example; dmarc=pass header.from=mallory.example",),
        ("mx.northwind.example; none",),
    ],
)
def test_require_auth_stops_what_is_not_proven(results: tuple[str, ...]) -> None:
    reason = guards.require_auth(with_auth(*results), AUTH_CTX)
    assert reason == "unauthenticated: no aligned pass from mx.northwind.example"


def test_require_auth_is_off_without_a_trusted_server() -> None:
    assert guards.require_auth(with_auth(), CTX) is None


def test_outlook_sample_is_authenticated_by_our_server() -> None:
    sample = request("outlook-quoted-reply.eml", envelope="jane.holloway@hollyhock-bakery.example")
    assert first_stop(sample, AUTH_CTX) is None
