"""Which password a link was made with: the registry's password mark, and a link's URL
written again for "copy" while (and only while) that password is still the account's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from kashflow.models import Credentials, Customer
from kashflow.sandbox import DEMO
from permalink.scopes import Scope
from tests.support import WebRig, web_rig

Client = TestClient[Any, Any]
NEW = Credentials("demo", "changed-api-pass")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[WebRig]:
    async with web_rig(tmp_path) as built:
        yield built


@pytest.fixture
async def client(rig: WebRig, aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(rig.app)
    return client


async def foxglove(rig: WebRig) -> Customer:
    return await rig.core.kashflow(DEMO).customer_by_code("FOX01")


async def test_a_minted_link_keeps_a_mark_of_its_password_not_the_password(rig: WebRig) -> None:
    customer = await foxglove(rig)
    minted = await rig.core.mint(DEMO, customer, Scope("unpaid"), minted_by="settings")
    record = await rig.registry.get("demo", minted.link.link_id)
    assert record is not None and record.password_mark is not None
    assert record.customer_id == customer.id
    assert DEMO.password.encode() not in record.password_mark
    assert rig.core.made_with(record, DEMO) is True
    assert rig.core.made_with(record, NEW) is False


async def test_a_link_written_again_opens_as_the_same_link(rig: WebRig, client: Client) -> None:
    customer = await foxglove(rig)
    minted = await rig.core.mint(DEMO, customer, Scope("all"), minted_by="settings")
    record = await rig.registry.get("demo", minted.link.link_id)
    assert record is not None
    again = rig.core.url_again(record, DEMO)
    assert again is not None and again != minted.url
    opened = await rig.core.open_link(again.rsplit("/", 1)[1])
    assert (opened.link_id, opened.issued, opened.scope) == (
        minted.link.link_id,
        minted.link.issued,
        minted.link.scope,
    )
    page = await client.get(again.removeprefix(rig.core.config.public_base_url))
    assert page.status == 200 and "Foxglove Interiors" in await page.text()
    # Revoking the link stops both URLs: they are one link.
    await rig.registry.revoke("demo", minted.link.link_id)
    for url in (minted.url, again):
        refused = await client.get(url.removeprefix(rig.core.config.public_base_url))
        assert refused.status == 404


async def test_after_a_password_change_a_broken_link_is_not_written_again(rig: WebRig) -> None:
    customer = await foxglove(rig)
    minted = await rig.core.mint(DEMO, customer, Scope("all"), minted_by="bot")
    rig.sandbox.set_api_password("demo", NEW.password)
    record = await rig.registry.get("demo", minted.link.link_id)
    assert record is not None
    assert rig.core.url_again(record, NEW) is None
    assert rig.core.url_again(record, Credentials("second", "second-api-pass")) is None
