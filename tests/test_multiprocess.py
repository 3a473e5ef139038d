"""Three web and two bot processes on one PostgreSQL, as the demo runs them.

``kashflow-permalink demo --database-url URL --web-replicas 3 --bot-workers 2`` starts
``serve --role web`` three times and ``serve --role bot`` twice (the bots share one SMTP
port), all on one fresh PostgreSQL schema; the demo itself runs the sandbox KashFlow and
the capture relay. The tests share that one demo and use what a user would:

* mail: 50 requests over SMTP, one bot SIGKILLed while it holds a request and never
  restarted; every request answered exactly once, the killed bot's work finished by the
  other when its lease ran out;
* revocation: made with ``kashflow-permalink revoke`` and through one process's settings
  pages (signed in on another), then refused by every web process on its next request;
* throttling: invalid tokens from one address counted together across the web processes,
  and wrong passwords spread over them locking sign-in on all.

The bots' lease is short (``KASHFLOW_PERMALINK_LEASE_SECONDS``) so a dead bot's work is
taken over within seconds; each step waits for the event it needs, with a bound.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.links import open_link
from permalink.spool import State
from permalink.store import SqlStore
from tests.support.demo import DemoProcess
from tests.support.processes import ROOT, bot_env
from tests.support.stores import postgres_schema
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

REQUESTS = 50
LEASE_S = 3.0
NOT_VALID = "not valid"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Cluster:
    demo: DemoProcess
    database_url: str

    @property
    def info(self) -> dict[str, Any]:
        return self.demo.info

    @property
    def state(self) -> Path:
        return self.demo.state

    def processes(self, role: str) -> list[dict[str, Any]]:
        return [p for p in self.info["processes"] if p["role"] == role]

    @property
    def web_urls(self) -> list[str]:
        return [str(p["url"]) for p in self.processes("web")]

    def store(self) -> SqlStore:
        """The shared store, opened as any process opens it (close it after use)."""
        keyring = Keyring.load(self.state / "server.key")
        return SqlStore(open_database(self.database_url, self.state), keyring)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    with postgres_schema() as url:
        demo = DemoProcess(
            state,
            "--http-port",
            "0",
            "--smtp-port",
            "0",
            "--database-url",
            url,
            "--web-replicas",
            "3",
            "--bot-workers",
            "2",
            # Each request spends a little while in KashFlow, so a bot can be caught with
            # one in hand.
            "--kashflow-latency-ms",
            "10",
            env=bot_env(concurrency=2, retry_base=0.2, lease_s=LEASE_S),
        )
        demo.start()
        try:
            yield Cluster(demo, url)
        finally:
            assert demo.stop() == 0, demo.log


def test_the_demo_lists_three_web_and_two_bot_processes(cluster: Cluster) -> None:
    web, bots = cluster.processes("web"), cluster.processes("bot")
    assert len(web) == 3 and len(bots) == 2
    assert cluster.info["web"] == web[0]["url"]
    assert len({p["url"] for p in web}) == 3
    pids = [p["pid"] for p in cluster.info["processes"]]
    assert len(set(pids)) == 5 and cluster.demo.proc is not None
    assert cluster.demo.proc.pid not in pids  # each door in a process of its own


# -- mail --------------------------------------------------------------------------------


def request(sender: str, to: str, message_id: str) -> bytes:
    return (
        f"From: Client <{sender}>\r\nTo: {to}\r\nSubject: Invoices\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease send me my invoices.\r\n"
    ).encode()


def send_until_accepted(port: int, sender: str, to: str, message_id: str) -> None:
    """One request, sent again on a refused or broken session (a bot was just killed)."""
    failures = 0
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail(sender, [to], request(sender, to, message_id))
            return
        except (smtplib.SMTPException, OSError):
            failures += 1
            if failures > 20:
                raise


async def send_all(cluster: Cluster, batch: list[tuple[str, str]]) -> None:
    port, to = cluster.info["smtp"]["port"], cluster.info["request_address"]
    gate = asyncio.Semaphore(5)

    async def one(sender: str, message_id: str) -> None:
        async with gate:
            await asyncio.to_thread(send_until_accepted, port, sender, to, message_id)

    await asyncio.gather(*(one(sender, mid) for sender, mid in batch))


def replies(cluster: Cluster) -> list[EmailMessage]:
    out = []
    for path in sorted(Path(cluster.info["outbox"]).glob("*.eml")):
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    return out


async def wait_for_replies(cluster: Cluster, count: int, within: float) -> list[EmailMessage]:
    async def arrived() -> list[EmailMessage] | None:
        found = replies(cluster)
        return found if len(found) >= count else None

    return await eventually(arrived, within=within, every=0.05)


async def held_by(cluster: Cluster, pid: int, within: float = 60.0) -> set[str]:
    """The requests (by Message-ID) that bot process ``pid`` holds a lease on, once it
    holds at least one."""
    store = cluster.store()

    async def leased() -> set[str] | None:
        working = await store.spool.list(["working"], limit=100)
        # A lease names its owner as host:pid:tag.
        return {e.message_id for e in working if f":{pid}:" in e.lease_owner} or None

    try:
        return await eventually(leased, within=within, every=0.01)
    finally:
        store.close()


async def test_fifty_requests_answered_once_with_a_bot_killed_midway(cluster: Cluster) -> None:
    store = cluster.store()
    try:
        # Many requests from a few customers: the accountant raises the per-customer limit.
        await store.accounts.update("demo", per_customer_limit=1000, global_limit=10_000)
    finally:
        store.close()
    senders = [str(c["email"]).split(";")[0].strip() for c in cluster.info["customers"]]
    sent = [(senders[n % len(senders)], make_msgid("r", "client.example")) for n in range(REQUESTS)]
    victim, survivor = (int(p["pid"]) for p in cluster.processes("bot"))

    await send_all(cluster, sent[: REQUESTS // 2])
    in_hand = await held_by(cluster, victim)
    os.kill(victim, signal.SIGKILL)
    await send_all(cluster, sent[REQUESTS // 2 :])

    await wait_for_replies(cluster, REQUESTS, within=180)
    store = cluster.store()
    try:

        async def settled() -> dict[State, int] | None:
            counts = await store.spool.counts()
            return counts if counts["done"] >= REQUESTS else None

        # The last replies' rows settle just after the relay's 250.
        counts = await eventually(settled, within=60)
        leftovers = await store.spool.list(["queued", "working", "retry", "parked"])
    finally:
        store.close()
    answered = replies(cluster)

    by_request = Counter(str(r["In-Reply-To"]) for r in answered)
    assert set(by_request) == {mid for _, mid in sent}  # none lost
    twice = {mid for mid, n in by_request.items() if n > 1}
    # SMTP's one window (see permalink/spool.py): a reply the relay took just before the
    # kill can go out again, with the same Message-ID. Nothing else is ever answered twice.
    assert twice <= in_hand
    for mid in twice:
        assert len({str(r["Message-ID"]) for r in answered if r["In-Reply-To"] == mid}) == 1
    assert counts["done"] == REQUESTS and leftovers == []
    # The killed bot was never restarted: the survivor finished what it held.
    os.kill(survivor, 0)
    senders_by_request = dict((mid, sender) for sender, mid in sent)
    for reply in answered:
        assert reply["To"] == senders_by_request[str(reply["In-Reply-To"])]


# -- revocation --------------------------------------------------------------------------


def on(url: str, link: str) -> str:
    """The same link through another web process."""
    return url + "/l/" + link.rsplit("/l/", 1)[1]


async def status_everywhere(cluster: Cluster, link: str) -> list[tuple[int, bool]]:
    """(status, says "not valid") of one request to the link on each web process."""
    out = []
    async with aiohttp.ClientSession() as http:
        for url in cluster.web_urls:
            async with http.get(on(url, link)) as resp:
                out.append((resp.status, NOT_VALID in await resp.text()))
    return out


def revoke_with_cli(cluster: Cluster, link: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "revoke",
            link,
            "--state-dir",
            str(cluster.state),
            "--database-url",
            cluster.database_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class SettingsClient:
    """The settings pages, one session used across web processes. The cookie jar accepts
    cookies from an IP address, and a cookie is not bound to a port: the processes differ
    only by port, as a browser would see them behind one name."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def csrf(self, url: str) -> str:
        async with self.http.get(url) as resp:
            assert resp.status == 200, url
            match = _CSRF.search(await resp.text())
        assert match is not None, url
        return match.group(1)

    async def sign_in(self, web: str) -> None:
        token = await self.csrf(web + "/settings/login")
        form = {"csrf": token, "username": "demo", "password": "demo-api-pass"}
        async with self.http.post(
            web + "/settings/login", data=form, allow_redirects=False
        ) as resp:
            assert resp.status == 303

    async def revoke(self, web: str, link_id: str) -> int:
        token = await self.csrf(web + "/settings/links")
        async with self.http.post(
            f"{web}/settings/links/{link_id}/revoke", data={"csrf": token}, allow_redirects=False
        ) as resp:
            return resp.status


async def test_a_revocation_is_refused_by_every_web_process_on_its_next_request(
    cluster: Cluster,
) -> None:
    acme, bright = cluster.info["customers"][0], cluster.info["customers"][1]
    by_cli, by_page = acme["links"]["all"], bright["links"]["all"]
    assert await status_everywhere(cluster, by_cli) == [(200, False)] * 3
    assert await status_everywhere(cluster, by_page) == [(200, False)] * 3

    revoked = await asyncio.to_thread(revoke_with_cli, cluster, by_cli)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked link" in revoked.stdout
    assert await status_everywhere(cluster, by_cli) == [(404, True)] * 3

    keyring = Keyring.load(cluster.state / "server.key")
    link_id = open_link(by_page.rsplit("/l/", 1)[1], keyring, now=int(time.time())).link_id
    first, second, _ = cluster.web_urls
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        pages = SettingsClient(http)
        await pages.sign_in(first)  # a session made by one process serves on another
        assert await pages.revoke(second, link_id) == 303
    assert await status_everywhere(cluster, by_page) == [(404, True)] * 3
    # The other customers' links are untouched.
    other = cluster.info["customers"][2]["links"]["all"]
    assert await status_everywhere(cluster, other) == [(200, False)] * 3


# -- throttling --------------------------------------------------------------------------


async def test_invalid_tokens_are_counted_across_web_processes(cluster: Cluster) -> None:
    # A loopback address of its own, so no other test's failures count against it.
    address = "127.0.0.77"
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    urls = cluster.web_urls
    allowance = 20  # WebConfig's invalid_link_limit per minute and address
    async with aiohttp.ClientSession(connector=connector) as http:
        statuses = []
        for n in range(allowance + 1):
            async with http.get(f"{urls[n % 3]}/l/not-a-token-{n}") as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        # No process saw more than 7 of them, yet together they refuse the 21st.
        assert statuses == [404] * allowance + [429]
        assert retry_after is not None and int(retry_after) >= 1
        for url in urls:
            async with http.get(f"{url}/l/still-not-a-token") as resp:
                assert resp.status == 429
        # A link that opens is never refused, even from a throttled address.
        link = cluster.info["customers"][3]["links"]["unpaid"]
        async with http.get(on(urls[2], link)) as resp:
            assert resp.status == 200


async def test_wrong_passwords_on_several_web_processes_lock_sign_in_on_all(
    cluster: Cluster,
) -> None:
    # A loopback address of its own: the lock is per address (and per username from it), so
    # the other tests' sign-ins from 127.0.0.1 are not held up by it.
    address = "127.0.0.78"
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    urls = cluster.web_urls
    allowance = 6  # the sign-in policy's failures before the lock
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:
        pages = SettingsClient(http)

        async def sign_in(web: str, password: str) -> tuple[int, str]:
            token = await pages.csrf(web + "/settings/login")
            form = {"csrf": token, "username": "demo", "password": password}
            async with http.post(web + "/settings/login", data=form) as resp:
                return resp.status, await resp.text()

        # Two wrong passwords on each process: none of them sees more than two.
        for n in range(allowance):
            status, _ = await sign_in(urls[n % 3], "wrong-password")
            assert status == 401
        # Together they lock the next attempt, on every process, even with the right one.
        for url in urls:
            status, page = await sign_in(url, "demo-api-pass")
            assert status == 429, url
            assert "Too many sign-ins with a wrong password" in page
