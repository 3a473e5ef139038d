"""The shared database: PostgreSQL, so several web and bot processes share one state.

psycopg 3 with a psycopg_pool connection pool, driven from a small pool of threads the
same way the SQLite file is driven from its one thread: a table function is one plain
function for both databases, a transaction runs start to end on one connection without
another coroutine's statements in between, and the event loop never waits on the network.
Connections are in autocommit mode; ``conn.transaction()`` opens a real transaction.
Queries are written with ``?``/``:name`` placeholders and translated to psycopg's once.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from permalink.db import (
    POSTGRESQL,
    Conflict,
    Conn,
    Dialect,
    Params,
    Result,
    StoreFull,
    StoreUnavailable,
)
from permalink.db.migrations import migrate

T = TypeVar("T")

#: Connections (and threads) per process; each web or bot process has its own pool.
DEFAULT_POOL_SIZE = 8
_CONNECT_TIMEOUT_S = 10.0

_PLACEHOLDER = re.compile(r"\?|(?<!:):([A-Za-z_][A-Za-z0-9_]*)|%")


@functools.lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """``?`` -> ``%s``, ``:name`` -> ``%(name)s``, a literal ``%`` -> ``%%``."""

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return f"%({match.group(1)})s"

    return _PLACEHOLDER.sub(replace, sql)


def _translate(error: BaseException) -> NoReturn:
    if isinstance(error, pg_errors.IntegrityError):
        raise Conflict("the write conflicts with what is stored") from error
    if isinstance(error, pg_errors.DiskFull | pg_errors.OutOfMemory):
        raise StoreFull("the database server has no room to write") from error
    raise StoreUnavailable(f"the database failed ({type(error).__name__})") from error


def redact_url(url: str) -> str:
    """The URL without its password, for log lines and ``check``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:…@{netloc}" if user else netloc))


class PostgresConn(Conn):
    dialect: Dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            return self._conn.execute(to_psycopg(sql), params or None)
        except psycopg.Error as error:
            _translate(error)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        try:
            with self._conn.transaction():
                if not durable:
                    self._conn.execute("SET LOCAL synchronous_commit TO OFF")
                yield
        except psycopg.Error as error:
            _translate(error)


class PostgresDatabase:
    """The state in a PostgreSQL database; migrated to the current schema when opened."""

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pg")
        try:
            self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[dict[str, Any]]] = (
                psycopg_pool.ConnectionPool(
                    url,
                    min_size=1,
                    max_size=pool_size,
                    kwargs={"autocommit": True, "row_factory": dict_row},
                    timeout=_CONNECT_TIMEOUT_S,
                    open=False,
                    name="kashflow-permalink",
                )
            )
            self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            self._executor.shutdown(wait=False)
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {redact_url(url)} ({type(error).__name__})"
            ) from None
        try:
            self.call(migrate)
        except BaseException:
            self.close()
            raise

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL

    @property
    def description(self) -> str:
        return f"PostgreSQL {redact_url(self.url)}"

    def _with_connection(self, fn: Callable[[Conn], T]) -> T:
        try:
            with self._pool.connection() as conn:
                return fn(PostgresConn(conn))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            _translate(error)

    def call(self, fn: Callable[[Conn], T]) -> T:
        return self._executor.submit(self._with_connection, fn).result()

    async def run(self, fn: Callable[[Conn], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_connection, fn)

    def close(self) -> None:
        self._pool.close()
        self._executor.shutdown(wait=True)


__all__ = ["DEFAULT_POOL_SIZE", "PostgresConn", "PostgresDatabase", "redact_url", "to_psycopg"]
