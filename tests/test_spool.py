"""The durable spool: order, leases, parking, retrying, surviving a crash, reply records.

Every test runs on SQLite and on PostgreSQL (the ``open_db`` fixture)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from permalink.db import open_database
from permalink.spool import LeaseLost, Spool, SpooledMessage, UnknownSpoolId
from tests.conftest import OpenDb

RAW = b"From: a@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\nsend me my invoices\r\n"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


ME = "worker-a"
OTHER = "worker-b"
LEASE = 30.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(open_db: OpenDb, clock: Clock) -> Spool:
    return Spool(open_db(), clock=clock, lease_s=LEASE)


async def put(spool: Spool, n: int = 1, message_id: str = "", account: str = "biz") -> int:
    return await spool.enqueue(
        peer="127.0.0.1:5000",
        mail_from=f"client{n}@example.com",
        rcpt_tos=["invoices@biz.example"],
        raw=RAW + str(n).encode(),
        message_id=message_id,
        account=account,
    )


async def test_messages_are_claimed_in_arrival_order_with_their_bytes(spool: Spool) -> None:
    ids = [await put(spool, n) for n in range(3)]
    claimed = [await spool.claim_next(ME) for _ in range(3)]
    assert [m.id for m in claimed if m] == ids
    first = claimed[0]
    assert first is not None
    assert first.raw == RAW + b"0"
    assert first.rcpt_tos == ("invoices@biz.example",)
    assert first.mail_from == "client0@example.com"
    assert (first.state, first.attempts) == ("working", 1)
    assert await spool.claim_next(ME) is None


async def test_done_and_parked_messages_are_never_claimed_again(spool: Spool) -> None:
    a, b = await put(spool, 1), await put(spool, 2)
    assert (await spool.claim_next(ME)) is not None
    assert (await spool.claim_next(ME)) is not None
    await spool.done(a)
    await spool.park(b, "sender is not a KashFlow customer")
    assert await spool.claim_next(ME) is None
    parked = await spool.get(b)
    assert parked is not None
    assert (parked.state, parked.reason) == ("parked", "sender is not a KashFlow customer")
    assert await spool.counts() == {"queued": 0, "working": 0, "done": 1, "parked": 1, "retry": 0}


async def test_retry_waits_until_its_time(spool: Spool, clock: Clock) -> None:
    spool_id = await put(spool)
    await spool.claim_next(ME)
    await spool.retry(spool_id, "relay said 451", clock.now + 60)
    assert await spool.next_due_at() == clock.now + 60
    assert await spool.claim_next(ME, clock.now + 59) is None
    again = await spool.claim_next(ME, clock.now + 60)
    assert again is not None
    assert (again.id, again.attempts, again.reason) == (spool_id, 2, "relay said 451")


async def test_a_due_retry_and_new_mail_are_served_oldest_first(spool: Spool, clock: Clock) -> None:
    old = await put(spool, 1)
    await spool.claim_next(ME)
    await spool.retry(old, "KashFlow unavailable", clock.now)
    new = await put(spool, 2)
    first, second = await spool.claim_next(ME), await spool.claim_next(ME)
    assert (first and first.id, second and second.id) == (old, new)


async def test_a_dead_workers_message_is_taken_over_when_its_lease_runs_out(
    open_db: OpenDb, clock: Clock
) -> None:
    before = Spool(open_db(), clock=clock, lease_s=LEASE)
    spool_id = await put(before)
    claimed = await before.claim_next(ME)
    assert claimed is not None and claimed.lease_owner == ME
    # A fresh Database is what another (or a restarted) process sees.
    after = Spool(open_db(), clock=clock, lease_s=LEASE)
    assert await after.claim_next(OTHER) is None  # still ME's
    assert await after.next_due_at() == clock.now + LEASE
    clock.now += LEASE + 1
    again = await after.claim_next(OTHER)
    assert isinstance(again, SpooledMessage)
    assert (again.id, again.raw, again.attempts) == (spool_id, claimed.raw, 2)
    assert again.lease_owner == OTHER
    # The worker that lost it can settle nothing any more.
    with pytest.raises(LeaseLost):
        await after.done(spool_id, owner=ME)
    with pytest.raises(LeaseLost):
        await after.renew(spool_id, ME)
    await after.done(spool_id, owner=OTHER)
    assert (await after.counts())["done"] == 1


async def test_a_renewed_lease_keeps_the_message(spool: Spool, clock: Clock) -> None:
    spool_id = await put(spool)
    assert await spool.claim_next(ME) is not None
    clock.now += LEASE - 1
    await spool.renew(spool_id, ME)
    clock.now += LEASE - 1  # past the first lease, within the renewed one
    assert await spool.claim_next(OTHER) is None
    clock.now += 2
    taken = await spool.claim_next(OTHER)
    assert taken is not None and taken.id == spool_id


async def test_a_released_message_is_due_at_once(spool: Spool) -> None:
    spool_id = await put(spool)
    assert await spool.claim_next(ME) is not None
    await spool.release(spool_id, ME)
    taken = await spool.claim_next(OTHER)
    assert taken is not None and (taken.id, taken.attempts) == (spool_id, 2)


async def test_workers_claiming_at_once_never_share_a_message(
    state_url: str | None, tmp_path: Path
) -> None:
    # Two processes' worth of connections, each with several workers claiming together.
    dbs = [open_database(state_url, tmp_path) for _ in range(3)]
    try:
        writer, first, second = (Spool(db, lease_s=LEASE) for db in dbs)
        ids = [await put(writer, n) for n in range(20)]

        async def drain(spool: Spool, owner: str) -> list[int]:
            got = []
            while (message := await spool.claim_next(owner)) is not None:
                got.append(message.id)
            return got

        runs = await asyncio.gather(
            *(
                drain(spool, f"w{i}-{n}")
                for i, spool in enumerate((first, second))
                for n in range(4)
            )
        )
    finally:
        for db in dbs:
            db.close()
    claimed = [spool_id for run in runs for spool_id in run]
    assert sorted(claimed) == ids  # every message once, none twice


async def test_parked_mail_can_be_requeued_by_its_account_only(spool: Spool) -> None:
    ours, theirs = await put(spool, 1), await put(spool, 2, account="other")
    for spool_id in (ours, theirs):
        assert await spool.claim_next(ME) is not None
        await spool.park(spool_id, "relay refused", owner=ME)
    assert not await spool.requeue(theirs, account="biz")
    assert await spool.requeue(ours, account="biz")
    assert not await spool.requeue(ours, account="biz")  # once only: it is queued now
    again = await spool.claim_next(ME)
    assert again is not None and (again.id, again.attempts) == (ours, 1)
    assert await spool.requeue_parked() == [theirs]


async def test_a_parked_message_whose_later_copy_was_taken_stays_parked(spool: Spool) -> None:
    """Requeuing it would answer one request twice: the later copy was answered already."""
    first = await put(spool, 1, message_id="<again@example.com>")
    assert await spool.claim_next(ME) is not None
    await spool.park(first, "relay refused", owner=ME)
    # The sender's server delivers the same message again; that copy is answered.
    copy = await put(spool, 2, message_id="<again@example.com>")
    assert await spool.claim_next(ME) is not None
    await spool.done(copy, owner=ME)
    unrelated = await put(spool, 3, message_id="<again@example.com>", account="other")

    assert await spool.later_copy(first) == copy
    assert not await spool.requeue(first)
    assert await spool.requeue_parked() == []
    entry = await spool.get(first)
    assert entry is not None and entry.state == "parked"
    assert await spool.later_copy(unrelated) is None  # another account's mail is not a copy
    assert await spool.later_copy(copy) is None


async def test_duplicate_message_ids_are_recognised_per_account(spool: Spool) -> None:
    first = await put(spool, 1, message_id="<dup@example.com>")
    second = await put(spool, 2, message_id="<dup@example.com>")
    other = await put(spool, 3, message_id="<dup@example.com>", account="other")
    seen = spool.seen_message_id
    assert not await seen("<dup@example.com>", account="biz", before_id=first)
    assert await seen("<dup@example.com>", account="biz", before_id=second)
    # Another account's copy of the same message is its own first copy.
    assert not await seen("<dup@example.com>", account="other", before_id=other)
    assert not await seen("", account="biz")
    await spool.park(first, "auto-reply")
    assert not await seen("<dup@example.com>", account="biz", before_id=second)


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


async def test_reply_record_survives_restart(open_db: OpenDb, clock: Clock) -> None:
    spool = Spool(open_db(), clock=clock)
    spool_id = await put(spool)
    assert await spool.reply_state(spool_id) is None
    await spool.record_reply(spool_id, "<reply-1@biz.example>", "sending")
    spool = Spool(open_db(), clock=clock)
    record = await spool.reply_state(spool_id)
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
