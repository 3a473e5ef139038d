"""The product's outgoing mail, shared by both doors.

The bot (replies) and the settings pages (emailed links, relay tests) write mail from the
same jinja2 templates in ``templates/mail/`` (HTML autoescaped) with the stdlib ``email``
package; pages and mail write money and dates the same way. Recipients are exactly the
addresses a caller passes. Money, dates and rows are written by :mod:`permalink.presentation`,
as on the pages.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from kashflow.models import CompanyDetails, Customer
from permalink import TEMPLATES
from permalink.presentation import format_date
from permalink.scopes import Scope

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Wording:
    """The accountant's own words for a mail; an empty field keeps the default text."""

    greeting: str = ""
    intro: str = ""
    sign_off: str = ""


def one_line(value: str) -> str:
    """A header-safe single line (no CR/LF or other control characters)."""
    return _CONTROL.sub(" ", value).strip()


def _nl2br(value: str) -> Markup:
    """Escape, then keep the accountant's line breaks in HTML."""
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


@cache
def environment() -> jinja2.Environment:
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
