"""Invoice documents: fetch each invoice's PDF with bounded concurrency, merge them in order.

Fetching is I/O (PrintInvoice, then a GET of the URL it returns); merging is pure CPU
(``list[bytes] -> bytes``) and runs on a worker thread so the event loop keeps serving.

Where KashFlow prints several invoices into one PDF (PrintInvoice's ``InvoiceNumberList``,
switched on per deployment once ``kashflow-permalink probe`` has shown it works), a merged
document is fetched a batch at a time instead of an invoice at a time. A batch's document
with fewer pages than invoices cannot hold them all; that batch is fetched again one
invoice at a time, so a client never gets a file missing an invoice.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError

from kashflow.concurrent import calls_at_once
from kashflow.errors import BadDocument

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
# A merged document bigger than this is refused rather than built: it protects the server
# from a pathological (or hostile) PDF, and no client needs a 5 000-page download.
MAX_PAGES = 5000


class PdfSource(Protocol):
    async def invoice_pdf(self, number: int) -> bytes: ...


@runtime_checkable
class BatchPdfSource(Protocol):
    """A source that can print several invoices into one PDF, and says how many at once."""

    @property
    def print_batch(self) -> int: ...

    async def invoice_pdf(self, number: int) -> bytes: ...

    async def invoices_pdf(self, numbers: Sequence[int]) -> bytes: ...


async def fetch_pdfs(
    source: PdfSource,
    numbers: Sequence[int],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> list[bytes]:
    """Every invoice's PDF, in the order of ``numbers``, at most ``concurrency`` at a time.

    The first failure cancels the rest and is raised.
    """
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(number: int) -> bytes:
        nonlocal done
        async with gate:
            pdf = await source.invoice_pdf(number)
        done += 1
        if progress is not None:
            progress(done, len(numbers))
        return pdf

    async with calls_at_once() as group:
        tasks = [group.create_task(one(n)) for n in numbers]
    return [t.result() for t in tasks]


def read_pdf(data: bytes, index: int) -> PdfReader:
    """A reader over one invoice's PDF, which must open and have at least one page."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        count = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise BadDocument(f"document {index + 1} is not a readable PDF") from exc
    if count == 0:
        # Merging it would silently drop that invoice from the customer's file.
        raise BadDocument(f"document {index + 1} has no pages")
    return reader


def check_pdf(data: bytes) -> None:
    """Raise BadDocument unless ``data`` is a PDF that opens and has pages (one invoice
    passed through as it is must be as sound as one merged)."""
    read_pdf(data, 0)


def merge_pdfs(pdfs: Sequence[bytes], *, max_pages: int = MAX_PAGES) -> bytes:
    """One PDF holding every page of every document, in order."""
    writer = PdfWriter()
    pages = 0
    for index, data in enumerate(pdfs):
        reader = read_pdf(data, index)
        pages += len(reader.pages)
        if pages > max_pages:
            raise BadDocument(f"more than {max_pages} pages")
        try:
            writer.append(reader)
        except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
            raise BadDocument(f"document {index + 1} is not a readable PDF") from exc
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_count(data: bytes) -> int:
    """How many pages a PDF has (0 when it does not open)."""
    try:
        return len(PdfReader(io.BytesIO(data), strict=False).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        return 0


def page_texts(data: bytes) -> list[str]:
    """Each page's text, whitespace folded: enough to tell two documents' pages apart."""
    reader = PdfReader(io.BytesIO(data), strict=False)
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def batch_size(source: PdfSource, batch: int | None = None) -> int:
    """Invoices per PrintInvoice call: ``batch`` if given, else what the source says; 1
    (one call per invoice) for a source that cannot print several at once."""
    if not isinstance(source, BatchPdfSource):
        return 1
    return max(1, source.print_batch if batch is None else batch)


async def fetch_batched_pdfs(
    source: BatchPdfSource,
    numbers: Sequence[int],
    *,
    batch: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> list[bytes]:
    """Documents covering ``numbers`` in order, ``batch`` invoices each, at most
    ``concurrency`` fetches at a time. A batch whose document has fewer pages than it has
    invoices is fetched again invoice by invoice."""
    gate = asyncio.Semaphore(max(1, concurrency))
    chunks = [list(numbers[i : i + batch]) for i in range(0, len(numbers), max(1, batch))]
    done = 0

    async def single(number: int) -> bytes:
        async with gate:
            return await source.invoice_pdf(number)

    async def one(chunk: list[int]) -> list[bytes]:
        nonlocal done
        if len(chunk) == 1:
            pdfs = [await single(chunk[0])]
        else:
            async with gate:
                pdf = await source.invoices_pdf(chunk)
            if await asyncio.to_thread(page_count, pdf) >= len(chunk):
                pdfs = [pdf]
            else:
                log.warning(
                    "KashFlow printed %d invoices into a PDF too short to hold them; "
                    "fetching them one by one (is PDF batching right for this account?)",
                    len(chunk),
                )
                async with calls_at_once() as inner:
                    each = [inner.create_task(single(n)) for n in chunk]
                pdfs = [t.result() for t in each]
        done += len(chunk)
        if progress is not None:
            progress(done, len(numbers))
        return pdfs

    async with calls_at_once() as group:
        tasks = [group.create_task(one(chunk)) for chunk in chunks]
    return [pdf for task in tasks for pdf in task.result()]


async def fetch_documents(
    source: PdfSource,
    numbers: Sequence[int],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
    batch: int | None = None,
) -> list[bytes]:
    """The PDFs that, merged in order, make the document of ``numbers``: one per invoice,
    or with a batch size above 1 (``batch``, else the source's ``print_batch``) one per
    batch of that many invoices."""
    size = batch_size(source, batch)
    if size > 1 and len(numbers) > 1 and isinstance(source, BatchPdfSource):
        return await fetch_batched_pdfs(
            source, numbers, batch=size, concurrency=concurrency, progress=progress
        )
    return await fetch_pdfs(source, numbers, concurrency=concurrency, progress=progress)


async def merged_pdf(
    source: PdfSource,
    numbers: Sequence[int],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
    batch: int | None = None,
) -> bytes:
    """One PDF of every invoice in ``numbers``, in order (fetched as
    :func:`fetch_documents` does, merged on a worker thread)."""
    pdfs = await fetch_documents(
        source, numbers, concurrency=concurrency, progress=progress, batch=batch
    )
    return await asyncio.to_thread(merge_pdfs, pdfs)
