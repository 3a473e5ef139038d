"""The product's outgoing mail, shared by both doors.

The bot (replies) and the settings pages (emailed links, re-issued links, relay tests, the
preview of a reply) write mail from the same jinja2 templates in ``templates/mail/`` (HTML
autoescaped) with the stdlib ``email`` package, under one sender identity per account
(:func:`sender`: the business's name and its sender address). Recipients are exactly the
addresses a caller passes. Money, dates and rows are written by :mod:`permalink.presentation`,
as on the pages.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from kashflow.models import CompanyDetails, Customer, Invoice
from permalink import TEMPLATES_PACKAGE
from permalink.presentation import format_date, invoice_rows, scope_text, total_outstanding
from permalink.scopes import Scope

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: A reply lists at most this many invoices; the link shows the rest.
MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class Wording:
    """The accountant's own words for a mail; an empty field keeps the default text."""

    greeting: str = ""
    intro: str = ""
    sign_off: str = ""


def one_line(value: str) -> str:
    """A header-safe single line (no CR/LF or other control characters)."""
    return _CONTROL.sub(" ", value).strip()


def sender(company_name: str, address: str) -> str:
    """The From of every mail sent for an account — the bot's replies and the settings
    pages' mail alike: ``Northwind Studio Ltd <invoices@northwind.example>``."""
    if not address:
        return ""
    return email.utils.formataddr((one_line(company_name), address))


def _nl2br(value: str) -> Markup:
    """Escape, then keep the accountant's line breaks in HTML."""
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATES_PACKAGE, "templates/mail"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nl2br"] = _nl2br
    return env


def render(name: str, context: dict[str, Any]) -> tuple[str, str]:
    """The text and HTML parts of template ``name`` (``name.txt``, ``name.html``)."""
    env = environment()
    return (
        env.get_template(f"{name}.txt").render(context),
        env.get_template(f"{name}.html").render(context),
    )


def phrases() -> Any:
    """The macros of ``_phrases.txt``, called from Python so they return plain strings."""
    return environment().get_template("_phrases.txt").module


def message(
    *,
    to: str,
    from_addr: str,
    subject: str,
    text: str,
    html: str | None = None,
    our_domain: str | None = None,
    now: datetime | None = None,
    reply_to: str = "",
) -> EmailMessage:
    """A message with a text part and, when given, an HTML alternative."""
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to
    if reply_to and reply_to.strip().lower() != from_addr.strip().lower():
        msg["Reply-To"] = reply_to
    msg["Subject"] = one_line(subject)
    msg["Date"] = email.utils.format_datetime(now or datetime.now(UTC))
    domain = our_domain or from_addr.rpartition("@")[2].strip("> ") or "localhost"
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def company_context(company: CompanyDetails) -> dict[str, Any]:
    return {
        "company_name": company.name,
        "company_email": company.email,
        "company_telephone": company.telephone,
    }


def compose_link_email(
    *,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    customer: Customer,
    link_url: str,
    scope: Scope,
    expires: date | None = None,
    our_domain: str | None = None,
    wording: Wording | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The mail that carries a permalink the accountant chose to send to a customer.

    A person asked for it to be sent, so it is not marked as automatic.
    """
    wording = wording or Wording()
    say = phrases()
    name = one_line(company.name)
    numbers = ", ".join(str(n) for n in scope.numbers)
    context = {
        **company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.link_intro(wording.intro, scope.kind, numbers, name)),
        "kind": scope.kind,
        "link_lead": str(say.link_lead(scope.kind)),
        "link_url": link_url,
        "expires": format_date(expires) if expires else "",
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    subject = (
        f"{'Invoice' if scope.invoice else 'Invoices'} {numbers} from {company.name}"
        if scope.kind == "invoice"
        else f"Your invoices from {company.name}"
    )
    text, html = render("link", context)
    return message(
        to=to,
        from_addr=from_addr,
        subject=subject,
        text=text,
        html=html,
        our_domain=our_domain,
        now=now,
        reply_to=company.email,
    )


def compose_invoices_mail(
    *,
    to: str,
    from_addr: str,
    subject: str,
    company: CompanyDetails,
    customer: Customer,
    invoices: Sequence[Invoice],
    link_url: str,
    pdf: bytes | None,
    pdf_filename: str,
    kind: str,
    numbers: Sequence[int] = (),
    not_found: Sequence[int] = (),
    understood: bool = True,
    our_domain: str | None,
    today: date,
    wording: Wording | None,
    language: str = "en",
    now: datetime | None = None,
) -> EmailMessage:
    """The mail that answers a request for invoices: their list, the link, the merged PDF.

    The bot sends it as a reply (:func:`bot.compose.compose_reply` threads and marks it);
    the bot page previews exactly this message. ``pdf`` is ``None`` when the merged PDF is
    over the size limit: the mail then says the link does the work. ``numbers`` are the
    invoices asked for by number, ``not_found`` those asked for that are not the client's.
    ``language`` is the one to write in (the templates take it from the context, and write
    English until they have catalogues for the others). Replies by the customer go to the
    company's own address.
    """
    wording = wording or Wording()
    say = phrases()
    name, count = one_line(company.name), len(invoices)
    context = {
        **company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "language": language,
        "intro": str(say.intro(wording.intro, kind, tuple(numbers), name, count)),
        "not_found": str(say.not_found(tuple(not_found), kind)),
        "rows": invoice_rows(invoices[:MAX_LISTED], today),
        "more": max(0, count - MAX_LISTED),
        "total_outstanding": total_outstanding(invoices),
        "link_lead": str(say.link_lead(kind, count)),
        "link_url": link_url,
        "attachment_note": str(say.attachment(pdf is not None, pdf_filename, count)),
        "hint": "" if understood else str(say.hint()),
        "sign_off": str(say.sign_off(wording.sign_off, name)),
        "footer": str(say.footer(name, company.email, company.telephone)),
    }
    text, html = render("reply", context)
    msg = message(
        to=to,
        from_addr=from_addr,
        subject=subject,
        text=text,
        html=html,
        our_domain=our_domain,
        now=now,
        reply_to=company.email,
    )
    if pdf is not None and invoices:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=pdf_filename)
    return msg


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link written into a re-issue mail: its URL, what it shows and until when."""

    url: str
    scope: Scope
    expires: date | None = None


def compose_reissue_email(
    *,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    customer: Customer,
    links: Sequence[NewLink],
    our_domain: str | None = None,
    wording: Wording | None = None,
    message_id: str = "",
    now: datetime | None = None,
) -> EmailMessage:
    """The mail that gives a client their new link(s) after the business's KashFlow
    password changed: the old link stopped working; here is what replaces it.

    ``message_id`` is fixed by the caller so a mail sent again after an interruption is
    the same message to the client's mail program.
    """
    wording = wording or Wording()
    say = phrases()
    name = one_line(company.name)
    context = {
        **company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "links": [
            {
                "url": link.url,
                "shows": scope_text(link.scope),
                "expires": format_date(link.expires) if link.expires else "",
            }
            for link in links
        ],
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    text, html = render("reissue", context)
    plural = "s" if len(links) > 1 else ""
    msg = message(
        to=to,
        from_addr=from_addr,
        subject=f"Your new invoice link{plural} from {company.name}",
        text=text,
        html=html,
        our_domain=our_domain,
        now=now,
        reply_to=company.email,
    )
    if message_id:
        msg.replace_header("Message-ID", message_id)
    return msg
