"""Invoice PDFs as KashFlow's PrintInvoice serves them, and the short-lived links to them.

Rendering is pure (records in, bytes out) and cached by invoice version, so a benchmark
asking for the same invoices again costs a dictionary lookup. Every page carries its
invoice number, so the order of a merged document can be read back.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from kashflow.sandbox.records import Company, CustomerRecord, InvoiceRecord

_LATIN1_STAND_INS: Final = {"—": "-", "–": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "€": "EUR "}

# Table columns: description, quantity, rate, VAT, net (mm; A4 minus 15 mm margins).
_COLUMNS: Final = (
    ("Description", 86.0, "L"),
    ("Qty", 16.0, "R"),
    ("Rate", 28.0, "R"),
    ("VAT", 20.0, "R"),
    ("Net", 30.0, "R"),
)
_ROW: Final = 6.5
_FIXED_DATE: Final = datetime(2020, 1, 1, tzinfo=UTC)


def plain(text: str) -> str:
    """Text the PDF core fonts can draw (they cover Latin-1 only)."""
    for char, stand_in in _LATIN1_STAND_INS.items():
        text = text.replace(char, stand_in)
    return text.encode("latin-1", "replace").decode("latin-1")


def format_money(amount: Decimal, currency: str, home: Company) -> str:
    symbol = home.currency_symbol if currency == home.currency_code else f"{currency} "
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}"


def document_title(invoice: InvoiceRecord) -> str:
    return (
        f"Credit note {invoice.number}" if invoice.is_credit_note else f"Invoice {invoice.number}"
    )


class _InvoicePdf(FPDF):
    """An FPDF whose footer names the invoice the page belongs to."""

    def __init__(self, company: Company) -> None:
        super().__init__(format="A4", unit="mm")
        self.company = company
        self.label = ""
        self.first_page = 1
        self.set_auto_page_break(auto=False)
        self.set_margins(15, 15, 15)
        self.set_title(f"{company.name} invoices")
        self.set_author(company.name)
        # A fixed date: identical records give identical bytes.
        self.set_creation_date(_FIXED_DATE)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("helvetica", "", 8)
        self.set_text_color(120, 120, 120)
        page = self.page_no() - self.first_page + 1
        self.cell(0, 5, plain(f"{self.company.name}  ·  {self.label}  ·  page {page}"), align="C")


def render_invoices(
    company: Company, invoices: Sequence[tuple[InvoiceRecord, CustomerRecord]]
) -> bytes:
    """One PDF holding each invoice in turn, each starting on a new page."""
    pdf = _InvoicePdf(company)
    for invoice, customer in invoices:
        pdf.add_page()  # closes the previous page, whose footer still needs the old label
        pdf.label = document_title(invoice)
        pdf.first_page = pdf.page_no()
        _first_page_head(pdf, company, invoice, customer)
        _lines_table(pdf, company, invoice)
        _totals(pdf, company, invoice)
    return bytes(pdf.output())


def _first_page_head(
    pdf: _InvoicePdf, company: Company, invoice: InvoiceRecord, customer: CustomerRecord
) -> None:
    pdf.set_text_color(20, 40, 70)
    pdf.set_font("helvetica", "B", 18)
    pdf.cell(110, 9, plain(company.name))
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 9, plain(pdf.label.upper()), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(60, 60, 60)
    pdf.set_font("helvetica", "", 9)
    company_lines = [
        *(a for a in company.address if a),
        company.postcode,
        company.email,
        company.telephone,
    ]
    if company.vat_number:
        company_lines.append(f"VAT registration {company.vat_number}")
    facts = [
        ("Number", str(invoice.number)),
        ("Date", invoice.issued.strftime("%d %b %Y")),
        ("Due", invoice.due.strftime("%d %b %Y")),
        ("Reference", invoice.reference or "-"),
        ("Currency", invoice.currency),
    ]
    for row in range(max(len(company_lines), len(facts))):
        left = company_lines[row] if row < len(company_lines) else ""
        pdf.cell(110, 5, plain(left))
        if row < len(facts):
            name, value = facts[row]
            pdf.set_font("helvetica", "B", 9)
            pdf.cell(30, 5, name, align="R")
            pdf.set_font("helvetica", "", 9)
            pdf.cell(0, 5, plain(value), align="R")
        pdf.ln(5)
    pdf.ln(4)
    pdf.set_font("helvetica", "B", 9)
    pdf.set_text_color(20, 40, 70)
    pdf.cell(0, 5, "Bill to", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(40, 40, 40)
    pdf.set_font("helvetica", "", 10)
    for text in (customer.name, customer.contact, *customer.address, customer.postcode):
        if text:
            pdf.cell(0, 5, plain(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)


def _table_head(pdf: _InvoicePdf) -> None:
    pdf.set_font("helvetica", "B", 9)
    pdf.set_fill_color(20, 40, 70)
    pdf.set_text_color(255, 255, 255)
    for title, width, align in _COLUMNS:
        pdf.cell(width, 7, title, align=align, fill=True)
    pdf.ln(7)
    pdf.set_text_color(40, 40, 40)
    pdf.set_font("helvetica", "", 9)


def _continue_on_new_page(pdf: _InvoicePdf) -> None:
    pdf.add_page()
    pdf.set_font("helvetica", "B", 11)
    pdf.set_text_color(20, 40, 70)
    pdf.cell(0, 8, plain(f"{pdf.label} (continued)"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    _table_head(pdf)


def _fit(pdf: _InvoicePdf, text: str, width: float) -> str:
    text = plain(text)
    if pdf.get_string_width(text) <= width - 2:
        return text
    while text and pdf.get_string_width(text + "...") > width - 2:
        text = text[:-1]
    return text + "..."


def _lines_table(pdf: _InvoicePdf, company: Company, invoice: InvoiceRecord) -> None:
    _table_head(pdf)
    bottom = pdf.h - 30
    for index, line in enumerate(sorted(invoice.lines, key=lambda item: item.sort)):
        if pdf.get_y() + _ROW > bottom:
            _continue_on_new_page(pdf)
        shade = index % 2 == 1
        pdf.set_fill_color(242, 244, 248)
        vat = "exempt" if line.vat_exempt else f"{line.vat_rate.normalize():f}%"
        cells = (
            _fit(pdf, line.description, _COLUMNS[0][1]),
            f"{line.quantity.normalize():f}",
            format_money(line.rate, invoice.currency, company),
            vat,
            format_money(line.net, invoice.currency, company),
        )
        for text, (_title, width, align) in zip(cells, _COLUMNS, strict=True):
            pdf.cell(width, _ROW, text, align=align, fill=shade)
        pdf.ln(_ROW)


def _totals(pdf: _InvoicePdf, company: Company, invoice: InvoiceRecord) -> None:
    rows = [
        ("Net", invoice.net),
        ("VAT", invoice.vat),
        ("Total", invoice.total),
        ("Paid", invoice.amount_paid),
        ("Outstanding", invoice.outstanding),
    ]
    if pdf.get_y() + 8 * len(rows) + 10 > pdf.h - 30:
        _continue_on_new_page(pdf)
    pdf.ln(4)
    for name, amount in rows:
        strong = name in ("Total", "Outstanding")
        pdf.set_font("helvetica", "B" if strong else "", 10)
        pdf.cell(130, 6.5, "")
        pdf.cell(20, 6.5, name, align="R")
        pdf.cell(0, 6.5, format_money(amount, invoice.currency, company), align="R")
        pdf.ln(6.5)
    if invoice.cis_reverse_charge:
        pdf.ln(3)
        pdf.set_font("helvetica", "I", 8)
        pdf.cell(0, 5, "Reverse charge: customer to account for VAT to HMRC (CIS).")
    if invoice.currency != company.currency_code:
        pdf.ln(5)
        pdf.set_font("helvetica", "I", 8)
        pdf.cell(
            0,
            5,
            plain(
                f"Exchange rate {invoice.exchange_rate} {invoice.currency} "
                f"per {company.currency_code}."
            ),
        )


CacheKey = tuple[str, tuple[tuple[int, int], ...]]


class PdfCache:
    """Rendered documents by (account, (invoice number, version)...), least recently used out."""

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        self._items: OrderedDict[CacheKey, bytes] = OrderedDict()

    @staticmethod
    def key(account: str, invoices: Sequence[InvoiceRecord]) -> CacheKey:
        return account, tuple((i.number, i.version) for i in invoices)

    def get(self, key: CacheKey) -> bytes | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: CacheKey, document: bytes) -> None:
        self._items[key] = document
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class PrintJob:
    account: str
    numbers: tuple[int, ...]
    expires: float  # time.monotonic()


class PrintLinks:
    """PrintInvoice's answers: unguessable keys that name invoices for a limited time."""

    def __init__(self, ttl_seconds: float = 600.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._jobs: dict[str, PrintJob] = {}

    def issue(
        self, account: str, numbers: tuple[int, ...], *, ttl_seconds: float | None = None
    ) -> str:
        now = time.monotonic()
        self._jobs = {k: j for k, j in self._jobs.items() if j.expires > now}
        key = secrets.token_urlsafe(24)
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        self._jobs[key] = PrintJob(account, numbers, now + ttl)
        return key

    def find(self, key: str) -> PrintJob | None:
        job = self._jobs.get(key)
        if job is None or job.expires <= time.monotonic():
            return None
        return job
