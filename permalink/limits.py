"""Rate limits and throttles, kept in the state store so every process shares them.

:class:`RateLimiter` keeps a sliding-window log, so the bot's "3 replies per customer per
hour" and its overall hourly cap survive a restart (a crash loop must not become a mail
flood) and hold across bot workers. :class:`Throttles` slows down a web client that keeps
failing — wrong passwords, invalid link tokens — with delays that double after a few free
failures; because it lives in the store, a client spreading its attempts over several web
processes is counted once.

Both take the clock as an argument (``now``, unix seconds) and never read it themselves.
Keys are opaque strings; callers put the account (or the client address) in them
(``f"{account}:customer:{code}"``) so one account's traffic never spends another's
allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

from permalink.db import Conn, Database, transaction


def _check_window(limit: int, window_s: float) -> None:
    if limit < 0:
        raise ValueError("a rate limit cannot be negative")
    if window_s <= 0:
        raise ValueError("a rate-limit window must be longer than zero seconds")


class RateLimiter:
    """At most ``limit`` acquisitions per key in any ``window_s`` seconds, kept in SQLite.

    A key must always be used with the same window (older hits are forgotten by it).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def try_acquire(
        self, key: str, *, limit: int, window_s: float, now: float, holder: str = ""
    ) -> bool:
        """Take one slot if the key has fewer than ``limit`` in the window ending ``now``.

        A ``holder`` (the one thing the slot is for, such as one spooled message) takes at
        most one slot per key and window: asking again for it succeeds without spending
        another, so an attempt that was interrupted or deferred costs nothing the second
        time.
        """
        _check_window(limit, window_s)

        def acquire(conn: Conn) -> bool:
            with transaction(conn):
                if conn.dialect.name == "postgresql":
                    # Count-then-insert is a race under READ COMMITTED: two workers could
                    # both see two hits and both take the third slot. One lock per key,
                    # held to the end of the transaction, puts them in turn. (SQLite's
                    # write transaction already does.)
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))
                conn.execute(
                    "DELETE FROM rate_hits WHERE key = ? AND at <= ?", (key, now - window_s)
                )
                if holder and conn.one(
                    "SELECT 1 AS held FROM rate_hits WHERE key = ? AND holder = ?", (key, holder)
                ):
                    return True
                used = int(conn.value("SELECT count(*) AS n FROM rate_hits WHERE key = ?", (key,)))
                if used >= limit:
                    return False
                conn.execute(
                    "INSERT INTO rate_hits (key, at, holder) VALUES (?, ?, ?)", (key, now, holder)
                )
                return True

        return await self._db.run(acquire)

    async def retry_after(self, key: str, *, limit: int, window_s: float, now: float) -> float:
        """Seconds until :meth:`try_acquire` would succeed (0 if it would now)."""
        _check_window(limit, window_s)
        if limit == 0:
            return float("inf")

        def select(conn: Conn) -> float:
            rows = conn.all(
                "SELECT at FROM rate_hits WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                (key, now - window_s, limit),
            )
            if len(rows) < limit:
                return 0.0
            # The oldest of the newest ``limit`` hits frees the next slot when it ages out.
            return max(0.0, float(rows[-1]["at"]) + window_s - now)

        return await self._db.run(select)

    async def prune(self, older_than: float) -> int:
        """Forget hits from before ``older_than`` for every key (keys gone quiet)."""

        def delete(conn: Conn) -> int:
            return conn.execute("DELETE FROM rate_hits WHERE at < ?", (older_than,)).rowcount

        return await self._db.run(delete)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Within ``window_s`` seconds a key gets ``free`` failures; each further failure
    blocks it for ``base_delay_s`` doubled per extra failure, capped at ``max_delay_s``."""

    free: int
    window_s: float
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        _check_window(self.free, self.window_s)
        if self.base_delay_s <= 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("delays must be positive, and the cap at least the base delay")

    def delay_after(self, failures: int) -> float:
        """How long a key is blocked after its ``failures``-th failure in a window."""
        over = failures - self.free
        if over <= 0:
            return 0.0
        # Capped exponent: 2**over for a huge ``over`` would overflow a float.
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(over - 1, 62))


class Throttles:
    """Failure counters per key with exponential back-off, shared through the store.

    Typical use: ``wait = await throttles.delay(key, now)`` before work that only a
    failing client should be kept from (refuse with 429 and ``Retry-After`` if positive),
    ``await throttles.hit(key, policy, now)`` on a failure, ``await throttles.reset(key)``
    on a success. Rows of keys gone quiet are removed by :meth:`prune`.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def hit(self, key: str, policy: ThrottlePolicy, now: float) -> float:
        """Count one failure; returns the seconds the key must now wait (0 if still free)."""

        def record(conn: Conn) -> float:
            select = "SELECT hits, window_start, blocked_until FROM throttles WHERE key = ?"
            if conn.dialect.name == "postgresql":
                select += " FOR UPDATE"
            # Not fsynced: losing a few failure counts in a crash costs nothing.
            with transaction(conn, durable=False):
                conn.execute(
                    "INSERT INTO throttles (key, hits, window_start, blocked_until)"
                    " VALUES (?, 0, ?, 0) ON CONFLICT (key) DO NOTHING",
                    (key, now),
                )
                row = conn.one(select, (key,))
                assert row is not None
                hits, start, blocked = (
                    int(row["hits"]),
                    float(row["window_start"]),
                    float(row["blocked_until"]),
                )
                if now - start >= policy.window_s:
                    hits, start = 0, now  # a quiet window forgives the count, not a block
                hits += 1
                delay = policy.delay_after(hits)
                if delay > 0:
                    blocked = max(blocked, now + delay)
                conn.execute(
                    "UPDATE throttles SET hits = ?, window_start = ?, blocked_until = ?"
                    " WHERE key = ?",
                    (hits, start, blocked, key),
                )
                return max(0.0, blocked - now)

        return await self._db.run(record)

    async def delay(self, key: str, now: float) -> float:
        """Seconds the key must still wait before it may try again (0 if it may now)."""

        def select(conn: Conn) -> float:
            value = conn.value("SELECT blocked_until FROM throttles WHERE key = ?", (key,))
            return 0.0 if value is None else max(0.0, float(value) - now)

        return await self._db.run(select)

    async def reset(self, key: str) -> None:
        """Forget the key (after a success)."""

        def delete(conn: Conn) -> None:
            conn.execute("DELETE FROM throttles WHERE key = ?", (key,))

        await self._db.run(delete)

    async def prune(self, now: float, *, quiet_s: float = 86_400.0) -> int:
        """Forget keys that are not blocked and failed last more than ``quiet_s`` ago."""

        def delete(conn: Conn) -> int:
            return conn.execute(
                "DELETE FROM throttles WHERE blocked_until <= ? AND window_start < ?",
                (now, now - quiet_s),
            ).rowcount

        return await self._db.run(delete)


__all__ = ["RateLimiter", "ThrottlePolicy", "Throttles"]
