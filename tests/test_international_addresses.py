"""Internationalised and broken addresses, end to end over real sockets: answered, or
refused with a reason, never a crash.

A client writing from ``josé@example.es`` (SMTPUTF8, RFC 6531/6532) is accepted by the
listener, read, found in KashFlow (the sandbox, over SOAP) and answered at that address
through a relay that offers SMTPUTF8; a relay that does not gets the message parked with
that reason at once, not three "internal error" tries. An IDN domain is one customer
whichever way it is spelled. On the settings pages, "email this link" sends to every
usable address of the customer's Email field and names each one it could not use.
Before, the sender's address reached the SOAP layer as undecodable bytes, and an Email
field with a line break made the page answer 500.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import pipeline
from kashflow.client import KashFlow
from kashflow.sandbox import DEMO, Sandbox
from permalink.relay import SMTPUTF8_MISSING
from permalink.scopes import Scope
from tests.support.bot import REQUEST, MakeRig, Rig, body_text
from tests.support.signed_in import Accountant, Site, settings_site

JOSE = "josé@example.es"


def request_from(address: str, *, display: str = "José García", message_id: str) -> bytes:
    return (
        f"From: {display} <{address}>\r\nTo: {REQUEST}\r\nSubject: facturas\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease send me my invoices.\r\n"
    ).encode()


async def send_utf8(rig: Rig, sender: str, raw: bytes) -> tuple[int, bytes]:
    """One SMTPUTF8 transaction with smtplib; the DATA reply."""

    def deliver() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", rig.service.port, timeout=30) as client:
            client.ehlo("client.example")
            assert client.has_extn("smtputf8")
            code, _ = client.mail(sender, ["SMTPUTF8"])
            assert code == 250
            assert client.rcpt(REQUEST)[0] == 250
            return client.data(raw)

    return await asyncio.to_thread(deliver)


async def test_a_request_from_an_internationalised_address_is_answered_there(rig: Rig) -> None:
    rig.sandbox.set_customer_email("demo", "FOX01", JOSE)
    code, _ = await send_utf8(rig, JOSE, request_from(JOSE, message_id="<es-1@example.es>"))
    assert code == 250
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (JOSE,)
    assert reply.parsed()["To"] == JOSE
    assert body_text(reply).startswith("Hello Ruth Marlow,")  # FOX01's contact
    [event] = [e for e in await rig.events() if e.kind == "bot_request"]
    assert event.outcome == "replied" and "FOX01" in event.subject


async def test_a_decomposed_accent_and_an_idn_domain_find_the_same_customer(rig: Rig) -> None:
    # On file in KashFlow with the domain written the ASCII way; the client writes it
    # in Unicode, with "é" as "e" and a combining accent.
    on_file = "ruth@" + "foxglöve.example".encode("idna").decode()  # ruth@xn--…
    rig.sandbox.set_customer_email("demo", "FOX01", on_file)
    sender = "Ruth@foxglöve.example".replace("ö", "o\u0308")
    code, _ = await send_utf8(rig, sender, request_from(sender, message_id="<idn-1@x.example>"))
    assert code == 250
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
    [reply] = await rig.capture.wait_for(1)
    # Sent to the address on file, in ASCII: any relay takes it.
    assert reply.rcpt_tos == (on_file,)


async def test_a_relay_without_smtputf8_parks_the_reply_with_that_reason(rig: Rig) -> None:
    rig.sandbox.set_customer_email("demo", "FOX01", JOSE)
    rig.capture.smtputf8 = False
    code, _ = await send_utf8(rig, JOSE, request_from(JOSE, message_id="<es-2@example.es>"))
    assert code == 250
    [settled] = await rig.settle(1)
    assert settled.outcome == pipeline.Failed(SMTPUTF8_MISSING)
    assert settled.state == "parked"  # at once: no retry can help
    assert rig.capture.messages == []


async def test_raw_latin1_headers_from_an_old_client_are_read(rig: Rig) -> None:
    rig.sandbox.set_customer_email("demo", "FOX01", JOSE)
    raw = request_from(JOSE, message_id="<es-3@example.es>").decode().encode("cp1252")
    await rig.send(raw, mail_from="jose@example.es")
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (JOSE,)


async def test_addresses_on_lines_of_their_own_are_each_an_address(rig: Rig) -> None:
    """An Email field typed one address a line, the first of them broken: the client
    writing from the second is found (by the gateway, KashFlow's lookup missing it) and
    answered there."""
    field = "accounts@foxglove\n.example\nruth@foxglove.example"
    rig.sandbox.set_customer_email("demo", "FOX01", field)
    await rig.send(
        request_from("ruth@foxglove.example", message_id="<bad-1@x.example>"),
        mail_from="ruth@foxglove.example",
    )
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == ("ruth@foxglove.example",)


@pytest.mark.parametrize(
    ("on_file", "why"),
    [
        ("ruth@foxglove.invalid", "special-use or reserved name"),
        ("ruth@[192.0.2.1]", "bracketed IP address"),
    ],
)
async def test_a_customer_whose_address_cannot_be_written_to_is_parked_with_the_reason(
    rig: Rig, on_file: str, why: str
) -> None:
    """KashFlow finds the customer by the sender's address, but mail cannot go there."""
    rig.sandbox.set_customer_email("demo", "FOX01", on_file)
    await rig.send(request_from(on_file, message_id="<bad-2@x.example>"), mail_from=on_file)
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Failed), settled.outcome
    reason = settled.outcome.reason
    assert reason.startswith(f"the customer's email address in KashFlow is not usable: “{on_file}”")
    assert "is not a valid email address" in reason and why in reason
    assert settled.state == "parked"  # once, with its reason: not three internal errors
    assert rig.capture.messages == []


async def test_an_unknown_internationalised_sender_gets_the_neutral_reply(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(unknown_sender="neutral_reply")
    sender = "zoë@stranger.example"
    code, _ = await send_utf8(rig, sender, request_from(sender, message_id="<z-1@x.example>"))
    assert code == 250
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
    [reply] = await rig.capture.wait_for(1)
    assert reply.rcpt_tos == (sender,)


# -- the settings pages: "email this link" ----------------------------------------------


@pytest.fixture
async def site(tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox) -> AsyncIterator[Site]:
    async with settings_site(tmp_path, kashflow, sandbox) as built:
        # Mail goes out from the company's address only at a domain the account proved.
        await built.core.store.domains.mark_proved("demo", "northwind-studio.example", "operator")
        await built.core.store.accounts.update(
            "demo",
            relay_host="127.0.0.1",
            relay_port=built.capture.port,
            relay_security="none",
        )
        yield built


async def email_link(site: Site, code: str) -> tuple[int, str]:
    """Sign in, make a link for ``code`` and press "email this link"."""
    accountant = Accountant(site)
    try:
        assert (await accountant.sign_in()).status == 303
        account = site.core.kashflow(DEMO)
        customer = await account.customer_by_code(code)
        minted = await site.core.mint(DEMO, customer, Scope("all"), minted_by="settings")
        page = await accountant.post(
            f"/settings/customers/{code}/email",
            {"link": minted.link.link_id},
            page=f"/settings/customers/{code}",
        )
        return page.status, html.unescape(page.text)
    finally:
        await accountant.close()


async def test_email_this_link_sends_to_the_usable_addresses_and_names_the_others(
    site: Site,
) -> None:
    site.sandbox.set_customer_email(
        "demo", "FOX01", "ruth@foxglove.example\nbilling@fox glove.example;josé@example.es"
    )
    status, page = await email_link(site, "FOX01")
    assert status == 200
    assert "Emailed to ruth@foxglove.example, josé@example.es." in page
    assert "Not sent to “billing@fox glove.example”, which is not a valid email address" in page
    [mail] = await site.capture.wait_for(1)
    assert mail.rcpt_tos == ("ruth@foxglove.example", JOSE)


async def test_email_this_link_with_no_usable_address_says_why_and_sends_nothing(
    site: Site,
) -> None:
    site.sandbox.set_customer_email("demo", "FOX01", "ruth at foxglove.example")
    status, page = await email_link(site, "FOX01")
    assert status == 409
    assert "Not sent to “ruth at foxglove.example”, which is not a valid email address" in page
    assert "Correct the customer's email address in KashFlow" in page
    assert site.capture.messages == []


async def test_an_idn_sender_authenticated_under_its_ascii_domain_is_answered(
    make_rig: MakeRig,
) -> None:
    """DKIM names the domain in A-labels (RFC 8616); the From header in Unicode."""
    rig = await make_rig(trusted_authserv_id="mx.northwind.example")
    sender = "ruth@foxglöve.example"
    rig.sandbox.set_customer_email("demo", "FOX01", sender)
    signed = "foxglöve.example".encode("idna").decode()
    raw = request_from(sender, message_id="<auth-1@x.example>").replace(
        b"MIME-Version",
        f"Authentication-Results: mx.northwind.example; dkim=pass header.d={signed}\r\n"
        "MIME-Version".encode(),
    )
    code, _ = await send_utf8(rig, sender, raw)
    assert code == 250
    [settled] = await rig.settle(1)
    assert isinstance(settled.outcome, pipeline.Replied), settled.outcome
