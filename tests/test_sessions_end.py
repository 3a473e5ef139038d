"""Sessions end when they should, over real sockets: at sign-out, and when KashFlow stops
accepting the password the session signed in with.

A copied cookie is replayed from a second browser, as someone who took it would; the
sandbox KashFlow changes the account's API password as the accountant would in KashFlow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from tests.support import ManualClock
from tests.support.signed_in import Accountant, Site, settings_site
from web.settings.session import COOKIE

SIGNED_OUT_FOR_PASSWORD = "KashFlow no longer accepts the password you signed in with"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def site(
    tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox, clock: ManualClock
) -> AsyncIterator[Site]:
    async with settings_site(tmp_path, kashflow, sandbox, clock=clock) as built:
        yield built


@pytest.fixture
async def accountant(site: Site) -> AsyncIterator[Accountant]:
    browser = Accountant(site)
    assert (await browser.sign_in()).status == 303
    yield browser
    await browser.close()


def cookie_of(browser: Accountant) -> str:
    return next(c.value for c in browser.session.cookie_jar if c.key == COOKIE)


async def replay(site: Site, cookie: str, path: str) -> int:
    thief = Accountant(site)
    try:
        headers = {"Cookie": f"{COOKIE}={cookie}"}
        return (await thief.get(path, headers=headers, allow_redirects=False)).status
    finally:
        await thief.close()


async def test_a_copied_cookie_stops_working_at_sign_out(
    site: Site, accountant: Accountant
) -> None:
    cookie = cookie_of(accountant)
    assert await replay(site, cookie, "/settings/links") == 200
    signed_out = await accountant.post("/settings/logout", {}, page="/settings/links")
    assert "You are signed out." in signed_out.text
    assert await replay(site, cookie, "/settings/links") == 303


async def test_a_changed_password_ends_the_session_on_the_next_kashflow_page(
    site: Site, accountant: Accountant
) -> None:
    cookie = cookie_of(accountant)
    site.sandbox.change_password(DEMO.username, "a-new-api-password")
    page = await accountant.get("/settings/customers")
    assert SIGNED_OUT_FOR_PASSWORD in page.text
    # Ended in the store: the old cookie opens nothing, even a page KashFlow is not asked for.
    assert await replay(site, cookie, "/settings/links") == 303
    # The new password signs in.
    fresh = Accountant(site)
    try:
        new = Credentials(DEMO.username, "a-new-api-password")
        assert (await fresh.sign_in(new)).status == 303
    finally:
        await fresh.close()


async def test_pages_that_do_not_ask_kashflow_still_notice_within_minutes(
    site: Site, accountant: Accountant, clock: ManualClock
) -> None:
    site.sandbox.change_password(DEMO.username, "a-new-api-password")
    # Just signed in: the links page (store only) is not slowed by a KashFlow call...
    assert (await accountant.get("/settings/links", allow_redirects=False)).status == 200
    # ...but a few minutes on, it asks KashFlow again and the session ends.
    clock.advance(301)
    page = await accountant.get("/settings/links")
    assert SIGNED_OUT_FOR_PASSWORD in page.text


async def test_stale_credentials_are_never_stored_as_the_bots(
    site: Site, accountant: Accountant
) -> None:
    await site.core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
    site.sandbox.change_password(DEMO.username, "a-new-api-password")
    form = {
        "request_address": "invoices@northwind-studio.example",
        "use_my_credentials": "on",
        "default_scope": "all",
        "unknown_sender": "ignore",
        "per_customer_limit": "3",
        "global_limit": "60",
        "max_attachment_mb": "10",
        "relay_port": "587",
        "relay_security": "starttls",
    }
    token = await accountant.csrf("/settings/bot")
    async with accountant.session.post(
        site.url("/settings/bot"), data={"csrf": token, **form}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/settings/login?notice=password_changed"
    assert not (await site.core.store.accounts.get("demo")).has_bot_credentials


async def test_kashflow_being_down_ends_no_session(
    site: Site, accountant: Accountant, clock: ManualClock
) -> None:
    clock.advance(301)
    site.sandbox.faults.http_500 = True
    assert (await accountant.get("/settings/links", allow_redirects=False)).status == 200
