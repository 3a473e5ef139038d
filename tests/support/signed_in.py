"""The whole web app on a loopback port with an accountant signing in over HTTP.

:func:`settings_site` serves the app built around a core against the sandbox, with a
capture SMTP server standing in for relays and a DNS server for domain proofs;
:class:`Accountant` is one browser (its own cookies, optionally its own source address)
that signs in and posts the settings forms with their CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.capture import CaptureServer
from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from permalink.core import Core
from permalink.db import open_database
from permalink.keyring import Keyring
from tests.support.core import make_core
from tests.support.dns import DnsServer, dns_server
from web.app import WebConfig, create_app

BASE = "http://settings.test"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    server: TestServer
    core: Core
    sandbox: Sandbox
    capture: CaptureServer
    dns: DnsServer

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]


class Accountant:
    """One browser on the settings pages."""

    def __init__(self, site: Site, *, source: str = "127.0.0.1") -> None:
        self.site = site
        # unsafe: keep cookies from an IP-address host (the test server's 127.0.0.1).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(source, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **options: Any) -> Page:
        async with self.session.get(self.site.url(path), **options) as response:
            return Page(response.status, await response.text(), dict(response.headers))

    async def csrf(self, path: str) -> str:
        match = _CSRF.search((await self.get(path)).text)
        assert match is not None, f"no CSRF field on {path}"
        return match.group(1)

    async def post(
        self, path: str, data: dict[str, str], *, page: str | None = None, **options: Any
    ) -> Page:
        """POST ``data`` with the CSRF token from ``page`` (default: ``path``'s parent)."""
        token = await self.csrf(page or path.rsplit("/", 1)[0])
        async with self.session.post(
            self.site.url(path), data={"csrf": token, **data}, **options
        ) as response:
            return Page(response.status, await response.text(), dict(response.headers))

    async def sign_in(self, credentials: Credentials = DEMO) -> Page:
        return await self.post(
            "/settings/login",
            {"username": credentials.username, "password": credentials.password},
            page="/settings/login",
            allow_redirects=False,
        )


@asynccontextmanager
async def settings_site(
    tmp_path: Path,
    kashflow: KashFlow,
    sandbox: Sandbox,
    *,
    database_url: str | None = None,
    **core_config: Any,
) -> AsyncIterator[Site]:
    """The app on loopback; ``core_config`` overrides the core's options. The state is
    SQLite in ``tmp_path``, or the PostgreSQL ``database_url`` names."""
    db = open_database(database_url, tmp_path)
    async with dns_server() as dns:
        options = {
            "public_base_url": BASE,
            "relay_timeout": 5.0,
            "dns_nameservers": ("127.0.0.1",),
            "dns_port": dns.port,
            **core_config,
        }
        core = make_core(db, Keyring.generate(), kashflow, **options)
        capture = CaptureServer(tmp_path / "outbox")
        await capture.start()
        server = TestServer(create_app(core, WebConfig()), host="127.0.0.1")
        await server.start_server()
        try:
            yield Site(server, core, sandbox, capture, dns)
        finally:
            await server.close()
            await capture.close()
            core.close()
            db.close()


__all__ = ["BASE", "Accountant", "Page", "Site", "settings_site"]
