"""Housekeeping forgets old activity, settled mail and spent rate-limit hits, nothing else."""

from __future__ import annotations

from permalink.activity import ActivityLog
from permalink.db import Database
from permalink.housekeeping import DAY, Retention, tidy
from permalink.limits import RateLimiter
from permalink.spool import Spool
from tests.conftest import OpenDb

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def spool_at(db: Database, clock: Clock, when: float, state: str) -> int:
    clock.now = when
    spool = Spool(db, clock=clock)
    spool_id = await spool.enqueue(
        peer="127.0.0.1", mail_from="a@client.example", rcpt_tos=["bot@x.example"], raw=b"x"
    )
    if state != "queued":
        claimed = await spool.claim_next(when)
        assert claimed is not None and claimed.id == spool_id
        await (spool.done(spool_id) if state == "done" else spool.park(spool_id, "why"))
    return spool_id


async def test_tidy_keeps_what_is_recent_or_unsettled(open_db: OpenDb) -> None:
    db = open_db()
    clock = Clock(NOW)
    retention = Retention(activity_days=180, settled_mail_days=30, rate_hits_days=2)
    activity = ActivityLog(db)
    await activity.record("demo", kind="link_opened", outcome="ok", at=NOW - 181 * DAY)
    recent_event = await activity.record("demo", kind="link_opened", outcome="ok", at=NOW - DAY)
    old_done = await spool_at(db, clock, NOW - 31 * DAY, "done")
    old_parked = await spool_at(db, clock, NOW - 31 * DAY, "parked")
    new_done = await spool_at(db, clock, NOW - 29 * DAY, "done")
    old_queued = await spool_at(db, clock, NOW - 31 * DAY, "queued")  # last: never claimed
    limiter = RateLimiter(db)
    assert await limiter.try_acquire("demo:old", limit=1, window_s=3600, now=NOW - 3 * DAY)
    assert await limiter.try_acquire("demo:new", limit=1, window_s=3600, now=NOW - 60)

    removed = await tidy(db, NOW, retention)

    assert removed == {"activity": 1, "settled mail": 2, "rate-limit hits": 1}
    assert [e.id for e in await activity.page("demo")] == [recent_event.id]
    kept = {entry.id for entry in await Spool(db).list(("done", "parked", "queued"), 100, None)}
    assert kept == {old_queued, new_done}  # never a message still waiting for its answer
    assert not {old_done, old_parked} & kept
    # The recent hit still counts against its limit; the old one is gone.
    assert not await limiter.try_acquire("demo:new", limit=1, window_s=3600, now=NOW)
    assert await tidy(db, NOW, retention) == {
        "activity": 0, "settled mail": 0, "rate-limit hits": 0
    }  # fmt: skip
