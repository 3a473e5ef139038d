"""Mail bot speed, with the sandbox KashFlow at 0 ms per call.

1. Requests answered per second end to end: a request accepted over SMTP by the bot
   (``python -m bot.service``, its own process), answered with the customer's unpaid
   invoices — ten of them, merged into one PDF attachment — and the reply captured by the
   capture relay. The sandbox runs in its own process with the customer's unpaid invoices
   topped up to ten; the client and the capture relay share this process. Two customers:
   ELM01, whose ten invoices are all it has, and ACME01, ten unpaid among 230 on file
   (every request reads the whole list, as "unpaid" is decided live). Goal: at least 20/s.
2. SMTP acceptance with durable spooling: the listener and spool alone in their own
   process (every message committed with ``synchronous=FULL`` before its ``250``), many
   client sessions sending small messages, both several messages per session and one
   session per message. Goal: at least 200 messages/s.

Every process shares this machine's cores; the figures say how many there are and what
the load average was, since other work on the machine moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

from pypdf import PdfReader

from benchmarks.mail_rig import (
    ACME,
    ELM,
    Customer,
    bot_process,
    listener_process,
    new_message_id,
    request_mail,
    sandbox_process,
    send_over_one_session,
    send_request,
)
from bot.capture import CapturedMessage, CaptureServer
from permalink.db import open_database
from permalink.spool import Spool
from tests.support.processes import prepare_state

INVOICES = 10


def _stat(pid: int | str) -> list[str]:
    # Fields after the command name, which may hold spaces: state is [0], ppid [1].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU time the PostgreSQL server of ``scripts/with-postgres`` has used so far: the
    postmaster, its live backends and the ones that have exited; None without one."""
    try:
        postmaster = int(
            (Path(os.environ["PGHOST"]) / "data" / "postmaster.pid").read_text().split()[0]
        )
        own = _stat(postmaster)
    except (KeyError, OSError, ValueError, IndexError):
        return None
    ticks = sum(int(own[i]) for i in (11, 12, 13, 14))  # itself and its reaped children
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(entry.name)
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == postmaster:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def arrival(reply: CapturedMessage) -> float:
    # The capture names each file by its arrival time in nanoseconds.
    return int(reply.path.name.split("-", 1)[0]) / 1e9


def pdf_pages(reply: CapturedMessage) -> int:
    for part in reply.parsed().iter_attachments():
        if part.get_content_type() == "application/pdf":
            return len(PdfReader(io.BytesIO(part.get_content())).pages)
    return 0


async def gather_bounded(jobs: list[Awaitable[object]], at_once: int) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(job: Awaitable[object]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def end_to_end(
    customer: Customer, requests: int, sessions: int, concurrency: int, warmup: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        async with CaptureServer(base / "outbox") as capture:
            await prepare_state(base / "state", capture.port)
            with sandbox_process(0, customer, INVOICES) as url:
                async with bot_process(
                    base / "state", url, concurrency=concurrency, log=base / "bot.log"
                ) as bot:
                    for _ in range(warmup):  # WSDL, connections, the sandbox's PDF cache
                        await send_request(bot.port, customer.email, new_message_id())
                    await capture.wait_for(warmup, timeout=60)

                    assert bot.proc is not None
                    cpu_before = cpu_seconds(bot.proc.pid)
                    accepted_at: dict[str, float] = {}

                    async def one() -> None:
                        message_id = new_message_id()
                        delivery = await send_request(bot.port, customer.email, message_id)
                        assert delivery.accepted and delivery.refused == 0
                        accepted_at[message_id] = time.time()

                    started = time.perf_counter()
                    await gather_bounded([one() for _ in range(requests)], sessions)
                    all_accepted = time.perf_counter() - started
                    replies = await capture.wait_for(warmup + requests, timeout=600)
                    elapsed = time.perf_counter() - started
                    cpu = cpu_seconds(bot.proc.pid) - cpu_before
                    assert await bot.terminate() == 0

    measured = replies[warmup:]
    turnaround = sorted(arrival(r) - accepted_at[str(r.parsed()["In-Reply-To"])] for r in measured)
    pages = pdf_pages(measured[0])
    print(
        f"end to end, {customer.code}: {requests} requests, {sessions} SMTP sessions at a"
        f" time, bot worker concurrency {concurrency}, {os.cpu_count()} cores in all,"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  each reply: {INVOICES} invoices merged into one PDF ({pages} pages, "
        f"{len(measured[0].raw) // 1024} KiB message)"
    )
    print(f"  all {requests} accepted after  {all_accepted:.2f} s")
    print(f"  all {requests} answered after  {elapsed:.2f} s")
    print(f"  answered per second        {requests / elapsed:.1f}/s  (goal >= 20/s)")
    print(
        f"  accepted -> captured       p50 {statistics.median(turnaround) * 1000:.0f} ms,"
        f" p95 {statistics.quantiles(turnaround, n=20)[-1] * 1000:.0f} ms"
        " (all sent at once, so mostly time queued)"
    )
    print(f"  bot process CPU            {cpu * 1000 / requests:.0f} ms per request")


async def acceptance(
    sessions: int, per_session: int, total: int, database_url: str | None = None
) -> None:
    """SMTP acceptance with the spool on SQLite, or on PostgreSQL at ``database_url``."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        with listener_process(state, database_url) as (port, pid):
            batches = [
                [
                    (ACME.email, request_mail(ACME.email, new_message_id()))
                    for _ in range(per_session)
                ]
                for _ in range(sessions)
            ]
            server_cpu = postgres_cpu_seconds if database_url else lambda: None
            cpu_before, db_cpu_before = cpu_seconds(pid), server_cpu()
            started = time.perf_counter()
            counts = await asyncio.gather(*(send_over_one_session(port, b) for b in batches))
            reused = time.perf_counter() - started
            reused_count = sum(counts)
            cpu, db_cpu = cpu_seconds(pid) - cpu_before, server_cpu()

            async def fresh() -> None:
                delivery = await send_request(port, ACME.email, new_message_id())
                assert delivery.accepted and delivery.refused == 0

            started = time.perf_counter()
            await gather_bounded([fresh() for _ in range(total)], sessions)
            fresh_time = time.perf_counter() - started

        db = open_database(database_url, state)
        try:
            spooled = (await Spool(db).counts())["queued"]
        finally:
            db.close()

    durable, goal = (
        ("PostgreSQL, synchronous commit", 500) if database_url else ("synchronous=FULL", 200)
    )
    print(
        f"SMTP acceptance, listener + spool alone ({durable}), {sessions} sessions,"
        f" load average {os.getloadavg()[0]:.1f}:"
    )
    print(
        f"  {per_session} messages per session   {reused_count / reused:.0f} messages/s"
        f"  ({reused_count} in {reused:.2f} s)  (goal >= {goal}/s)"
    )
    print(
        f"  one session per message    {total / fresh_time:.0f} messages/s"
        f"  ({total} in {fresh_time:.2f} s)"
    )
    print(f"  spooled                    {spooled} of {reused_count + total} accepted")
    listener = per_message = cpu / reused_count
    line = f"  CPU per message (above)    listener {listener * 1000:.2f} ms"
    if db_cpu is not None and db_cpu_before is not None:
        per_message += (db_cpu - db_cpu_before) / reused_count
        line += f", PostgreSQL server {(db_cpu - db_cpu_before) * 1000 / reused_count:.2f} ms"
    print(line)
    # One listener process uses at most one core; the database's share runs beside it.
    ceiling = min(1 / listener, (os.cpu_count() or 1) / per_message)
    print(
        f"  so with {os.cpu_count()} idle cores, one listener process would accept about"
        f" {ceiling:.0f} messages/s (an estimate from CPU time, not a measurement)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="the bot's worker tasks")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--accept-sessions", type=int, default=50)
    parser.add_argument("--per-session", type=int, default=40)
    parser.add_argument("--accept-total", type=int, default=1000)
    args = parser.parse_args()
    for customer in (ELM, ACME):
        asyncio.run(
            end_to_end(customer, args.requests, args.sessions, args.concurrency, args.warmup)
        )
    asyncio.run(acceptance(args.accept_sessions, args.per_session, args.accept_total))


if __name__ == "__main__":
    main()
