"""The bot under SIGKILL: requests over concurrent SMTP sessions while the process dies.

The bot runs as ``python -m bot.service`` (its own process) on one state directory and
one port; the sandbox KashFlow runs in its own process; the capture relay and the clients
run here. While the clients send, the bot is killed with SIGKILL at random moments and
restarted, again and again. A client whose session fails (the bot is down, or died
before its ``250``) tries again until the message is accepted.

In the end every accepted request should have exactly one reply. The report counts:

* accepted requests, and the failed sessions the clients had to retry;
* lost: accepted and never answered, whatever the spool says of it — still waiting, or
  marked done without a reply having left (every request here is a known customer's
  asking for their invoices, so no rule may keep the bot silent); parked requests are
  counted apart, with their reasons on the settings page;
* answered twice, split by cause: the same reply resent (one reply Message-ID, the kill
  fell between the relay's acceptance and the durable "sent" record, the one window SMTP
  leaves open) or a second, different reply (a bug);
* the total time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.mail_rig import (
    DEMO_CUSTOMERS,
    ELM,
    Customer,
    Delivery,
    sandbox_process,
    send_request,
)
from benchmarks.measure import machine
from bot.capture import CaptureServer
from permalink.db import open_database
from permalink.spool import Spool, SpoolEntry, State
from tests.support.processes import ServeProcess, bot_env, prepare_state

SETTLING: tuple[State, ...] = ("queued", "working", "retry")


@dataclass
class Run:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    customer_of: dict[str, Customer] = field(default_factory=dict)
    kills: int = 0
    killed_with_work_in_hand: int = 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def clients(
    run: Run, port: int, requests: int, sessions: int, pause_max: float, rng: random.Random
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def session() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            customer = DEMO_CUSTOMERS[n % len(DEMO_CUSTOMERS)]
            message_id = f"<soak-{n}@client.example>"
            run.customer_of[message_id] = customer
            run.deliveries[message_id] = await send_request(port, customer.email, message_id)
            await asyncio.sleep(rng.uniform(0, pause_max))  # spread sending over the run

    await asyncio.gather(*(session() for _ in range(sessions)))


async def unsettled(spool: Spool) -> int:
    counts = await spool.counts()
    return sum(counts[state] for state in SETTLING)


async def killer(
    run: Run,
    bot: ServeProcess,
    spool: Spool,
    kills: int,
    sending: asyncio.Task[None],
    rng: random.Random,
    up_min: float,
    up_max: float,
) -> None:
    """Kill the bot ``kills`` times, each after a random time up, while work remains."""
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(up_min, up_max))
        if sending.done() and await unsettled(spool) == 0:
            break
        if await unsettled(spool):
            run.killed_with_work_in_hand += 1
        await bot.kill()
        run.kills += 1
        await bot.start()


async def wait_settled(spool: Spool, sending: asyncio.Task[None], bound: float) -> bool:
    """Until the clients are done and the spool holds nothing still to do (polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while loop.time() < deadline:
        if sending.done() and await unsettled(spool) == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def soak(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    run = Run()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        state = base / "state"
        async with CaptureServer(base / "outbox") as capture:
            await prepare_state(state, capture.port)
            with sandbox_process(args.latency_ms, ELM, 10) as url:
                bot = ServeProcess(
                    state,
                    url,
                    port=free_port(),
                    log=base / "bot.log",
                    env=bot_env(concurrency=args.concurrency),
                )
                db = open_database(None, state)
                try:
                    spool = Spool(db)
                    await bot.start()
                    try:
                        sending = asyncio.create_task(
                            clients(
                                run, bot.port, args.requests, args.sessions, args.pause_max, rng
                            )
                        )
                        await killer(
                            run, bot, spool, args.kills, sending, rng, args.up_min, args.up_max
                        )
                        settled = await wait_settled(spool, sending, args.bound)
                        await sending
                        clean_exit = await bot.terminate()
                    finally:
                        await bot.kill()
                    entries = await spool.list(limit=100_000)
                    sent_state = {e.id: await spool.reply_state(e.id) for e in entries}
                finally:
                    db.close()
            replies = capture.messages
    elapsed = time.perf_counter() - started

    rows: dict[str, list[SpoolEntry]] = defaultdict(list)
    for entry in entries:
        rows[entry.message_id].append(entry)
    answers: dict[str, list[str]] = defaultdict(list)
    misaddressed = 0
    for reply in replies:
        parsed = reply.parsed()
        request = str(parsed["In-Reply-To"])
        answers[request].append(str(parsed["Message-ID"]))
        customer = run.customer_of.get(request)
        if customer is None or reply.rcpt_tos != (customer.email,):
            misaddressed += 1

    accepted = [mid for mid, d in run.deliveries.items() if d.accepted]
    never_accepted = len(run.deliveries) - len(accepted)
    retried = [d for d in run.deliveries.values() if d.refused]
    lost, silently_done, sent_unseen, parked, resent, second = [], 0, 0, 0, 0, 0
    for mid in accepted:
        copies = answers.get(mid, [])
        if len(copies) > 1:
            if len(set(copies)) == 1:
                resent += 1
            else:
                second += 1
        if copies:
            continue
        states = {e.state for e in rows.get(mid, [])}
        if "parked" in states:
            parked += 1
            continue
        # Done, or still waiting, and nothing reached the customer: lost either way.
        lost.append(mid)
        silently_done += "done" in states
        sent_unseen += any(
            (r := sent_state[e.id]) is not None and r.state == "sent" for e in rows.get(mid, [])
        )
    spooled_again = sum(len(rows[mid]) - 1 for mid in accepted if rows.get(mid))

    print(
        f"soak: {args.requests} requests over {args.sessions} SMTP sessions, sandbox at"
        f" {args.latency_ms:.0f} ms, bot worker concurrency {args.concurrency} ({machine()})"
    )
    print(
        f"  bot SIGKILLed and restarted    {run.kills} times"
        f" ({run.killed_with_work_in_hand} with requests in the spool still to settle)"
    )
    print(f"  accepted                       {len(accepted)} of {args.requests}")
    print(
        f"  non-2xx / failed sessions      {sum(d.refused for d in run.deliveries.values())}"
        f" (over {len(retried)} requests, each retried until accepted)"
    )
    print(f"  never accepted                 {never_accepted}")
    print(
        f"  spooled twice                  {spooled_again}"
        " (the bot died after the spool commit, before the client read its 250)"
    )
    print(f"  answered                       {sum(1 for m in accepted if answers.get(m))}")
    print(f"  parked (with a reason)         {parked}")
    print(
        f"  lost                           {len(lost)}"
        f" ({silently_done} marked done without a reply,"
        f" {sent_unseen} recorded as sent and never received)" + (f"  {lost[:5]}" if lost else "")
    )
    print(
        f"  answered twice                 {resent + second}: {resent} the same reply resent"
        f" (kill between the relay's 250 and the 'sent' record), {second} a second reply"
    )
    print(f"  replies to a wrong address     {misaddressed}")
    print(f"  settled before the bound       {'yes' if settled else 'NO'}")
    print(f"  clean final exit code          {clean_exit}")
    print(f"  total time                     {elapsed:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="sandbox delay per call")
    parser.add_argument("--concurrency", type=int, default=2, help="the bot's worker tasks")
    parser.add_argument("--pause-max", type=float, default=0.6, help="client pause, s")
    parser.add_argument("--up-min", type=float, default=0.3, help="least time up, s")
    parser.add_argument("--up-max", type=float, default=1.5, help="most time up, s")
    parser.add_argument("--bound", type=float, default=180.0, help="wait for settling, s")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
