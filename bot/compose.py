"""Writing the bot's mail: the reply with invoices, and the neutral unknown-sender reply.

Each message is an ``EmailMessage`` with a plain-text part and an HTML alternative rendered
from the jinja2 templates in ``templates/mail/`` (see :mod:`permalink.mail`, shared with the
settings pages), plus the merged PDF when there is one. Recipients are exactly the
addresses the caller passes: the worker passes the address KashFlow has on file, never
anything the request claims.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from email.message import EmailMessage

from bot.intent import Intent
from bot.language import DEFAULT_LANGUAGE, Language
from bot.mailparse import Request
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.mail import Wording, company_context, message, one_line, phrases, render
from permalink.presentation import invoice_rows, total_outstanding

#: A reply lists at most this many invoices; the link shows the rest.
MAX_LISTED = 50
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
    language: Language = DEFAULT_LANGUAGE,
    now: datetime | None = None,
) -> EmailMessage:
    """The answer to a customer's request: their invoices, the permalink and the merged PDF.

    ``pdf`` is ``None`` when the merged PDF is over the size limit; the mail then says the
    link does the work. Replies by the customer go to the company's own address.
    ``language`` is the one the reply is to be written in (the request's, else the
    customer's); the templates take it from the context, and write English until they
    have catalogues for the others.
    """
    wording = wording or Wording()
    say = phrases()
    name, count = one_line(company.name), len(invoices)
    context = {
        **company_context(company),
        "greeting": str(say.greeting(wording.greeting, customer.contact or customer.name)),
        "language": language,
        "intro": str(say.intro(wording.intro, intent.kind, intent.numbers, name, count)),
        "not_found": str(say.not_found(intent.not_found, intent.kind)),
        "rows": invoice_rows(invoices[:MAX_LISTED], today),
        "more": max(0, count - MAX_LISTED),
        "total_outstanding": total_outstanding(invoices),
        "link_lead": str(say.link_lead(intent.kind, count)),
        "link_url": link_url,
        "attachment_note": str(say.attachment(pdf is not None, pdf_filename, count)),
        "hint": "" if intent.understood else str(say.hint()),
        "sign_off": str(say.sign_off(wording.sign_off, name)),
        "footer": str(say.footer(name, company.email, company.telephone)),
    }
    subject = reply_subject(request.subject) or f"Your invoices from {one_line(company.name)}"
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
    context = company_context(company)
    text, html = render("unknown_sender", context)
    msg = message(
        to=to,
        from_addr=from_addr,
        subject=f"Your message to {one_line(company.name)}",
        text=text,
        html=html,
        our_domain=our_domain,
        now=now,
        reply_to=company.email,
    )
    _thread(msg, request)
    _mark_automatic(msg)
    return msg
