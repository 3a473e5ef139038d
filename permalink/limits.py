"""Rate limits: durable ones for the bot, in-memory ones for the web.

:class:`RateLimiter` keeps a sliding-window log in SQLite, so the bot's "3 replies per
customer per hour" and its overall hourly cap survive a restart (a crash loop must not
become a mail flood). :class:`Throttle` lives in memory and slows down a web client that
keeps failing — wrong passwords per IP and per username, invalid link tokens per IP —
with delays that double after a few free failures; its memory is bounded.

Both take the clock as an argument (``now``, unix seconds) and never read it themselves.
Keys are opaque strings; callers put the account in them (``f"{account}:customer:{code}"``)
so one account's traffic never spends another's allowance.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from permalink.db import Database, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_hits (
    key TEXT NOT NULL,
    at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hits_by_key ON rate_hits (key, at);
CREATE INDEX IF NOT EXISTS rate_hits_by_age ON rate_hits (at);
"""


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
        db.ensure(SCHEMA)

    async def try_acquire(self, key: str, *, limit: int, window_s: float, now: float) -> bool:
        """Take one slot if the key has fewer than ``limit`` in the window ending ``now``."""
        _check_window(limit, window_s)

        def acquire(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                conn.execute(
                    "DELETE FROM rate_hits WHERE key = ? AND at <= ?", (key, now - window_s)
                )
                (used,) = conn.execute(
                    "SELECT count(*) FROM rate_hits WHERE key = ?", (key,)
                ).fetchone()
                if used >= limit:
                    return False
                conn.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", (key, now))
                return True

        return await self._db.run(acquire)

    async def retry_after(self, key: str, *, limit: int, window_s: float, now: float) -> float:
        """Seconds until :meth:`try_acquire` would succeed (0 if it would now)."""
        _check_window(limit, window_s)
        if limit == 0:
            return float("inf")

        def select(conn: sqlite3.Connection) -> float:
            rows = conn.execute(
                "SELECT at FROM rate_hits WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                (key, now - window_s, limit),
            ).fetchall()
            if len(rows) < limit:
                return 0.0
            # The oldest of the newest ``limit`` hits frees the next slot when it ages out.
            return max(0.0, float(rows[-1][0]) + window_s - now)

        return await self._db.run(select)

    async def prune(self, older_than: float) -> int:
        """Forget hits from before ``older_than`` for every key (keys gone quiet)."""

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM rate_hits WHERE at < ?", (older_than,)).rowcount

        return await self._db.run(delete)


@dataclass(slots=True)
class _Strikes:
    count: int
    window_start: float
    blocked_until: float


DEFAULT_MAX_KEYS: Final = 10_000


class Throttle:
    """Per-key failure counter in memory with exponential back-off.

    Within a window of ``window_s`` seconds a key gets ``free`` hits; each further hit
    blocks it for ``base_delay_s`` doubled per extra hit, capped at ``max_delay_s``.
    Typical use: ``wait = throttle.delay(key, now)`` before the work (refuse with 429 and
    ``Retry-After`` if positive), ``throttle.hit(key, now)`` on a failure,
    ``throttle.reset(key)`` on a success.

    At most ``max_keys`` keys are tracked: expired ones are dropped first, then the least
    recently hit. Evicting a live key forgives it, which under a flood of distinct keys
    is the price of bounded memory.
    """

    def __init__(
        self,
        *,
        free: int,
        window_s: float,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        _check_window(free, window_s)
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise ValueError("delays must be positive, and the cap at least the base delay")
        if max_keys < 1:
            raise ValueError("a throttle must track at least one key")
        self.free = free
        self.window_s = window_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Strikes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def hit(self, key: str, now: float) -> float:
        """Count one hit; returns the seconds the key must now wait (0 if still free)."""
        strikes = self._keys.get(key)
        if strikes is None or now - strikes.window_start >= self.window_s:
            blocked = 0.0 if strikes is None else strikes.blocked_until
            strikes = _Strikes(count=0, window_start=now, blocked_until=blocked)
        strikes.count += 1
        over = strikes.count - self.free
        if over > 0:
            # Capped exponent: 2**over for a huge ``over`` would overflow a float.
            delay = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(over - 1, 62))
            strikes.blocked_until = max(strikes.blocked_until, now + delay)
        self._keys[key] = strikes
        self._keys.move_to_end(key)
        self._evict(now)
        return max(0.0, strikes.blocked_until - now)

    def delay(self, key: str, now: float) -> float:
        """Seconds the key must still wait before it may try again (0 if it may now)."""
        strikes = self._keys.get(key)
        if strikes is None:
            return 0.0
        return max(0.0, strikes.blocked_until - now)

    def too_many(self, key: str, now: float) -> bool:
        return self.delay(key, now) > 0

    def reset(self, key: str) -> None:
        """Forget the key (after a success)."""
        self._keys.pop(key, None)

    def _expired(self, strikes: _Strikes, now: float) -> bool:
        return now - strikes.window_start >= self.window_s and strikes.blocked_until <= now

    def _evict(self, now: float) -> None:
        # Least recently hit first: stop at the first live key, so this stays cheap.
        while self._keys:
            oldest = next(iter(self._keys.values()))
            if not self._expired(oldest, now):
                break
            self._keys.popitem(last=False)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)


__all__ = ["DEFAULT_MAX_KEYS", "SCHEMA", "RateLimiter", "Throttle"]
