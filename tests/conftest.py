"""Shared fixtures: the sandbox KashFlow (a real SOAP server on a loopback port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kashflow.client import Account, KashFlow
from kashflow.sandbox import DEMO, Sandbox
from permalink.db import Database

SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def make_sandbox() -> AsyncIterator[SandboxFactory]:
    """Start sandboxes with the given ``Sandbox`` arguments; all are stopped afterwards."""
    started: list[Sandbox] = []

    async def make(**options: Any) -> Sandbox:
        sandbox = Sandbox(**options)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        await sandbox.stop()


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """A running sandbox with the default seeded accounts."""
    return await make_sandbox()


@pytest.fixture
async def kashflow(sandbox: Sandbox) -> AsyncIterator[KashFlow]:
    """The gateway pointed at the sandbox; short timeouts and one quick retry keep fault
    tests fast (production uses the defaults)."""
    async with KashFlow(sandbox.url, timeout=3.0, retries=1, retry_delay=0.01) as kf:
        yield kf


@pytest.fixture
def demo_account(kashflow: KashFlow) -> Account:
    return kashflow.account(DEMO)


OpenDb = Callable[[], Database]


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[OpenDb]:
    """Opens the state file, closing the previous handle first: a restarted process."""
    opened: list[Database] = []

    def factory() -> Database:
        if opened:
            opened.pop().close()
        opened.append(Database(tmp_path / "state.sqlite3"))
        return opened[-1]

    yield factory
    for db in opened:
        db.close()
