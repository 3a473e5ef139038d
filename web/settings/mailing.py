"""The mail the settings pages send: a permalink to a customer, and the relay test.

The web door does not send mail itself and never imports the bot: whoever composes the
application hands :func:`web.settings.setup_settings` a :data:`SendMail` callable that
delivers a message through the account's configured relay (the CLI wires it to the
bot's outbound sender). What is sent is built here, from the shared ``templates/mail/``
folder, with the stdlib :mod:`email` package. The reply preview on the bot page renders
the bot's real reply template with sample rows, so what the accountant sees is what
customers get.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from functools import cache
from typing import Any, Final

import jinja2
from markupsafe import Markup, escape

from kashflow.models import Customer
from permalink import TEMPLATES
from permalink.accounts import Wording
from permalink.links import Scope

#: Deliver ``message`` for ``account`` to exactly ``recipients`` through the account's
#: relay. Raises on failure; ``str(error)`` must be a sentence fit for the accountant and
#: never holds a password.
SendMail = Callable[[str, EmailMessage, list[str]], Awaitable[None]]

_MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def format_date(day: date) -> str:
    """``3 Mar 2025``, the same in every locale (as the bot writes dates)."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _nl2br(value: str) -> Markup:
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


@cache
def _environment() -> jinja2.Environment:
    # Same settings as the bot's: the mail templates import "_phrases.txt" by bare name.
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


def _one_line(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def _message(
    *, to: str, from_addr: str, subject: str, text: str, html: str | None, reply_to: str = ""
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to
    if reply_to and reply_to.strip().lower() != from_addr.strip().lower():
        msg["Reply-To"] = reply_to
    msg["Subject"] = _one_line(subject)
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["Message-ID"] = email.utils.make_msgid(domain=_domain(from_addr))
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def compose_link_email(
    *,
    to: list[str],
    from_addr: str,
    company_name: str,
    company_email: str,
    customer: Customer,
    link_url: str,
    scope: Scope,
    expires: date | None,
    wording: Wording,
) -> EmailMessage:
    """The mail carrying a permalink the accountant chose to send to a customer.

    The bot's greeting and sign-off are used; its introduction is written for replies
    to requests ("the invoices you asked for"), so this mail keeps the templates' own
    sentence about the link instead.
    """
    # The sentences come from the mail templates' own phrase macros, as plain strings
    # that both parts then escape as they need (the templates never import them).
    say: Any = _environment().get_template("_phrases.txt").module
    name = _one_line(company_name)
    context: dict[str, Any] = {
        "company_name": company_name,
        "company_email": company_email,
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "intro": str(say.link_intro("", scope.kind, scope.invoice, name)),
        "kind": scope.kind,
        "link_lead": str(say.link_lead(scope.kind)),
        "link_url": link_url,
        "expires": format_date(expires) if expires else "",
        "sign_off": str(say.sign_off(wording.sign_off, name)),
    }
    env = _environment()
    subject = (
        f"Invoice {scope.invoice} from {company_name}"
        if scope.kind == "invoice"
        else f"Your invoices from {company_name}"
    )
    return _message(
        to=", ".join(to),
        from_addr=from_addr,
        subject=subject,
        text=env.get_template("link.txt").render(context),
        html=env.get_template("link.html").render(context),
        reply_to=company_email,
    )


def compose_test_email(*, to: str, from_addr: str, company_name: str, relay: str) -> EmailMessage:
    """A short message proving the relay settings work."""
    text = (
        f"This is a test message from KashFlow Permalink for {company_name}.\n\n"
        f"It was handed to the relay {relay}, so the bot's replies will go out the same way.\n"
        "Nothing needs doing; you can delete it.\n"
    )
    return _message(
        to=to,
        from_addr=from_addr,
        subject=f"Test message from KashFlow Permalink ({company_name})",
        text=text,
        html=None,
    )


@dataclass(frozen=True, slots=True)
class PreviewPart:
    """One paragraph of the reply preview; ``field`` names the wording field it shows."""

    text: str
    field: str = ""
    default: str = ""


def preview_reply(wording: Wording, *, company_name: str) -> list[PreviewPart]:
    """How the accountant's words sit around a bot reply, for sample invoices.

    A sketch of the reply's text part: the bot's own template decides the exact layout
    of the invoice list; the words (or, when a field is empty, their defaults) are these.
    """
    defaults = {
        "greeting": "Hello Alex Example,",
        "intro": f"Here are all your invoices from {company_name}.",
        "sign_off": f"Kind regards,\n{company_name}",
    }
    words = {"greeting": wording.greeting, "intro": wording.intro, "sign_off": wording.sign_off}

    def part(name: str) -> PreviewPart:
        return PreviewPart(words[name] or defaults[name], name, defaults[name])

    return [
        part("greeting"),
        part("intro"),
        PreviewPart(
            "  Invoice 1042  issued 3 Mar 2025  due 2 Apr 2025  £1,140.00  [due]\n"
            "  Invoice 1017  issued 6 Jan 2025  due 5 Feb 2025  £480.00  [paid]"
        ),
        PreviewPart("This link always shows all your invoices as they stand:\nhttps://…/l/…"),
        part("sign_off"),
    ]


__all__ = [
    "PreviewPart",
    "SendMail",
    "compose_link_email",
    "compose_test_email",
    "format_date",
    "preview_reply",
]
