"""How invoices are written for people, the same on a page, in a mail and in a PDF.

One home for the rows a client sees (every cell already formatted), the status labels,
money, dates, the balance ("invoices - credit = to pay"), the aging of what is owed, the
heading of a scope, the titles of documents and bookmarks, and the name a merged document
is saved under, so the page, the reply, the statement pack and the settings pages never
disagree about any of them. Money and dates are written by Babel in the reader's language
(``1.002,00 €`` for a German client); words come from the catalogues of
:mod:`permalink.i18n`. Every function defaults to English (UK).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Final

from babel.dates import format_date as babel_date
from babel.numbers import format_currency

from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.i18n import DEFAULT_LANGUAGE, N_, Words, locale_of
from permalink.scopes import Scope

#: The badge a status is shown with, on pages and in mail (English; see :func:`status_label`).
STATUS_LABELS: Final = {
    "paid": N_("Paid"),
    "part-paid": N_("Part paid"),
    "due": N_("Due"),
    "overdue": N_("Overdue"),
    "credit": N_("Credit"),
}
SCOPE_HEADINGS: Final = {"all": N_("Your invoices"), "unpaid": N_("Your unpaid invoices")}
#: Each badge's (text, background) colours: the page's stylesheet uses the same pairs
#: (``--paid-ink``/``--paid-bg`` …), so a reply's badges look like the page's.
BADGE_COLOURS: Final = {
    "paid": ("#1b5e30", "#e4f3e8"),
    "part-paid": ("#1d4f91", "#e6eefa"),
    "due": ("#6b4a00", "#fdf1d3"),
    "overdue": ("#8f1d1d", "#fbe6e6"),
    "credit": ("#5b2a86", "#f0e8f8"),
}
#: Aging of what is owed, by days past the due date (the statement's summary).
AGING_BUCKETS: Final = (
    ("current", N_("Not yet due")),
    ("1-30", N_("1–30 days overdue")),
    ("31-60", N_("31–60 days overdue")),
    ("61-90", N_("61–90 days overdue")),
    ("90+", N_("Over 90 days overdue")),
)

# Path separators and control characters have no place in a saved file's name.
_UNSAFE_NAME: Final = re.compile(r"[\x00-\x1f\x7f/\\]+")


def format_money(amount: Decimal, currency: str, language: str = DEFAULT_LANGUAGE) -> str:
    """``£1,234.50`` in English, ``1.234,50 €`` in German: Babel writes the amount, the
    sign and the currency as the reader's locale does."""
    # Keyed by the amount's text: equal Decimals such as 0 and -0 are written differently.
    return _money(str(amount), (currency or "GBP").upper(), language)


@lru_cache(maxsize=4096)  # a reply or a page writes the same few amounts many times
def _money(amount: str, code: str, language: str) -> str:
    return format_currency(Decimal(amount), code, locale=locale_of(language))


@lru_cache(maxsize=4096)
def format_date(day: date, language: str = DEFAULT_LANGUAGE) -> str:
    """``3 Mar 2025`` in English, ``03.03.2025`` in German: the locale's medium date."""
    return babel_date(day, format="medium", locale=locale_of(language))


def status_of(invoice: Invoice, today: date) -> str:
    """The badge: ``credit`` for a credit note, else the invoice's own status."""
    return "credit" if invoice.is_credit_note else invoice.status(today)


def status_label(status: str, language: str = DEFAULT_LANGUAGE) -> str:
    return Words(language)(STATUS_LABELS[status]) if status in STATUS_LABELS else status


def document_title(invoice: Invoice, language: str = DEFAULT_LANGUAGE) -> str:
    """``Invoice 1251`` or ``Credit note 1243``: KashFlow prints credit notes as such."""
    _ = Words(language)
    if invoice.is_credit_note:
        return _("Credit note %(number)s", number=invoice.number)
    return _("Invoice %(number)s", number=invoice.number)


def bookmark_title(invoice: Invoice, language: str = DEFAULT_LANGUAGE) -> str:
    """``Invoice 1251 · 26 Nov 2026 · £1,008.00``: one invoice's bookmark in a pack."""
    return " · ".join(
        (
            document_title(invoice, language),
            format_date(invoice.issued, language),
            format_money(invoice.total, invoice.currency, language),
        )
    )


def statement_title(
    company: CompanyDetails, customer: Customer, day: date, language: str = DEFAULT_LANGUAGE
) -> str:
    """``Northwind Studio Ltd — Acme Fabrication Ltd — statement 3 Dec 2026``."""
    _ = Words(language)
    return _(
        "%(company)s — %(customer)s — statement %(date)s",
        company=company.name,
        customer=customer.name,
        date=format_date(day, language),
    )


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One invoice as a client sees it, on the page or in a reply."""

    number: int
    issued: date
    issued_text: str
    due: date
    due_text: str
    total: str
    paid: str
    outstanding: str
    status: str
    status_label: str
    pdf_url: str = ""
    #: ``Invoice 1251`` or ``Credit note 1243``.
    title: str = ""
    credit_note: bool = False
    reference: str = ""
    #: Days past the due date (0 when not overdue).
    days_overdue: int = 0
    #: The invoice's own page below the link, when it has one.
    page_url: str = ""
    #: A credit note's credit still to use, as a positive amount ("credit £162.00").
    credit_left: str = ""


def invoice_row(
    invoice: Invoice,
    today: date,
    pdf_url: str = "",
    language: str = DEFAULT_LANGUAGE,
    page_url: str = "",
) -> InvoiceRow:
    status = status_of(invoice, today)
    money = invoice.currency
    return InvoiceRow(
        number=invoice.number,
        issued=invoice.issued,
        issued_text=format_date(invoice.issued, language),
        due=invoice.due,
        due_text=format_date(invoice.due, language),
        total=format_money(invoice.total, money, language),
        paid=format_money(invoice.total - invoice.outstanding, money, language),
        outstanding=format_money(invoice.outstanding, money, language),
        status=status,
        status_label=status_label(status, language),
        pdf_url=pdf_url,
        title=document_title(invoice, language),
        credit_note=invoice.is_credit_note,
        reference=invoice.reference,
        days_overdue=(today - invoice.due).days if invoice.overdue(today) else 0,
        page_url=page_url,
        credit_left=format_money(-invoice.outstanding, money, language)
        if invoice.is_credit_note
        else "",
    )


def invoice_rows(
    invoices: Iterable[Invoice], today: date, language: str = DEFAULT_LANGUAGE
) -> list[InvoiceRow]:
    return [invoice_row(invoice, today, language=language) for invoice in invoices]


def open_first(invoices: Iterable[Invoice]) -> tuple[Invoice, ...]:
    """The order a client reads them in, on the page and in the pack: what is still to
    pay first, then the rest, each newest first."""
    ordered = sorted(invoices, key=lambda i: (i.issued, i.number), reverse=True)
    still_open = [i for i in ordered if i.outstanding != 0 and not i.paid]
    return (*still_open, *(i for i in ordered if i.outstanding == 0 or i.paid))


# -- what is owed ---------------------------------------------------------------------------


def _code(invoice: Invoice) -> str:
    return (invoice.currency or "GBP").upper()


def outstanding_by_currency(invoices: Iterable[Invoice]) -> dict[str, Decimal]:
    """Total still owed per currency (a customer may be billed in more than one)."""
    totals: dict[str, Decimal] = {}
    for invoice in invoices:
        if invoice.outstanding:
            code = _code(invoice)
            totals[code] = totals.get(code, Decimal(0)) + invoice.outstanding
    return totals


def outstanding_amounts(invoices: Iterable[Invoice], language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The amounts still owed, one per currency, in the order the currencies first appear."""
    return [
        format_money(amount, code, language)
        for code, amount in outstanding_by_currency(invoices).items()
    ]


def total_outstanding(invoices: Iterable[Invoice], language: str = DEFAULT_LANGUAGE) -> str:
    """The sum still owed in one line (``""`` when nothing is owed)."""
    return " + ".join(outstanding_amounts(invoices, language))


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency's balance: owed on invoices, less unapplied credit, is what to pay."""

    currency: str
    owed: str
    #: Unapplied credit, written as a positive amount ("credit £162.00").
    credit: str
    to_pay: str
    has_credit: bool
    #: Credit exceeds what is owed: nothing to pay, the client is in credit.
    in_credit: bool
    nothing_to_pay: bool


def balances(invoices: Iterable[Invoice], language: str = DEFAULT_LANGUAGE) -> list[Balance]:
    """Per currency (in the order they first appear): invoices - credit = to pay."""
    owed: dict[str, Decimal] = {}
    credit: dict[str, Decimal] = {}
    for invoice in invoices:
        remaining = invoice.outstanding
        if not remaining:
            continue
        code = _code(invoice)
        owed.setdefault(code, Decimal(0))
        credit.setdefault(code, Decimal(0))
        if remaining > 0:
            owed[code] += remaining
        else:
            credit[code] += remaining
    return [
        Balance(
            currency=code,
            owed=format_money(owed[code], code, language),
            credit=format_money(-credit[code], code, language),
            to_pay=format_money(max(owed[code] + credit[code], Decimal(0)), code, language),
            has_credit=credit[code] < 0,
            in_credit=owed[code] + credit[code] < 0,
            nothing_to_pay=owed[code] + credit[code] <= 0,
        )
        for code in owed
    ]


@dataclass(frozen=True, slots=True)
class Lead:
    """The first thing a client reads: what to pay, what is overdue, when the next is due."""

    to_pay: tuple[str, ...]
    overdue: tuple[str, ...]
    overdue_count: int
    next_due: date | None
    next_due_text: str
    owing: bool


def lead(invoices: Sequence[Invoice], today: date, language: str = DEFAULT_LANGUAGE) -> Lead:
    owing = [b for b in balances(invoices, language) if not b.nothing_to_pay]
    late = [i for i in invoices if i.overdue(today)]
    overdue: dict[str, Decimal] = {}
    for invoice in late:
        overdue[_code(invoice)] = overdue.get(_code(invoice), Decimal(0)) + invoice.outstanding
    coming = sorted(i.due for i in invoices if i.outstanding > 0 and not i.overdue(today))
    next_due = coming[0] if coming else None
    return Lead(
        to_pay=tuple(b.to_pay for b in owing),
        overdue=tuple(format_money(v, c, language) for c, v in overdue.items()),
        overdue_count=len(late),
        next_due=next_due,
        next_due_text=format_date(next_due, language) if next_due else "",
        owing=bool(owing),
    )


def aging(invoices: Iterable[Invoice], today: date) -> dict[str, list[Decimal]]:
    """Per currency, what is owed on invoices in each of :data:`AGING_BUCKETS`."""
    found: dict[str, list[Decimal]] = {}
    for invoice in invoices:
        if invoice.outstanding <= 0:
            continue  # credit is shown as credit, not aged
        late = (today - invoice.due).days
        slot = 0 if late <= 0 else 1 if late <= 30 else 2 if late <= 60 else 3 if late <= 90 else 4
        found.setdefault(_code(invoice), [Decimal(0)] * len(AGING_BUCKETS))[slot] += (
            invoice.outstanding
        )
    return found


# -- headings and names ---------------------------------------------------------------------


def scope_heading(scope: Scope, language: str = DEFAULT_LANGUAGE) -> str:
    _ = Words(language)
    if scope.kind == "invoice":
        if scope.invoice is not None:
            return _("Invoice %(number)s", number=scope.invoice)
        return _("Invoices %(numbers)s", numbers=", ".join(str(n) for n in scope.numbers))
    return _(SCOPE_HEADINGS[scope.kind])


def customer_label(name: str, code: str) -> str:
    """A customer as the settings pages and the activity log write one:
    ``Dunes & Daughters (DUNE01)``."""
    name, code = name.strip(), code.strip()
    if not name or name == code:
        return code
    return f"{name} ({code})" if code else name


def scope_text(scope: Scope) -> str:
    """A scope in a few words, for the settings pages and the activity log."""
    if scope.kind == "invoice":
        noun = "invoice" if len(scope.numbers) == 1 else "invoices"
        return f"{noun} " + ", ".join(str(n) for n in scope.numbers)
    return {"all": "all invoices", "unpaid": "unpaid invoices"}[scope.kind]


def document_filename(company: str, customer_code: str, scope: Scope, day: date) -> str:
    """The one name a merged document is saved under, on the web and in a reply:
    ``<Company>-<CustomerCode>-<what>-<date>.pdf`` (the same in every language)."""
    if scope.kind == "invoice":
        what = "invoice-" + "-".join(str(n) for n in scope.numbers[:3])
        if len(scope.numbers) > 3:
            what = f"invoices-{scope.numbers[0]}-to-{scope.numbers[-1]}"
    else:
        what = "unpaid-invoices" if scope.kind == "unpaid" else "invoices"
    parts = [_UNSAFE_NAME.sub("-", part).strip(" -") for part in (company, customer_code)]
    return "-".join([*(p for p in parts if p), what, day.isoformat()]) + ".pdf"


__all__ = [
    "AGING_BUCKETS",
    "BADGE_COLOURS",
    "SCOPE_HEADINGS",
    "STATUS_LABELS",
    "Balance",
    "InvoiceRow",
    "Lead",
    "aging",
    "balances",
    "bookmark_title",
    "customer_label",
    "document_filename",
    "document_title",
    "format_date",
    "format_money",
    "invoice_row",
    "invoice_rows",
    "lead",
    "open_first",
    "outstanding_amounts",
    "outstanding_by_currency",
    "scope_heading",
    "scope_text",
    "statement_title",
    "status_label",
    "status_of",
    "total_outstanding",
]
