"""The mail the settings pages write and preview: the relay test, and what a client gets.

Mail leaves through the core (:meth:`permalink.core.Core.send_for_account`), by the
account's own relay, under the same sender identity as the bot's replies
(:func:`permalink.mail.sender`: the business's name and its sender address). A preview is
never a sketch: it is the very message the client would get, built by the same code in
:mod:`permalink.mail` — the bot's reply with sample invoices around the accountant's
words, an emailed link, a re-issue mail — and shown part by part (:class:`MailView`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from email.message import EmailMessage
from typing import Final

from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.mail import Wording, compose_invoices_mail, message, phrases
from permalink.presentation import document_filename
from permalink.scopes import Scope

#: The client a reply preview is written to.
SAMPLE_CUSTOMER: Final = Customer(
    id=1, code="SAMPLE01", name="Alex Example Ltd", email="alex@example.com", contact="Alex Example"
)


def compose_test_email(*, to: str, from_addr: str, company_name: str, relay: str) -> EmailMessage:
    """A short message proving the relay settings work."""
    text = (
        f"This is a test message from KashFlow Permalink for {company_name}.\n\n"
        f"It was handed to the relay {relay}, so the bot's replies will go out the same way.\n"
        "Nothing needs doing; you can delete it.\n"
    )
    return message(
        to=to,
        from_addr=from_addr,
        subject=f"Test message from KashFlow Permalink ({company_name})",
        text=text,
    )


def sample_invoices(today: date) -> list[Invoice]:
    """Two invoices of the sample client, newest first: one due, one paid."""

    def invoice(number: int, days_ago: int, net: str, paid: bool) -> Invoice:
        issued = today - timedelta(days=days_ago)
        amount = Decimal(net)
        return Invoice(
            id=number,
            number=number,
            customer_id=SAMPLE_CUSTOMER.id,
            customer_name=SAMPLE_CUSTOMER.name,
            issued=issued,
            due=issued + timedelta(days=30),
            net=amount,
            vat=amount / 5,
            paid_amount=amount * Decimal("1.2") if paid else Decimal(0),
            paid=paid,
        )

    return [invoice(1042, 6, "950.00", False), invoice(1017, 62, "400.00", True)]


def reply_preview(
    wording: Wording, *, company: CompanyDetails, from_addr: str, public_base_url: str, today: date
) -> EmailMessage:
    """The bot's reply to the sample client asking for their invoices, in these words."""
    return compose_invoices_mail(
        to=f"{SAMPLE_CUSTOMER.contact} <{SAMPLE_CUSTOMER.email}>",
        from_addr=from_addr,
        subject="Re: Invoices please",
        company=company,
        customer=SAMPLE_CUSTOMER,
        invoices=sample_invoices(today),
        link_url=f"{public_base_url}/l/…",
        pdf=b"",
        pdf_filename=document_filename(company.name, SAMPLE_CUSTOMER.code, Scope("all"), today),
        kind="all",
        understood=True,
        our_domain=None,
        today=today,
        wording=wording,
    )


def wording_defaults(company_name: str) -> dict[str, str]:
    """What each wording field says when it is left empty (shown beside the field)."""
    say = phrases()
    return {
        "greeting": str(say.greeting("", SAMPLE_CUSTOMER.contact)),
        "intro": str(say.intro("", "all", None, company_name, 2)),
        "sign_off": str(say.sign_off("", company_name)),
    }


@dataclass(frozen=True, slots=True)
class MailView:
    """A message as a preview shows it: its headers, both parts and its attachments."""

    from_: str
    to: str
    subject: str
    text: str
    html: str
    attachments: tuple[str, ...]


def mail_view(msg: EmailMessage) -> MailView:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return MailView(
        from_=str(msg["From"] or ""),
        to=str(msg["To"] or ""),
        subject=str(msg["Subject"] or ""),
        text="" if text is None else str(text.get_content()),
        html="" if html is None else str(html.get_content()),
        attachments=tuple(part.get_filename() or "attachment" for part in msg.iter_attachments()),
    )


__all__ = [
    "SAMPLE_CUSTOMER",
    "MailView",
    "compose_test_email",
    "mail_view",
    "reply_preview",
    "sample_invoices",
    "wording_defaults",
]
