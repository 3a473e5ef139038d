"""Scale-out: several processes of the product over one PostgreSQL.

1. Bot replies per second with 1 and 2 bot processes (``serve --role bot``, sharing one
   SMTP port): requests accepted over SMTP, answered with ELM01's ten invoices merged into
   one PDF, the replies captured; the sandbox KashFlow at 0 ms in its own process.
2. SMTP acceptance with the spool on PostgreSQL: the listener and spool alone in their own
   process, every message committed (synchronous commit) before its ``250``. Goal: at least
   500 messages/s.
3. The list page through 1 and 3 web processes (``serve --role web`` sharing one HTTP
   port, the kernel spreading connections) under one client load (Debian's ``wrk``).
4. Revocation to refusal across processes: three web processes on ports of their own; a
   link revoked through one process's settings pages is then asked for on all three: the
   time from sending the revocation until every process has refused the link.

PostgreSQL is the throwaway server ``make benchmarks`` starts (``scripts/with-postgres``,
``KFP_TEST_DATABASE_URL``); each part runs on a fresh schema. Every process
shares this machine's cores with the others (and with whatever else runs on it): the
figures say how many cores there are and what the load average was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path

import aiohttp

from app.config import Settings
from app.runtime import build_core, close_core
from benchmarks.bot import acceptance, cpu_seconds, gather_bounded, postgres_cpu_seconds
from benchmarks.load import run_wrk
from benchmarks.mail_rig import ELM, bot_process, new_message_id, send_request
from benchmarks.mail_rig import sandbox_process as topped_up_sandbox
from bot.capture import CaptureServer
from kashflow.sandbox import DEMO
from permalink.keyring import Keyring
from permalink.links import open_link
from permalink.scopes import Scope
from tests.support.processes import ServeProcess, prepare_state, sandbox_process
from tests.support.stores import URL_VARIABLE, postgres_schema

INVOICES = 10


def load_average() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


# -- 1. bot replies per second ----------------------------------------------------------


async def bot_replies(
    workers: int, requests: int, sessions: int, concurrency: int, *, postgres: bool = True
) -> float:
    """Replies per second from ``workers`` bot processes sharing one SMTP port and one
    store (PostgreSQL, or for comparison SQLite)."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as schemas:
        base = Path(tmp)
        database_url = schemas.enter_context(postgres_schema()) if postgres else None
        async with CaptureServer(base / "outbox") as capture, AsyncExitStack() as stack:
            await prepare_state(base / "state", capture.port, database_url=database_url)
            url = stack.enter_context(topped_up_sandbox(0, ELM, INVOICES))
            bots: list[ServeProcess] = []
            for n in range(workers):
                bots.append(
                    await stack.enter_async_context(
                        bot_process(
                            base / "state",
                            url,
                            concurrency=concurrency,
                            log=base / f"bot-{n}.log",
                            port=bots[0].port if bots else 0,
                            database_url=database_url,
                        )
                    )
                )
            port = bots[0].port
            warmup = 5 * workers  # WSDL, connections, the sandbox's PDF cache, per process
            for _ in range(warmup):
                await send_request(port, ELM.email, new_message_id())
            await capture.wait_for(warmup, timeout=120)

            cpu_before = sum(cpu_seconds(bot.pid) for bot in bots)
            db_cpu_before = postgres_cpu_seconds() if postgres else None

            async def one() -> None:
                delivery = await send_request(port, ELM.email, new_message_id())
                assert delivery.accepted and delivery.refused == 0

            started = time.perf_counter()
            await gather_bounded([one() for _ in range(requests)], sessions)
            await capture.wait_for(warmup + requests, timeout=900)
            elapsed = time.perf_counter() - started
            cpu = sum(cpu_seconds(bot.pid) for bot in bots) - cpu_before
            db_cpu = postgres_cpu_seconds() if postgres else None
            for bot in bots:
                assert await bot.terminate() == 0
    rate = requests / elapsed
    store = "PostgreSQL" if postgres else "SQLite"
    cpu_text = f"bot CPU {cpu * 1000 / requests:.0f} ms"
    if db_cpu is not None and db_cpu_before is not None:
        cpu_text += f", PostgreSQL server CPU {(db_cpu - db_cpu_before) * 1000 / requests:.1f} ms"
    print(
        f"  {workers} bot process(es) on {store}, {concurrency} worker tasks each:"
        f" {requests} requests answered in {elapsed:.2f} s = {rate:.1f}/s"
        f" ({cpu_text} per request; {load_average()})"
    )
    return rate


# -- 3. the list page through 1 and 3 web processes -------------------------------------


@asynccontextmanager
async def web_processes(
    count: int, kashflow_url: str, state: Path, database_url: str, *, shared_port: bool
) -> AsyncIterator[list[ServeProcess]]:
    """``count`` web processes on one state and database: on one port (the kernel spreads
    connections among them), or each on a port of its own."""
    Keyring.create(state / "server.key")
    started: list[ServeProcess] = []
    try:
        for n in range(count):
            web = ServeProcess(
                state,
                kashflow_url,
                role="web",
                port=started[0].port if started and shared_port else 0,
                log=state / f"web-{n}.log",
                database_url=database_url,
                public_base_url="http://127.0.0.1:8080",
            )
            await web.start()
            started.append(web)
        yield started
    finally:
        for web in started:
            await web.kill()


async def mint_link(state: Path, kashflow_url: str, database_url: str, code: str) -> str:
    """A link's path (``/l/…``), minted on the shared store as the settings pages do."""
    settings = Settings(
        state_dir=state,
        database_url=database_url,
        kashflow_endpoint=kashflow_url,
        public_base_url="http://127.0.0.1:8080",
    )
    core = build_core(settings, Keyring.load(state / "server.key"))
    try:
        customer = await core.kashflow(DEMO).customer_by_code(code)
        minted = await core.mint(DEMO, customer, Scope("all"), minted_by="settings")
    finally:
        await close_core(core)
    return minted.url.removeprefix(settings.public_base_url)


async def list_page(kashflow_url: str, count: int, connections: int, seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_schema() as database_url:
        state = Path(tmp)
        async with web_processes(
            count, kashflow_url, state, database_url, shared_port=True
        ) as webs:
            path = await mint_link(state, kashflow_url, database_url, "BRIGHT01")
            url = f"http://127.0.0.1:{webs[0].port}{path}"
            result = await asyncio.to_thread(run_wrk, url, connections, seconds, webs[0].pid)
    print(
        f"  {count} web process(es): {result['rps']} pages/s ({result['requests']} requests),"
        f" p50 {result['p50']}, p99 {result['p99']}, non-2xx {result['non2xx']},"
        f" socket errors {result['socket_errors']} ({load_average()})"
    )


# -- 4. revocation to refusal -------------------------------------------------------------


async def revocation_delay(kashflow_url: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_schema() as database_url:
        state = Path(tmp)
        async with (
            web_processes(3, kashflow_url, state, database_url, shared_port=False) as webs,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        ):
            keyring = Keyring.load(state / "server.key")
            urls = [web.url for web in webs]
            await sign_in(http, urls[0])
            answered, refused = [], []
            for n in range(rounds):
                path = await mint_link(state, kashflow_url, database_url, "FOX01")
                link_id = open_link(path.rsplit("/", 1)[1], keyring, now=int(time.time())).link_id
                # Each round from a loopback address of its own: three refusals a round would
                # soon put one address over the invalid-link allowance (then 429, not 404).
                connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{10 + n}", 0))
                async with aiohttp.ClientSession(connector=connector) as probe:
                    assert await statuses(probe, urls, path) == [200, 200, 200]
                    token = await csrf(http, urls[n % 3] + "/settings/links")
                    started = time.perf_counter()
                    async with http.post(
                        f"{urls[n % 3]}/settings/links/{link_id}/revoke",
                        data={"csrf": token},
                        allow_redirects=False,
                    ) as resp:
                        assert resp.status == 303
                    answered.append(time.perf_counter() - started)
                    assert await statuses(probe, urls, path) == [404, 404, 404]
                    refused.append(time.perf_counter() - started)
    print(
        f"  {rounds} links, each revoked through one of 3 web processes (in turn) and then"
        f" asked for on all 3 at once ({load_average()}):"
    )
    for what, times in (("revocation answered", answered), ("refused by all three", refused)):
        print(
            f"    {what:<22} p50 {statistics.median(times) * 1000:.1f} ms,"
            f" max {max(times) * 1000:.1f} ms after the revocation was sent"
        )


async def sign_in(http: aiohttp.ClientSession, web: str) -> None:
    token = await csrf(http, web + "/settings/login")
    form = {"csrf": token, "username": DEMO.username, "password": DEMO.password}
    async with http.post(web + "/settings/login", data=form, allow_redirects=False) as resp:
        assert resp.status == 303


async def csrf(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        page = await resp.text()
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def statuses(http: aiohttp.ClientSession, urls: list[str], path: str) -> list[int]:
    """One request for ``path`` to each web process at once."""

    async def one(url: str) -> int:
        async with http.get(url + path) as resp:
            await resp.read()
            return resp.status

    return list(await asyncio.gather(*(one(url) for url in urls)))


# -- all of it ----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    print(f"1. bot replies per second on PostgreSQL ({INVOICES}-invoice merged PDF per reply)")
    shape = (args.requests, args.sessions, args.concurrency)
    rates = [await bot_replies(n, *shape) for n in (1, 2)]
    print(f"  2 processes / 1 process: {rates[1] / rates[0]:.2f}x")
    # The same load on the embedded store, in the same conditions, for comparison.
    await bot_replies(1, *shape, postgres=False)
    print("2. SMTP acceptance with the spool on PostgreSQL (and on SQLite, for comparison)")
    with postgres_schema() as database_url:
        await acceptance(args.accept_sessions, args.per_session, args.accept_total, database_url)
    await acceptance(args.accept_sessions, args.per_session, args.accept_total)
    with sandbox_process(0) as kashflow_url:
        print(
            f"3. list page (6 invoices, 3 KashFlow calls each) under wrk,"
            f" {args.connections} connections for {args.seconds} s"
        )
        for count in (1, 3):
            await list_page(kashflow_url, count, args.connections, args.seconds)
        print("4. revocation to refusal across web processes")
        await revocation_delay(kashflow_url, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="worker tasks per bot")
    parser.add_argument("--accept-sessions", type=int, default=50)
    parser.add_argument("--per-session", type=int, default=40)
    parser.add_argument("--accept-total", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30, help="at most 200")
    args = parser.parse_args()
    if not os.environ.get(URL_VARIABLE):
        sys.exit(f"needs PostgreSQL: run it with `make benchmarks` ({URL_VARIABLE} is not set)")
    if shutil.which("wrk") is None:
        sys.exit("needs Debian's wrk: apt-get install wrk")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
