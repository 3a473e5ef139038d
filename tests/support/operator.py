"""What an operator does, for tests: run a ``kashflow-permalink`` command, use the pages.

:func:`run_cli` runs the real command in its own process without blocking the test's event
loop (the sandbox KashFlow and the capture relay run on it). :class:`Browser` signs in to
the settings pages of a running server over HTTP, as a person's browser would (cookies,
the form's CSRF token). :func:`key_id` reads which server key sealed a link.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
from types import TracebackType

import aiohttp

from kashflow.models import Credentials
from tests.support.processes import ROOT

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def run_cli(
    *args: str, env: dict[str, str] | None = None, within: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``kashflow-permalink ARGS`` as its own process; waits at most ``within`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def key_id(url: str) -> int:
    """The id of the server key a permalink's token is sealed with (its second byte)."""
    token = url.rsplit("/l/", 1)[-1].split("/", 1)[0]
    blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return blob[1]


class Browser:
    """An HTTP client with a cookie jar, signed in to one running server's settings pages."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        # unsafe: the server is on 127.0.0.1, whose cookies aiohttp otherwise drops.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.http.close()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base_url + path) as response:
            return response.status, await response.text()

    async def head(self, path: str) -> aiohttp.ClientResponse:
        async with self.http.head(self.base_url + path) as response:
            return response

    async def csrf(self, path: str) -> str:
        status, page = await self.get(path)
        match = _CSRF.search(page)
        assert status == 200 and match is not None, f"no form on {path} ({status})"
        return match.group(1)

    async def form(self, page_path: str, action: str) -> dict[str, str]:
        """The hidden fields (CSRF token, the form's one-time key) of the form on
        ``page_path`` that posts to ``action``, as a browser would send them."""
        status, page = await self.get(page_path)
        assert status == 200, f"{page_path} answered {status}"
        found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
        assert found is not None, f"no form posting to {action} on {page_path}"
        hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', found.group(1))
        return dict(hidden)

    async def post(
        self, path: str, data: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """POST a form (with the CSRF token it needs already in ``data``); follows the
        redirect a successful form answers with."""
        async with self.http.post(self.base_url + path, data=data, headers=headers) as response:
            return response.status, await response.text()

    async def sign_in(self, credentials: Credentials) -> None:
        token = await self.csrf("/settings/login")
        status, page = await self.post(
            "/settings/login",
            {"csrf": token, "username": credentials.username, "password": credentials.password},
        )
        assert status == 200 and "Sign out" in page, page


__all__ = ["Browser", "key_id", "run_cli"]
