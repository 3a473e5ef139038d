"""The embedded database: one SQLite file in the state directory, on one thread.

One connection, one worker thread: every table function runs there in turn, so SQLite's
single writer is never contended inside the process and the event loop never blocks.
WAL with ``synchronous=FULL``: a commit is on disk before it returns, which is what lets
the bot answer ``250`` only once a message is safe. The directory is made 0700 and the
file 0600 whatever the umask: it holds client addresses, raw mail and sealed secrets. A
directory, database or journal an older release left open to others is made private when
the database is opened (and said so in the log).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from permalink.db import (
    SQLITE,
    Conflict,
    Conn,
    Dialect,
    Params,
    Result,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from permalink.db.migrations import migrate

T = TypeVar("T")

log = logging.getLogger(__name__)


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _translate(error: BaseException) -> NoReturn:
    """Raise the store's own error for a driver error (the driver's stays as the cause)."""
    if isinstance(error, sqlite3.IntegrityError):
        raise Conflict("the write conflicts with what is stored") from error
    if is_disk_full(error):
        raise StoreFull("the disk holding the state database is full") from error
    raise StoreUnavailable(f"the state database failed ({type(error).__name__})") from error


class _Rows:
    """A cursor whose fetches speak the store's errors too: a statement runs (and, outside
    a transaction, commits) as its rows are fetched, so a ``RETURNING`` insert meets a full
    disk at ``fetchall``, not at ``execute``."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except (sqlite3.Error, OSError) as error:
            _translate(error)

    def fetchall(self) -> list[Any]:
        try:
            return self._cursor.fetchall()
        except (sqlite3.Error, OSError) as error:
            _translate(error)


class SqliteConn(Conn):
    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            return _Rows(self._conn.execute(sql, params))
        except (sqlite3.Error, OSError) as error:
            _translate(error)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        if not durable:
            # In WAL mode NORMAL skips the fsync at commit; the data is still consistent.
            self.execute("PRAGMA synchronous=NORMAL")
        try:
            # IMMEDIATE takes the write lock up front, so a read-then-write cannot be
            # beaten to the write by another process on the same file.
            self.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self.execute("COMMIT")
        finally:
            if not durable:
                self.execute("PRAGMA synchronous=FULL")


def _create_private(path: Path, *, state_dir: bool) -> None:
    """The directory 0700 and the file 0600 before SQLite opens it (it keeps the mode for
    its WAL and shared-memory files).

    ``mkdir`` and ``O_CREAT`` leave what already exists as it was: an older release wrote
    these under the caller's umask (0755, 0644), and a journal outlives a crash. So the
    database and its journal are made private too, and the directory when it is the
    state directory (a database file the operator named may sit in a directory of theirs).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    ours = (path.parent,) if state_dir else ()
    for each in (*ours, path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        _make_private(each)


def _make_private(path: Path) -> None:
    """Take away group and other access to ``path`` if it exists and has any."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & 0o700)
    except PermissionError:
        # Not ours to change (another user owns it): the operator must.
        log.warning(
            "%s is open to other users (%o); make it private: chmod go= %s", path, mode, path
        )
    else:
        log.warning("made %s private: it was %o, it is now %o", path, mode, mode & 0o700)


class SqliteDatabase:
    """The state in one SQLite file; migrated to the current schema when opened.

    ``state_dir``: the file's directory is the state directory, kept private too."""

    def __init__(self, path: Path | str, *, state_dir: bool = False) -> None:
        self.path = str(path)
        self._state_dir = state_dir
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            self._conn = self._executor.submit(self._connect).result()
            self.call(migrate)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    @property
    def description(self) -> str:
        return f"SQLite {self.path}"

    def _connect(self) -> SqliteConn:
        try:
            if self.path != ":memory:":
                _create_private(Path(self.path), state_dir=self._state_dir)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = _row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as error:
            _translate(error)
        return SqliteConn(conn)

    def call(self, fn: Callable[[Conn], T]) -> T:
        return self._executor.submit(fn, self._conn).result()

    async def run(self, fn: Callable[[Conn], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn)

    def close(self) -> None:
        def close(conn: SqliteConn) -> None:
            conn._conn.close()

        with suppress(StoreError):
            self._executor.submit(close, self._conn).result()
        self._executor.shutdown(wait=True)


__all__ = ["SqliteConn", "SqliteDatabase", "is_disk_full"]
