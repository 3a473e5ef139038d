"""Re-issue after a KashFlow password change, at volume: how long the accountant waits.

An account whose bot has minted thousands of links (one per reply) changes its API
password in the sandbox. Measured: telling how many live links broke (``survey``: one
grouped query and an HMAC per distinct password mark), planning the re-issue (reading the
broken rows, grouping them per customer and scope), and the re-issue itself — a new link
per customer and scope, the broken ones revoked, one email per client through a real SMTP
capture. The sandbox runs in this process; its latency per KashFlow call is an option.

    python -m benchmarks.reissue [--links 5000] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app.config import Settings
from app.runtime import build_core, close_core
from bot.capture import CaptureServer
from kashflow.models import Credentials
from kashflow.sandbox import DEMO, Sandbox
from permalink.core import Core
from permalink.keyring import Keyring
from permalink.links import new_link_id
from permalink.reissue import affected, plan, run, start, survey

SCOPES = ("all", "unpaid")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reissue")
    parser.add_argument("--links", type=int, default=5000, help="live links before the change")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sandbox delay per call")
    return parser.parse_args()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            Sandbox(latency_ms=args.latency_ms) as sandbox,
            CaptureServer(Path(tmp) / "outbox") as capture,
        ):
            settings = Settings(
                state_dir=Path(tmp),
                public_base_url="https://invoices.example.test",
                kashflow_endpoint=sandbox.url,
            )
            core = build_core(settings, Keyring.generate())
            try:
                await measure(core, sandbox, capture, args.links)
            finally:
                await close_core(core)


async def measure(core: Core, sandbox: Sandbox, capture: CaptureServer, count: int) -> None:
    accounts = core.store.accounts
    await accounts.set_bot_credentials("demo", DEMO)
    await accounts.update(
        "demo",
        request_address="invoices@northwind-studio.example",
        relay_host="127.0.0.1",
        relay_port=capture.port,
        relay_security="none",
    )
    customers = await core.kashflow(DEMO).customers()
    mark = core.password_mark(DEMO)
    now = int(time.time())
    began = time.perf_counter()
    for n in range(count):
        customer = customers[n % len(customers)]
        await core.store.links.add(
            "demo",
            link_id=new_link_id(),
            customer_code=customer.code,
            customer_name=customer.name,
            scope=SCOPES[n % len(SCOPES)],
            created=now,
            minted_by="bot",
            customer_id=customer.id,
            password_mark=mark,
        )
    spent = time.perf_counter() - began
    print(f"registered {count:,} links for {len(customers)} customers in {ms(spent)}")

    new = Credentials("demo", "changed-api-pass")
    sandbox.set_api_password("demo", new.password)

    began = time.perf_counter()
    found = await survey(core, new, now)
    surveyed = time.perf_counter() - began
    began = time.perf_counter()
    planned = plan(await affected(core, new, now))
    planned_s = time.perf_counter() - began
    print(f"survey: {found.broken:,} broken links found in {ms(surveyed)}")
    print(
        f"plan: {len(planned)} clients, {sum(len(c.links) for c in planned)} new links, "
        f"in {ms(planned_s)}"
    )

    began = time.perf_counter()
    job_id = await start(core, new, now=now)
    assert job_id is not None
    await run(core, job_id, new, owner="benchmark")
    ran = time.perf_counter() - began
    mails = await capture.wait_for(len(planned), timeout=60)
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.count("done") == len(planned)
    after = await survey(core, new, now)
    print(
        f"re-issue: {len(planned)} clients emailed ({len(mails)} mails), {found.broken:,} links "
        f"revoked, in {ms(ran)} ({ms(ran / len(planned))} per client); "
        f"broken afterwards: {after.broken}"
    )


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
