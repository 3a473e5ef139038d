"""Writing the bot's mail: the reply with invoices, the neutral unknown-sender reply, and the
link the accountant emails to a customer.

Each message is an ``EmailMessage`` with a plain-text part and an HTML alternative rendered
from the jinja2 templates in ``templates/mail/`` (HTML autoescaped), plus the merged PDF when
there is one. Recipients are exactly the addresses the caller passes — the worker passes the
address KashFlow has on file, never anything the request claims.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import EmailMessage
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from bot.intent import Intent, Kind
from bot.mailparse import Request
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink import TEMPLATES

#: A reply lists at most this many invoices; the link shows the rest.
MAX_LISTED = 50
#: References kept when threading: RFC 5322 §3.6.4 allows trimming the middle of a long chain.
MAX_REFERENCES = 20

_SYMBOLS = {"GBP": "£", "EUR": "€"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BADGES = {"paid": "Paid", "part-paid": "Part paid", "overdue": "Overdue", "due": "Due"}
# "Re:", "RE:", "Re[2]:", "AW:", "SV:", "Antw:" … as mail clients stack them.
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|vs)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Wording:
    """The accountant's own words for a reply; an empty field keeps the default text."""

    greeting: str = ""
    intro: str = ""
    sign_off: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One invoice as a mail shows it: every cell already formatted."""

    number: int
    issued: str
    due: str
    total: str
    outstanding: str
    status: str
    badge: str


def format_money(amount: Decimal, currency: str) -> str:
    """``£1,234.50``, ``€80.00``, ``USD 12.00``; a minus sign goes before the symbol."""
    code = (currency or "GBP").upper()
    sign = "-" if amount < 0 else ""
    figure = f"{abs(amount).quantize(Decimal('0.01')):,.2f}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{figure}" if symbol else f"{sign}{code} {figure}"


def format_date(day: date) -> str:
    """``3 Mar 2025``, the same in every locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def invoice_rows(invoices: Iterable[Invoice], today: date) -> list[InvoiceRow]:
    rows = []
    for invoice in invoices:
        status = invoice.status(today)
        rows.append(
            InvoiceRow(
                number=invoice.number,
                issued=format_date(invoice.issued),
                due=format_date(invoice.due),
                total=format_money(invoice.total, invoice.currency),
                outstanding=format_money(invoice.outstanding, invoice.currency),
                status=status,
                badge=_BADGES.get(status, status),
            )
        )
    return rows


def total_outstanding(invoices: Iterable[Invoice]) -> str:
    """The sum still owed, one figure per currency (``""`` when nothing is owed)."""
    sums: dict[str, Decimal] = {}
    for invoice in invoices:
        code = (invoice.currency or "GBP").upper()
        sums[code] = sums.get(code, Decimal(0)) + invoice.outstanding
    return " + ".join(format_money(amount, code) for code, amount in sums.items() if amount)


def reply_subject(original: str) -> str:
    """``Re: <original>`` with one prefix however many the original carried."""
    stripped = _REPLY_PREFIX.sub("", _one_line(original)).strip()
    return f"Re: {stripped}" if stripped else ""


def _one_line(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def _nl2br(value: str) -> Markup:
    """Escape, then keep the accountant's line breaks in HTML."""
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES / "mail"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nl2br"] = _nl2br
    return env


def _render(name: str, context: dict[str, Any]) -> tuple[str, str]:
    env = _environment()
    text = env.get_template(f"{name}.txt").render(context)
    html = env.get_template(f"{name}.html").render(context)
    return text, html


def _message(
    *,
    to: str,
    from_addr: str,
    subject: str,
    our_domain: str,
    now: datetime | None,
    bodies: tuple[str, str],
    reply_to: str = "",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to
    if reply_to and reply_to.strip().lower() != from_addr.strip().lower():
        msg["Reply-To"] = reply_to
    msg["Subject"] = _one_line(subject)
    msg["Date"] = email.utils.format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = email.utils.make_msgid(domain=our_domain)
    text, html = bodies
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def _thread(msg: EmailMessage, request: Request) -> None:
    # RFC 5322 §3.6.4: In-Reply-To is the parent's id; References its chain plus that id.
    if not request.message_id.startswith("<"):
        return
    chain = [*request.references, request.message_id]
    chain = list(dict.fromkeys(chain))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    msg["In-Reply-To"] = request.message_id
    msg["References"] = " ".join(chain)


def _mark_automatic(msg: EmailMessage) -> None:
    # RFC 3834 §5: say this is an automatic reply, so well-behaved responders stay quiet;
    # Exchange honours only its own header for out-of-office replies.
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"


def _phrases() -> Any:
    """The macros of ``_phrases.txt``, called from here so that they return plain strings."""
    return _environment().get_template("_phrases.txt").module


def _company_context(company: CompanyDetails) -> dict[str, Any]:
    return {
        "company_name": company.name,
        "company_email": company.email,
        "company_telephone": company.telephone,
    }


def compose_reply(
    *,
    request: Request,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    customer: Customer,
    invoices: Sequence[Invoice],
    link_url: str,
    pdf: bytes | None,
    pdf_filename: str,
    intent: Intent,
    our_domain: str,
    today: date,
    wording: Wording | None,
    now: datetime | None = None,
) -> EmailMessage:
    """The answer to a customer's request: their invoices, the permalink and the merged PDF.

    ``pdf`` is ``None`` when the merged PDF is over the size limit; the mail then says the
    link does the work. Replies by the customer go to the company's own address.
    """
    wording = wording or Wording()
    say = _phrases()
    name, count = _one_line(company.name), len(invoices)
    context = {
        **_company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.intro(wording.intro, intent.kind, intent.invoice, name, count)),
        "rows": invoice_rows(invoices[:MAX_LISTED], today),
        "more": max(0, count - MAX_LISTED),
        "total_outstanding": total_outstanding(invoices),
        "link_lead": str(say.link_lead(intent.kind)),
        "link_url": link_url,
        "attachment_note": str(say.attachment(pdf is not None, pdf_filename, count)),
        "hint": "" if intent.understood else str(say.hint()),
        "sign_off": str(say.sign_off(wording.sign_off, name)),
        "footer": str(say.footer(name, company.email, company.telephone)),
    }
    subject = reply_subject(request.subject) or f"Your invoices from {_one_line(company.name)}"
    msg = _message(
        to=to,
        from_addr=from_addr,
        subject=subject,
        our_domain=our_domain,
        now=now,
        bodies=_render("reply", context),
        reply_to=company.email,
    )
    _thread(msg, request)
    _mark_automatic(msg)
    if pdf is not None and invoices:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=pdf_filename)
    return msg


def compose_unknown_sender(
    *,
    request: Request,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    our_domain: str,
    now: datetime | None = None,
) -> EmailMessage:
    """A neutral answer to an address KashFlow does not know.

    Nothing from the request is repeated — not even its subject — because the sender may
    be forged, and an answer that echoed it would carry someone else's words to a stranger.
    """
    context = _company_context(company)
    msg = _message(
        to=to,
        from_addr=from_addr,
        subject=f"Your message to {_one_line(company.name)}",
        our_domain=our_domain,
        now=now,
        bodies=_render("unknown_sender", context),
        reply_to=company.email,
    )
    _thread(msg, request)
    _mark_automatic(msg)
    return msg


def compose_link_email(
    *,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    customer: Customer,
    link_url: str,
    kind: Kind,
    invoice: int | None = None,
    expires: date | None = None,
    our_domain: str,
    wording: Wording | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The mail that carries a permalink the accountant chose to send to a customer.

    A person asked for it to be sent, so it is not marked as automatic.
    """
    wording = wording or Wording()
    say = _phrases()
    name = _one_line(company.name)
    context = {
        **_company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.link_intro(wording.intro, kind, invoice, name)),
        "kind": kind,
        "link_lead": str(say.link_lead(kind)),
        "link_url": link_url,
        "expires": format_date(expires) if expires else "",
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    subject = (
        f"Invoice {invoice} from {company.name}"
        if kind == "invoice" and invoice is not None
        else f"Your invoices from {company.name}"
    )
    return _message(
        to=to,
        from_addr=from_addr,
        subject=subject,
        our_domain=our_domain,
        now=now,
        bodies=_render("link", context),
        reply_to=company.email,
    )
