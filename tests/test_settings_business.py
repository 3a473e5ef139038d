"""The "Your business" settings page and a client's language, over real sockets: what the
accountant saves is what clients see."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from kashflow.client import KashFlow
from permalink.core import Core
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.support.core import make_core
from web.app import create_app

BASE = "http://settings.test"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Client = TestClient[Any, Any]


@pytest.fixture
async def signed_in(kashflow: KashFlow, tmp_path: Path, aiohttp_client: Any) -> Any:
    db = open_database(None, tmp_path)
    core = make_core(db, Keyring.generate(), kashflow, public_base_url=BASE)
    client: Client = await aiohttp_client(create_app(core), headers={"Origin": BASE})
    token = await csrf(client, "/settings/login")
    response = await client.post(
        "/settings/login",
        data={"csrf": token, "username": "demo", "password": "demo-api-pass"},
        allow_redirects=False,
    )
    assert response.status == 303
    yield client, core
    core.close()
    db.close()


async def csrf(client: Client, path: str) -> str:
    match = CSRF.search(await (await client.get(path)).text())
    assert match is not None, path
    return match.group(1)


async def test_payment_details_are_saved_and_shown_back(signed_in: tuple[Client, Core]) -> None:
    client, core = signed_in
    page = await (await client.get("/settings/business")).text()
    assert "Your business" in page and 'aria-current="page"' in page
    form = {
        "csrf": await csrf(client, "/settings/business"),
        "bank_name": "Barclays Bank UK PLC",
        "account_name": "Northwind Studio Ltd",
        "sort_code": "20 00 00",
        "account_number": "55779911",
        "iban": "GB29 NWBK 6016 1331 9268 19",
        "bic": "NWBKGB2L",
        "reference": "customer",
        "pay_url": "https://pay.northwind.example/",
        "default_language": "cy",
    }
    response = await client.post("/settings/business", data=form)
    html = await response.text()
    assert response.status == 200 and "Saved: clients see these details" in html
    assert 'value="20-00-00"' in html and 'value="GB29 NWBK 6016 1331 9268 19"' in html
    profile = await core.store.business.get("demo")
    assert profile.payment.reference == "customer"
    assert (profile.default_language, profile.statement_cover) == ("cy", False)


async def test_a_wrong_iban_is_explained_and_the_form_keeps_what_was_typed(
    signed_in: tuple[Client, Core],
) -> None:
    client, core = signed_in
    form = {
        "csrf": await csrf(client, "/settings/business"),
        "iban": "GB28NWBK60161331926819",
        "reference": "invoice",
        "default_language": "en-GB",
        "statement_cover": "on",
    }
    response = await client.post("/settings/business", data=form)
    html = await response.text()
    assert response.status == 400
    assert "That IBAN is not valid" in html and 'value="GB28NWBK60161331926819"' in html
    assert not (await core.store.business.get("demo")).payment.given


async def test_a_logo_is_uploaded_previewed_and_removed(signed_in: tuple[Client, Core]) -> None:
    client, core = signed_in
    image = io.BytesIO()
    Image.new("RGB", (1200, 400), (200, 40, 40)).save(image, format="JPEG")
    form = aiohttp.FormData()
    form.add_field("csrf", await csrf(client, "/settings/business"))
    form.add_field("logo", image.getvalue(), filename="logo.jpg", content_type="image/jpeg")
    response = await client.post("/settings/business/logo", data=form)
    html = await response.text()
    assert "The logo is saved." in html
    match = re.search(r'<img class="settings-logo" src="([^"]+)"', html)
    assert match is not None
    preview = await client.get(match.group(1))
    assert preview.content_type == "image/png"
    with Image.open(io.BytesIO(await preview.read())) as shown:
        assert shown.size == (600, 200)

    bad = aiohttp.FormData()
    bad.add_field("csrf", await csrf(client, "/settings/business"))
    bad.add_field("logo", b"<svg onload=alert(1)>", filename="x.svg", content_type="image/svg+xml")
    refused = await client.post("/settings/business/logo", data=bad)
    assert refused.status == 400 and "must be a PNG, JPEG, GIF or WebP" in await refused.text()

    remove = {"csrf": await csrf(client, "/settings/business"), "remove": "on"}
    assert (
        "The logo is removed."
        in await (await client.post("/settings/business/logo", data=remove)).text()
    )
    assert not (await core.store.business.get("demo")).has_logo


async def test_an_oversized_logo_is_refused_before_it_is_read(
    signed_in: tuple[Client, Core],
) -> None:
    client, _ = signed_in
    form = aiohttp.FormData()
    form.add_field("csrf", await csrf(client, "/settings/business"))
    form.add_field("logo", bytes(900 * 1024), filename="huge.png", content_type="image/png")
    response = await client.post("/settings/business/logo", data=form)
    assert response.status == 413 and "at most 512 KB" in await response.text()


async def test_a_clients_language_is_chosen_on_their_page(signed_in: tuple[Client, Core]) -> None:
    client, core = signed_in
    page = await (await client.get("/settings/customers/CORV01")).text()
    assert "Their page, replies and statements are in" in page
    token = await csrf(client, "/settings/customers/CORV01")
    response = await client.post(
        "/settings/customers/CORV01/language", data={"csrf": token, "language": "de"}
    )
    html = await response.text()
    assert "language is saved." in html and '<html lang="en-GB">' in html
    assert '<option value="de" selected>' in html
    assert await core.store.business.customer_language("demo", "CORV01") == "de"
    forged = await client.post(
        "/settings/customers/CORV01/language", data={"csrf": "nope", "language": "fr"}
    )
    assert forged.status == 403
    assert await core.store.business.customer_language("demo", "CORV01") == "de"


def _form_key(html: str) -> str:
    match = re.search(r'name="once" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


async def test_business_forms_redirect_and_show_their_message_once(
    signed_in: tuple[Client, Core],
) -> None:
    client, core = signed_in
    page = await (await client.get("/settings/business")).text()
    token, key = CSRF.search(page), _form_key(page)
    assert token is not None
    form = {
        "csrf": token.group(1),
        "once": key,
        "bank_name": "Barclays Bank UK PLC",
        "reference": "invoice",
        "default_language": "en-GB",
    }
    saved = await client.post("/settings/business", data=form, allow_redirects=False)
    assert saved.status == 303
    landing = saved.headers["Location"]
    assert landing.startswith("/settings/business?")
    assert "Saved: clients see these details" in await (await client.get(landing)).text()
    # A reload shows the page alone: the message was for once.
    assert "Saved: clients see these details" not in await (await client.get(landing)).text()

    # The same form sent again (from history, a double click) does nothing the second time:
    # a change made since is not overwritten, and it lands where the first did.
    await core.store.business.update("demo", bank_name="Monzo Bank Ltd")
    again = await client.post("/settings/business", data=form, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == landing
    assert (await core.store.business.get("demo")).payment.bank_name == "Monzo Bank Ltd"

    # A refused IBAN comes back through a redirect, marked on its field, with what was typed.
    page = await (await client.get("/settings/business")).text()
    refused = await client.post(
        "/settings/business",
        data={
            "csrf": token.group(1),
            "once": _form_key(page),
            "iban": "GB28NWBK60161331926819",
            "reference": "invoice",
            "default_language": "en-GB",
        },
        allow_redirects=False,
    )
    assert refused.status == 303
    shown = await client.get(refused.headers["Location"])
    html = await shown.text()
    assert shown.status == 400
    iban = re.search(r'<input id="iban"[^>]*>', html)
    assert iban is not None
    assert 'aria-invalid="true"' in iban[0] and 'value="GB28NWBK60161331926819"' in iban[0]
    assert 'aria-describedby="iban-error iban-help"' in iban[0]
    assert 'id="iban-error"' in html and "That IBAN is not valid" in html
    reloaded = await client.get(refused.headers["Location"])
    assert reloaded.status == 200 and "That IBAN is not valid" not in await reloaded.text()

    # The logo form too: a redirect, its message once, a refused file marked.
    page = await (await client.get("/settings/business")).text()
    bad = aiohttp.FormData()
    bad.add_field("csrf", token.group(1))
    bad.add_field("once", _form_key(page))
    bad.add_field("logo", b"GIF89a-not-really", filename="x.gif", content_type="image/gif")
    sent = await client.post("/settings/business/logo", data=bad, allow_redirects=False)
    assert sent.status == 303
    html = await (await client.get(sent.headers["Location"])).text()
    logo = re.search(r'<input id="logo"[^>]*>', html)
    assert logo is not None and 'aria-invalid="true"' in logo[0]
    assert "must be a PNG, JPEG, GIF or WebP" in html
    assert "must be a PNG" not in await (await client.get(sent.headers["Location"])).text()


async def test_a_clients_language_form_answers_once(signed_in: tuple[Client, Core]) -> None:
    client, core = signed_in
    page = await (await client.get("/settings/customers/CORV01")).text()
    token = CSRF.search(page)
    assert token is not None
    form = {"csrf": token.group(1), "once": _form_key(page), "language": "fr"}
    sent = await client.post(
        "/settings/customers/CORV01/language", data=form, allow_redirects=False
    )
    assert sent.status == 303
    assert "language is saved." in await (await client.get(sent.headers["Location"])).text()
    assert "language is saved." not in await (await client.get(sent.headers["Location"])).text()
    # Sent again from history after another choice: the later choice stands.
    await core.store.business.set_customer_language("demo", "CORV01", "de")
    again = await client.post(
        "/settings/customers/CORV01/language", data=form, allow_redirects=False
    )
    assert again.headers["Location"] == sent.headers["Location"]
    assert await core.store.business.customer_language("demo", "CORV01") == "de"
