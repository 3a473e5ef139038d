"""The statement pack: one PDF that opens with a statement page we render, then every invoice.

The cover (fpdf2) names the business and the client, the date, what is to pay per currency
(invoices - credit = to pay), how old the debt is (not yet due, 1-30, 31-60, 61-90, over 90
days overdue), how to pay, and the documents in the file with the page each starts on.
The invoices follow as KashFlow printed them (pypdf), each with a bookmark
(``Invoice 1251 · 26 Nov 2026 · £1,008.00``, credit notes named as such); the document
carries a Title, an Author, a Subject and its language, and opens with its bookmarks shown.
The accountant can turn the cover off; the bookmarks and metadata stay.

Everything here is pure CPU (``PackParts -> bytes``): the core fetches the PDFs and runs
:func:`build_pack` on its merge threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.errors import FPDFUnicodeEncodingException
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from pypdf.generic import NameObject, TextStringObject

from kashflow.documents import MAX_PAGES, read_pdf
from kashflow.errors import BadDocument
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.business import PaymentInstructions
from permalink.i18n import DEFAULT_LANGUAGE, Words, pick_language
from permalink.presentation import (
    AGING_BUCKETS,
    aging,
    balances,
    bookmark_title,
    document_title,
    format_date,
    format_money,
    statement_title,
)

#: A font with the glyphs of every language offered (Welsh ŵ and ŷ, for one), used when
#: the page holds text the PDF core fonts cannot draw. Debian's fonts-dejavu-core ships it.
FONT_DIRS: Final = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts/dejavu"),
)
_REGULAR, _BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
# The core fonts (in Windows-1252, which has € and typographic quotes) draw in a few
# milliseconds where embedding a TrueType font costs a tenth of a second; these stand-ins
# keep the common case on them.
_CORE_STAND_INS: Final = {"\u202f": "\xa0", "−": "-"}
# With neither the core fonts nor DejaVu able to draw a character, the nearest one.
_LAST_RESORT: Final = {"ŵ": "w", "ŷ": "y", "Ŵ": "W", "Ŷ": "Y"}
_INK: Final = (27, 31, 36)
_MUTED: Final = (74, 82, 96)
_ACCENT: Final = (29, 79, 145)
_RULE: Final = (213, 218, 225)
_WASH: Final = (244, 246, 249)
_ROW: Final = 5.2
_CREATOR: Final = "KashFlow Permalink"


@dataclass(frozen=True, slots=True)
class PackParts:
    """Everything a pack is made of; ``pdfs[i]`` is ``invoices[i]`` as KashFlow printed it."""

    company: CompanyDetails
    customer: Customer
    invoices: tuple[Invoice, ...]
    pdfs: tuple[bytes, ...]
    today: date
    language: str = DEFAULT_LANGUAGE
    payment: PaymentInstructions = field(default_factory=PaymentInstructions)
    logo: bytes | None = None
    cover: bool = True


def split_pages(document: bytes) -> list[bytes]:
    """Each page of ``document`` as a PDF of its own (a batch printed one page per invoice)."""
    reader = read_pdf(document, 0)
    pages = []
    for page in reader.pages:
        writer = PdfWriter()
        writer.add_page(page)
        out = io.BytesIO()
        writer.write(out)
        pages.append(out.getvalue())
    return pages


def build_pack(parts: PackParts, *, max_pages: int = MAX_PAGES) -> bytes:
    """The pack: the statement page (unless turned off), then each invoice, bookmarked."""
    if len(parts.pdfs) != len(parts.invoices):
        raise ValueError("one PDF per invoice")
    readers = [read_pdf(data, index) for index, data in enumerate(parts.pdfs)]
    counts = [len(reader.pages) for reader in readers]
    if sum(counts) > max_pages:
        raise BadDocument(f"more than {max_pages} pages")
    language = pick_language(parts.language)
    writer = PdfWriter()
    first = 1 if parts.cover else 0
    starts = []
    for count in counts:
        starts.append(first + 1)
        first += count
    _ = Words(language)
    if parts.cover:
        writer.append(PdfReader(io.BytesIO(render_cover(parts, starts))), import_outline=False)
        writer.add_outline_item(
            title=_("Statement · %(date)s", date=format_date(parts.today, language)),
            page_number=0,
        )
    for index, (reader, invoice) in enumerate(zip(readers, parts.invoices, strict=True)):
        start = len(writer.pages)
        try:
            writer.append(reader, import_outline=False)
        except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
            raise BadDocument(f"document {index + 1} is not a readable PDF") from exc
        writer.add_outline_item(title=bookmark_title(invoice, language), page_number=start)
    _describe(writer, parts, language)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _describe(writer: PdfWriter, parts: PackParts, language: str) -> None:
    _ = Words(language)
    writer.add_metadata(
        {
            "/Title": statement_title(parts.company, parts.customer, parts.today, language),
            "/Author": parts.company.name,
            "/Subject": _("Statement and invoices for %(customer)s", customer=parts.customer.name),
            "/Creator": _CREATOR,
        }
    )
    writer.root_object[NameObject("/Lang")] = TextStringObject(language)
    writer.page_mode = "/UseOutlines"


# -- the cover ------------------------------------------------------------------------------


def _font_dir() -> Path | None:
    for folder in FONT_DIRS:
        if (folder / _REGULAR).is_file() and (folder / _BOLD).is_file():
            return folder
    return None


class _Cover(FPDF):
    """The statement page, drawn with the core fonts or, when ``unicode``, with DejaVu."""

    def __init__(self, *, unicode: bool) -> None:
        super().__init__(format="A4", unit="mm")
        self.set_auto_page_break(auto=False)
        self.set_margins(15, 15, 15)
        # A fixed date: the same statement gives the same bytes.
        self.set_creation_date(datetime(2020, 1, 1, tzinfo=UTC))
        folder = _font_dir() if unicode else None
        self.unicode = folder is not None
        self.last_resort = unicode and folder is None
        if folder is not None:
            self.add_font("DejaVu", "", str(folder / _REGULAR))
            self.add_font("DejaVu", "B", str(folder / _BOLD))
        self.core_fonts_encoding = "cp1252"
        self.family = "DejaVu" if self.unicode else "helvetica"

    def text_of(self, text: str) -> str:
        if self.unicode:
            return text
        for char, stand_in in _CORE_STAND_INS.items():
            text = text.replace(char, stand_in)
        if self.last_resort:
            for char, stand_in in _LAST_RESORT.items():
                text = text.replace(char, stand_in)
            text = text.encode("cp1252", "replace").decode("cp1252")
        return text

    def style(self, size: float, bold: bool = False, colour: tuple[int, int, int] = _INK) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.set_text_color(*colour)

    def line_of(self, width: float, height: float, text: str, align: str = "L") -> None:
        self.cell(width, height, self.fit(text, width), align=align)

    def fit(self, text: str, width: float) -> str:
        text = self.text_of(text)
        if self.get_string_width(text) <= width - 1:
            return text
        while text and self.get_string_width(text + "…") > width - 1:
            text = text[:-1]
        return text + self.text_of("…")


def render_cover(parts: PackParts, starts: Sequence[int]) -> bytes:
    """The statement page; ``starts[i]`` is the page invoice ``i`` begins on."""
    try:
        return _draw_cover(_Cover(unicode=False), parts, starts)
    except FPDFUnicodeEncodingException:
        return _draw_cover(_Cover(unicode=True), parts, starts)


def _draw_cover(pdf: _Cover, parts: PackParts, starts: Sequence[int]) -> bytes:
    language = pick_language(parts.language)
    _ = Words(language)
    pdf.set_title(statement_title(parts.company, parts.customer, parts.today, language))
    pdf.set_author(parts.company.name)
    pdf.set_lang(language)
    pdf.add_page()
    _heading(pdf, parts, language)
    _balance(pdf, parts, language)
    _aging(pdf, parts, language)
    _how_to_pay(pdf, parts, language)
    _contents(pdf, parts, starts, language)
    pdf.set_y(-14)
    pdf.style(7.5, colour=_MUTED)
    pdf.line_of(
        180,
        4,
        _(
            "Amounts as in KashFlow on %(date)s. Each invoice follows on its own pages.",
            date=format_date(parts.today, language),
        ),
        align="C",
    )
    return bytes(pdf.output())


def _heading(pdf: _Cover, parts: PackParts, language: str) -> None:
    _ = Words(language)
    company, customer = parts.company, parts.customer
    top = pdf.get_y()
    if parts.logo:
        pdf.image(io.BytesIO(parts.logo), x=15, y=top, h=16, keep_aspect_ratio=True)
        pdf.set_y(top + 18)
    pdf.style(15, bold=True)
    pdf.line_of(110, 7, company.name)
    pdf.ln(7)
    pdf.style(8.5, colour=_MUTED)
    details = [
        *(a for a in company.address if a),
        company.postcode,
        company.email,
        company.telephone,
    ]
    if company.vat_number:
        details.append(_("VAT number %(number)s", number=company.vat_number))
    for text in details:
        if text:
            pdf.line_of(110, 4.2, text)
            pdf.ln(4.2)
    bottom = pdf.get_y()
    pdf.set_xy(125, top)
    pdf.style(20, bold=True, colour=_ACCENT)
    pdf.line_of(70, 10, _("Statement"), align="R")
    pdf.set_xy(125, top + 11)
    pdf.style(10)
    pdf.line_of(70, 5, format_date(parts.today, language), align="R")
    pdf.set_xy(125, top + 17)
    pdf.style(8.5, colour=_MUTED)
    pdf.line_of(70, 5, _("Account %(code)s", code=customer.code), align="R")
    pdf.set_y(max(bottom, top + 24) + 4)
    pdf.style(8.5, bold=True, colour=_ACCENT)
    pdf.cell(0, 5, pdf.text_of(_("For")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.style(10)
    for text in (customer.name, *customer.address, customer.postcode):
        if text:
            pdf.line_of(120, 4.8, text)
            pdf.ln(4.8)
    pdf.ln(3)


def _balance(pdf: _Cover, parts: PackParts, language: str) -> None:
    _ = Words(language)
    found = balances(parts.invoices, language)
    pdf.set_fill_color(*_WASH)
    pdf.set_draw_color(*_RULE)
    top = pdf.get_y()
    rows = max(1, len(found))
    height = 8 + rows * (11 if any(b.has_credit for b in found) else 8)
    pdf.rect(15, top, 180, height, style="DF")
    pdf.set_xy(19, top + 2)
    pdf.style(9, colour=_MUTED)
    pdf.cell(0, 5, pdf.text_of(_("To pay")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if not found:
        pdf.set_x(19)
        pdf.style(13, bold=True)
        pdf.cell(0, 7, pdf.text_of(_("Nothing to pay")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for balance in found:
        pdf.set_x(19)
        pdf.style(15, bold=True)
        amount = (
            _("In credit: %(amount)s", amount=balance.credit)
            if balance.in_credit
            else (balance.to_pay)
        )
        pdf.line_of(90, 7.5, amount)
        pdf.ln(7.5)
        if balance.has_credit:
            pdf.set_x(19)
            pdf.style(8.5, colour=_MUTED)
            pdf.line_of(
                170,
                4,
                _(
                    "Invoices %(owed)s − credit %(credit)s = to pay %(to_pay)s",
                    owed=balance.owed,
                    credit=balance.credit,
                    to_pay=balance.to_pay,
                ),
            )
            pdf.ln(4)
    pdf.set_y(top + height + 5)


def _aging(pdf: _Cover, parts: PackParts, language: str) -> None:
    _ = Words(language)
    buckets = aging(parts.invoices, parts.today)
    if not buckets:
        return
    pdf.style(10, bold=True, colour=_ACCENT)
    pdf.cell(0, 6, pdf.text_of(_("How long it has been owed")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    width = 180 / (len(AGING_BUCKETS) + (1 if len(buckets) > 1 else 0))
    pdf.set_fill_color(*_WASH)
    pdf.style(7.5, bold=True, colour=_MUTED)
    if len(buckets) > 1:
        pdf.line_of(width, 6, _("Currency"))
    for _key, label in AGING_BUCKETS:
        pdf.cell(width, 6, pdf.fit(_(label), width), align="R", fill=True)
    pdf.ln(6)
    pdf.style(9)
    for code, amounts in buckets.items():
        if len(buckets) > 1:
            pdf.line_of(width, 6, code)
        for slot, amount in enumerate(amounts):
            pdf.style(9, bold=slot > 0 and amount > 0, colour=_INK)
            pdf.line_of(width, 6, format_money(amount, code, language), align="R")
        pdf.ln(6)
    pdf.ln(3)


def _how_to_pay(pdf: _Cover, parts: PackParts, language: str) -> None:
    _ = Words(language)
    pay = parts.payment
    if not pay.given:
        return
    pdf.style(10, bold=True, colour=_ACCENT)
    pdf.cell(0, 6, pdf.text_of(_("How to pay")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    reference = pay.reference_for(parts.customer.code, [i.number for i in parts.invoices])
    facts: list[tuple[str, str]] = []
    if pay.bank_transfer:
        facts += [
            (_("Bank"), pay.bank_name),
            (_("Account name"), pay.account_name),
            (_("Sort code"), pay.sort_code),
            (_("Account number"), pay.account_number),
            (_("IBAN"), pay.iban_grouped),
            (_("BIC"), pay.bic),
        ]
        if reference.per_invoice and pay.reference != "customer":
            shown = _("the invoice number, e.g. %(example)s", example=reference.text)
            if pay.reference == "customer-invoice":
                shown = _(
                    "your account and the invoice number, e.g. %(example)s", example=reference.text
                )
        else:
            shown = reference.text
        facts.append((_("Reference"), shown))
    if pay.pay_url:
        facts.append((_("Pay online"), pay.pay_url))
    for name, value in facts:
        if not value:
            continue
        pdf.style(8.5, colour=_MUTED)
        pdf.line_of(35, 4.8, name)
        pdf.style(9.5, bold=name != _("Pay online"))
        pdf.line_of(145, 4.8, value)
        pdf.ln(4.8)
    pdf.ln(3)


def _contents(pdf: _Cover, parts: PackParts, starts: Sequence[int], language: str) -> None:
    _ = Words(language)
    pdf.style(10, bold=True, colour=_ACCENT)
    pdf.cell(0, 6, pdf.text_of(_("In this file")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    columns = (
        (_("Document"), 52.0, "L"),
        (_("Date"), 28.0, "L"),
        (_("Due date"), 28.0, "L"),
        (_("Total"), 30.0, "R"),
        (_("To pay"), 30.0, "R"),
        (_("Page"), 12.0, "R"),
    )
    pdf.set_fill_color(*_WASH)
    pdf.style(7.5, bold=True, colour=_MUTED)
    for title, width, align in columns:
        pdf.cell(width, 5.5, pdf.fit(title, width), align=align, fill=True)
    pdf.ln(5.5)
    room = int((pdf.h - 22 - pdf.get_y()) // _ROW)
    shown = parts.invoices if len(parts.invoices) <= room else parts.invoices[: room - 1]
    pdf.style(8.5)
    for invoice, start in zip(shown, starts, strict=False):
        owed = invoice.outstanding
        cells = (
            document_title(invoice, language),
            format_date(invoice.issued, language),
            format_date(invoice.due, language),
            format_money(invoice.total, invoice.currency, language),
            format_money(owed, invoice.currency, language) if owed else "—",
            str(start),
        )
        for text, (_title, width, align) in zip(cells, columns, strict=True):
            pdf.line_of(width, _ROW, text, align=align)
        pdf.ln(_ROW)
    rest = len(parts.invoices) - len(shown)
    if rest:
        pdf.style(8.5, colour=_MUTED)
        pdf.line_of(
            180,
            _ROW,
            _(
                "… and %(count)s more, from page %(page)s: each has its bookmark.",
                count=rest,
                page=starts[len(shown)],
            ),
        )
        pdf.ln(_ROW)


__all__ = ["FONT_DIRS", "PackParts", "build_pack", "render_cover", "split_pages"]
