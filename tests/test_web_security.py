"""The web door's security promises, checked over real sockets.

Every response carries the capability-URL headers; tokens never reach a log line; links
the app writes ignore the Host and X-Forwarded-Host a client sends; pages load nothing
from anywhere else; an address that keeps sending bad links is slowed down; an
unexpected error is a plain page, logged without the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import TestClient

from kashflow.sandbox import NOAPI
from tests.support import PUBLIC_BASE_URL, WebRig, web_rig
from tests.support.stores import both_stores
from web.security import CONTENT_SECURITY_POLICY, RedactingAccessLogger, redact_path

Client = TestClient[Any, Any]

LIMIT = 3
EXPECTED_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


@pytest.fixture
async def rig(tmp_path: Path, store_url: str | None) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path, invalid_link_limit=LIMIT, database_url=store_url) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    # Served as production serves it: with the access log that redacts tokens.
    server = await aiohttp_server(rig.app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


class LogWatch(logging.Handler):
    """Signals when a line containing ``needle`` is logged (access lines come after the
    response is sent, so a test must wait for them)."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@contextmanager
def watch_log(needle: str) -> Iterator[LogWatch]:
    watch = LogWatch(needle)
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)


# -- headers -------------------------------------------------------------------------------


async def test_every_route_and_status_carries_the_security_headers(
    rig: WebRig, client: Client
) -> None:
    token = rig.mint("FOX01")
    refused = rig.mint("FOX01", credentials=NOAPI, customer_id=412036)
    number = rig.sandbox.invoices("demo", "FOX01")[0].number
    requests = [
        ("GET", "/healthz", 200),
        ("GET", f"/l/{token}", 200),
        ("HEAD", f"/l/{token}", 200),
        ("GET", f"/l/{token}/invoice/{number}.pdf", 200),
        ("GET", f"/l/{token}/all.pdf", 200),
        ("GET", "/static/web.css", 200),
        ("GET", "/static/downloads.js", 200),
        ("GET", "/nowhere", 404),
        ("GET", "/static/missing.css", 404),
        ("GET", f"/l/{token}/invoice/99999999.pdf", 404),
        ("POST", "/healthz", 405),
        ("GET", f"/l/{refused}", 503),
        ("GET", "/settings/login", 200),
        ("POST", "/settings/login", 403),  # no CSRF token
        ("GET", "/settings/customers", 303),  # not signed in
        ("GET", "/static/settings.css", 200),
    ]
    requests += [("GET", "/l/not-a-token", 404)] * LIMIT + [("GET", "/l/not-a-token", 429)]

    for method, path, status in requests:
        response = await client.request(method, path, allow_redirects=False)
        assert response.status == status, (method, path)
        expected = dict(EXPECTED_HEADERS)
        if path.startswith("/settings/"):
            # No capability in these URLs; same-origin lets the CSRF check refuse "null".
            expected["Referrer-Policy"] = "same-origin"
        for name, value in expected.items():
            assert response.headers.get(name) == value, (method, path, name)
        assert response.headers["Server"] == "kashflow-permalink", (method, path)

    with mock.patch("permalink.core.statement", side_effect=RuntimeError("injected")):
        rig.clock.advance(3600)  # past the 429 above
        failed = await client.get(f"/l/{token}")
    assert failed.status == 500
    for name, value in EXPECTED_HEADERS.items():
        assert failed.headers.get(name) == value, name


async def test_health_check_answers_ok(client: Client) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.text() == "ok"


async def test_error_pages_are_plain_pages_not_tracebacks(rig: WebRig, client: Client) -> None:
    token = rig.mint("FOX01")
    with mock.patch("permalink.core.statement", side_effect=RuntimeError("injected")):
        response = await client.get(f"/l/{token}")
    html = await response.text()
    unknown = await client.get("/nowhere")
    unknown_html = await unknown.text()

    assert response.status == 500
    assert "Something went wrong" in html
    assert unknown.status == 404
    assert "Page not found" in unknown_html
    for page in (html, unknown_html):
        assert "Traceback" not in page
        assert "injected" not in page
        assert "RuntimeError" not in page
        assert page.startswith("<!doctype html>")


# -- logs ----------------------------------------------------------------------------------


async def test_tokens_never_reach_a_log_line(
    rig: WebRig, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = rig.mint("FOX01")
    refused = rig.mint("FOX01", credentials=NOAPI, customer_id=412036)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    assert (await client.get(f"/l/{token}")).status == 200
    assert (await client.get(f"/l/{token}/all.pdf", params={"t": token})).status == 200
    assert (await client.get(f"/l/{tampered}")).status == 404
    assert (await client.get(f"/l/{refused}")).status == 503
    with (
        watch_log('"GET /l/… HTTP/1.1" 500') as last_line,
        mock.patch("permalink.core.statement", side_effect=RuntimeError(f"boom in {token}")),
    ):
        assert (await client.get(f"/l/{token}")).status == 500
        async with asyncio.timeout(30):
            await last_line.seen.wait()

    text = caplog.text
    for secret in (token, tampered, refused, token[10:50]):
        assert secret not in text
    assert '"GET /l/… HTTP/1.1" 200' in text
    assert '"GET /l/…/all.pdf?… HTTP/1.1" 200' in text
    assert '"GET /l/… HTTP/1.1" 404' in text
    assert "unhandled RuntimeError on GET /l/…" in text
    assert "KashFlow ApiDisabled on GET /l/…" in text


def test_redact_path_cuts_tokens_and_query_strings() -> None:
    token = "AQH2qbnPmT7P1MHaSM63COq_QWWz3qumqmJvubTOO2CghPfGHw5ksSpD7K"

    assert redact_path(f"/l/{token}") == "/l/…"
    assert redact_path(f"/l/{token}/invoice/12.pdf") == "/l/…/invoice/12.pdf"
    assert redact_path(f"/l/{token}/all.pdf?download={token}") == "/l/…/all.pdf?…"
    assert redact_path(f"/elsewhere/{token}") == "/elsewhere/[redacted]"
    assert redact_path("/static/web.css") == "/static/web.css"


# -- links the app writes ------------------------------------------------------------------


async def test_links_ignore_the_host_the_client_claims(rig: WebRig, client: Client) -> None:
    token = rig.mint("FOX01")
    response = await client.get(
        f"/l/{token}",
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "http",
            "Forwarded": "host=evil.example;proto=http",
        },
    )
    html = await response.text()

    assert response.status == 200
    assert "evil.example" not in html
    assert f'<link rel="canonical" href="{PUBLIC_BASE_URL}/l/{token}">' in html


async def test_pages_load_nothing_from_elsewhere_and_nothing_inline(
    rig: WebRig, client: Client
) -> None:
    html = await (await client.get(f"/l/{rig.mint('IVY01')}")).text()

    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert "<style" not in html
    assert " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    # The calendar subscription is the link itself under the webcal:// scheme.
    webcal = "webcal://" + PUBLIC_BASE_URL.split("://", 1)[1] + "/l/"
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "#", "mailto:", PUBLIC_BASE_URL + "/l/", webcal)), url


# -- throttling ----------------------------------------------------------------------------


@both_stores
async def test_repeated_bad_links_from_one_address_are_slowed_down(
    rig: WebRig, client: Client
) -> None:
    good = rig.mint("FOX01")
    for attempt in range(LIMIT):
        assert (await client.get(f"/l/guess-{attempt}")).status == 404

    refused = await client.get("/l/guess-again")
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many attempts" in await refused.text()
    # A link that opens is never refused: behind one proxy address, a guesser must not
    # lock every client out of their invoices.
    assert (await client.get(f"/l/{good}")).status == 200
    assert (await client.get("/l/guess-while-slowed")).status == 429

    # Each further failure within the minute doubles the wait; a quiet minute forgives.
    rig.clock.advance(int(refused.headers["Retry-After"]))
    assert (await client.get("/l/guess-after-the-wait")).status == 429
    rig.clock.advance(61)
    assert (await client.get("/l/guess-after-a-quiet-minute")).status == 404
