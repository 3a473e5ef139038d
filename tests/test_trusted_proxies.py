"""Behind a reverse proxy, over real sockets: who the client is, for the throttles and logs.

Every visitor reaches the app from the proxy's address. Only when the operator names the
proxy (``--trusted-proxies``) is the client read from ``X-Forwarded-For`` or
``Forwarded``; then one client's bad tokens or wrong passwords never lock out another.
Headers from anyone else are ignored. Without a proxy, clients on different addresses
(127.0.0.1 and 127.0.0.2 here) are kept apart the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kashflow.sandbox import DEMO
from tests.support import WebRig, web_rig
from tests.support.processes import ServeProcess, prepare_state, sandbox_process
from web.security import RedactingAccessLogger, TrustedProxies

LIMIT = 3
#: Served over plain HTTP here, so the session cookie is not marked Secure.
PLAIN_HTTP = {"public_base_url": "http://invoices.example.test"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def behind_proxy(tmp_path: Path) -> AsyncIterator[WebRig]:
    """The app with the loopback proxy (and a 10/8 proxy tier) trusted."""
    proxies = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    async with web_rig(
        tmp_path, invalid_link_limit=LIMIT, trusted_proxies=proxies, core_config=PLAIN_HTTP
    ) as rig:
        yield rig


@pytest.fixture
async def untrusted(tmp_path: Path) -> AsyncIterator[WebRig]:
    """The app with no proxy trusted (the default)."""
    async with web_rig(tmp_path, invalid_link_limit=LIMIT, core_config=PLAIN_HTTP) as rig:
        yield rig


async def serve(rig: WebRig) -> TestServer:
    server = TestServer(rig.app, host="127.0.0.1")
    await server.start_server()
    return server


async def get(server: TestServer, path: str, *, source: str = "127.0.0.1", **headers: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(server.make_url(path), headers=headers, allow_redirects=False) as response,
    ):
        await response.read()
        return response.status


async def test_one_client_behind_the_proxy_cannot_lock_out_another(behind_proxy: WebRig) -> None:
    server = await serve(behind_proxy)
    try:
        good = behind_proxy.mint("FOX01")
        for attempt in range(LIMIT):
            assert (
                await get(server, f"/l/guess-{attempt}", **{"X-Forwarded-For": "203.0.113.9"})
                == 404
            )
        assert await get(server, "/l/guess", **{"X-Forwarded-For": "203.0.113.9"}) == 429
        # Another visitor, through the same proxy: their bad link is "not valid", not 429,
        # and their good link opens.
        assert await get(server, "/l/typo", **{"X-Forwarded-For": "198.51.100.4"}) == 404
        assert await get(server, f"/l/{good}", **{"X-Forwarded-For": "198.51.100.4"}) == 200
        # RFC 7239 Forwarded works the same way, IPv6 and port included.
        forwarded = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
        assert await get(server, "/l/typo-2", **forwarded) == 404
    finally:
        await server.close()


async def test_the_client_cannot_escape_by_writing_its_own_hops(behind_proxy: WebRig) -> None:
    """Everything left of the hop the proxy wrote is the client's invention."""
    server = await serve(behind_proxy)
    try:
        for attempt in range(LIMIT):
            chain = f"192.0.2.{attempt}, 203.0.113.9, 10.1.2.3"
            assert await get(server, f"/l/g-{attempt}", **{"X-Forwarded-For": chain}) == 404
        chain = "192.0.2.200, 203.0.113.9, 10.1.2.3"
        assert await get(server, "/l/g", **{"X-Forwarded-For": chain}) == 429
    finally:
        await server.close()


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(untrusted: WebRig) -> None:
    server = await serve(untrusted)
    try:
        for attempt in range(LIMIT):
            spoof = {"X-Forwarded-For": f"192.0.2.{attempt}", "Forwarded": f"for=192.0.2.{attempt}"}
            assert await get(server, f"/l/g-{attempt}", **spoof) == 404
        assert await get(server, "/l/g", **{"X-Forwarded-For": "192.0.2.99"}) == 429
        # Without a proxy, a client on another address is its own client.
        assert await get(server, "/l/g", source="127.0.0.2") == 404
    finally:
        await server.close()


async def test_the_access_log_names_the_forwarded_client(
    behind_proxy: WebRig, caplog: pytest.LogCaptureFixture
) -> None:
    server = TestServer(behind_proxy.app, host="127.0.0.1")
    await server.start_server(access_log_class=RedactingAccessLogger)
    lines: list[str] = []
    written = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            written.set()

    access = logging.getLogger("aiohttp.access")
    watch = Watch()
    access.addHandler(watch)
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            assert await get(server, "/healthz", **{"X-Forwarded-For": "203.0.113.77"}) == 200
            # The access line is written after the response is sent: wait for it.
            async with asyncio.timeout(30):
                await written.wait()
        assert lines[0].startswith('203.0.113.77 "GET /healthz')
    finally:
        access.removeHandler(watch)
        await server.close()


async def _sign_in(
    server: TestServer, password: str, *, source: str = "127.0.0.1", **headers: str
) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    # unsafe: the cookie jar keeps cookies from an IP-address host (127.0.0.1).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        async with session.get(server.make_url("/settings/login"), headers=headers) as form:
            match = _CSRF.search(await form.text())
            assert match is not None
        async with session.post(
            server.make_url("/settings/login"),
            data={"csrf": match.group(1), "username": DEMO.username, "password": password},
            headers=headers,
            allow_redirects=False,
        ) as response:
            await response.read()
            location = response.headers.get("Location", "")
            if response.status != 303 or not location.startswith("/settings/login"):
                return response.status
        # A refused sign-in is answered with a redirect back to the form, which shows the
        # refusal once, with its status.
        async with session.get(server.make_url(location), headers=headers) as shown:
            await shown.read()
            return shown.status


async def test_wrong_passwords_behind_the_proxy_lock_only_their_client(
    behind_proxy: WebRig,
) -> None:
    server = await serve(behind_proxy)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    try:
        # Five failures are free, the sixth is slowed down: the next try must wait.
        for _ in range(6):
            assert await _sign_in(server, "wrong", **attacker) == 401
        assert await _sign_in(server, "wrong", **attacker) == 429
        # The real accountant, behind the same proxy, still signs in.
        assert await _sign_in(server, DEMO.password, **{"X-Forwarded-For": "198.51.100.8"}) == 303
    finally:
        await server.close()


async def test_a_named_accountant_signs_in_from_elsewhere_while_locked_here(
    untrusted: WebRig,
) -> None:
    """The lock is keyed on the username *and* the address: no proxy, two real peers."""
    server = await serve(untrusted)
    try:
        for _ in range(6):
            assert await _sign_in(server, "wrong", source="127.0.0.2") == 401
        assert await _sign_in(server, DEMO.password, source="127.0.0.2") == 429
        assert await _sign_in(server, DEMO.password, source="127.0.0.1") == 303
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.1"}, "203.0.113.1"),
        ("127.0.0.1", {"X-Forwarded-For": "garbage, 203.0.113.1, 10.0.0.9"}, "203.0.113.1"),
        ("127.0.0.1", {"X-Forwarded-For": "10.0.0.8, 10.0.0.9"}, "10.0.0.8"),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.1, not-an-ip"}, "127.0.0.1"),
        ("127.0.0.1", {"Forwarded": "for=192.0.2.60;proto=http, for=10.0.0.1"}, "192.0.2.60"),
        ("127.0.0.1", {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::17"),
        ("127.0.0.1", {}, "127.0.0.1"),
        ("192.0.2.5", {"X-Forwarded-For": "203.0.113.1"}, "192.0.2.5"),
        ("::ffff:127.0.0.1", {"X-Forwarded-For": "203.0.113.1"}, "203.0.113.1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(
    peer: str, headers: dict[str, str], client: str
) -> None:
    proxies = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    assert proxies.client(peer, headers) == client


def test_a_bad_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        TrustedProxies.parse("127.0.0.1, 10.0.0.300")


#: ``serve``'s own limit on bad links per client a minute (WebConfig's default).
SERVE_LIMIT = 20


async def test_serve_reads_trusted_proxies_from_its_environment(tmp_path: Path) -> None:
    """The operator's setting reaches the running server: ``serve`` started with
    ``KASHFLOW_PERMALINK_TRUSTED_PROXIES`` tells clients behind the proxy apart."""
    state = tmp_path / "state"
    with sandbox_process(0) as kashflow_url:
        await prepare_state(state, relay_port=2525)
        served = ServeProcess(
            state,
            kashflow_url,
            role="web",
            log=tmp_path / "web.log",
            env={"KASHFLOW_PERMALINK_TRUSTED_PROXIES": "127.0.0.1"},
        )
        await served.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def status(path: str, client: str) -> int:
                    headers = {"X-Forwarded-For": client}
                    async with session.get(served.url + path, headers=headers) as response:
                        await response.read()
                        return response.status

                for attempt in range(SERVE_LIMIT):
                    assert await status(f"/l/guess-{attempt}", "203.0.113.9") == 404
                assert await status("/l/guess", "203.0.113.9") == 429
                # Another visitor through the same proxy is not locked out.
                assert await status("/l/typo", "198.51.100.4") == 404
        finally:
            assert await served.terminate() == 0
