"""The mail benchmarks' rig: processes to measure, a state directory, and SMTP clients.

* ``python -m benchmarks.mail_rig sandbox`` serves the sandbox KashFlow with a customer's
  unpaid invoices topped up to a count (so a request's merged PDF has a known size), and
  prints its SOAP URL;
* ``python -m benchmarks.mail_rig listener`` serves only the bot's SMTP listener and
  durable spool (no worker), and prints ``listening HOST PORT``;
* :func:`bot_process` runs ``kashflow-permalink serve --role bot`` (the real entry point,
  :class:`tests.support.processes.ServeProcess`), which can be SIGKILLed;
* :func:`prepare_state` writes the server key and the demo account's bot settings;
* :func:`send_request` is one SMTP session that keeps trying until a message is accepted.

Everything heavy runs in its own process, so the benchmark's own client and the capture
relay do not share an event loop with what is being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib

from bot.listener import ListenerSettings, accept_addresses, create_listener
from kashflow.sandbox import Sandbox
from permalink.db import open_database
from permalink.spool import Spool
from tests.support.processes import (
    REQUEST,
    ROOT,
    ServeProcess,
    bot_env,
)


@dataclass(frozen=True, slots=True)
class Customer:
    code: str
    email: str


ACME = Customer("ACME01", "accounts@acme-fab.example")
ELM = Customer("ELM01", "hello@elmbakery.example")  # no invoices until topped up
# Every seeded demo customer, for runs that spread requests over several of them.
DEMO_CUSTOMERS: tuple[Customer, ...] = (
    ACME,
    Customer("BRIGHT01", "accounts@brightwater.example"),
    Customer("CORV01", "billing@corvid.example"),
    Customer("DUNE01", "maggie@dunes.example"),
    ELM,
    Customer("FOX01", "ruth@foxglove.example"),
    Customer("GRAN01", "office@graniterow.example"),
    Customer("HOLL01", "sam@hollowoak.example"),
    Customer("IVY01", "practice@ivylane.example"),
)


def request_mail(sender: str, message_id: str, body: str = "Please send my invoices.") -> bytes:
    return (
        f"From: Client <{sender}>\r\nTo: {REQUEST}\r\nSubject: Invoices\r\n"
        f"Message-ID: {message_id}\r\nDate: Mon, 10 Mar 2025 09:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def new_message_id() -> str:
    return make_msgid(domain="client.example")


# -- processes --------------------------------------------------------------------------


def _first_line(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError(f"the {what} did not start")
    return line


@contextlib.contextmanager
def sandbox_process(latency_ms: float, top_up: Customer, unpaid: int) -> Iterator[str]:
    """The sandbox in its own process, ``top_up`` having ``unpaid`` unpaid invoices."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.mail_rig",
            "sandbox",
            "--latency-ms",
            str(latency_ms),
            "--customer",
            top_up.code,
            "--unpaid",
            str(unpaid),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield _first_line(proc, "sandbox")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def listener_process(state: Path, database_url: str | None = None) -> Iterator[tuple[int, int]]:
    """The listener and spool alone in their own process (the spool on SQLite in
    ``state``, or on PostgreSQL); yields its SMTP port and its pid."""
    database = ["--database-url", database_url] if database_url else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.mail_rig",
            "listener",
            "--state-dir",
            str(state),
            *database,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield int(_first_line(proc, "listener").split()[-1]), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def bot_process(
    state: Path,
    kashflow_url: str,
    *,
    concurrency: int,
    log: Path,
    port: int = 0,
    database_url: str | None = None,
) -> AsyncIterator[ServeProcess]:
    """``serve --role bot`` on ``state`` (and ``database_url``), killed afterwards."""
    bot = ServeProcess(
        state,
        kashflow_url,
        port=port,
        log=log,
        database_url=database_url,
        env=bot_env(concurrency=concurrency),
    )
    await bot.start()
    try:
        yield bot
    finally:
        await bot.kill()


# -- the client side --------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """How one request got in: refusals and broken sessions before its ``250``."""

    message_id: str
    accepted: bool = False
    refused: int = 0
    """Sessions that ended without a 2xx for the message (bot down, cut off, 4xx)."""


async def send_request(
    port: int,
    sender: str,
    message_id: str,
    *,
    give_up_after: float = 120.0,
    pause: float = 0.05,
) -> Delivery:
    """Send one request, retrying until the bot answers 2xx or ``give_up_after`` passes."""
    delivery = Delivery(message_id)
    raw = request_mail(sender, message_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    while loop.time() < deadline:
        try:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, start_tls=False)
            async with client:
                await client.sendmail(sender, [REQUEST], raw)
        except (aiosmtplib.SMTPException, OSError):
            delivery.refused += 1
            await asyncio.sleep(pause)  # the bot is down or restarting: try again shortly
            continue
        delivery.accepted = True
        break
    return delivery


async def send_over_one_session(port: int, messages: Sequence[tuple[str, bytes]]) -> int:
    """Send ``(sender, raw)`` messages one after another on one connection; returns 250s."""
    accepted = 0
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30, start_tls=False)
    async with client:
        for sender, raw in messages:
            await client.sendmail(sender, [REQUEST], raw)
            accepted += 1
    return accepted


# -- the processes' own entry points ----------------------------------------------------


async def _serve_sandbox(latency_ms: float, code: str, unpaid: int) -> None:
    sandbox = Sandbox(latency_ms=latency_ms)
    owing = [i for i in sandbox.invoices("demo", code) if not i.paid]
    for _ in range(unpaid - len(owing)):
        sandbox.add_invoice("demo", code)
    await sandbox.start()
    try:
        print(sandbox.url, flush=True)
        await _until_signalled()
    finally:
        await sandbox.stop()


async def _serve_listener(state: Path, database_url: str | None) -> None:
    db = open_database(database_url, state)
    try:
        accepts = accept_addresses([REQUEST], account="demo")
        listener = create_listener(Spool(db), accepts, ListenerSettings(port=0))
        async with listener:
            print(f"listening {listener.host} {listener.port}", flush=True)
            await _until_signalled()
    finally:
        db.close()


async def _until_signalled() -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mail_rig")
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="the sandbox with unpaid invoices topped up")
    sandbox.add_argument("--latency-ms", type=float, default=0.0)
    sandbox.add_argument("--customer", default=ACME.code)
    sandbox.add_argument("--unpaid", type=int, default=10)
    listener = commands.add_parser("listener", help="the SMTP listener and spool alone")
    listener.add_argument("--state-dir", type=Path, required=True)
    listener.add_argument("--database-url", help="postgresql://… (default: SQLite)")
    args = parser.parse_args(argv)
    if args.command == "sandbox":
        asyncio.run(_serve_sandbox(args.latency_ms, args.customer, args.unpaid))
    else:
        asyncio.run(_serve_listener(args.state_dir, args.database_url))


if __name__ == "__main__":
    main()
