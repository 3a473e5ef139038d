"""The durable spool: order, claiming, parking, retrying, surviving a crash, reply records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from permalink.db import Database
from permalink.spool import Spool, SpooledMessage, UnknownSpoolId

RAW = b"From: a@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\nsend me my invoices\r\n"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[Callable[[], Database]]:
    opened: list[Database] = []

    def factory() -> Database:
        db = Database(tmp_path / "state.sqlite3")
        opened.append(db)
        return db

    yield factory
    for db in opened:
        db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(open_db: Callable[[], Database], clock: Clock) -> Spool:
    return Spool(open_db(), clock=clock)


async def put(spool: Spool, n: int = 1, message_id: str = "") -> int:
    return await spool.enqueue(
        peer="127.0.0.1:5000",
        mail_from=f"client{n}@example.com",
        rcpt_tos=["invoices@biz.example"],
        raw=RAW + str(n).encode(),
        message_id=message_id,
    )


async def test_messages_are_claimed_in_arrival_order_with_their_bytes(spool: Spool) -> None:
    ids = [await put(spool, n) for n in range(3)]
    claimed = [await spool.claim_next() for _ in range(3)]
    assert [m.id for m in claimed if m] == ids
    first = claimed[0]
    assert first is not None
    assert first.raw == RAW + b"0"
    assert first.rcpt_tos == ("invoices@biz.example",)
    assert first.mail_from == "client0@example.com"
    assert (first.state, first.attempts) == ("working", 1)
    assert await spool.claim_next() is None


async def test_done_and_parked_messages_are_never_claimed_again(spool: Spool) -> None:
    a, b = await put(spool, 1), await put(spool, 2)
    assert (await spool.claim_next()) is not None
    assert (await spool.claim_next()) is not None
    await spool.done(a)
    await spool.park(b, "sender is not a KashFlow customer")
    assert await spool.claim_next() is None
    parked = await spool.get(b)
    assert parked is not None
    assert (parked.state, parked.reason) == ("parked", "sender is not a KashFlow customer")
    assert await spool.counts() == {"queued": 0, "working": 0, "done": 1, "parked": 1, "retry": 0}


async def test_retry_waits_until_its_time(spool: Spool, clock: Clock) -> None:
    spool_id = await put(spool)
    await spool.claim_next()
    await spool.retry(spool_id, "relay said 451", clock.now + 60)
    assert await spool.next_retry_at() == clock.now + 60
    assert await spool.claim_next(clock.now + 59) is None
    again = await spool.claim_next(clock.now + 60)
    assert again is not None
    assert (again.id, again.attempts, again.reason) == (spool_id, 2, "relay said 451")


async def test_a_due_retry_and_new_mail_are_served_oldest_first(spool: Spool, clock: Clock) -> None:
    old = await put(spool, 1)
    await spool.claim_next()
    await spool.retry(old, "KashFlow unavailable", clock.now)
    new = await put(spool, 2)
    first, second = await spool.claim_next(), await spool.claim_next()
    assert (first and first.id, second and second.id) == (old, new)


async def test_message_being_processed_at_a_crash_is_processed_after_restart(
    open_db: Callable[[], Database], clock: Clock
) -> None:
    before = Spool(open_db(), clock=clock)
    spool_id = await put(before)
    claimed = await before.claim_next()
    assert claimed is not None
    # A fresh Database on the same file is what a restarted process sees.
    after = Spool(open_db(), clock=clock)
    assert await after.claim_next() is None
    assert await after.requeue_working() == 1
    again = await after.claim_next()
    assert isinstance(again, SpooledMessage)
    assert (again.id, again.raw, again.attempts) == (spool_id, claimed.raw, 2)


async def test_duplicate_message_ids_are_recognised(spool: Spool) -> None:
    first = await put(spool, 1, message_id="<dup@example.com>")
    second = await put(spool, 2, message_id="<dup@example.com>")
    assert not await spool.seen_message_id("<dup@example.com>", before_id=first)
    assert await spool.seen_message_id("<dup@example.com>", before_id=second)
    assert not await spool.seen_message_id("")
    await spool.park(first, "auto-reply")
    assert not await spool.seen_message_id("<dup@example.com>", before_id=second)


async def test_listing_pages_newest_first_without_bodies(spool: Spool) -> None:
    ids = [await put(spool, n) for n in range(5)]
    await spool.park(ids[1], "unknown sender")
    page = await spool.list(["queued", "parked"], limit=2)
    assert [e.id for e in page] == [ids[4], ids[3]]
    assert not any(isinstance(e, SpooledMessage) for e in page)
    assert page[0].size == len(RAW) + 1
    rest = await spool.list(["queued", "parked"], limit=10, before_id=ids[3])
    assert [e.id for e in rest] == [ids[2], ids[1], ids[0]]
    parked = await spool.list(["parked"], with_raw=True)
    assert [(e.id, isinstance(e, SpooledMessage)) for e in parked] == [(ids[1], True)]
    with pytest.raises(ValueError, match="unknown spool states"):
        await spool.list(["lost"])  # type: ignore[list-item]


async def test_reply_record_survives_restart(open_db: Callable[[], Database], clock: Clock) -> None:
    spool = Spool(open_db(), clock=clock)
    spool_id = await put(spool)
    assert await spool.reply_state(spool_id) is None
    await spool.record_reply(spool_id, "<reply-1@biz.example>", "sending")
    record = await Spool(open_db(), clock=clock).reply_state(spool_id)
    assert record is not None
    assert (record.reply_message_id, record.state) == ("<reply-1@biz.example>", "sending")
    await spool.record_reply(spool_id, "<reply-1@biz.example>", "sent")
    sent = await spool.reply_state(spool_id)
    assert sent is not None and sent.state == "sent"


async def test_state_changes_on_unknown_ids_fail_loudly(spool: Spool) -> None:
    with pytest.raises(UnknownSpoolId):
        await spool.done(999)
    with pytest.raises(UnknownSpoolId):
        await spool.record_reply(999, "<r@x>", "sending")
    with pytest.raises(ValueError, match="reply state"):
        await spool.record_reply(1, "<r@x>", "lost")  # type: ignore[arg-type]
