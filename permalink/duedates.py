"""The due-date calendar of a link: its unpaid invoices as all-day events (RFC 5545).

One event per invoice the client still owes money on, on its due date, titled like
"Invoice 1251 due — £1,008.00" (what is still owed), with the permalink as the event's
URL and a reminder the day before. The UID of an invoice's event is the same on every
fetch and from every link to it, so a subscribed calendar updates the event (a part
payment changes its amount) or drops it (once paid) instead of adding another.

The words, the money and the dates are in the client's language (the page's choice: the
accountant's setting for the client, then the browser's, then the account's default),
written by Babel as that locale writes them.

The UID names the invoice number and a digest of the account: it identifies the event
without carrying the KashFlow username or anything sealed in the link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from icalendar import Alarm, Calendar, Event, vDuration

from kashflow.models import Invoice
from permalink.i18n import DEFAULT_LANGUAGE, Words
from permalink.presentation import format_date, format_money
from permalink.scopes import Statement

PRODID: Final = "-//KashFlow Permalink//Due dates//EN"
#: How often a subscribed calendar should fetch the feed again (RFC 7986 REFRESH-INTERVAL;
#: X-PUBLISHED-TTL for clients that predate it).
REFRESH: Final = timedelta(hours=6)
#: The reminder, relative to the start of the due day.
REMINDER: Final = timedelta(days=-1)
MEDIA_TYPE: Final = "text/calendar"


def owed(invoices: Iterable[Invoice]) -> list[Invoice]:
    """The invoices with money still to pay, by due date (credit notes owe nothing)."""
    chosen = [inv for inv in invoices if not inv.paid and inv.outstanding > 0]
    return sorted(chosen, key=lambda inv: (inv.due, inv.number))


def event_uid(account: str, number: int, public_base_url: str) -> str:
    """The stable UID of an invoice's due-date event (RFC 5545 section 3.8.4.7)."""
    digest = hashlib.blake2b(
        f"kashflow-permalink/due\x00{account.lower()}".encode(), digest_size=8
    ).hexdigest()
    host = urlsplit(public_base_url).hostname or "localhost"
    return f"invoice-{number}-{digest}@{host}"


def due_calendar(
    found: Statement,
    *,
    account: str,
    link_url: str,
    public_base_url: str,
    now: datetime,
    language: str = DEFAULT_LANGUAGE,
) -> bytes:
    """The calendar (``text/calendar`` bytes) of the statement's invoices still owed,
    in ``language``."""
    _ = Words(language)
    company = found.company.name
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    name = _("Invoices from %(company)s", company=company)
    calendar.add("name", name)
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH))
    stamp = now.astimezone(UTC).replace(microsecond=0)
    for invoice in owed(found.invoices):
        calendar.add_component(
            _event(invoice, company, account, link_url, public_base_url, stamp, _)
        )
    body: bytes = calendar.to_ical()
    return body


def _event(
    invoice: Invoice,
    company: str,
    account: str,
    link_url: str,
    public_base_url: str,
    stamp: datetime,
    _: Words,
) -> Event:
    amount = format_money(invoice.outstanding, invoice.currency, _.language)
    title = _("Invoice %(number)s due — %(amount)s", number=invoice.number, amount=amount)
    event = Event()
    event.add("uid", event_uid(account, invoice.number, public_base_url))
    event.add("dtstamp", stamp)
    event.add("dtstart", invoice.due)
    event.add("dtend", invoice.due + timedelta(days=1))
    event.add("summary", title)
    event.add("description", _description(invoice, company, amount, link_url, _))
    event.add("url", link_url)
    # A due date is a reminder, not a meeting: it must not show the day as busy.
    event.add("transp", "TRANSPARENT")
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", _("Tomorrow: %(title)s", title=title))
    alarm.add("trigger", REMINDER)
    event.add_component(alarm)
    return event


def _description(invoice: Invoice, company: str, amount: str, link_url: str, _: Words) -> str:
    language = _.language
    due: date = invoice.due
    lines = [
        _(
            "Invoice %(number)s from %(company)s, dated %(date)s: %(total)s.",
            number=invoice.number,
            company=company,
            date=format_date(invoice.issued, language),
            total=format_money(invoice.total, invoice.currency, language),
        ),
        _("%(amount)s to pay by %(date)s.", amount=amount, date=format_date(due, language)),
        _("See it and download the PDF: %(url)s", url=link_url),
    ]
    return "\n".join(lines)


__all__ = ["MEDIA_TYPE", "PRODID", "due_calendar", "event_uid", "owed"]
