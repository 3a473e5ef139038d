"""The numbered migrations: an older state is moved forward with its rows intact, a state
file from before migrations is adopted, a newer state is refused with a sentence, and
processes starting together on PostgreSQL migrate once.

On both stores where the store matters. The older states are built here by applying the
first migrations by hand, as an older release would have left them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from permalink.db import Conn, Database, StoreError, open_database
from permalink.db.migrations import LATEST, MIGRATIONS, Migration, version
from permalink.db.postgres import PostgresConn
from permalink.db.sqlite import SqliteConn
from permalink.registry import LinkRegistry, new_link_id
from tests.conftest import OpenDb
from tests.support.stores import postgres_schema

T0 = 1_700_000_000


@contextmanager
def raw_connection(state_url: str | None, directory: Path) -> Iterator[Conn]:
    """A connection to the state an ``open_database`` of the same place would open, made
    without migrating anything."""
    if state_url is None:
        sqlite = sqlite3.connect(directory / "state.sqlite3", isolation_level=None)
        sqlite.row_factory = lambda cursor, values: {
            column[0]: value for column, value in zip(cursor.description, values, strict=True)
        }
        try:
            yield SqliteConn(sqlite)
        finally:
            sqlite.close()
        return
    postgres: psycopg.Connection[dict[str, Any]] = psycopg.connect(
        state_url, autocommit=True, row_factory=dict_row
    )
    try:
        yield PostgresConn(postgres)
    finally:
        postgres.close()


def apply_by_hand(conn: Conn, migrations: tuple[Migration, ...], *, record: bool) -> None:
    """What an older release did at start-up: its migrations, recorded (or, before
    migrations existed, migration 1's tables with no record at all)."""
    with conn.transaction():
        if record:
            conn.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        for migration in migrations:
            for statement in migration.sql(conn.dialect.name):
                conn.execute(statement)
            if record:
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, T0),
                )


def insert_old_link(conn: Conn) -> str:
    """A link as the first schema stored it (no customer id, no password mark)."""
    link_id = new_link_id()
    conn.execute(
        "INSERT INTO links (link_id, account, customer_code, customer_name, scope, created, "
        "expires, minted_by, opens, last_opened) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (link_id, "acme", "CUST01", "Customer One", "unpaid", T0, None, "cli", 3, T0 + 60),
    )
    return link_id


def recorded_versions(db: Database) -> list[int]:
    rows = db.call(lambda conn: conn.all("SELECT version FROM schema_migrations ORDER BY version"))
    return [int(row["version"]) for row in rows]


async def assert_link_survived(db: Database, link_id: str) -> None:
    registry = LinkRegistry(db)
    link = await registry.find(link_id)
    assert link is not None
    assert (link.account, link.customer_code, link.customer_name) == (
        "acme",
        "CUST01",
        "Customer One",
    )
    assert (link.scope, link.created, link.minted_by) == ("unpaid", T0, "cli")
    assert (link.opens, link.last_opened, link.revoked_at) == (3, T0 + 60, None)
    assert (link.customer_id, link.password_mark) == (None, None)
    # The moved-forward state works as the current one: the old link can be revoked.
    assert await registry.revoke("acme", link_id, now=T0 + 120)
    assert await registry.is_revoked(link_id, "acme", T0)


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)), ids=lambda k: f"first-{k}")
async def test_an_older_state_is_moved_to_the_latest_schema_with_its_rows_intact(
    applied: int, state_url: str | None, tmp_path: Path, open_db: OpenDb
) -> None:
    with raw_connection(state_url, tmp_path) as conn:
        apply_by_hand(conn, MIGRATIONS[:applied], record=True)
        link_id = insert_old_link(conn)

    db = open_db()

    assert db.call(version) == LATEST
    assert recorded_versions(db) == [migration.version for migration in MIGRATIONS]
    await assert_link_survived(db, link_id)


async def test_a_state_file_from_before_migrations_is_adopted_and_moved_forward(
    tmp_path: Path,
) -> None:
    with raw_connection(None, tmp_path) as conn:
        apply_by_hand(conn, MIGRATIONS[:1], record=False)
        link_id = insert_old_link(conn)

    db = open_database(None, tmp_path)
    try:
        assert db.call(version) == LATEST
        assert recorded_versions(db) == [migration.version for migration in MIGRATIONS]
        await assert_link_survived(db, link_id)
    finally:
        db.close()


def test_a_state_from_a_newer_release_is_refused_with_a_sentence(open_db: OpenDb) -> None:
    db = open_db()
    db.call(
        lambda conn: conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (LATEST + 1, "from a newer release", T0),
        )
    )

    with pytest.raises(StoreError) as refused:
        open_db()

    assert str(refused.value) == (
        f"the state database is at schema version {LATEST + 1}, newer than this release "
        f"knows ({LATEST}); run the newer release"
    )


def test_processes_starting_together_on_postgresql_migrate_once() -> None:
    starters = 4
    barrier = threading.Barrier(starters, timeout=60)
    opened: list[Database] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    with postgres_schema() as url:

        def start() -> None:
            barrier.wait()
            try:
                db = open_database(url)
            except BaseException as error:  # reported below, with the others
                with lock:
                    failures.append(error)
                return
            with lock:
                opened.append(db)

        threads = [threading.Thread(target=start) for _ in range(starters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        try:
            assert not any(thread.is_alive() for thread in threads)
            assert failures == []
            assert len(opened) == starters
            assert recorded_versions(opened[0]) == [m.version for m in MIGRATIONS]
            assert {db.call(version) for db in opened} == {LATEST}
        finally:
            for db in opened:
                db.close()
