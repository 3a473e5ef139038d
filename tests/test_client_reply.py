"""The bot's reply and the web link agree: the same statement pack under the same name, in
the client's language, saying how to pay."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote

from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from tests.support.bot import MakeRig, attachment, body_text, request_mail
from tests.support.pdfs import bookmarks
from web.app import create_app

Client = TestClient[Any, Any]


async def test_the_reply_attaches_the_pack_under_the_web_downloads_name(
    make_rig: MakeRig, aiohttp_client: Any
) -> None:
    rig = await make_rig(default_scope="unpaid")
    await rig.send(request_mail("Please send my unpaid invoices"))
    [reply] = await rig.capture.wait_for(1)
    [part] = [p for p in reply.parsed().iter_attachments()]
    pdf = attachment(reply)
    assert pdf is not None

    client: Client = await aiohttp_client(create_app(rig.core))
    link = body_text(reply).split("/l/", 1)[1].split()[0]
    response = await client.get(f"/l/{link}/all.pdf")
    assert response.status == 200
    web_name = unquote(response.headers["Content-Disposition"].split("filename*=UTF-8''")[1])
    assert part.get_filename() == web_name
    assert web_name.startswith("Northwind Studio Ltd-ACME01-unpaid-invoices-")
    web_marks = bookmarks(await response.read())
    assert web_marks == bookmarks(pdf)
    assert web_marks[0][0].startswith("Statement · ")


async def test_the_reply_is_in_the_clients_language_and_says_how_to_pay(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(default_scope="all")
    business = rig.core.store.business
    await business.update("demo", iban="DE89370400440532013000", bic="COBADEFFXXX")
    await business.set_customer_language("demo", "CORV01", "de")
    # Too little text to tell its language: the client's setting decides.
    await rig.send(
        request_mail("?", sender="billing@corvid.example", subject="CORV01"),
        mail_from="billing@corvid.example",
    )
    [reply] = await rig.capture.wait_for(1)
    text = body_text(reply)
    assert "Hier sind alle Ihre Rechnungen von Northwind Studio Ltd." in text
    assert "So zahlen Sie" in text and "IBAN: DE89 3704 0044 0532 0130 00" in text
    pdf = attachment(reply)
    assert pdf is not None
    assert bookmarks(pdf)[0][0].startswith("Kontoauszug · ")
    assert "Kontoauszug" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


async def test_the_language_a_request_is_written_in_comes_first(make_rig: MakeRig) -> None:
    rig = await make_rig(default_scope="all")
    await rig.core.store.business.set_customer_language("demo", "CORV01", "de")
    await rig.send(
        request_mail(
            "Bonjour, pourriez-vous m'envoyer toutes nos factures ? Merci",
            sender="billing@corvid.example",
        ),
        mail_from="billing@corvid.example",
    )
    [reply] = await rig.capture.wait_for(1)
    assert "Voici toutes vos factures de Northwind Studio Ltd." in body_text(reply)


async def test_a_business_that_turns_the_statement_off_attaches_invoices_only(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(default_scope="unpaid")
    await rig.core.store.business.update("demo", statement_cover=False)
    await rig.send(request_mail("Please send my unpaid invoices"))
    [reply] = await rig.capture.wait_for(1)
    pdf = attachment(reply)
    assert pdf is not None
    reader = PdfReader(io.BytesIO(pdf))
    unpaid = [r for r in rig.sandbox.invoices("demo", "ACME01") if not r.paid]
    marks = bookmarks(reader)
    assert len(marks) == len(unpaid)
    assert not any(title.startswith("Statement · ") for title, _ in marks)
    assert marks[0][1] == 0 and "Statement" not in reader.pages[0].extract_text()
    assert reader.metadata is not None and reader.metadata.title
