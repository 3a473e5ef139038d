"""Driving Debian's chromium through Playwright, and serving an app on a real TCP port.

Playwright's own browser download does not work on the build machines, so the browser
is the system's ``/usr/bin/chromium``. A missing browser makes the test **fail**, never
skip: a browser test that silently does not run is worse than none.

Use from a test module::

    from tests.support.browser import chromium, serve, watch_origins

    @pytest.fixture
    async def browser() -> AsyncIterator[Browser]:
        async with chromium() as launched:
            yield launched

or, from a conftest, ``pytest_plugins = ["tests.support.browser"]`` for the ready-made
``browser`` fixture.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, Request, async_playwright
from yarl import URL

#: Override with the CHROMIUM environment variable (a path to the executable).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


def chromium_path() -> Path:
    """The chromium executable, or a failed test saying how to install it."""
    path = Path(os.environ.get("CHROMIUM", str(CHROMIUM)))
    if not (path.is_file() and os.access(path, os.X_OK)):
        found = shutil.which("chromium")
        hint = f" (there is one at {found}: set CHROMIUM={found})" if found else ""
        pytest.fail(
            f"browser tests need chromium at {path}{hint}; install it with "
            "`apt-get install chromium`",
            pytrace=False,
        )
    return path


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium for the duration of the block."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@asynccontextmanager
async def serve(app: web.Application, **runner_kwargs: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 on a free port; yields its base URL (no trailing slash)."""
    runner = web.AppRunner(app, **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@dataclass
class OriginWatch:
    """Every request a page made, and those that went anywhere but ``origin``."""

    origin: str
    requests: list[str] = field(default_factory=list)

    @property
    def foreign(self) -> list[str]:
        own = URL(self.origin).origin()
        return [
            url
            for url in self.requests
            if not url.startswith(("data:", "blob:")) and URL(url).origin() != own
        ]

    def _seen(self, request: Request) -> None:
        self.requests.append(request.url)


def watch_origins(page: Page, origin: str) -> OriginWatch:
    """Start recording ``page``'s requests (call before navigating)."""
    watch = OriginWatch(origin)
    page.on("request", watch._seen)
    return watch


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "OriginWatch",
    "browser",
    "chromium",
    "chromium_path",
    "serve",
    "watch_origins",
]
