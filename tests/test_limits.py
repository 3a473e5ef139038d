"""Rate limits and throttles in the store: the bot's sliding window and the web's back-off,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from permalink.db import open_database
from permalink.limits import RateLimiter, ThrottlePolicy, Throttles
from tests.conftest import OpenDb

T0 = 1_700_000_000.0
HOUR = 3600


@pytest.fixture
def limiter(open_db: OpenDb) -> RateLimiter:
    return RateLimiter(open_db())


async def take(limiter: RateLimiter, key: str, now: float, *, limit: int = 3) -> bool:
    return await limiter.try_acquire(key, limit=limit, window_s=HOUR, now=now)


async def test_three_replies_per_hour_then_refused(limiter: RateLimiter) -> None:
    results = [await take(limiter, "acme:customer:C1", T0 + i * 60) for i in range(4)]
    assert results == [True, True, True, False]


async def test_one_holder_takes_one_slot_however_often_it_asks(limiter: RateLimiter) -> None:
    # A spooled message tried again (KashFlow was down, the bot was killed) keeps its slot.
    for attempt in range(5):
        assert await limiter.try_acquire(
            "k", limit=2, window_s=HOUR, now=T0 + attempt, holder="spool:1"
        )
    assert await limiter.try_acquire("k", limit=2, window_s=HOUR, now=T0 + 9, holder="spool:2")
    assert not await limiter.try_acquire("k", limit=2, window_s=HOUR, now=T0 + 10, holder="spool:3")
    # A held slot ages out like any other: then the next holder may take it, and the first
    # would have to spend anew.
    assert await limiter.try_acquire(
        "k", limit=2, window_s=HOUR, now=T0 + HOUR + 1, holder="spool:3"
    )
    assert not await limiter.try_acquire(
        "k", limit=2, window_s=HOUR, now=T0 + HOUR + 2, holder="spool:1"
    )


async def test_slots_taken_at_once_from_several_processes_never_exceed_the_limit(
    state_url: str | None, tmp_path: Path
) -> None:
    # Two bot processes, each with several workers, answering one customer at the same
    # moment: the third reply of the hour is the last, however the attempts interleave.
    dbs = [open_database(state_url, tmp_path) for _ in range(2)]
    try:
        limiters = [RateLimiter(db) for db in dbs]
        for round_ in range(5):
            key = f"acme:customer:C{round_}"
            taken = await asyncio.gather(
                *(take(limiter, key, T0) for limiter in limiters for _ in range(8))
            )
            assert taken.count(True) == 3, round_
    finally:
        for db in dbs:
            db.close()


async def test_the_window_slides_rather_than_resetting_on_the_hour(limiter: RateLimiter) -> None:
    assert await take(limiter, "k", T0)
    assert await take(limiter, "k", T0 + 1800)
    assert await take(limiter, "k", T0 + 1801)
    assert not await take(limiter, "k", T0 + HOUR - 1)
    assert await limiter.retry_after("k", limit=3, window_s=HOUR, now=T0 + HOUR - 1) == 1
    # The first hit ages out after exactly one hour; the other two are still in the window.
    assert await take(limiter, "k", T0 + HOUR)
    assert not await take(limiter, "k", T0 + HOUR + 10)
    # Next to age out is the hit at T0 + 1800, one hour later.
    wait = await limiter.retry_after("k", limit=3, window_s=HOUR, now=T0 + HOUR + 10)
    assert wait == 1800 - 10


async def test_refused_attempts_do_not_use_up_the_allowance(limiter: RateLimiter) -> None:
    for _ in range(3):
        assert await take(limiter, "k", T0)
    for i in range(20):
        assert not await take(limiter, "k", T0 + i)
    assert await take(limiter, "k", T0 + HOUR)


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    for _ in range(3):
        assert await take(limiter, "acme:customer:C1", T0)
    assert not await take(limiter, "acme:customer:C1", T0)
    assert await take(limiter, "beta:customer:C1", T0)
    assert await take(limiter, "acme:customer:C2", T0)


async def test_retry_after_is_zero_while_a_slot_is_free(limiter: RateLimiter) -> None:
    assert await limiter.retry_after("k", limit=3, window_s=HOUR, now=T0) == 0
    await take(limiter, "k", T0)
    assert await limiter.retry_after("k", limit=3, window_s=HOUR, now=T0) == 0


async def test_limits_survive_a_restart(open_db: OpenDb) -> None:
    limiter = RateLimiter(open_db())
    for i in range(3):
        assert await take(limiter, "acme:global", T0 + i)

    restarted = RateLimiter(open_db())

    assert not await take(restarted, "acme:global", T0 + 10)
    assert await take(restarted, "acme:global", T0 + HOUR)


async def test_prune_forgets_quiet_keys(limiter: RateLimiter) -> None:
    for _ in range(3):
        await take(limiter, "quiet", T0)
    assert await limiter.prune(T0 + 1) == 3
    assert await take(limiter, "quiet", T0 + 2)


async def test_a_zero_limit_refuses_everything(limiter: RateLimiter) -> None:
    assert not await take(limiter, "k", T0, limit=0)


async def test_nonsense_windows_are_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="window"):
        await limiter.try_acquire("k", limit=3, window_s=0, now=T0)
    with pytest.raises(ValueError, match="negative"):
        await limiter.try_acquire("k", limit=-1, window_s=60, now=T0)


@pytest.fixture
def throttles(open_db: OpenDb) -> Throttles:
    return Throttles(open_db())


async def test_throttle_lets_free_failures_through_then_doubles_the_wait(
    throttles: Throttles,
) -> None:
    policy = ThrottlePolicy(free=3, window_s=900, base_delay_s=1, max_delay_s=8)
    waits = [await throttles.hit("203.0.113.7", policy, T0) for _ in range(8)]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 8]
    assert await throttles.delay("203.0.113.7", T0 + 7.5) == 0.5
    assert await throttles.delay("203.0.113.7", T0 + 8) == 0


async def test_throttle_keys_are_independent_and_reset_on_success(throttles: Throttles) -> None:
    policy = ThrottlePolicy(free=1, window_s=60)
    await throttles.hit("user:alice", policy, T0)
    assert await throttles.hit("user:alice", policy, T0) == 1
    assert await throttles.delay("user:bob", T0) == 0

    await throttles.reset("user:alice")

    assert await throttles.delay("user:alice", T0) == 0
    assert await throttles.hit("user:alice", policy, T0) == 0


async def test_throttle_forgives_after_a_quiet_window(throttles: Throttles) -> None:
    policy = ThrottlePolicy(free=2, window_s=60, base_delay_s=1)
    for _ in range(3):
        await throttles.hit("ip", policy, T0)
    assert await throttles.delay("ip", T0) == 1
    assert await throttles.hit("ip", policy, T0 + 61) == 0


async def test_throttle_as_a_429_gate_for_invalid_tokens(throttles: Throttles) -> None:
    policy = ThrottlePolicy(free=20, window_s=60, base_delay_s=1, max_delay_s=60)
    refused = [await throttles.hit("198.51.100.1", policy, T0 + i * 0.1) > 0 for i in range(25)]
    assert refused == [False] * 20 + [True] * 5
    assert await throttles.delay("198.51.100.1", T0 + 3) > 0


async def test_every_process_sees_the_same_counts(open_db: OpenDb) -> None:
    policy = ThrottlePolicy(free=2, window_s=60)
    first = Throttles(open_db())
    await first.hit("ip", policy, T0)
    await first.hit("ip", policy, T0)
    # Another process (a new connection to the same state) continues the count.
    second = Throttles(open_db())
    assert await second.hit("ip", policy, T0) == 1
    assert await second.delay("ip", T0) == 1


async def test_failures_at_once_from_several_processes_are_all_counted(
    state_url: str | None, tmp_path: Path
) -> None:
    policy = ThrottlePolicy(free=100, window_s=60)
    dbs = [open_database(state_url, tmp_path) for _ in range(2)]
    try:
        counters = [Throttles(db) for db in dbs]
        await asyncio.gather(*(t.hit("ip", policy, T0) for t in counters for _ in range(50)))
        # The 101st failure is the first one over the allowance: none of the 100 was lost.
        assert await counters[0].hit("ip", policy, T0) == 1
    finally:
        for db in dbs:
            db.close()


async def test_a_hammering_key_never_overflows_the_delay(throttles: Throttles) -> None:
    policy = ThrottlePolicy(free=0, window_s=10**9, base_delay_s=1, max_delay_s=3600)
    assert policy.delay_after(5000) == 3600
    assert await throttles.hit("ip", policy, T0) == 1
