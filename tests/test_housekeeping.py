"""Housekeeping forgets old activity, settled mail, spent rate-limit hits, quiet throttle
counts, old sign-ins, form keys and finished re-issues, nothing else (on SQLite and on
PostgreSQL)."""

from __future__ import annotations

from permalink.db import Database
from permalink.housekeeping import DAY, Retention, tidy
from permalink.keyring import Keyring
from permalink.limits import ThrottlePolicy
from permalink.reissues import PlannedCustomer, PlannedLink, Reissues
from permalink.spool import Spool
from permalink.store import SqlStore
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
        claimed = await spool.claim_next("worker", when)
        assert claimed is not None and claimed.id == spool_id
        await (spool.done(spool_id) if state == "done" else spool.park(spool_id, "why"))
    return spool_id


async def finished_reissue(store: SqlStore, clock: Clock, when: float) -> str:
    clock.now = when
    reissues = Reissues(store.db, clock=clock)
    job_id = await reissues.create(
        "demo", [PlannedCustomer("C1", "C One", (PlannedLink("all", None, ("a" * 16,)),))]
    )
    assert await reissues.take(job_id, "worker")
    await reissues.finish(job_id, "worker")
    return job_id


async def test_tidy_keeps_what_is_recent_or_unsettled(open_db: OpenDb) -> None:
    db = open_db()
    clock = Clock(NOW)
    store = SqlStore(db, Keyring.generate())
    retention = Retention(activity_days=180, settled_mail_days=30, rate_hits_days=2)
    activity = store.activity
    await activity.record("demo", kind="link_opened", outcome="ok", at=NOW - 181 * DAY)
    recent_event = await activity.record("demo", kind="link_opened", outcome="ok", at=NOW - DAY)
    old_done = await spool_at(db, clock, NOW - 31 * DAY, "done")
    old_parked = await spool_at(db, clock, NOW - 31 * DAY, "parked")
    new_done = await spool_at(db, clock, NOW - 29 * DAY, "done")
    old_queued = await spool_at(db, clock, NOW - 31 * DAY, "queued")  # last: never claimed
    limiter = store.limits
    assert await limiter.try_acquire("demo:old", limit=1, window_s=3600, now=NOW - 3 * DAY)
    assert await limiter.try_acquire("demo:new", limit=1, window_s=3600, now=NOW - 60)
    policy = ThrottlePolicy(free=1, window_s=60)
    await store.throttles.hit("invalid-link:198.51.100.1", policy, NOW - 2 * DAY)
    await store.throttles.hit("invalid-link:198.51.100.2", policy, NOW - 60)
    gone = await store.sessions.start("demo", now=NOW - 3 * DAY, ttl_s=3600)
    live = await store.sessions.start("demo", now=NOW - 60, ttl_s=3600)
    forms = store.submissions
    assert (await forms.claim("old-form-key-0123456789", "demo", NOW - 2 * DAY)).state == "new"
    assert (await forms.claim("new-form-key-0123456789", "demo", NOW - 60)).state == "new"
    old_job = await finished_reissue(store, clock, NOW - 181 * DAY)
    new_job = await finished_reissue(store, clock, NOW - DAY)

    removed = await tidy(store, NOW, retention)

    assert removed == {
        "activity": 1,
        "settled mail": 2,
        "rate-limit hits": 1,
        "throttle counts": 1,
        "sessions": 1,
        "mailbox message keys": 0,
        "form submissions": 1,
        "re-issues": 1,
    }
    assert [e.id for e in await activity.page("demo")] == [recent_event.id]
    kept = {entry.id for entry in await Spool(db).list(("done", "parked", "queued"), 100, None)}
    assert kept == {old_queued, new_done}  # never a message still waiting for its answer
    assert not {old_done, old_parked} & kept
    # The recent hit still counts against its limit; the old one is gone.
    assert not await limiter.try_acquire("demo:new", limit=1, window_s=3600, now=NOW)
    assert await store.sessions.live(live, "demo", NOW)
    assert not await store.sessions.live(gone, "demo", NOW)
    assert await store.reissues.get("demo", old_job) is None
    assert await store.reissues.get("demo", new_job) is not None
    # A form sent again within the day is still recognised; an older key is forgotten.
    assert (await forms.claim("new-form-key-0123456789", "demo", NOW)).state == "running"
    assert (await forms.claim("old-form-key-0123456789", "demo", NOW)).state == "new"
    assert await tidy(store, NOW, retention) == {
        "activity": 0, "settled mail": 0, "rate-limit hits": 0, "throttle counts": 0,
        "sessions": 0, "mailbox message keys": 0, "form submissions": 0, "re-issues": 0,
    }  # fmt: skip
