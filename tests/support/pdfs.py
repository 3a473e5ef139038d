"""Hostile and broken PDFs, built with pypdf and zlib, for the tests and the benchmarks.

* :func:`page_tree_bomb` — a tiny file whose page tree names one page 2**levels times,
  counting honestly or lying about it;
* :func:`deflate_bomb` — one page whose content stream is mebibytes of zeros deflated
  twice over;
* :func:`no_pages_pdf` and :func:`one_page_pdf` — the smallest empty and sound documents;

and reading a PDF back as a reader shows it: :func:`bookmarks` and :func:`language`.
"""

from __future__ import annotations

import io
import zlib

from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    Destination,
    DictionaryObject,
    NameObject,
    NumberObject,
    StreamObject,
)


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


def bookmarks(data: bytes | PdfReader) -> list[tuple[str, int]]:
    """(title, page index) of each top-level bookmark, in order."""
    reader = data if isinstance(data, PdfReader) else PdfReader(io.BytesIO(data))
    found = []
    for item in reader.outline:
        assert isinstance(item, Destination), "the pack's bookmarks are one level deep"
        page = reader.get_destination_page_number(item)
        assert page is not None
        found.append((str(item.title), page))
    return found


def language(data: bytes) -> str:
    """The document's language (the catalog's /Lang)."""
    root = PdfReader(io.BytesIO(data)).root_object
    return str(root.get("/Lang", ""))


#: The bombs the reliability suite and benchmarks/pdf_bombs.py use, by name.
HONEST_PAGE_TREE_LEVELS = 13  # 8 192 pages, counted honestly
LYING_PAGE_TREE_LEVELS = 30  # a billion pages under a /Count of 1
DEFLATE_MEGABYTES = 256

__all__ = [
    "DEFLATE_MEGABYTES",
    "HONEST_PAGE_TREE_LEVELS",
    "LYING_PAGE_TREE_LEVELS",
    "bookmarks",
    "deflate_bomb",
    "language",
    "no_pages_pdf",
    "one_page_pdf",
    "page_tree_bomb",
    "pdf_bytes",
]
