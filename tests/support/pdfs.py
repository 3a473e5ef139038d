"""Reading a PDF back as a reader's bookmarks panel shows it."""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.generic import Destination


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


__all__ = ["bookmarks", "language"]
