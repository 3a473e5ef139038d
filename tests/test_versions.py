"""The library versions the project's guarantees rest on, enforced at run time."""

from __future__ import annotations

from importlib.metadata import version

import aiohttp.http_parser
import pytest


def as_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


@pytest.mark.parametrize(
    ("package", "floor", "why"),
    [
        ("aiohttp", "3.14.5", "request smuggling and parser fixes the resolver relies on"),
        ("aiosmtpd", "1.4.6", "SMTP smuggling fix (bare LF / CR line endings in DATA)"),
        ("pypdf", "5.1.0", "bounded decompression when merging invoice PDFs"),
    ],
)
def test_installed_version_is_at_least_the_floor(package: str, floor: str, why: str) -> None:
    assert as_tuple(version(package)) >= as_tuple(floor), f"{package} < {floor}: {why}"


def test_aiohttp_uses_its_c_http_parser() -> None:
    # The pure-Python parser is slower and has had its own smuggling bugs; a wheel
    # without the C extension (or AIOHTTP_NO_EXTENSIONS) would quietly fall back to it.
    assert aiohttp.http_parser.HttpRequestParser is aiohttp.http_parser.HttpRequestParserC
