"""The bot's worker: takes spooled requests one by one and settles each of them.

It claims the oldest due message under a lease (:mod:`permalink.spool`: any number of
workers, in any number of processes, share one spool), keeps the lease alive while it
works, runs the message through :mod:`bot.pipeline`, and turns the outcome into a spool
state and an activity record:

* replied / ignored -> ``done``;
* failed -> ``parked`` with the reason (shown on the settings page);
* deferred (relay or KashFlow down) -> ``retry`` after :func:`permalink.relay.backoff`,
  parked once it has been tried ``max_temporary_attempts`` times;
* an unexpected error -> retried the same way, but parked as poison after
  ``max_attempts`` tries, so one bad message never holds up the queue behind it.

The worker sleeps until the listener wakes it (:meth:`Worker.wake`), the earliest retry
or lease falls due, or ``idle_s`` passes — the last for mail another process accepted and
could not finish. It runs as tasks on the service's own event loop; the CPU-heavy PDF
merge runs on the core's merge threads. A message whose lease this worker loses (it was
frozen too long and another worker took over) is dropped here, never settled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot import pipeline
from permalink.activity import BOT_REQUEST, redact
from permalink.activity import Outcome as Verdict
from permalink.relay import backoff
from permalink.spool import LeaseLost, SpooledMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of one attempt at one spooled message."""

    spool_id: int
    message_id: str
    outcome: pipeline.Outcome
    state: str
    """The spool state it was left in: ``done``, ``parked`` or ``retry``."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    """Unexpected errors: after this many tries the message is parked as poison."""
    max_temporary_attempts: int = 12
    """Relay or KashFlow down: about a day of tries (30 s doubling to an hour)."""
    base_delay: float = 30.0
    max_delay: float = 3600.0

    def delay(self, attempt: int) -> float:
        return backoff(attempt, base=self.base_delay, cap=self.max_delay)


class Worker:
    """Settles spooled messages with ``concurrency`` tasks; ``start``/``stop`` it."""

    def __init__(
        self,
        context: pipeline.Context,
        *,
        concurrency: int = 2,
        retry: RetryPolicy | None = None,
        history: int = 1000,
        idle_s: float = 5.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("the worker needs at least one task")
        if idle_s <= 0:
            raise ValueError("the worker's idle check must be longer than zero seconds")
        self._ctx = context
        self._spool = context.core.store.spool
        self._activity = context.core.store.activity
        self._concurrency = concurrency
        self._idle_s = idle_s
        #: Who this worker is, in every lease it takes: host, process and a random tag.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._retry = retry or RetryPolicy()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._settled: deque[Settled] = deque(maxlen=history)
        self._changed = asyncio.Condition()

    @property
    def settled(self) -> list[Settled]:
        """The most recent attempts, oldest first (for the settings page and tests)."""
        return list(self._settled)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def wake(self) -> None:
        """A message was spooled: look at the queue now (the listener's callback)."""
        self._wakeup.set()

    def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"bot-worker-{n}")
            for n in range(self._concurrency)
        ]

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Let messages in hand finish (up to ``timeout``), then stop.

        A message still unfinished is handed back to the spool for any worker to take.
        """
        self._stopping = True
        self._wakeup.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # The bound is part of the signature so that no caller can wait forever; generous,
    # since only a wait for something that never happens reaches it.
    async def wait_for(
        self,
        predicate: Callable[[list[Settled]], bool],
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> list[Settled]:
        """Wait until ``predicate(settled)`` holds; raises TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.settled))
        return self.settled

    async def run_once(self) -> Settled | None:
        """Claim and settle the oldest due message, if there is one."""
        message = await self._spool.claim_next(self.owner, self._ctx.clock())
        if message is None:
            return None
        keeper = asyncio.create_task(self._keep_lease(message.id), name=f"lease-{message.id}")
        try:
            return await self.settle(message)
        except LeaseLost:
            log.warning("spool #%d: another worker took it over; dropped here", message.id)
            return None
        except asyncio.CancelledError:
            # Stopping mid-way: hand the message back so another worker need not wait
            # for the lease to run out.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._spool.release(message.id, self.owner))
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, spool_id: int) -> None:
        """Renew the lease on a message in hand, a few times per lease."""
        while True:
            await asyncio.sleep(self._spool.lease_s / 3)
            try:
                await self._spool.renew(spool_id, self.owner)
            except LeaseLost:
                return
            except Exception:
                log.exception("could not renew the lease on spool #%d", spool_id)

    async def _loop(self) -> None:
        while not self._stopping:
            # Clearing before claiming: a wake-up that lands after the claim found nothing
            # stays set, so no message waits for the next one to arrive.
            self._wakeup.clear()
            try:
                if await self.run_once() is not None:
                    continue
                pause = await self._until_next_due()
            except Exception:
                # The database is unwell; do not spin on it.
                log.exception("worker could not read the spool")
                pause = self._retry.base_delay
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wakeup.wait()

    async def _until_next_due(self) -> float:
        due = await self._spool.next_due_at()
        if due is None:
            return self._idle_s
        return min(self._idle_s, max(0.0, due - self._ctx.clock()))

    async def settle(self, message: SpooledMessage) -> Settled:
        """Run one claimed message through the pipeline and record what became of it."""
        job = pipeline.Job(message, owner=self.owner)
        try:
            if message.attempts > self._retry.max_temporary_attempts:
                # Only a process that died while holding it can bring a message back this
                # often: one that crashes the bot must not crash it forever.
                outcome: pipeline.Outcome = pipeline.Failed(
                    f"interrupted too often ({message.attempts - 1} attempts)"
                )
            else:
                outcome = await pipeline.run(self._ctx, job)
        except LeaseLost:
            raise
        except Exception as error:
            # A bug or an unforeseen input: keep the message, say what broke, move on. The
            # traceback is formatted here and redacted, and the exception not handed to the
            # log: its message could carry the reply's link (or anything the job held).
            log.error(
                "spool #%d message %s from %s: unexpected %s\n%s",
                message.id,
                message.message_id or "-",
                message.peer,
                type(error).__name__,
                redact("".join(traceback.format_exception(error))),
            )
            outcome = pipeline.Deferred(f"internal error ({type(error).__name__})")
            limit = self._retry.max_attempts
        else:
            limit = self._retry.max_temporary_attempts
        state = await self._conclude(message, job, outcome, limit)
        settled = Settled(message.id, message.message_id, outcome, state)
        async with self._changed:
            self._settled.append(settled)
            self._changed.notify_all()
        return settled

    async def _conclude(
        self, message: SpooledMessage, job: pipeline.Job, outcome: pipeline.Outcome, limit: int
    ) -> str:
        spool, owner = self._spool, self.owner
        state: str
        match outcome:
            case pipeline.Replied(detail=detail):
                await spool.done(message.id, owner=owner)
                state = "done"
                await self._record(job, "replied", detail)
            case pipeline.Ignored(rule=rule):
                await spool.done(message.id, owner=owner)
                state = "done"
                await self._record(job, "ignored", rule)
            case pipeline.Failed(reason=reason):
                await spool.park(message.id, reason, owner=owner)
                state = "parked"
                await self._record(job, "failed", reason)
            case pipeline.Deferred(reason=reason) if message.attempts >= limit:
                reason = f"gave up after {message.attempts} attempts: {reason}"
                await spool.park(message.id, reason, owner=owner)
                state = "parked"
                await self._record(job, "failed", reason)
            case pipeline.Deferred(reason=reason):
                delay = self._retry.delay(message.attempts)
                await spool.retry(message.id, reason, self._ctx.clock() + delay, owner=owner)
                state = "retry"
                await self._record(job, "pending_retry", f"{reason}; retrying in {delay:.0f} s")
        # The one line per message at INFO: what became of it, and why.
        log.info(
            "spool #%d message %s from %s for %s: %s (%s: %s)",
            message.id,
            message.message_id or "-",
            message.peer,
            job.account or message.account or "no account",
            state,
            type(outcome).__name__.lower(),
            _why(outcome),
        )
        return state

    async def _record(self, job: pipeline.Job, outcome: Verdict, detail: str) -> None:
        if not job.account:
            # No account to file it under (the request address belongs to nobody now);
            # the parked message and the log line still say what happened.
            return
        try:
            await self._activity.record(
                job.account,
                kind=BOT_REQUEST,
                outcome=outcome,
                subject=job.subject,
                detail=detail,
            )
        except Exception:
            log.exception("could not record activity for spool #%d", job.message.id)


def _why(outcome: pipeline.Outcome) -> str:
    match outcome:
        case pipeline.Replied(detail=text) | pipeline.Ignored(rule=text):
            return text
        case pipeline.Failed(reason=text) | pipeline.Deferred(reason=text):
            return text


__all__ = ["RetryPolicy", "Settled", "Worker"]
