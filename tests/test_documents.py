"""Invoice documents: bounded-concurrency fetching and an in-order merge, read back; and
merged documents fetched a batch of invoices per PrintInvoice call (InvoiceNumberList)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from kashflow.client import Account, KashFlow
from kashflow.documents import fetch_pdfs, merge_pdfs, merged_pdf
from kashflow.errors import BadDocument
from kashflow.sandbox import DEMO, Sandbox
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.conftest import SandboxFactory
from tests.support.core import make_core


def invoice_numbers_per_page(pdf: bytes) -> list[int]:
    """The invoice number each page shows (the sandbox prints it on every page)."""
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        text = page.extract_text()
        match = re.search(r"Invoice\D{0,20}(\d{3,})", text)
        assert match, text[:200]
        found.append(int(match.group(1)))
    return found


async def test_merged_pdf_keeps_every_page_of_every_invoice_in_order(
    sandbox: Sandbox, demo_account: Account
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo")[:12]]
    singles = await fetch_pdfs(demo_account, numbers)
    pages_each = [len(PdfReader(io.BytesIO(pdf)).pages) for pdf in singles]

    merged = await merged_pdf(demo_account, numbers, concurrency=4)
    per_page = invoice_numbers_per_page(merged)
    expected = [n for n, count in zip(numbers, pages_each, strict=True) for _ in range(count)]
    assert per_page == expected


async def test_a_multi_page_invoice_keeps_all_its_pages(
    sandbox: Sandbox, demo_account: Account
) -> None:
    longest = max(sandbox.invoices("demo"), key=lambda r: len(r.lines))
    shortest = sandbox.invoices("demo")[0]
    merged = await merged_pdf(demo_account, [shortest.number, longest.number])
    per_page = invoice_numbers_per_page(merged)
    assert per_page.count(longest.number) >= 2
    assert per_page[0] == shortest.number and per_page[-1] == longest.number


async def test_fetching_never_exceeds_the_concurrency_bound(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(latency_ms=20)
    async with KashFlow(sandbox.url, timeout=5, pdf_hosts=sandbox.pdf_hosts) as kf:
        numbers = [r.number for r in sandbox.invoices("demo")[:24]]
        pdfs = await fetch_pdfs(kf.account(DEMO), numbers, concurrency=3)
    assert len(pdfs) == 24
    assert 2 <= sandbox.peak_in_flight <= 3


async def test_progress_is_reported_for_every_invoice(
    sandbox: Sandbox, demo_account: Account
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo")[:5]]
    seen: list[tuple[int, int]] = []
    await fetch_pdfs(demo_account, numbers, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]


async def test_a_bad_document_stops_the_merge(sandbox: Sandbox, demo_account: Account) -> None:
    sandbox.faults.bad_pdf = "html"
    numbers = [r.number for r in sandbox.invoices("demo")[:3]]
    with pytest.raises(BadDocument):
        await merged_pdf(demo_account, numbers)


def test_merge_refuses_bytes_that_are_not_a_pdf() -> None:
    with pytest.raises(BadDocument):
        merge_pdfs([b"%PDF-1.4 this is not really a pdf"])


def test_merge_refuses_more_pages_than_the_cap(one_page_pdf: bytes) -> None:
    with pytest.raises(BadDocument):
        merge_pdfs([one_page_pdf] * 3, max_pages=2)


def test_merging_nothing_is_an_empty_but_valid_pdf() -> None:
    assert len(PdfReader(io.BytesIO(merge_pdfs([]))).pages) == 0


@pytest.fixture
def one_page_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- one PrintInvoice call per batch (InvoiceNumberList) -----------------------------------


def prints(sandbox: Sandbox) -> int:
    return len([c for c in sandbox.calls if c.operation == "PrintInvoice"])


@pytest.mark.parametrize(("batch", "calls"), [(5, 3), (12, 1), (100, 1)])
async def test_batched_merge_holds_the_same_pages_with_one_call_per_batch(
    sandbox: Sandbox, batch: int, calls: int
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo")[:12]][::-1]
    async with KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts) as kf:
        one_by_one = await merged_pdf(kf.account(DEMO), numbers)
    per_invoice = prints(sandbox)
    async with KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts, print_batch=batch) as kf:
        batched = await merged_pdf(kf.account(DEMO), numbers)
    assert per_invoice == 12 and prints(sandbox) - per_invoice == calls
    assert invoice_numbers_per_page(batched) == invoice_numbers_per_page(one_by_one)
    assert invoice_numbers_per_page(batched)[0] == numbers[0]


async def test_a_batch_size_given_to_merged_pdf_overrides_the_gateways(
    sandbox: Sandbox, demo_account: Account
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo")[:6]]
    seen: list[tuple[int, int]] = []
    merged = await merged_pdf(
        demo_account, numbers, batch=4, progress=lambda done, total: seen.append((done, total))
    )
    assert prints(sandbox) == 2
    assert len(seen) == 2 and seen[-1] == (6, 6)  # once per batch, counted in invoices
    assert sorted(set(invoice_numbers_per_page(merged))) == sorted(numbers)


async def test_a_list_printed_as_only_its_first_invoice_is_fetched_one_by_one(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.list_print = "first"
    numbers = [r.number for r in sandbox.invoices("demo", "IVY01")]
    async with KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts, print_batch=25) as kf:
        merged = await merged_pdf(kf.account(DEMO), numbers)
    assert list(dict.fromkeys(invoice_numbers_per_page(merged))) == numbers
    assert prints(sandbox) == 1 + len(numbers)
    assert "too short to hold them" in caplog.text


async def test_a_bad_batch_document_stops_the_merge(sandbox: Sandbox) -> None:
    sandbox.faults.bad_pdf = "html"
    numbers = [r.number for r in sandbox.invoices("demo")[:4]]
    async with KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts, print_batch=2) as kf:
        with pytest.raises(BadDocument):
            await merged_pdf(kf.account(DEMO), numbers)


async def test_the_cores_merged_document_is_fetched_a_batch_at_a_time(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    numbers = [r.number for r in sandbox.invoices("demo", "ACME01")[:30]]
    db = open_database(None, tmp_path)
    async with KashFlow(sandbox.url, pdf_hosts=sandbox.pdf_hosts, print_batch=25) as kf:
        core = make_core(db, Keyring.generate(), kf)
        try:
            merged = await core.merged_document(DEMO, numbers)
        finally:
            core.close()
            db.close()
    assert prints(sandbox) == 2  # 25 + 5
    assert list(dict.fromkeys(invoice_numbers_per_page(merged))) == numbers
