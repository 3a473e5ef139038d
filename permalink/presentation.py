"""How invoices are written for people, the same on a page and in a mail.

One home for the rows a client sees (every cell already formatted), the status labels,
money, dates, the heading of a scope and the name a merged document is saved under, so
the page, the reply and the settings pages never disagree about any of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from kashflow.models import Invoice
from permalink.scopes import Scope

_SYMBOLS: Final = {"GBP": "£", "EUR": "€"}
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

#: The badge a status is shown with, on pages and in mail.
STATUS_LABELS: Final = {
    "paid": "Paid",
    "part-paid": "Part paid",
    "due": "Due",
    "overdue": "Overdue",
}
SCOPE_HEADINGS: Final = {"all": "Your invoices", "unpaid": "Your unpaid invoices"}

# Path separators and control characters have no place in a saved file's name.
_UNSAFE_NAME: Final = re.compile(r"[\x00-\x1f\x7f/\\]+")


def format_money(amount: Decimal, currency: str) -> str:
    """``£1,234.50``, ``-€80.00``, ``USD 12.00``: the sign before the symbol; an
    unfamiliar currency is written by its code."""
    code = (currency or "GBP").upper()
    sign = "-" if amount < 0 else ""
    figure = f"{abs(amount).quantize(Decimal('0.01')):,.2f}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{figure}" if symbol else f"{sign}{code} {figure}"


def format_date(day: date) -> str:
    """``3 Mar 2025``: unambiguous to UK and other readers, the same in every locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


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


def invoice_row(invoice: Invoice, today: date, pdf_url: str = "") -> InvoiceRow:
    status = invoice.status(today)
    return InvoiceRow(
        number=invoice.number,
        issued=invoice.issued,
        issued_text=format_date(invoice.issued),
        due=invoice.due,
        due_text=format_date(invoice.due),
        total=format_money(invoice.total, invoice.currency),
        paid=format_money(invoice.total - invoice.outstanding, invoice.currency),
        outstanding=format_money(invoice.outstanding, invoice.currency),
        status=status,
        status_label=STATUS_LABELS.get(status, status),
        pdf_url=pdf_url,
    )


def invoice_rows(invoices: Iterable[Invoice], today: date) -> list[InvoiceRow]:
    return [invoice_row(invoice, today) for invoice in invoices]


def outstanding_by_currency(invoices: Iterable[Invoice]) -> dict[str, Decimal]:
    """Total still owed per currency (a customer may be billed in more than one)."""
    totals: dict[str, Decimal] = {}
    for invoice in invoices:
        if invoice.outstanding:
            code = (invoice.currency or "GBP").upper()
            totals[code] = totals.get(code, Decimal(0)) + invoice.outstanding
    return totals


def outstanding_amounts(invoices: Iterable[Invoice]) -> list[str]:
    """The amounts still owed, one per currency, in the order the currencies first appear."""
    return [
        format_money(amount, code) for code, amount in outstanding_by_currency(invoices).items()
    ]


def total_outstanding(invoices: Iterable[Invoice]) -> str:
    """The sum still owed in one line (``""`` when nothing is owed)."""
    return " + ".join(outstanding_amounts(invoices))


def scope_heading(scope: Scope) -> str:
    if scope.kind == "invoice":
        if scope.invoice is not None:
            return f"Invoice {scope.invoice}"
        return "Invoices " + ", ".join(str(n) for n in scope.numbers)
    return SCOPE_HEADINGS[scope.kind]


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
    ``<Company>-<CustomerCode>-<what>-<date>.pdf``."""
    if scope.kind == "invoice":
        what = "invoice-" + "-".join(str(n) for n in scope.numbers[:3])
        if len(scope.numbers) > 3:
            what = f"invoices-{scope.numbers[0]}-to-{scope.numbers[-1]}"
    else:
        what = "unpaid-invoices" if scope.kind == "unpaid" else "invoices"
    parts = [_UNSAFE_NAME.sub("-", part).strip(" -") for part in (company, customer_code)]
    return "-".join([*(p for p in parts if p), what, day.isoformat()]) + ".pdf"


__all__ = [
    "SCOPE_HEADINGS",
    "STATUS_LABELS",
    "InvoiceRow",
    "customer_label",
    "document_filename",
    "format_date",
    "format_money",
    "invoice_row",
    "invoice_rows",
    "outstanding_amounts",
    "outstanding_by_currency",
    "scope_heading",
    "scope_text",
    "total_outstanding",
]
