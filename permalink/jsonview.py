"""The JSON view of a link: what the page shows, as one documented, versioned object.

The shape is described by ``docs/link-json.v1.schema.json`` (JSON Schema 2020-12) and
``docs/FEEDS.md``. :data:`VERSION` is written into every document; any change to the
shape, even an added field, comes with a new version and a new schema file, so an
integration that checks ``version`` never meets a field it does not know.

Money is a string with two decimals (``"1008.00"``, ``"-50.00"`` for a credit note),
never a float, so no amount changes on its way through a JSON parser. Invoices come in
the page's order (newest first), each with the status badge the page shows and the
absolute URL of its PDF.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any, Final

from kashflow.models import Invoice
from permalink.presentation import invoice_row
from permalink.scopes import Statement

VERSION: Final = 1
MEDIA_TYPE: Final = "application/json"
_CENTS: Final = Decimal("0.01")


def amount(value: Decimal) -> str:
    """``Decimal('1008')`` -> ``"1008.00"``: two decimals, as the page rounds them."""
    return str(value.quantize(_CENTS))


def link_document(
    found: Statement,
    *,
    link_url: str,
    all_pdf_url: str,
    pdf_url: Callable[[int], str],
    today: date,
) -> dict[str, Any]:
    """The JSON view of ``found`` as of ``today`` (URLs absolute, from the public base)."""
    return {
        "version": VERSION,
        "as_of": today.isoformat(),
        "business": {"name": found.company.name},
        "customer": {"code": found.customer.code, "name": found.customer.name},
        "scope": str(found.scope),
        "link": link_url,
        "all_pdf_url": all_pdf_url,
        "invoices": [_invoice(inv, today, pdf_url(inv.number)) for inv in found.invoices],
        "totals": _totals(found.invoices),
    }


def _invoice(invoice: Invoice, today: date, pdf_url: str) -> dict[str, Any]:
    row = invoice_row(invoice, today, pdf_url)
    return {
        "number": row.number,
        "issued": row.issued.isoformat(),
        "due": row.due.isoformat(),
        "currency": _currency(invoice),
        "total": amount(invoice.total),
        "paid": amount(invoice.total - invoice.outstanding),
        "outstanding": amount(invoice.outstanding),
        "status": row.status,
        "pdf_url": row.pdf_url,
    }


def _totals(invoices: tuple[Invoice, ...]) -> list[dict[str, str]]:
    """Total, paid and outstanding per currency, in the order the currencies first appear."""
    sums: dict[str, list[Decimal]] = {}
    for invoice in invoices:
        total, outstanding = invoice.total, invoice.outstanding
        entry = sums.setdefault(_currency(invoice), [Decimal(0), Decimal(0), Decimal(0)])
        entry[0] += total
        entry[1] += total - outstanding
        entry[2] += outstanding
    return [
        {
            "currency": code,
            "total": amount(total),
            "paid": amount(paid),
            "outstanding": amount(outstanding),
        }
        for code, (total, paid, outstanding) in sums.items()
    ]


def _currency(invoice: Invoice) -> str:
    return (invoice.currency or "GBP").upper()


__all__ = ["MEDIA_TYPE", "VERSION", "amount", "link_document"]
