"""Signing in from an address KashFlow refuses: the page names it and offers AutoAuth.

The whole web application runs on loopback against the sandbox KashFlow, whose
``iplocked`` account restricts the API to listed addresses and has an AutoAuth key.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from kashflow.client import KashFlow
from kashflow.sandbox import IPLOCKED, Sandbox
from kashflow.sandbox.seed import IPLOCKED_AUTO_AUTH_KEY
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.support.core import make_core
from web.app import create_app

Client = TestClient[web.Request, web.Application]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]], kashflow: KashFlow, tmp_path: Path
) -> AsyncIterator[Client]:
    db = open_database(None, tmp_path)
    core = make_core(db, Keyring.generate(), kashflow, public_base_url="http://settings.test")
    yield await aiohttp_client(create_app(core))
    core.close()
    db.close()


async def sign_in(client: Client, **fields: str) -> tuple[int, str, str]:
    page = await (await client.get("/settings/login")).text()
    token = _CSRF.search(page)
    assert token is not None
    response = await client.post(
        "/settings/login",
        data={"csrf": token.group(1), **fields},
        allow_redirects=False,
    )
    location = response.headers.get("Location", "")
    if response.status == 303 and location.startswith("/settings/login"):
        # A refused sign-in is answered with a redirect back to the form, which shows the
        # refusal once, with its status.
        shown = await client.get(location)
        return shown.status, location, await shown.text()
    return response.status, location, await response.text()


LOCKED = {"username": IPLOCKED.username, "password": IPLOCKED.password}


async def test_an_ip_refusal_names_the_address_and_offers_auto_auth(client: Client) -> None:
    status, _, page = await sign_in(client, **LOCKED)
    assert status == 403
    assert "this server's address, <strong>127.0.0.1</strong>" in page
    assert 'name="auto_auth_key"' in page and "Apps → API Settings" in page
    assert IPLOCKED.password not in page


async def test_auto_auth_is_offered_for_nothing_but_an_ip_refusal(client: Client) -> None:
    _, _, page = await sign_in(client, username="demo", password="wrong")
    assert 'name="auto_auth_key"' not in page
    fresh = await (await client.get("/settings/login")).text()
    assert 'name="auto_auth_key"' not in fresh


async def test_the_owners_key_lets_kashflow_add_the_address_and_signs_in(
    client: Client, sandbox: Sandbox
) -> None:
    status, location, _ = await sign_in(
        client, **LOCKED, auto_auth_key=f"  {IPLOCKED_AUTO_AUTH_KEY}  "
    )
    assert (status, location) == (303, "/settings/customers")
    assert sandbox.allowed_ips("iplocked") == {"127.0.0.1"}
    calls = [c.operation for c in sandbox.calls]
    assert calls == ["AutoAuthIP", "GetCompanyDetails"]


async def test_a_wrong_key_is_refused_kept_private_and_counted(
    client: Client, sandbox: Sandbox
) -> None:
    status, _, page = await sign_in(client, **LOCKED, auto_auth_key="0000-NOT-THE-KEY")
    assert status == 403
    assert "KashFlow did not accept that AutoAuth key" in page
    assert "0000-NOT-THE-KEY" not in page
    assert 'name="auto_auth_key"' in page  # offered again
    assert sandbox.allowed_ips("iplocked") == frozenset()
    for _ in range(6):
        status, _, _ = await sign_in(client, **LOCKED, auto_auth_key="guess")
    assert status == 429  # guessing keys is slowed down like guessing passwords


async def test_no_key_means_no_auto_auth_call(client: Client, sandbox: Sandbox) -> None:
    await sign_in(client, **LOCKED, auto_auth_key="   ")
    assert "AutoAuthIP" not in [c.operation for c in sandbox.calls]
