"""The IMAP door's pace: requests taken from a real mailbox into the spool.

Dovecot runs on loopback (``app.dovecot``); the state is SQLite with durable commits. Two
figures:

* **intake**: a mailbox holding ``--messages`` requests, taken by one reader in one look
  (per message: size, fetch, the spool and key committed together, the flag set, the
  flag recorded) — messages per second;
* **push to spool**: with the reader waiting in IDLE, the time from a request being
  delivered (IMAP APPEND returned) to it being in the spool, over ``--pushes`` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from app.dovecot import HOST, Dovecot
from bot.imap import Server, open_session
from bot.mailbox import MailboxPolicy, MailboxReader
from kashflow.client import KashFlow
from kashflow.models import Credentials
from permalink.core import Core, CoreConfig
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.relay import SmtpMailer
from permalink.store import SqlStore

USER, PASSWORD = "invoices", "bench-imap-pass"


def request(n: int) -> bytes:
    return (
        f"From: Client <accounts@acme-fab.example>\r\nTo: invoices@northwind.example\r\n"
        f"Subject: Invoices\r\nMessage-ID: <bench-{n}@client.example>\r\n\r\n"
        f"Please send me my invoices.\r\n"
    ).encode()


async def run(messages: int, pushes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Dovecot(users={USER: PASSWORD}) as server:
        db = open_database(None, Path(tmp))
        keyring = Keyring.generate()
        store = SqlStore(db, keyring)
        gateway = KashFlow("http://127.0.0.1:9/api/service.asmx")  # never called here
        core = Core(
            CoreConfig(public_base_url="https://invoices.example.test"),
            gateway=gateway,
            store=store,
            mailer=SmtpMailer(),
            keyring=keyring,
        )
        try:
            await store.accounts.set_bot_credentials("demo", Credentials("demo", "x"))
            await store.accounts.update("demo", request_address="invoices@northwind.example")
            await store.mailboxes.set_password("demo", PASSWORD)
            settings = await store.mailboxes.update(
                "demo", host=HOST, port=server.ssl_port, security="ssl", username=USER
            )
            policy = MailboxPolicy(ca_file=str(server.certificate), idle_s=600)
            woken = asyncio.Event()
            reader = MailboxReader(core, settings, wake=woken.set, policy=policy)

            started = time.perf_counter()
            await asyncio.to_thread(server.append, USER, *(request(n) for n in range(messages)))
            appended = time.perf_counter() - started
            session = await open_session(
                Server(HOST, server.ssl_port, "ssl", USER, PASSWORD, ca_file=policy.ca_file)
            )
            try:
                folder = await session.select("INBOX")
                started = time.perf_counter()
                taken = await reader.take_new(session, folder)
                took = time.perf_counter() - started
            finally:
                await session.close()
            assert taken == messages, (taken, messages)
            print(f"mailbox filled: {messages} APPENDs in {appended:.2f} s")
            print(
                f"intake: {taken} messages in {took:.2f} s = {taken / took:.0f} messages/s "
                f"({took / taken * 1000:.1f} ms each)"
            )

            task = asyncio.create_task(reader.run())
            latencies = []
            for n in range(pushes):
                if n == 0:
                    # The first look takes the reader into IDLE.
                    await asyncio.sleep(1.0)
                woken.clear()
                await asyncio.to_thread(server.append, USER, request(messages + n))
                delivered = time.perf_counter()
                async with asyncio.timeout(30):
                    await woken.wait()
                latencies.append(time.perf_counter() - delivered)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            ms = sorted(x * 1000 for x in latencies)
            print(
                f"push to spool (IDLE), {pushes} requests: p50 {statistics.median(ms):.1f} ms, "
                f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
            )
        finally:
            core.close()
            await gateway.close()
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--pushes", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.pushes))


if __name__ == "__main__":
    main()
