"""The mail the bot writes, read back the way a mail client reads it."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bot.compose import MAX_LISTED, compose_reply, compose_unknown_sender, reply_subject
from bot.intent import Intent
from bot.mailparse import Request, parse
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.business import PaymentInstructions
from permalink.mail import Wording, compose_link_email
from permalink.presentation import format_money
from permalink.scopes import Scope

MAIL = Path(__file__).parent / "data" / "mail"
OUR_DOMAIN = "bot.northwind.example"
TODAY = date(2025, 3, 20)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
UNPAID = Intent(Scope("unpaid"))
COMPANY = CompanyDetails(
    name="Northwind Traders Ltd", email="accounts@northwind.example", telephone="01632 960000"
)


def invoice(number: int, **changes: Any) -> Invoice:
    fields: dict[str, Any] = {
        "id": number,
        "number": number,
        "customer_id": 7,
        "customer_name": "Okafor Cycles",
        "issued": date(2025, 3, 3),
        "due": date(2025, 4, 2),
        "net": Decimal("400.00"),
        "vat": Decimal("80.00"),
        "paid_amount": Decimal(0),
        "paid": False,
    }
    fields.update(changes)
    return Invoice(**fields)


def customer(name: str = "Okafor Cycles", contact: str = "Sam Okafor") -> Customer:
    return Customer(
        id=7, code="OKA01", name=name, contact=contact, email="sam@okafor-cycles.example"
    )


def reply(
    request: Request | None = None,
    *,
    invoices: list[Invoice] | None = None,
    pdf: bytes | None = PDF,
    intent: Intent = UNPAID,
    who: Customer | None = None,
    company: CompanyDetails = COMPANY,
    wording: Wording | None = None,
    **options: Any,
) -> EmailMessage:
    """The bot's reply as it arrives at the customer: serialised, then parsed again."""
    msg = compose_reply(
        request=request or parse((MAIL / "gmail-reply.eml").read_bytes()),
        to="sam@okafor-cycles.example",
        from_addr="Northwind Traders Ltd <invoices@northwind.example>",
        company=company,
        customer=who or customer(),
        invoices=[invoice(1234)] if invoices is None else invoices,
        link_url="https://invoices.northwind.example/l/tok?a=1&b=2",
        pdf=pdf,
        pdf_filename="Northwind Traders Ltd - invoices.pdf",
        intent=intent,
        our_domain=OUR_DOMAIN,
        today=TODAY,
        wording=wording,
        now=datetime(2025, 3, 20, 9, 30, tzinfo=UTC),
        **options,
    )
    return received(msg)


def received(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_reply_is_addressed_threaded_and_marked_automatic() -> None:
    msg = reply()
    assert msg["To"] == "sam@okafor-cycles.example"
    assert msg["From"] == "Northwind Traders Ltd <invoices@northwind.example>"
    assert msg["Reply-To"] == "accounts@northwind.example"
    assert msg["Subject"] == "Re: Invoice 1234 from Northwind Traders Ltd"
    gmail_id = "<CAJx5vQ8k3mZ0f+YpJ1Xw2r3EoTzq1bGd7Lk=w9c0xXn4FhV2sQ@mail.gmail.com>"
    assert msg["In-Reply-To"].strip() == gmail_id
    assert msg["References"].split() == [
        "<20250303091500.5B6C7D8E9@kashflow-mailer.example>",
        gmail_id,
    ]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith(f"@{OUR_DOMAIN}>")
    assert msg["Date"].datetime == datetime(2025, 3, 20, 9, 30, tzinfo=UTC)


def test_each_reply_has_its_own_message_id() -> None:
    assert reply()["Message-ID"] != reply()["Message-ID"]


def test_reply_has_text_html_and_the_pdf() -> None:
    msg = reply()
    assert msg.get_content_type() == "multipart/mixed"
    assert "Invoice 1234" in text_of(msg)
    assert "<strong>Invoice 1234</strong>" in html_of(msg)
    attachments = list(msg.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_filename() == "Northwind Traders Ltd - invoices.pdf"
    assert attachments[0].get_content() == PDF


def test_reply_leads_with_what_is_to_pay_and_lists_only_open_invoices() -> None:
    invoices = [
        invoice(1234),
        invoice(1200, issued=date(2025, 1, 3), due=date(2025, 2, 2), paid_amount=Decimal(100)),
        invoice(1100, paid=True, paid_amount=Decimal(480)),
    ]
    msg = reply(invoices=invoices, intent=Intent(Scope("all")))
    text, html = text_of(msg), html_of(msg)
    assert "Here are all your invoices from Northwind Traders Ltd." in text
    # The amount due and the next due date come before the list.
    assert text.index("To pay: £860.00") < text.index("Still to pay:")
    assert "Overdue: £380.00 on 1 invoice" in text
    assert "Next due 2 Apr 2025" in text
    assert "- Invoice 1234 [Due]: due 2 Apr 2025, to pay £480.00" in text
    assert "- Invoice 1200 [Overdue]: due 2 Feb 2025, to pay £380.00" in text
    # The paid one is counted, not listed.
    assert "Invoice 1100" not in text and "Invoice 1100" not in html
    assert "Plus 1 paid invoice, on the page." in text
    for cell in ("3 Jan 2025", "£380.00", ">Overdue</span>", "£860.00"):
        assert cell in html
    # One button to the link; the badges wear the page's colours.
    assert html.count('href="https://invoices.northwind.example/l/tok?a=1&amp;b=2"') == 1
    assert "color:#8f1d1d;background:#fbe6e6;" in html
    assert "https://invoices.northwind.example/l/tok?a=1&b=2" in text
    assert "attached as one PDF (Northwind Traders Ltd - invoices.pdf)" in text


def test_credit_notes_read_as_credit_and_are_taken_off_what_is_to_pay() -> None:
    credit = invoice(1243, net=Decimal("-135.00"), vat=Decimal("-27.00"))
    msg = reply(invoices=[invoice(1234), credit], intent=Intent(Scope("unpaid")))
    text, html = text_of(msg), html_of(msg)
    assert "- Credit note 1243 [Credit]: credit £162.00" in text
    assert "Invoices £480.00 − credit £162.00 = to pay £318.00" in text
    assert "To pay: £318.00" in text
    assert "[Paid]" not in text
    assert ">Credit</span>" in html


def test_reply_says_how_to_pay() -> None:
    payment = PaymentInstructions(
        bank_name="Barclays Bank UK PLC",
        account_name="Northwind Traders Ltd",
        sort_code="20-00-00",
        account_number="55779911",
        reference="customer",
        pay_url="https://pay.northwind.example/",
    )
    msg = reply(payment=payment)
    text, html = text_of(msg), html_of(msg)
    for line in (
        "Bank: Barclays Bank UK PLC",
        "Sort code: 20-00-00",
        "Account number: 55779911",
        "Reference: OKA01",
        "Pay online: https://pay.northwind.example/",
    ):
        assert line in text
    assert 'href="https://pay.northwind.example/"' in html


def test_reply_speaks_the_language_of_the_request_then_the_client_then_the_default() -> None:
    german = reply(language="de", customer_language="fr", default_language="es")
    french = reply(customer_language="fr", default_language="es")
    spanish = reply(default_language="es")
    assert "Zu zahlen: 480,00\xa0£" in text_of(german)
    assert '<html lang="de">' in html_of(german)
    assert "À payer : 480,00\xa0£GB" in text_of(french)
    assert "A pagar: 480,00\xa0GBP" in text_of(spanish)
    assert "Rechnung 1234" in text_of(german)


def test_mixed_currencies_are_totalled_apart() -> None:
    invoices = [invoice(1), invoice(2, currency="EUR"), invoice(3, currency="USD")]
    assert "To pay: £480.00 + €480.00 + US$480.00" in text_of(reply(invoices=invoices))


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (Decimal("1234.5"), "GBP", "£1,234.50"),
        (Decimal("80"), "eur", "€80.00"),
        (Decimal("12"), "USD", "US$12.00"),
        (Decimal("-45.678"), "GBP", "-£45.68"),
        (Decimal("0"), "", "£0.00"),
    ],
)
def test_money_honours_the_currency(amount: Decimal, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


def test_money_is_written_as_the_clients_locale_writes_it() -> None:
    assert format_money(Decimal("1002"), "EUR", "de") == "1.002,00\xa0€"
    assert format_money(Decimal("1002"), "EUR", "nl") == "€\xa01.002,00"
    assert format_money(Decimal("1002"), "GBP", "cy") == "£1,002.00"


def test_too_large_pdf_is_left_out_and_the_link_does_the_work() -> None:
    msg = reply(invoices=[invoice(1), invoice(2)], pdf=None)
    assert list(msg.iter_attachments()) == []
    assert "The PDF was too large to attach to this email; the link above lets you download" in (
        " ".join(text_of(msg).split())
    )


def test_html_escapes_what_comes_from_kashflow() -> None:
    hostile = customer(name="<script>alert(1)</script>", contact="")
    company = CompanyDetails(name='Evil & "Co" <img src=x>', email="a@b.example")
    html = html_of(reply(who=hostile, company=company))
    assert "<script>" not in html and "<img src=x>" not in html
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert "Evil &amp; &#34;Co&#34; &lt;img src=x&gt;" in html
    # The text part is plain text: the name reads as written.
    assert "Hello <script>alert(1)</script>," in text_of(reply(who=hostile, company=company))


def test_wording_overrides_are_used_and_escaped() -> None:
    wording = Wording(
        greeting="Dear friend,",
        intro="As asked, <b>your</b> invoices:",
        sign_off="Thanks,\nThe accounts team",
    )
    msg = reply(wording=wording)
    text, html = text_of(msg), html_of(msg)
    assert text.startswith("Dear friend,\n\nAs asked, <b>your</b> invoices:\n")
    assert "Thanks,\nThe accounts team\n" in text
    assert "As asked, &lt;b&gt;your&lt;/b&gt; invoices:" in html
    assert "Thanks,<br>\nThe accounts team" in html


def test_default_wording_greets_the_contact() -> None:
    text = text_of(reply())
    assert text.startswith("Hello Sam Okafor,\n\nHere are your unpaid invoices from Northwind")
    assert "Kind regards,\nNorthwind Traders Ltd" in text


def test_not_understood_request_gets_a_hint() -> None:
    text = " ".join(text_of(reply(intent=Intent(Scope("unpaid"), understood=False))).split())
    assert (
        'You can also ask for "all invoices", "unpaid invoices", a statement, or invoices by'
        ' number, such as "invoice 1234" or "invoices 1241 to 1248".'
    ) in text
    assert "You can also ask" not in text_of(reply())


@pytest.mark.parametrize(
    ("intent", "sentence"),
    [
        (Intent(Scope("invoice", 999)), "We could not find invoice 999 on your account"),
        (
            Intent(Scope("unpaid")),
            "You have no unpaid invoices with Northwind Traders Ltd. Thank you!",
        ),
        (
            Intent(Scope("all")),
            "There are no invoices on your account with Northwind Traders Ltd yet.",
        ),
    ],
)
def test_empty_result_says_so_and_attaches_nothing(intent: Intent, sentence: str) -> None:
    msg = reply(invoices=[], intent=intent)
    assert sentence in text_of(msg)
    assert list(msg.iter_attachments()) == []
    assert "Total outstanding" not in text_of(msg)


def test_a_set_of_invoices_is_named_in_the_intro_and_the_link_lead() -> None:
    invoices = [invoice(1248), invoice(1242), invoice(1241)]
    text = " ".join(
        text_of(
            reply(invoices=invoices, intent=Intent(Scope("invoice", [1241, 1242, 1248])))
        ).split()
    )
    assert "Here are invoices 1241, 1242 and 1248 from Northwind Traders Ltd." in text
    assert "This link always shows these invoices as they stand" in text
    assert "We could not find" not in text


@pytest.mark.parametrize(
    ("intent", "sentence"),
    [
        (
            Intent(Scope("invoice", [1241, 1242]), not_found=(1299,)),
            "We could not find invoice 1299 on your account, so it is not included.",
        ),
        (
            Intent(Scope("invoice", 1241), not_found=(1298, 1299)),
            "We could not find invoices 1298 and 1299 on your account, so they are not included.",
        ),
        (
            Intent(Scope("unpaid"), not_found=(1299,)),
            "We could not find invoice 1299 on your account, so here is what we send by default.",
        ),
    ],
)
def test_invoices_not_found_for_them_are_named_without_saying_whose(
    intent: Intent, sentence: str
) -> None:
    text = " ".join(text_of(reply(invoices=[invoice(1241), invoice(1242)], intent=intent)).split())
    assert sentence in text
    # The hint is for requests that were not understood; this one was.
    assert "We were not sure" not in text


def test_long_lists_are_cut_and_point_to_the_link() -> None:
    invoices = [invoice(n) for n in range(1, MAX_LISTED + 11)]
    text = text_of(reply(invoices=invoices, intent=Intent(Scope("all"))))
    assert f"Invoice {MAX_LISTED} " in text and f"Invoice {MAX_LISTED + 1} " not in text
    assert "... and 10 more on the page." in text
    assert f"To pay: £{480 * (MAX_LISTED + 10):,}.00" in text


def test_reply_to_of_the_request_is_never_used() -> None:
    request = parse((MAIL / "spoofed-reply-to.eml").read_bytes())
    assert request.reply_to == "jane.h0lloway@mallory.example"
    msg = compose_reply(
        request=request,
        to="jane.holloway@hollyhock-bakery.example",
        from_addr="invoices@northwind.example",
        company=COMPANY,
        customer=customer("Hollyhock Bakery Ltd", "Jane Holloway"),
        invoices=[invoice(1)],
        link_url="https://invoices.northwind.example/l/tok",
        pdf=PDF,
        pdf_filename="invoices.pdf",
        intent=Intent(Scope("all")),
        our_domain=OUR_DOMAIN,
        today=TODAY,
        wording=None,
    )
    assert b"jane.h0lloway" not in bytes(msg)
    got = received(msg)
    assert got["To"] == "jane.holloway@hollyhock-bakery.example"
    assert got["Reply-To"] == "accounts@northwind.example"


@pytest.mark.parametrize(
    ("original", "subject"),
    [
        ("Invoice 1234", "Re: Invoice 1234"),
        ("Re: Invoice 1234", "Re: Invoice 1234"),
        ("RE: Re: re:Invoice 1234", "Re: Invoice 1234"),
        ("AW: Re[2]: Rechnung 5", "Re: Rechnung 5"),
        ("Return of goods", "Re: Return of goods"),
        ("", ""),
    ],
)
def test_subject_gets_one_re(original: str, subject: str) -> None:
    assert reply_subject(original) == subject


def test_reply_without_subject_names_the_company() -> None:
    request = parse(b"From: a@b.example\nMessage-ID: <1@b.example>\n\ninvoice 4\n")
    msg = reply(request)
    assert msg["Subject"] == "Your invoices from Northwind Traders Ltd"
    assert msg["References"] == "<1@b.example>"


def test_request_without_message_id_is_not_threaded() -> None:
    msg = reply(parse(b"From: a@b.example\nSubject: unpaid\n\nhi\n"))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_non_ascii_names_survive_the_round_trip() -> None:
    company = CompanyDetails(name="Société Générale de Café", email="compta@cafe.example")
    msg = reply(who=customer("山田商店", "山田 花子"), company=company, invoices=[invoice(1)])
    text = text_of(msg)
    assert "Hello 山田 花子," in text
    assert "Here are your unpaid invoices from Société Générale de Café." in text
    assert "山田 花子" in html_of(msg)


def test_unknown_sender_gets_a_neutral_answer_that_echoes_nothing() -> None:
    request = parse(
        b"From: stranger@spam.example\nSubject: BUY CHEAP PILLS http://spam.example\n"
        b"Message-ID: <abc@spam.example>\n\nvisit http://spam.example\n"
    )
    msg = received(
        compose_unknown_sender(
            request=request,
            to="stranger@spam.example",
            from_addr="invoices@northwind.example",
            company=COMPANY,
            our_domain=OUR_DOMAIN,
        )
    )
    assert msg["To"] == "stranger@spam.example"
    assert msg["Subject"] == "Your message to Northwind Traders Ltd"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"].strip() == "<abc@spam.example>"
    text = " ".join(text_of(msg).split())
    assert "We could not find an account with Northwind Traders Ltd" in text
    assert "please contact accounts@northwind.example" in text
    assert b"PILLS" not in bytes(msg) and b"http://spam" not in bytes(msg)
    assert "please contact accounts@northwind.example" in html_of(msg)
    assert list(msg.iter_attachments()) == []


def test_link_email_carries_the_link_to_the_address_on_file() -> None:
    msg = received(
        compose_link_email(
            to="sam@okafor-cycles.example",
            from_addr="Northwind Traders Ltd <invoices@northwind.example>",
            company=COMPANY,
            customer=customer(),
            link_url="https://invoices.northwind.example/l/tok?x=1&y=2",
            scope=Scope("invoice", 1234),
            expires=date(2025, 6, 30),
            our_domain=OUR_DOMAIN,
            wording=Wording(sign_off="Best,\nPat <accounts>"),
        )
    )
    assert msg["To"] == "sam@okafor-cycles.example"
    assert msg["Subject"] == "Invoice 1234 from Northwind Traders Ltd"
    assert msg["Auto-Submitted"] is None  # a person chose to send it
    assert msg["Message-ID"].endswith(f"@{OUR_DOMAIN}>")
    text, html = text_of(msg), html_of(msg)
    assert "Northwind Traders Ltd has sent you a link to invoice 1234." in text
    assert "https://invoices.northwind.example/l/tok?x=1&y=2" in text
    assert "The link works until 30 Jun 2025." in text
    assert 'href="https://invoices.northwind.example/l/tok?x=1&amp;y=2"' in html
    assert "Best,<br>\nPat &lt;accounts&gt;" in html
    assert ">Open the invoice</a>" in html


def test_link_email_for_all_invoices_without_expiry() -> None:
    msg = received(
        compose_link_email(
            to="sam@okafor-cycles.example",
            from_addr="invoices@northwind.example",
            company=COMPANY,
            customer=customer(),
            link_url="https://invoices.northwind.example/l/tok",
            scope=Scope("all"),
            our_domain=OUR_DOMAIN,
        )
    )
    assert msg["Subject"] == "Your invoices from Northwind Traders Ltd"
    text = text_of(msg)
    assert "has sent you a link to all your invoices." in text
    assert "the link keeps working" in text
