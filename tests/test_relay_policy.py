"""The relay test email is not a way into the server's network (SSRF), over real sockets.

Anyone signed in can type any relay and press "send a test email", which makes the server
connect there. Only public addresses on mail ports are reached, unless the operator
allowed the relay; what the far side says never reaches the page; test emails are rate
limited.
"""

from __future__ import annotations

import asyncio
import html
import socket
from collections.abc import AsyncIterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from kashflow.client import KashFlow
from kashflow.sandbox import Sandbox
from permalink.egress import RelayAllowList, RelayNotAllowed, pinned_addresses
from permalink.relay import DeliveryFailure, Relay, probe
from tests.support.signed_in import Accountant, Site, settings_site

#: The domain of the sandbox company's address, which the sites below have proved: mail
#: from the settings pages goes out only from an address at a proved domain.
COMPANY_DOMAIN = "northwind-studio.example"


@pytest.fixture
async def site(tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox) -> AsyncIterator[Site]:
    # No relay allowed by the operator: the rules alone decide.
    async with settings_site(tmp_path, kashflow, sandbox, allow_relay="") as built:
        await built.core.store.domains.mark_proved("demo", COMPANY_DOMAIN, "operator")
        yield built


@pytest.fixture
async def allowed_site(tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox) -> AsyncIterator[Site]:
    async with settings_site(tmp_path, kashflow, sandbox, allow_relay="127.0.0.1") as built:
        await built.core.store.domains.mark_proved("demo", COMPANY_DOMAIN, "operator")
        yield built


@pytest.fixture
async def unproved_site(
    tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox
) -> AsyncIterator[Site]:
    """The relay allowed, and no domain proved."""
    async with settings_site(tmp_path, kashflow, sandbox, allow_relay="127.0.0.1") as built:
        yield built


async def signed_in(site: Site) -> Accountant:
    browser = Accountant(site)
    assert (await browser.sign_in()).status == 303
    return browser


async def send_test(browser: Accountant, site: Site, host: str, port: int) -> str:
    await site.core.store.accounts.update(
        "demo", relay_host=host, relay_port=port, relay_security="none"
    )
    page = await browser.post("/settings/bot/test-email", {"to": "me@example.org"})
    return html.unescape(page.text)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "2130706433", "localhost", "169.254.169.254", "10.1.2.3", "0.0.0.0"],  # noqa: S104
)
async def test_local_and_private_relays_are_refused_without_connecting(
    site: Site, host: str
) -> None:
    browser = await signed_in(site)
    try:
        text = await send_test(browser, site, host, site.capture.port)
        # The capture relay listens on 127.0.0.1 at a port that is not a mail port; try
        # the mail port too, where the address alone must refuse it.
        assert "The email was not sent" in text
        text = await send_test(browser, site, host, 587)
        assert f"the relay {host} is on a local or private network" in text
    finally:
        await browser.close()
    assert site.capture.messages == []


async def test_only_mail_ports_are_reached(site: Site) -> None:
    browser = await signed_in(site)
    try:
        text = await send_test(browser, site, "smtp.example.com", 6379)
    finally:
        await browser.close()
    assert "port 6379 is not a mail port" in text


async def test_an_operator_allowed_relay_is_reached_and_its_words_stay_off_the_page(
    allowed_site: Site,
) -> None:
    site = allowed_site
    browser = await signed_in(site)
    try:
        text = await send_test(browser, site, "127.0.0.1", site.capture.port)
        assert "The test email was handed to the relay." in text
        await site.capture.wait_for(1)

        site.capture.fail_with = (554, "5.7.1 internal-mx-07.corp.lan says no")
        text = await send_test(browser, site, "127.0.0.1", site.capture.port)
        assert "The email was not sent: the relay refused the message (SMTP 554)" in text
        assert "internal-mx-07" not in text
        activity = await browser.get("/settings/activity")
        assert "internal-mx-07" not in activity.text
    finally:
        await browser.close()


async def test_a_service_that_is_not_smtp_shows_no_banner(allowed_site: Site) -> None:
    """What a Redis or SSH server on an allowed address answers never reaches the page."""
    site = allowed_site

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    browser = await signed_in(site)
    try:
        text = await send_test(browser, site, "127.0.0.1", port)
    finally:
        await browser.close()
        server.close()
        await server.wait_closed()
    assert "The email was not sent" in text
    assert "OpenSSH" not in text and "SSH-2.0" not in text


async def test_test_emails_are_rate_limited(allowed_site: Site) -> None:
    site = allowed_site
    browser = await signed_in(site)
    try:
        for _ in range(5):
            text = await send_test(browser, site, "127.0.0.1", site.capture.port)
            assert "The test email was handed to the relay." in text
        text = await send_test(browser, site, "127.0.0.1", site.capture.port)
        assert "At most 5 test emails an hour can be sent" in text
    finally:
        await browser.close()
    assert len(await site.capture.wait_for(5)) == 5


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("127.0.0.1", 25),
        ("::1", 587),
        ("::ffff:127.0.0.1", 587),
        ("169.254.169.254", 25),
        ("192.168.1.10", 587),
        ("172.16.0.1", 587),
        ("100.64.0.1", 587),
        ("224.0.0.1", 25),
        ("::", 25),
        ("fe80::1", 25),
        ("fd00::1", 25),
    ],
)
async def test_every_non_public_address_is_refused(host: str, port: int) -> None:
    with pytest.raises(RelayNotAllowed, match="local or private network"):
        await pinned_addresses(host, port, RelayAllowList())


async def test_the_allow_list_names_a_host_or_a_host_and_port() -> None:
    allow = RelayAllowList.parse("127.0.0.1:2526, [::1], relay.internal")
    assert await pinned_addresses("127.0.0.1", 2526, allow) == ("127.0.0.1",)
    assert await pinned_addresses("::1", 9999, allow) == ("::1",)
    with pytest.raises(RelayNotAllowed):
        await pinned_addresses("127.0.0.1", 2527, allow)
    with pytest.raises(ValueError, match="HOST or HOST:PORT"):
        RelayAllowList.parse("relay:0")


async def test_the_relay_name_is_resolved_once_and_the_checked_address_is_dialled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a name that answers a public address when checked and 127.0.0.1 a
    moment later must still be reached at the address that was checked."""
    loop = asyncio.get_running_loop()
    public = "93.184.215.14"
    lookups: list[str] = []
    dialled: list[str] = []

    async def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        lookups.append(host)
        address = public if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    async def refuse(sock: socket.socket, address: tuple[str, int]) -> None:
        dialled.append(address[0])
        raise ConnectionRefusedError("refused (injected)")

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    monkeypatch.setattr(loop, "sock_connect", refuse)
    relay = Relay(host="relay.rebind.example", port=587, security="none", timeout=30)
    with pytest.raises(DeliveryFailure):
        await probe(relay)
    assert lookups == ["relay.rebind.example"]
    assert dialled == [public]


async def test_settings_mail_goes_out_only_from_an_address_at_a_proved_domain(
    unproved_site: Site,
) -> None:
    """With no address saved, the test email would have spoken for KashFlow's company
    address, or even for the address it was typed to: neither domain is proved."""
    site = unproved_site
    browser = await signed_in(site)
    try:
        text = await send_test(browser, site, "127.0.0.1", site.capture.port)
        assert "The email was not sent" not in text  # refused before the relay
        assert "goes out only from an address at a domain it has proved" in text
        assert site.capture.messages == []

        await site.core.store.domains.mark_proved("demo", "northwind.example", "operator")
        await site.core.store.accounts.update("demo", reply_from="accounts@northwind.example")
        text = await send_test(browser, site, "127.0.0.1", site.capture.port)
        assert "The test email was handed to the relay." in text
    finally:
        await browser.close()
    [sent] = await site.capture.wait_for(1)
    assert parseaddr(str(sent.parsed()["From"]))[1] == "accounts@northwind.example"
