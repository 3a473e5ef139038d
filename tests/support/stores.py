"""Databases for tests: a SQLite file in the test's directory, or a fresh PostgreSQL schema.

PostgreSQL comes from the throwaway server ``make test`` starts (``scripts/with-postgres``),
named by ``KFP_TEST_DATABASE_URL``. Each test gets its own schema, dropped
afterwards, so tests never see each other's rows. Without that server a PostgreSQL test
fails with a message saying how to run it: it is never skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import psycopg
import pytest

from permalink.db import Database, open_database

DatabaseKind = Literal["sqlite", "postgresql"]
DATABASE_KINDS: tuple[DatabaseKind, ...] = ("sqlite", "postgresql")
URL_VARIABLE = "KFP_TEST_DATABASE_URL"


#: Runs a test once on each store: it overrides the ``store_kind`` fixture (SQLite by
#: default) that the web and bot rigs keep their state in (see ``tests/conftest.py``).
both_stores = pytest.mark.parametrize("store_kind", DATABASE_KINDS)


def postgres_server_url() -> str:
    url = os.environ.get(URL_VARIABLE, "")
    if not url:
        pytest.fail(
            f"{URL_VARIABLE} is not set: run the tests with `make test`, which starts a "
            "throwaway PostgreSQL (scripts/with-postgres)"
        )
    return url


def with_search_path(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose tables live in a new, empty schema (dropped afterwards)."""
    server = postgres_server_url()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def database_url(kind: DatabaseKind, directory: Path) -> Iterator[str | None]:
    """Where a test's state lives: None (SQLite in ``directory``) or a PostgreSQL URL."""
    if kind == "sqlite":
        yield None
        return
    with postgres_schema() as url:
        yield url


def open_test_database(url: str | None, directory: Path) -> Database:
    return open_database(url, directory)


__all__ = [
    "DATABASE_KINDS",
    "URL_VARIABLE",
    "DatabaseKind",
    "both_stores",
    "database_url",
    "open_test_database",
    "postgres_schema",
    "postgres_server_url",
    "with_search_path",
]
