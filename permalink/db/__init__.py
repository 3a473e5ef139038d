"""The database under the state store: one small interface over SQLite and PostgreSQL.

Every table module (links, spool, activity, accounts, limits, sessions) writes its queries
as plain functions of a :class:`Conn` and runs them with :meth:`Database.run`, on the
database's own threads, so the event loop never waits on disk or network and a
transaction is never interleaved with another coroutine's statements. The same function
runs on either database: queries use ``?`` (or ``:name``) placeholders and standard SQL,
and the few places where the two dialects differ ask :attr:`Conn.dialect`.

Drivers never show through: a constraint violation is :class:`Conflict`, a full disk
:class:`StoreFull`, anything else the database cannot do :class:`StoreUnavailable`.
Writes are durable (SQLite ``synchronous=FULL``, PostgreSQL's synchronous commit)
before the awaiting coroutine resumes.

:func:`open_database` picks the implementation: a ``postgresql://`` URL, else the SQLite
file in the state directory. Both apply the numbered migrations of
:mod:`permalink.db.migrations` when they open.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")

Row = Mapping[str, Any]
Params = Sequence[Any] | Mapping[str, Any]
DialectName = Literal["sqlite", "postgresql"]


class StoreError(Exception):
    """The state store could not do what was asked. Messages never carry row data."""


class Conflict(StoreError):
    """A write broke a uniqueness or integrity rule (a duplicate key, a missing parent)."""


class StoreFull(StoreError):
    """The disk (or the database's quota) is full: nothing more can be written for now."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or failed; trying again later may work."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The little that differs between the two databases' SQL."""

    name: DialectName
    #: The scalar "larger of two values" function.
    greatest: str
    #: A column that grows with insertion order, for stable "newest first" ties.
    insertion_order: str


SQLITE = Dialect("sqlite", greatest="max", insertion_order="rowid")
POSTGRESQL = Dialect("postgresql", greatest="greatest", insertion_order="seq")


class Result(Protocol):
    """What :meth:`Conn.execute` returns: a DB-API cursor, rows as mappings."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(ABC):
    """One connection, used by one table function at a time on a database thread."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement (``?`` or ``:name`` placeholders)."""

    @abstractmethod
    def transaction(self, *, durable: bool = True) -> Any:
        """``with conn.transaction():`` makes the statements inside one atomic write.

        ``durable=False`` lets the commit return before it reaches the disk, for state
        worth losing in a crash rather than an fsync per request (throttle counts).
        """

    def one(self, sql: str, params: Params = ()) -> Row | None:
        # Every row is fetched, so a statement with RETURNING has run to its end (and
        # committed) before this returns.
        rows = self.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row (``None`` when there is no row)."""
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))


class Database(Protocol):
    """Where the state lives; :func:`open_database` chooses SQLite or PostgreSQL."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def description(self) -> str:
        """Where the data is, for start-up lines and ``check`` (never a password)."""
        ...

    async def run(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` on a database thread without blocking the event loop."""
        ...

    def call(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` and wait (for start-up, the CLI and tests without a loop)."""
        ...

    def close(self) -> None: ...


@contextmanager
def transaction(conn: Conn, *, durable: bool = True) -> Iterator[Conn]:
    """``with transaction(conn):`` makes several statements one atomic, durable write."""
    with conn.transaction(durable=durable):
        yield conn


def is_database_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def open_database(url: str | None, state_dir: Path | None = None) -> Database:
    """The configured database, migrated: PostgreSQL for a ``postgresql://`` URL, else
    ``state.sqlite3`` in ``state_dir`` (or the SQLite file ``url`` names)."""
    if url and is_database_url(url):
        from permalink.db.postgres import PostgresDatabase

        return PostgresDatabase(url)
    from permalink.db.sqlite import SqliteDatabase

    if url:
        return SqliteDatabase(url)
    if state_dir is None:
        raise ValueError("a state directory or a database URL is needed")
    return SqliteDatabase(state_dir / "state.sqlite3", state_dir=True)


__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "Conflict",
    "Conn",
    "Database",
    "Dialect",
    "Params",
    "Row",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "is_database_url",
    "open_database",
    "transaction",
]
