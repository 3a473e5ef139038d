"""Test support shared by several test modules (reached through ``tests/conftest.py``).

:func:`web_rig` starts the sandbox KashFlow on loopback and builds the web application
around a core against it (a fresh keyring and state database per test); :meth:`WebRig.mint`
makes permalinks the way the settings page and the CLI do. The mail bot's rig lives in
:mod:`tests.support.bot`, databases in :mod:`tests.support.stores`, processes in
:mod:`tests.support.processes`, browser support in :mod:`tests.support.browser`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kashflow.client import KashFlow
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from permalink.core import Core
from permalink.db import Database, open_database
from permalink.keyring import Keyring
from permalink.links import Link, new_link, seal
from permalink.registry import LinkRegistry
from permalink.scopes import Scope
from tests.support.core import PUBLIC_BASE_URL, make_core
from web.app import WebConfig, create_app


@dataclass
class ManualClock:
    """A clock the test moves by hand; starts at the real time so "today" is today."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class WebRig:
    sandbox: Sandbox
    kashflow: KashFlow
    keyring: Keyring
    db: Database
    clock: ManualClock
    config: WebConfig
    core: Core
    app: web.Application

    @property
    def registry(self) -> LinkRegistry:
        return self.core.store.links

    def link(
        self,
        code: str = "ACME01",
        scope: str = "all",
        *,
        account: str = DEMO.username,
        credentials: Credentials | None = None,
        issued_ago: int = 0,
        expires_in: int | None = None,
        customer_id: int | None = None,
    ) -> Link:
        """A link for a sandbox customer (``customer_id`` overrides the lookup)."""
        if customer_id is None:
            customer_id = self.sandbox.customer(account, code).id
        return new_link(
            credentials or self.sandbox.credentials(account),
            customer_id,
            code,
            Scope.parse(scope),
            now=int(self.clock()) - issued_ago,
            expires_in=expires_in,
        )

    def mint(self, code: str = "ACME01", scope: str = "all", **kwargs: Any) -> str:
        """The token of a fresh link (see :meth:`link` for the options)."""
        return seal(self.link(code, scope, **kwargs), self.keyring)


@asynccontextmanager
async def web_rig(
    tmp_path: Path,
    *,
    latency_ms: float = 0,
    database_url: str | None = None,
    core_config: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[WebRig]:
    """The resolver's whole stack on loopback; ``config`` overrides :class:`WebConfig`,
    ``core_config`` the core's, ``gateway`` the KashFlow client's options, and
    ``database_url`` puts the state on PostgreSQL."""
    sandbox = Sandbox(latency_ms=latency_ms)
    await sandbox.start()
    # No retries by default: a test of "KashFlow is down" should see the failure at once.
    kashflow = KashFlow(
        sandbox.url,
        **{"timeout": 5.0, "retries": 0, "pdf_hosts": sandbox.pdf_hosts, **(gateway or {})},
    )
    db = open_database(database_url, tmp_path)
    keyring = Keyring.generate()
    clock = ManualClock()
    core = make_core(db, keyring, kashflow, clock=clock, **(core_config or {}))
    try:
        web_config = WebConfig(**config)
        app = create_app(core, web_config)
        yield WebRig(
            sandbox=sandbox,
            kashflow=kashflow,
            keyring=keyring,
            db=db,
            clock=clock,
            config=web_config,
            core=core,
            app=app,
        )
    finally:
        core.close()
        await kashflow.close()
        await sandbox.stop()
        db.close()


__all__ = ["PUBLIC_BASE_URL", "ManualClock", "WebRig", "web_rig"]
