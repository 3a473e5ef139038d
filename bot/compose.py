"""Writing the bot's mail: the reply with invoices, and the neutral unknown-sender reply.

Each message is an ``EmailMessage`` with a plain-text part and an HTML alternative rendered
from the jinja2 templates in ``templates/mail/`` (see :mod:`permalink.mail`, which writes the
reply's body for the bot and for the settings pages' preview alike), plus the statement
pack when there is one. Recipients are exactly the
addresses the caller passes: the worker passes the address KashFlow has on file, never
anything the request claims.

A reply is written for a phone: it leads with what is to pay and by when, has one button
to the client's link, lists the invoices still open (paid ones are counted, not listed)
with the page's badge colours, and says how to pay. It speaks the client's language: the
language the request was written in, else the one the accountant chose for the client,
else the account's default (:func:`permalink.i18n.pick_language`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from email.message import EmailMessage

from bot.intent import Intent
from bot.language import Language
from bot.mailparse import Request
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.business import PaymentInstructions
from permalink.i18n import Words, pick_language
from permalink.mail import (
    MAX_LISTED,
    Wording,
    company_context,
    compose_invoices_mail,
    message,
    one_line,
    render,
)

#: References kept when threading: RFC 5322 §3.6.4 allows trimming the middle of a long chain.
MAX_REFERENCES = 20

# "Re:", "RE:", "Re[2]:", "AW:", "SV:", "Antw:" … as mail clients stack them.
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|vs)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def reply_subject(original: str) -> str:
    """``Re: <original>`` with one prefix however many the original carried."""
    stripped = _REPLY_PREFIX.sub("", one_line(original)).strip()
    return f"Re: {stripped}" if stripped else ""


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
    language: Language | str | None = None,
    now: datetime | None = None,
    customer_language: str | None = None,
    default_language: str | None = None,
    payment: PaymentInstructions | None = None,
) -> EmailMessage:
    """The answer to a customer's request: what is to pay, their link, the open invoices,
    how to pay, and the statement pack attached.

    The message itself is :func:`permalink.mail.compose_invoices_mail` (the settings pages
    preview the same one); this adds what makes it a reply: the subject, the thread and
    the automatic-reply marks, and chooses its language: ``language`` (the one the request
    was written in, as :mod:`bot.language` detected it), else ``customer_language`` (the
    accountant's choice for this client), else ``default_language`` (the account's).
    """
    chosen = pick_language(language, customer_language, default_language)
    _ = Words(chosen)
    msg = compose_invoices_mail(
        to=to,
        from_addr=from_addr,
        subject=reply_subject(request.subject)
        or _("Your invoices from %(company)s", company=one_line(company.name)),
        company=company,
        customer=customer,
        invoices=invoices,
        link_url=link_url,
        pdf=pdf,
        pdf_filename=pdf_filename,
        kind=intent.kind,
        numbers=intent.numbers,
        not_found=intent.not_found,
        understood=intent.understood,
        our_domain=our_domain,
        today=today,
        wording=wording,
        language=chosen,
        now=now,
        payment=payment,
    )
    _thread(msg, request)
    _mark_automatic(msg)
    return msg


def compose_unknown_sender(
    *,
    request: Request,
    to: str,
    from_addr: str,
    company: CompanyDetails,
    our_domain: str,
    now: datetime | None = None,
    language: str | None = None,
) -> EmailMessage:
    """A neutral answer to an address KashFlow does not know, in ``language`` (the
    request's, else the account's default, as the caller chose).

    Nothing from the request is repeated — not even its subject — because the sender may
    be forged, and an answer that echoed it would carry someone else's words to a stranger.
    """
    chosen = pick_language(language)
    _ = Words(chosen)
    context = {**company_context(company), "language": chosen}
    text, html = render("unknown_sender", context)
    msg = message(
        to=to,
        from_addr=from_addr,
        subject=_("Your message to %(company)s", company=one_line(company.name)),
        text=text,
        html=html,
        our_domain=our_domain,
        now=now,
        reply_to=company.email,
    )
    _thread(msg, request)
    _mark_automatic(msg)
    return msg


__all__ = ["MAX_LISTED", "compose_reply", "compose_unknown_sender", "reply_subject"]
