"""Shared fixtures, built from ``tests/support``: the sandbox KashFlow (a real SOAP server on
a loopback port), state databases on SQLite and PostgreSQL, and the mail bot's rig."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.capture import self_signed_certificate
from kashflow.client import Account, KashFlow
from kashflow.sandbox import DEMO, Sandbox
from permalink.db import Database, open_database
from tests.support.bot import MakeRig, Rig, bot_rigs
from tests.support.imap import MakeDovecot, dovecots
from tests.support.listener import OpenRaw, StartBot, listener_bots, raw_clients
from tests.support.stores import DATABASE_KINDS, DatabaseKind, database_url

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
    """The gateway pointed at the sandbox; one quick retry keeps fault tests fast
    (production uses the defaults). The timeout is as generous as the reliability suites'
    answering tests use: a busy machine rendering PDFs is slower, not down; no test here
    waits for it (the hang and timeout tests build their own gateway)."""
    async with KashFlow(
        sandbox.url, timeout=10.0, retries=1, retry_delay=0.01, pdf_hosts=sandbox.pdf_hosts
    ) as kf:
        yield kf


@pytest.fixture
def demo_account(kashflow: KashFlow) -> Account:
    return kashflow.account(DEMO)


# -- state ------------------------------------------------------------------------------

OpenDb = Callable[[], Database]


@pytest.fixture(params=DATABASE_KINDS)
def database_kind(request: pytest.FixtureRequest) -> DatabaseKind:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    kind: DatabaseKind = request.param
    return kind


@pytest.fixture
def state_url(database_kind: DatabaseKind, tmp_path: Path) -> Iterator[str | None]:
    """Where the test's state lives: None for SQLite in ``tmp_path``, else a PostgreSQL URL
    of a schema of its own."""
    with database_url(database_kind, tmp_path) as url:
        yield url


@pytest.fixture
def open_db(state_url: str | None, tmp_path: Path) -> Iterator[OpenDb]:
    """Opens the state, closing the previous handle first: a restarted process. Runs on
    both databases."""
    opened: list[Database] = []

    def factory() -> Database:
        if opened:
            opened.pop().close()
        opened.append(open_database(state_url, tmp_path))
        return opened[-1]

    yield factory
    for db in opened:
        db.close()


@pytest.fixture
def store_kind() -> DatabaseKind:
    """The store the web and bot rigs keep their state in: SQLite, unless the test is
    marked ``@both_stores`` (``tests.support.stores``), which runs it on each."""
    return "sqlite"


@pytest.fixture
def store_url(store_kind: DatabaseKind, tmp_path: Path) -> Iterator[str | None]:
    """The rigs' database: None for SQLite in ``tmp_path``, else a PostgreSQL schema."""
    with database_url(store_kind, tmp_path) as url:
        yield url


# -- the mail bot -----------------------------------------------------------------------


@pytest.fixture
async def make_rig(
    tmp_path: Path, sandbox: Sandbox, kashflow: KashFlow, store_url: str | None
) -> AsyncIterator[MakeRig]:
    """Start bots for the sandbox's ``demo`` account (state on SQLite, or on PostgreSQL for
    a test marked ``@both_stores``); keyword arguments are bot settings."""
    async with bot_rigs(tmp_path, sandbox, kashflow, database_url=store_url) as make:
        yield make


@pytest.fixture
async def rig(make_rig: MakeRig) -> Rig:
    return await make_rig()


# -- the SMTP listener alone ------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A SQLite state database in the test's directory."""
    db = open_database(None, tmp_path)
    yield db
    db.close()


@pytest.fixture
async def start_bot(database: Database) -> AsyncIterator[StartBot]:
    """Start SMTP listeners (and their spool) for request addresses."""
    async with listener_bots(database) as start:
        yield start


@pytest.fixture
async def open_raw() -> AsyncIterator[OpenRaw]:
    """Open raw SMTP connections (closed afterwards)."""
    async with raw_clients() as open_:
        yield open_


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


# -- IMAP -------------------------------------------------------------------------------


@pytest.fixture
def make_dovecot() -> Iterator[MakeDovecot]:
    """Start Dovecot IMAP servers on loopback (each in a directory of its own); all are
    stopped, and their directories removed, afterwards."""
    with dovecots() as make:
        yield make
