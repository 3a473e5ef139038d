"""Permalinks hold under guessing, tampering, rotation, expiry and revocation — over HTTP.

Every request goes through the real web application on a loopback port, backed by the
sandbox KashFlow. A link that does not open must get the byte-identical "this link is not
valid" page whatever was wrong with it (so a guesser learns nothing), a link must stop
working exactly when it should and not a second earlier, and no token, password or key
may reach any log record. The unit-level versions of these checks live in
``test_links.py``; the throughput figures of the 100 000-token run come from
``benchmarks/fuzz_links.py`` (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import re
import string
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from kashflow.models import Credentials
from kashflow.sandbox import DEMO, SECOND
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.links import seal
from permalink.registry import LinkRegistry
from tests.support import WebRig, web_rig
from tests.support.core import make_core
from tests.support.logs import assert_no_secret, every_logger_at_debug, everything_logged
from web.app import create_app
from web.security import RedactingAccessLogger

Client = TestClient[Any, Any]
Snapshot = tuple[int, bytes, tuple[tuple[str, str], ...]]

#: High enough that thousands of bad tokens from one loopback client never meet a 429.
FUZZ_LIMIT = 10_000
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"
#: Headers that differ between any two responses for reasons unrelated to the request.
VOLATILE_HEADERS = frozenset({"Date"})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path, invalid_link_limit=FUZZ_LIMIT) as built:
        yield built


async def serve(app: web.Application, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    # Served as production serves it: with the access log that redacts tokens.
    server = await aiohttp_server(app, access_log_class=RedactingAccessLogger)
    client: Client = await aiohttp_client(server)
    return client


@pytest.fixture
async def client(rig: WebRig, aiohttp_server: Any, aiohttp_client: Any) -> Client:
    return await serve(rig.app, aiohttp_server, aiohttp_client)


async def snapshot(client: Client, path: str) -> Snapshot:
    """Status, body and every header but the date: what a guesser could compare."""
    response = await client.get(path, allow_redirects=False)
    body = await response.read()
    headers = tuple(
        sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS)
    )
    return response.status, body, headers


async def not_valid_page(client: Client) -> Snapshot:
    reference = await snapshot(client, "/l/not-a-token")
    assert reference[0] == 404
    assert b"This link is not valid" in reference[1]
    return reference


async def assert_all_not_valid(client: Client, paths: Iterable[str], reference: Snapshot) -> int:
    """Request every path; each must answer exactly ``reference``. Returns the count."""
    count = 0
    for path in paths:
        got = await snapshot(client, path)
        assert got == reference, (path[:80], got[0], got[1][:120])
        count += 1
    return count


def unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64(blob: bytes) -> str:
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def bit_flips(token: str) -> Iterator[str]:
    """The token with each single bit of its sealed bytes flipped, canonically encoded."""
    blob = unb64(token)
    for index in range(len(blob)):
        for bit in range(8):
            changed = bytearray(blob)
            changed[index] ^= 1 << bit
            yield b64(bytes(changed))


def text_bit_flips(token: str) -> Iterator[str]:
    """The token with each bit of each (7-bit) character flipped, escaped for a URL path."""
    for index, char in enumerate(token):
        for bit in range(7):
            flipped = token[:index] + chr(ord(char) ^ (1 << bit)) + token[index + 1 :]
            yield quote(flipped, safe="")


def with_key_id(token: str, key_id: int) -> str:
    blob = bytearray(unb64(token))
    blob[1] = key_id
    return b64(bytes(blob))


def random_tokens(rng: random.Random, count: int, longest: int = 600) -> Iterator[str]:
    for _ in range(count):
        length = rng.randint(1, longest)
        yield "".join(rng.choices(TOKEN_ALPHABET, k=length))


# -- guessing and tampering ----------------------------------------------------------------


async def test_random_tokens_all_get_the_identical_not_valid_page(
    rig: WebRig, client: Client
) -> None:
    reference = await not_valid_page(client)
    rng = random.Random(20240611)
    paths = [f"/l/{token}" for token in random_tokens(rng, 2500)]
    # The PDF routes open the token the same way and must say just as little.
    paths += [f"/l/{token}/all.pdf" for token in random_tokens(rng, 150)]
    paths += [f"/l/{token}/invoice/1.pdf" for token in random_tokens(rng, 150)]
    # Outside the token alphabet, and longer than any token may be.
    paths += ["/l/%00", "/l/%FF%FE", "/l/%C3%A9t%C3%A9", "/l/a%20b", "/l/a;b", "/l/%2F%2F"]
    paths += [f"/l/{'A' * n}" for n in (1023, 1024, 1025, 4000)]

    sent = await assert_all_not_valid(client, paths, reference)

    # As docs/RELIABILITY.md counts them: 2 500 + 150 + 150 random, 10 outside the alphabet.
    assert sent == len(paths) == 2500 + 150 + 150 + 10
    # No token at all is not a link: that is the plain "page not found", still a 404.
    status, body, _ = await snapshot(client, "/l/")
    assert status == 404
    assert b"Page not found" in body


async def test_every_bit_flip_key_swap_truncation_and_extension_is_refused(
    rig: WebRig, client: Client
) -> None:
    reference = await not_valid_page(client)
    good = rig.mint("FOX01")
    flips = list(bit_flips(good))
    text_flips = list(text_bit_flips(good))
    # The keyring holds key 1 only: every other key id names a key this server lacks.
    relabelled = [with_key_id(good, key_id) for key_id in range(256) if key_id != 1]
    cut_and_grown = [good[:cut] for cut in range(1, len(good))]
    cut_and_grown += [good + TOKEN_ALPHABET[i % 64] * n for i, n in enumerate(range(1, 9))]
    cut_and_grown += [good + good, good + "AAAA", "AAAA" + good]
    # As docs/RELIABILITY.md counts them (a FOX01 link seals to 73 bytes, 98 characters).
    assert (len(unb64(good)), len(good)) == (73, 98)
    assert len(flips) == 584 and len(text_flips) == 686
    assert len(relabelled) == 255 and len(cut_and_grown) == 108
    variants = flips + text_flips + relabelled + cut_and_grown

    sent = await assert_all_not_valid(client, (f"/l/{v}" for v in variants), reference)

    assert sent == len(variants)
    page = await client.get(f"/l/{good}")
    assert page.status == 200, "the real link still works after the onslaught"


async def test_with_the_default_limit_a_guesser_is_slowed_to_429(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    async with web_rig(tmp_path) as rig:
        client = await serve(rig.app, aiohttp_server, aiohttp_client)
        limit = rig.config.invalid_link_limit
        good = rig.mint("FOX01")
        rng = random.Random(7)
        statuses = [(await client.get(f"/l/{t}")).status for t in random_tokens(rng, limit + 5)]

        assert statuses[:limit] == [404] * limit
        assert statuses[limit:] == [429] * 5
        refused = await client.get(f"/l/{next(random_tokens(rng, 1))}")
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "Too many attempts" in await refused.text()
        # The guesser's own real link still opens: only failures are ever refused.
        assert (await client.get(f"/l/{good}")).status == 200


# -- keys, expiry, revocation --------------------------------------------------------------


async def test_rotation_keeps_old_links_working_until_the_old_key_is_retired(
    rig: WebRig, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    def app_with(keyring: Keyring) -> web.Application:
        return create_app(make_core(rig.db, keyring, rig.kashflow, clock=rig.clock), rig.config)

    first = rig.keyring
    old = seal(rig.link("IVY01"), first)
    rotated = first.rotated()
    new = seal(rig.link("IVY01"), rotated)
    assert unb64(old)[1] == first.current_id and unb64(new)[1] == rotated.current_id

    after_rotation = await serve(app_with(rotated), aiohttp_server, aiohttp_client)
    reference = await not_valid_page(after_rotation)
    for token in (old, new):
        for suffix in ("", "/all.pdf"):
            assert (await after_rotation.get(f"/l/{token}{suffix}")).status == 200
    # Relabelled with the other key's id, neither opens: the id is bound into the seal.
    swapped = [with_key_id(old, rotated.current_id), with_key_id(new, first.current_id)]
    await assert_all_not_valid(after_rotation, (f"/l/{t}" for t in swapped), reference)

    retired = rotated.retired(first.current_id)
    after_retiring = await serve(app_with(retired), aiohttp_server, aiohttp_client)
    await assert_all_not_valid(
        after_retiring, (f"/l/{old}", f"/l/{old}/all.pdf"), await not_valid_page(after_retiring)
    )
    assert (await after_retiring.get(f"/l/{new}")).status == 200


async def test_expiry_is_exact_to_the_second(rig: WebRig, client: Client) -> None:
    reference = await not_valid_page(client)
    rig.clock.now = float(int(rig.clock.now))
    lifetime = 3600
    token = rig.mint("DUNE01", expires_in=lifetime)
    expires = int(rig.clock.now) + lifetime
    number = rig.sandbox.invoices("demo", "DUNE01")[0].number
    paths = (f"/l/{token}", f"/l/{token}/all.pdf", f"/l/{token}/invoice/{number}.pdf")

    for moment in (expires - 1.0, expires - 0.001):
        rig.clock.now = moment
        for path in paths:
            assert (await client.get(path)).status == 200, (moment - expires, path)
    for moment in (float(expires), expires + 0.5, expires + 86_400.0 * 365):
        rig.clock.now = moment
        await assert_all_not_valid(client, paths, reference)


async def test_a_revocation_from_another_process_is_refused_on_the_next_request(
    rig: WebRig, client: Client, tmp_path: Path
) -> None:
    reference = await not_valid_page(client)
    link = rig.link("HOLL01")
    token = seal(link, rig.keyring)
    await rig.registry.add(
        "demo",
        customer_code="HOLL01",
        customer_name="Hollow Oak",
        scope="all",
        created=link.issued,
        minted_by="settings",
        link_id=link.link_id,
    )
    later = seal(rig.link("HOLL01", issued_ago=10), rig.keyring)
    assert (await client.get(f"/l/{token}")).status == 200
    assert (await client.get(f"/l/{later}")).status == 200

    # The CLI revokes through its own connection to the same state database; the very
    # next request is refused (how soon that is: benchmarks/revocation.py).
    other = open_database(None, tmp_path)
    try:
        assert await LinkRegistry(other).revoke("demo", link.link_id)
        assert await snapshot(client, f"/l/{token}") == reference
        assert (await client.get(f"/l/{later}")).status == 200

        await LinkRegistry(other).revoke_all("demo", int(rig.clock()) - 5)
        assert await snapshot(client, f"/l/{later}/all.pdf") == reference
        assert await snapshot(client, f"/l/{later}") == reference
    finally:
        other.close()


# -- scope ---------------------------------------------------------------------------------


FOOTER = re.compile(r"(?:Invoice|Credit note) (\d+)")
ROW_NUMBER = re.compile(r'class="c-invoice"><a href="[^"]+">(?:Invoice|Credit note) (\d+)<')


def invoice_per_page(pdf: bytes) -> list[int]:
    """The invoice each page belongs to (the sandbox prints it in every page's footer)."""
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        numbers = FOOTER.findall(page.extract_text())
        assert numbers, "every sandbox page names its invoice"
        found.append(int(numbers[-1]))
    return found


async def test_a_one_invoice_link_never_serves_any_other_invoice(
    rig: WebRig, client: Client
) -> None:
    own = rig.sandbox.invoices("demo", "ACME01")
    mine = own[len(own) // 2].number
    token = rig.mint("ACME01", f"invoice:{mine}")
    others = {r.number for r in rig.sandbox.invoices("demo")} - {mine}
    others |= {r.number for r in rig.sandbox.invoices(SECOND.username)}
    others |= {0, 1, 2, mine - 1, mine + 1, 2**31 - 1, 2**31, 10**12}
    others.discard(mine)

    refused = await snapshot(client, f"/l/{token}/invoice/{min(others)}.pdf")
    assert refused[0] == 404
    assert b"Invoice not found" in refused[1]
    for number in sorted(others):
        got = await snapshot(client, f"/l/{token}/invoice/{number}.pdf")
        assert got == refused, number
    assert len(others) == 265  # as docs/RELIABILITY.md counts them

    own_pdf = await client.get(f"/l/{token}/invoice/{mine}.pdf")
    assert own_pdf.status == 200
    assert invoice_per_page(await own_pdf.read()) == [mine]
    merged = await client.get(f"/l/{token}/all.pdf")
    assert merged.status == 200
    assert set(invoice_per_page(await merged.read())) == {mine}
    assert (await snapshot(client, f"/l/{token}/unpaid.pdf")) == refused
    page = await (await client.get(f"/l/{token}")).text()
    # A one-invoice link shows that invoice's own page, with no list of others.
    assert f"<h1>Invoice {mine}</h1>" in page
    assert ROW_NUMBER.findall(page) == []


# -- logs ----------------------------------------------------------------------------------


class CountLines(logging.Handler):
    """Sets ``reached`` once ``target`` records of logger ``name`` have been emitted."""

    def __init__(self, name: str, target: int) -> None:
        super().__init__(logging.DEBUG)
        self.name_wanted = name
        self.target = target
        self.seen = 0
        self.reached = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == self.name_wanted:
            self.seen += 1
            if self.seen >= self.target:
                self.reached.set()


@contextmanager
def counting(handler: logging.Handler) -> Iterator[None]:
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


async def test_no_token_password_or_key_reaches_any_log_record(
    rig: WebRig, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    access_lines = CountLines("aiohttp.access", 15)
    with every_logger_at_debug(caplog), counting(access_lines):
        token = rig.mint("IVY01")
        number = rig.sandbox.invoices("demo", "IVY01")[0].number
        other = rig.sandbox.invoices("demo", "FOX01")[0].number
        single = rig.mint("IVY01", f"invoice:{number}")
        expired = rig.mint("IVY01", issued_ago=7200, expires_in=60)
        wrong_password = Credentials(DEMO.username, "n0t-the-Passw0rd-xyz")
        stale = rig.mint("FOX01", credentials=wrong_password)
        tampered = next(bit_flips(token))
        requests: list[tuple[str, int]] = [
            (f"/l/{token}", 200),
            (f"/l/{token}?t={token}", 200),
            (f"/l/{token}/invoice/{number}.pdf", 200),
            (f"/l/{token}/all.pdf", 200),
            (f"/l/{token}/unpaid.pdf", 200),
            (f"/l/{single}/all.pdf", 200),
            (f"/l/{token}/invoice/{other}.pdf", 404),
            (f"/l/{single}/invoice/{other}.pdf", 404),
            (f"/l/{tampered}", 404),
            (f"/l/{expired}", 404),
            (f"/l/{stale}", 503),
            (f"/elsewhere/{token}", 404),
        ]
        assert len(requests) + 3 == access_lines.target
        for path, status in requests:
            assert (await client.get(path)).status == status, path
        rig.sandbox.faults.http_500 = True
        assert (await client.get(f"/l/{token}/all.pdf")).status == 503
        rig.sandbox.faults.clear()
        rig.sandbox.faults.malformed_xml = True
        assert (await client.get(f"/l/{single}")).status == 503
        rig.sandbox.faults.clear()
        with mock.patch("permalink.core.statement", side_effect=RuntimeError(f"boom {token}")):
            assert (await client.get(f"/l/{token}")).status == 500
        # Access lines are written after each response is sent: wait for the last one.
        async with asyncio.timeout(30):
            await access_lines.reached.wait()

    logged = everything_logged(caplog.records)
    assert "aiohttp.access" in logged and "web.opening" in logged
    secrets = [token, single, expired, stale, tampered, DEMO.password, wrong_password.password]
    secrets += [entry.split(":", 1)[1] for entry in rig.keyring.to_env().split(",")]
    # Not even a fragment of a token long enough to matter (16 characters = 96 bits).
    assert_no_secret(logged, secrets, tokens=(token, single, stale))
