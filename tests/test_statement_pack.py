"""The statement pack, read back as a client's PDF reader reads it: the statement page's
text, the bookmarks, the document's Title and Author, and the page count."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from PIL import Image
from pypdf import PdfReader

from kashflow.client import Account
from kashflow.errors import BadDocument
from kashflow.models import CompanyDetails, Customer, Invoice
from permalink.business import PaymentInstructions, clean_logo
from permalink.presentation import format_date
from permalink.statement_pack import FONT_DIRS, PackParts, build_pack
from tests.support.pdfs import bookmarks, language, one_page_pdf

PAYMENT = PaymentInstructions(
    bank_name="Barclays Bank UK PLC",
    account_name="Northwind Studio Ltd",
    sort_code="20-00-00",
    account_number="55779911",
    iban="GB29NWBK60161331926819",
    bic="NWBKGB2L",
    pay_url="https://pay.northwind-studio.example/",
)


async def parts_for(account: Account, code: str, language: str = "en-GB") -> PackParts:
    customer = await account.customer_by_code(code)
    invoices = sorted(
        await account.invoices_for_customer(customer.id, lines=False),
        key=lambda i: (i.issued, i.number),
        reverse=True,
    )
    pdfs = tuple([await account.invoice_pdf(i.number) for i in invoices])
    return PackParts(
        company=await account.company_details(),
        customer=customer,
        invoices=tuple(invoices),
        pdfs=pdfs,
        today=date.today(),
        language=language,
        payment=PAYMENT,
    )


def read(pack: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(pack))


def page_count(pdf: bytes) -> int:
    return len(read(pdf).pages)


def bookmark_pages(reader: PdfReader) -> list[tuple[str, int]]:
    return bookmarks(reader)


async def test_the_pack_opens_with_the_statement_then_every_invoice_bookmarked(
    demo_account: Account,
) -> None:
    parts = await parts_for(demo_account, "DUNE01")
    reader = read(build_pack(parts))

    assert len(reader.pages) == 1 + sum(page_count(pdf) for pdf in parts.pdfs)
    # The core fonts draw the minus sign as a hyphen; the sum reads the same.
    cover = reader.pages[0].extract_text().replace("\u2212", "-")
    for text in (
        "Statement",
        "Northwind Studio Ltd",
        "Dunes & Daughters",
        "To pay",
        "£3,318.00",
        "Invoices £3,480.00 - credit £162.00 = to pay £3,318.00",
        "How to pay",
        "20-00-00",
        "55779911",
        "GB29 NWBK 6016 1331 9268 19",
        "In this file",
        "Pay online",
        "https://pay.northwind-studio.example/",
        format_date(parts.today),
    ):
        assert text in cover, text
    lines = cover.splitlines()
    for bucket in ("Not yet due", "1–30 days overdue", "Over 90 days overdue"):
        assert bucket in cover
    marks = bookmark_pages(reader)
    assert len(marks) == 1 + len(parts.invoices)
    assert marks[0][0].startswith("Statement · ") and marks[0][1] == 0
    start = 1
    for (title, page), invoice, pdf in zip(marks[1:], parts.invoices, parts.pdfs, strict=True):
        kind = "Credit note" if invoice.is_credit_note else "Invoice"
        assert title.startswith(f"{kind} {invoice.number} · "), title
        assert page == start
        # The statement's table names the page each document starts on (1-based).
        [row] = [line for line in lines if line.startswith(f"{kind} {invoice.number} ")]
        assert row.endswith(f" {start + 1}"), row
        start += page_count(pdf)
    metadata = reader.metadata
    assert metadata is not None
    assert (
        metadata.title == f"Northwind Studio Ltd — Dunes & Daughters — statement {marks[0][0][12:]}"
    )
    assert metadata.author == "Northwind Studio Ltd"


async def test_a_bookmark_reads_like_the_issue_asks(demo_account: Account) -> None:
    parts = await parts_for(demo_account, "CORV01")
    reader = read(build_pack(parts))
    first: Invoice = parts.invoices[0]
    assert bookmark_pages(reader)[1][0] == (
        f"Invoice {first.number} · {first.issued.day} {first.issued:%b %Y} · €{first.total:,.2f}"
    ).replace("Sep ", "Sept ")


async def test_the_pack_speaks_the_clients_language(demo_account: Account) -> None:
    parts = await parts_for(demo_account, "CORV01", "de")
    pack = build_pack(parts)
    reader = read(pack)
    cover = reader.pages[0].extract_text()
    assert "Kontoauszug" in cover and "So zahlen Sie" in cover
    amount = f"{parts.invoices[0].total:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
    assert f"{amount} €" in cover.replace("\xa0", " ")
    assert bookmark_pages(reader)[1][0].startswith(f"Rechnung {parts.invoices[0].number} · ")
    assert language(pack) == "de"


async def test_welsh_letters_are_drawn_with_a_unicode_font(demo_account: Account) -> None:
    assert any((folder / "DejaVuSans.ttf").is_file() for folder in FONT_DIRS), (
        "fonts-dejavu-core is installed by scripts/system-packages"
    )
    parts = await parts_for(demo_account, "FOX01", "cy")
    customer = replace(parts.customer, name="Siop Bwyd Ŵy a Ŷd")
    cover = read(build_pack(replace(parts, customer=customer))).pages[0].extract_text()
    assert "Siop Bwyd Ŵy a Ŷd" in cover
    assert "Datganiad" in cover


async def test_the_cover_can_be_turned_off(demo_account: Account) -> None:
    parts = await parts_for(demo_account, "IVY01")
    reader = read(build_pack(replace(parts, cover=False)))
    assert len(reader.pages) == sum(page_count(pdf) for pdf in parts.pdfs)
    assert len(reader.outline) == len(parts.invoices)
    assert reader.metadata is not None and reader.metadata.title


async def test_a_long_history_keeps_the_statement_to_one_page(demo_account: Account) -> None:
    parts = await parts_for(demo_account, "ACME01")
    reader = read(build_pack(parts))
    assert len(reader.pages) == 1 + sum(page_count(pdf) for pdf in parts.pdfs)
    cover = reader.pages[0].extract_text()
    assert "more, from page" in cover  # the rest are listed by their bookmarks
    assert len(reader.outline) == 1 + 220


def test_a_document_that_is_not_a_pdf_is_refused() -> None:
    invoice = Invoice(
        1, 1, 1, "x", date(2026, 1, 1), date(2026, 2, 1), Decimal(1), Decimal(0), Decimal(0), False
    )
    with pytest.raises(BadDocument):
        build_pack(
            PackParts(
                company=CompanyDetails("Co"),
                customer=Customer(1, "C", "Client"),
                invoices=(invoice,),
                pdfs=(b"<html>not a pdf</html>",),
                today=date(2026, 3, 1),
            )
        )


TODAY = date(2026, 3, 1)


def owed(number: int, due_in: int, amount: str, currency: str = "GBP") -> Invoice:
    """An unpaid invoice issued a month before ``TODAY`` and due ``due_in`` days from it."""
    return Invoice(
        number,
        number,
        1,
        "Client",
        TODAY - timedelta(days=30),
        TODAY + timedelta(days=due_in),
        Decimal(amount),
        Decimal(0),
        Decimal(0),
        False,
        currency=currency,
    )


def cover_of(*invoices: Invoice) -> list[str]:
    parts = PackParts(
        company=CompanyDetails("Northwind Studio Ltd"),
        customer=Customer(1, "CLIENT01", "Client"),
        invoices=invoices,
        pdfs=tuple(one_page_pdf() for _ in invoices),
        today=TODAY,
    )
    return read(build_pack(parts)).pages[0].extract_text().splitlines()


def test_the_aging_puts_each_debt_in_its_bucket() -> None:
    lines = cover_of(
        owed(1, 10, "101"), owed(2, -10, "202"), owed(3, -45, "303"), owed(4, -75, "404"),
        owed(5, -120, "505"),
    )  # fmt: skip
    assert (
        "Not yet due 1–30 days overdue 31–60 days overdue 61–90 days overdue Over 90 days overdue"
    ) in lines
    assert "£101.00 £202.00 £303.00 £404.00 £505.00" in lines
    assert "£1,515.00" in lines


def test_two_currencies_are_totalled_and_aged_apart() -> None:
    lines = cover_of(owed(1, 10, "100"), owed(2, -40, "250"), owed(3, -5, "66", "EUR"))
    to_pay = lines.index("To pay")
    assert lines[to_pay + 1 : to_pay + 3] == ["£350.00", "€66.00"]
    assert lines[lines.index("How long it has been owed") + 1].startswith("Currency Not yet due")
    assert "GBP £100.00 £0.00 £250.00 £0.00 £0.00" in lines
    assert "EUR €0.00 €66.00 €0.00 €0.00 €0.00" in lines


async def test_the_business_logo_heads_the_statement(demo_account: Account) -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 100), (29, 79, 145)).save(out, format="PNG")
    parts = await parts_for(demo_account, "IVY01")
    assert len(read(build_pack(parts)).pages[0].images) == 0
    reader = read(build_pack(replace(parts, logo=clean_logo(out.getvalue()))))
    [logo] = reader.pages[0].images
    assert logo.image is not None and logo.image.size[0] / logo.image.size[1] == 3
