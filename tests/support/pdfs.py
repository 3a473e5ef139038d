"""Hostile and broken PDFs, built with pypdf and zlib, for the tests and the benchmarks.

* :func:`page_tree_bomb` — a tiny file whose page tree names one page 2**levels times,
  counting honestly or lying about it;
* :func:`deflate_bomb` — one page whose content stream is mebibytes of zeros deflated
  twice over;
* :func:`no_pages_pdf` and :func:`one_page_pdf` — the smallest empty and sound documents.
"""

from __future__ import annotations

import io
import zlib

from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject, StreamObject


def pdf_bytes(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def no_pages_pdf() -> bytes:
    return pdf_bytes(PdfWriter())


def one_page_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    return pdf_bytes(writer)


def page_tree_bomb(levels: int, *, claimed: int | None = None) -> bytes:
    """A tiny PDF whose page tree names one page 2**levels times (each node's kids twice);
    ``claimed`` is the page count its root admits to (the truth when None)."""
    writer = PdfWriter()
    writer.add_blank_page(width=100, height=100)
    node = writer.pages[0].indirect_reference
    for level in range(1, levels + 1):
        count = 2**level if claimed is None else claimed
        tree = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Pages"),
                NameObject("/Kids"): ArrayObject([node, node]),
                NameObject("/Count"): NumberObject(count),
            }
        )
        node = writer._add_object(tree)
    writer._root_object[NameObject("/Pages")] = node
    return pdf_bytes(writer)


def deflate_bomb(megabytes: int) -> bytes:
    """One page whose content stream is ``megabytes`` MiB of zeros, deflated twice over."""
    inner = zlib.compressobj(1)
    zeros = bytes(1 << 20)
    once = b"".join([inner.compress(zeros) for _ in range(megabytes)] + [inner.flush()])
    twice = zlib.compress(once, 9)
    writer = PdfWriter()
    page = writer.add_blank_page(width=100, height=100)
    stream = StreamObject()
    stream.set_data(twice)
    stream[NameObject("/Filter")] = ArrayObject(
        [NameObject("/FlateDecode"), NameObject("/FlateDecode")]
    )
    page[NameObject("/Contents")] = writer._add_object(stream)
    return pdf_bytes(writer)


#: The bombs the reliability suite and benchmarks/pdf_bombs.py use, by name.
HONEST_PAGE_TREE_LEVELS = 13  # 8 192 pages, counted honestly
LYING_PAGE_TREE_LEVELS = 30  # a billion pages under a /Count of 1
DEFLATE_MEGABYTES = 256

__all__ = [
    "DEFLATE_MEGABYTES",
    "HONEST_PAGE_TREE_LEVELS",
    "LYING_PAGE_TREE_LEVELS",
    "deflate_bomb",
    "no_pages_pdf",
    "one_page_pdf",
    "page_tree_bomb",
    "pdf_bytes",
]
