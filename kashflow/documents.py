"""Invoice documents: fetch each invoice's PDF with bounded concurrency, merge them in order.

Fetching is I/O (PrintInvoice, then a GET of the URL it returns); merging is pure CPU
(``list[bytes] -> bytes``) and runs on a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from typing import Protocol

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError

from kashflow.concurrent import calls_at_once
from kashflow.errors import BadDocument

DEFAULT_CONCURRENCY = 8
# A merged document bigger than this is refused rather than built: it protects the server
# from a pathological (or hostile) PDF, and no client needs a 5 000-page download.
MAX_PAGES = 5000


class PdfSource(Protocol):
    async def invoice_pdf(self, number: int) -> bytes: ...


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


def _read(data: bytes, index: int) -> PdfReader:
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
    _read(data, 0)


def merge_pdfs(pdfs: Sequence[bytes], *, max_pages: int = MAX_PAGES) -> bytes:
    """One PDF holding every page of every document, in order."""
    writer = PdfWriter()
    pages = 0
    for index, data in enumerate(pdfs):
        reader = _read(data, index)
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


async def merged_pdf(
    source: PdfSource,
    numbers: Sequence[int],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> bytes:
    pdfs = await fetch_pdfs(source, numbers, concurrency=concurrency, progress=progress)
    return await asyncio.to_thread(merge_pdfs, pdfs)
