"""The re-issue state on SQLite and PostgreSQL: one worker at a time, fenced writes, and a
job that can be taken up again after its worker stopped."""

from __future__ import annotations

import pytest

from permalink.reissues import LeaseLost, PlannedCustomer, PlannedLink, Reissues
from tests.conftest import OpenDb

T0 = 1_700_000_000.0
PLAN = [
    PlannedCustomer("FOX01", "Foxglove Interiors", (PlannedLink("all", None, ("a" * 16,)),)),
    PlannedCustomer("GRAN01", "Granite Row", (PlannedLink("unpaid", 99, ("b" * 16, "c" * 16)),)),
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def test_one_worker_at_a_time_and_a_stopped_job_is_taken_up(open_db: OpenDb) -> None:
    clock = Clock()
    reissues = Reissues(open_db(), clock=clock)
    job_id = await reissues.create("Demo", PLAN)
    job = await reissues.get("demo", job_id)
    assert job is not None and [i.customer_code for i in job.items] == ["FOX01", "GRAN01"]
    assert job.items[1].links[0] == PlannedLink("unpaid", 99, ("b" * 16, "c" * 16))
    assert await reissues.get("second", job_id) is None  # another account's

    assert await reissues.take(job_id, "first", lease_s=60)
    assert not await reissues.take(job_id, "second", lease_s=60)
    await reissues.sending(job_id, "first", 0, new_link_ids=["d" * 16], message_id="<m@x>")
    with pytest.raises(LeaseLost):  # only the holder writes
        await reissues.settle(job_id, "second", 0, "done")

    clock.now += 61  # the first worker died: its lease runs out
    job = await reissues.get("demo", job_id)
    assert job is not None and job.interrupted(clock.now) and job.left == 2
    assert await reissues.take(job_id, "second", lease_s=60)
    with pytest.raises(LeaseLost):
        await reissues.renew(job_id, "first")
    resumed = await reissues.get("demo", job_id)
    assert resumed is not None
    assert (resumed.items[0].state, resumed.items[0].new_link_ids) == ("sending", ("d" * 16,))
    assert resumed.items[0].message_id == "<m@x>"  # the same message will be sent

    await reissues.settle(job_id, "second", 0, "done", emailed_to="ruth@foxglove.example")
    await reissues.settle(job_id, "second", 1, "failed", detail="Not sent: relay down")
    await reissues.finish(job_id, "second")
    assert await reissues.unfinished("demo") is None
    assert await reissues.retry_failed("demo", job_id) == 1
    assert await reissues.unfinished("demo") == job_id
