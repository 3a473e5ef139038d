"""The product's outgoing mail, shared by both doors.

The bot (replies) and the settings pages (emailed links, re-issued links, relay tests, the
preview of a reply) write mail from the same jinja2 templates in ``templates/mail/`` (HTML
autoescaped) with the stdlib ``email`` package, under one sender identity per account
(:func:`sender`: the business's name and its sender address). Recipients are exactly the
addresses a caller passes. Money, dates and rows are written by :mod:`permalink.presentation`,
as on the pages, and the words come from the same catalogues (:mod:`permalink.i18n`): a
template speaks the ``language`` of its context.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape

from kashflow.models import CompanyDetails, Customer, Invoice
from permalink import TEMPLATES_PACKAGE, i18n
from permalink.i18n import Words, pick_language
from permalink.presentation import (
    BADGE_COLOURS,
    balances,
    format_date,
    invoice_rows,
    lead,
)
from permalink.scopes import Scope

if TYPE_CHECKING:
    from permalink.business import PaymentInstructions

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
        extensions=["jinja2.ext.i18n"],
    )
    env.filters["nl2br"] = _nl2br
    i18n.install(env)
    return env


def render(name: str, context: dict[str, Any]) -> tuple[str, str]:
    """The text and HTML parts of template ``name`` (``name.txt``, ``name.html``)."""
    env = environment()
    return (
        env.get_template(f"{name}.txt").render(context),
        env.get_template(f"{name}.html").render(context),
    )


@cache
def phrases(language: str | None = None) -> Any:
    """The macros of ``_phrases.txt`` in ``language`` (English by default), called from
    Python so they return plain strings."""
    template = environment().get_template("_phrases.txt")
    return template.make_module({"language": pick_language(language)})


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
    language: str | None = None,
) -> EmailMessage:
    """The mail that carries a permalink the accountant chose to send to a customer, in
    ``language`` (the client's, else the account's default, as the caller chose).

    A person asked for it to be sent, so it is not marked as automatic.
    """
    wording = wording or Wording()
    language = pick_language(language)
    say = phrases(language)
    _ = Words(language)
    name = one_line(company.name)
    numbers = ", ".join(str(n) for n in scope.numbers)
    context = {
        **company_context(company),
        "language": language,
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.link_intro(wording.intro, scope.kind, numbers, name)),
        "kind": scope.kind,
        "link_lead": str(say.link_lead(scope.kind)),
        "link_url": link_url,
        "expires": format_date(expires, language) if expires else "",
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    if scope.kind != "invoice":
        subject = _("Your invoices from %(company)s", company=company.name)
    elif scope.invoice:
        subject = _("Invoice %(numbers)s from %(company)s", numbers=numbers, company=company.name)
    else:
        subject = _("Invoices %(numbers)s from %(company)s", numbers=numbers, company=company.name)
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
    language: str | None = None,
    now: datetime | None = None,
    payment: PaymentInstructions | None = None,
) -> EmailMessage:
    """The mail that answers a request for invoices, written for a phone: what is to pay
    and by when, one button to the link, the invoices still open (paid ones counted, not
    listed; invoices asked for by number listed whatever their state) with the page's
    badge colours, how to pay, and the statement pack attached.

    The bot sends it as a reply (:func:`bot.compose.compose_reply` threads and marks it,
    and chooses ``language``); the bot page previews exactly this message. ``pdf`` is
    ``None`` when the pack is over the size limit: the mail then says the link does the
    work. ``numbers`` are the invoices asked for by number, ``not_found`` those asked for
    that are not the client's. Replies by the customer go to the company's own address.
    """
    # Imported here: permalink.business files its settings beside the bot's, which use
    # this module's Wording.
    from permalink.business import PaymentInstructions

    wording = wording or Wording()
    chosen = pick_language(language)
    say = phrases(chosen)
    _ = Words(chosen)
    name, count = one_line(company.name), len(invoices)
    still_open = [i for i in invoices if i.outstanding != 0 and not i.paid]
    # Invoices asked for by number are shown whatever their state; otherwise what is open.
    listed = list(invoices) if kind == "invoice" else still_open
    payment = payment or PaymentInstructions()
    owing = [i.number for i in (still_open or invoices)]
    context = {
        **company_context(company),
        "language": chosen,
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.intro(wording.intro, kind, tuple(numbers), name, count)),
        "not_found": str(say.not_found(tuple(not_found), kind)),
        "lead": lead(invoices, today, chosen),
        "balances": balances(invoices, chosen),
        "rows": invoice_rows(listed[:MAX_LISTED], today, chosen),
        "listing_open": kind != "invoice",
        "more": max(0, len(listed) - MAX_LISTED),
        "paid_count": count - len(listed),
        "badges": BADGE_COLOURS,
        "button": _("Open the invoice") if kind == "invoice" else _("See your invoices"),
        "payment": payment,
        "bank": _bank_lines(payment, customer.code, owing, _),
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


def _bank_lines(
    payment: PaymentInstructions, customer_code: str, numbers: Sequence[int], _: Words
) -> list[tuple[str, str]]:
    """(label, value) for each bank detail given, and the reference to quote."""
    if not payment.bank_transfer:
        return []
    reference = payment.reference_for(customer_code, numbers)
    if not reference.per_invoice:
        quoted = reference.text
    elif payment.reference == "customer-invoice":
        quoted = _("Your account and the invoice number, e.g. %(example)s", example=reference.text)
    else:
        quoted = _("The invoice number, e.g. %(example)s", example=reference.text)
    lines = [
        (_("Bank"), payment.bank_name),
        (_("Account name"), payment.account_name),
        (_("Sort code"), payment.sort_code),
        (_("Account number"), payment.account_number),
        (_("IBAN"), payment.iban_grouped),
        (_("BIC"), payment.bic),
        (_("Reference"), quoted),
    ]
    return [(label, value) for label, value in lines if value]


def _scope_words(scope: Scope, _: Words, *, title: bool = False) -> str:
    """What a link shows, in a few words for a client: "all invoices", "invoice 1234"."""
    numbers = ", ".join(str(n) for n in scope.numbers)
    if scope.kind == "invoice" and len(scope.numbers) == 1:
        words = (
            _("Invoice %(numbers)s", numbers=numbers)
            if title
            else _("invoice %(numbers)s", numbers=numbers)
        )
    elif scope.kind == "invoice":
        words = (
            _("Invoices %(numbers)s", numbers=numbers)
            if title
            else _("invoices %(numbers)s", numbers=numbers)
        )
    elif scope.kind == "unpaid":
        words = _("Unpaid invoices") if title else _("unpaid invoices")
    else:
        words = _("All invoices") if title else _("all invoices")
    return words


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
    language: str | None = None,
) -> EmailMessage:
    """The mail that gives a client their new link(s) after the business's KashFlow
    password changed: the old link stopped working; here is what replaces it. Written in
    ``language`` (the client's, as the caller chose).

    ``message_id`` is fixed by the caller so a mail sent again after an interruption is
    the same message to the client's mail program.
    """
    wording = wording or Wording()
    chosen = pick_language(language)
    say = phrases(chosen)
    _ = Words(chosen)
    name = one_line(company.name)
    context = {
        **company_context(company),
        "language": chosen,
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "links": [
            {
                "url": link.url,
                "shows": _scope_words(link.scope, _),
                "shows_title": _scope_words(link.scope, _, title=True),
                "expires": format_date(link.expires, chosen) if link.expires else "",
            }
            for link in links
        ],
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    text, html = render("reissue", context)
    if len(links) > 1:
        subject = _("Your new invoice links from %(company)s", company=company.name)
    else:
        subject = _("Your new invoice link from %(company)s", company=company.name)
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
    if message_id:
        msg.replace_header("Message-ID", message_id)
    return msg
