"""Worst ``/healthz`` latency while a 100 000-part message is dealt with.

One ``serve --role all`` process (web door, listener and worker on one event loop) with
the sandbox KashFlow in its own process; this process polls ``/healthz`` every 10 ms
and keeps the slowest answers while:

1. the 100 000-part message (3.6 MB) is sent over SMTP: counted as it arrives, answered
   552 and the sender cut off once it passes 1 000 parts;
2. the same message sits in the spool (as an older release accepted it): the worker
   parks it unread.

It also times, over a raw socket, how long a sender that has written the first 64 KiB of
such a message waits for its 552.

Before the fix the parse ran on the shared loop: 19.6 s without an answer for one such
message (the stdlib parser spends about 49 s of CPU on it here). Before the listener
counted as the message arrived, receiving its 200 000 lines line by line held the loop
for up to about 1.5 s (1 128 ms worst, 434 ms median, on a load average of 11.8).
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.capture import CaptureServer
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.store import SqlStore
from tests.support.bot import ACME
from tests.support.mime import many_parts
from tests.support.processes import REQUEST, ServeProcess, prepare_state, sandbox_process

PARTS = 100_000


async def poll(url: str, stop: asyncio.Event, samples: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(1_000_000):  # bounded; ends on ``stop``
            if stop.is_set():
                return
            started = time.perf_counter()
            async with session.get(url + "/healthz") as response:
                await response.read()
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)


async def first_answer(port: int, start: bytes) -> tuple[float, str]:
    """Seconds from writing ``start`` after DATA (and no more) to the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        for command in (
            b"EHLO bench.example",
            b"MAIL FROM:<" + ACME.encode() + b">",
            b"RCPT TO:<" + REQUEST.encode() + b">",
            b"DATA",
        ):
            writer.write(command + b"\r\n")
            while (await reader.readline())[3:4] == b"-":  # a multi-line reply goes on
                pass
        started = time.perf_counter()
        writer.write(start)
        async with asyncio.timeout(60):
            answer = await reader.readline()
        return time.perf_counter() - started, answer.decode().strip()
    finally:
        writer.close()


def report(what: str, samples: list[float], took: float) -> None:
    p99 = max(samples)
    if len(samples) > 2:
        p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    print(
        f"{what}: {took:.1f} s; /healthz worst {max(samples) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, median {statistics.median(samples) * 1000:.1f} ms "
        f"over {len(samples)} requests"
    )


async def run(base: Path) -> None:
    state = base / "state"
    with sandbox_process(0) as kashflow_url:
        async with CaptureServer(base / "outbox") as capture:
            await prepare_state(state, capture.port)
            serve = ServeProcess(
                state,
                kashflow_url,
                role="all",
                log=base / "serve.log",
                env={"KASHFLOW_PERMALINK_SMTP_PORT": "0"},
            )
            await serve.start()
            db = open_database(None, state)
            try:
                bomb = many_parts(PARTS, sender=ACME, to=REQUEST, message_id="<bomb@bench>")
                port = int(serve.ready["smtp_port"])

                def send() -> str:
                    try:
                        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
                            client.sendmail(ACME, [REQUEST], bomb)
                    except smtplib.SMTPDataError as refused:
                        return f"{refused.smtp_code}"
                    except (smtplib.SMTPServerDisconnected, ConnectionError):
                        return "cut off"
                    return "250"

                samples: list[float] = []
                stop = asyncio.Event()
                poller = asyncio.create_task(poll(serve.url, stop, samples))
                started = time.perf_counter()
                code = await asyncio.to_thread(send)
                took = time.perf_counter() - started
                stop.set()
                await poller
                report(f"1. {len(bomb):,}-byte message over SMTP (answer {code})", samples, took)
                waited, reply = await first_answer(port, bomb[: 64 * 1024])
                waited_ms = waited * 1000
                print(
                    f"   a sender that wrote its first 64 KiB: {reply!r} after {waited_ms:.0f} ms"
                )

                spool = SqlStore(db, Keyring.load(state / "server.key")).spool
                samples, stop = [], asyncio.Event()
                poller = asyncio.create_task(poll(serve.url, stop, samples))
                started = time.perf_counter()
                spool_id = await spool.enqueue(
                    peer="127.0.0.1:1",
                    mail_from=ACME,
                    rcpt_tos=[REQUEST],
                    raw=bomb,
                    message_id="<bomb@bench>",
                    account="demo",
                )
                async with asyncio.timeout(120):
                    while True:
                        entry = await spool.get(spool_id)
                        if entry is not None and entry.state == "parked":
                            break
                        await asyncio.sleep(0.05)
                took = time.perf_counter() - started
                stop.set()
                await poller
                report("2. the same message from the spool, parked unread", samples, took)
            finally:
                db.close()
                await serve.terminate()
    print(f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
