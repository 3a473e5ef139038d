"""Hostile MIME cannot freeze the service: pages keep answering while it is dealt with.

A real ``serve --role all`` process (web door, listener and worker on one event loop)
against the sandbox KashFlow in its own process. While a 100 000-part message is sent over
SMTP (and refused as soon as it passes 1 000 parts, its sender cut off), while another
sits in the spool (as an older release accepted it) and while a 900-part one is read and
answered, ``/healthz`` and a permalink page are fetched over and over, and each must be
answered *during* each of those: a request sent after the work began comes back before it
ended. Events are ordered, not timed (how long the answers take is
``benchmarks/mime_bomb.py``'s to print). Before the fix the parse ran on that loop and
held it for tens of seconds (49 s of CPU for 100 000 parts), so no page could be answered
while the message was dealt with.

Over a raw socket, a sender that has sent just past the limit, and waits, is answered
``552`` and disconnected at once: nothing more of the message is read.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.capture import CaptureServer
from bot.reading import MAX_MULTIPARTS, MailReader, PartCounter, TooCostly, too_complex
from kashflow.client import KashFlow
from kashflow.sandbox import DEMO
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.links import new_link, seal
from permalink.scopes import Scope
from permalink.store import SqlStore
from tests.support.bot import ACME
from tests.support.listener import REQUEST as LISTENER_REQUEST
from tests.support.listener import OpenRaw, StartBot
from tests.support.mime import many_headers, many_parts
from tests.support.processes import REQUEST, ServeProcess, prepare_state, sandbox_process

pytestmark = pytest.mark.slow

BOMB_PARTS = 100_000


class Timeline:
    """What happened, in the order it happened: page requests, their answers and the
    test's own events, each numbered as it is noted."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def note(self, kind: str, what: str) -> int:
        self.events.append((kind, what))
        return len(self.events) - 1

    def answered_between(self, name: str, began: int, ended: int) -> int:
        """How many requests for ``name`` were sent after ``began`` and answered before
        ``ended``: answered while the work between those two events went on."""
        window = list(enumerate(self.events[began:ended], began))
        sent = {i for i, (kind, what) in window if kind == "sent" and what == name}
        return sum(
            kind == "answered" and int(what.rsplit("#", 1)[1]) in sent for _, (kind, what) in window
        )


async def watch(url: str, name: str, stop: asyncio.Event, timeline: Timeline) -> None:
    """Fetch ``url + name`` over and over until ``stop``, noting each request and answer."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for _ in range(1_000_000):  # bounded; ends on ``stop`` long before
            if stop.is_set():
                return
            request = timeline.note("sent", name)
            async with session.get(url + name) as response:
                await response.read()
                assert response.status == 200, name
            timeline.note("answered", f"{name}#{request}")
            await asyncio.sleep(0.01)


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the state lives in another process
            await asyncio.sleep(0.1)


async def test_pages_keep_answering_while_mime_bombs_are_handled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with sandbox_process(0) as kashflow_url:
        async with CaptureServer(tmp_path / "outbox") as capture:
            await prepare_state(state, capture.port)
            keyring = Keyring.load(state / "server.key")
            async with KashFlow(kashflow_url) as kashflow:
                customer = await kashflow.account(DEMO).customer_by_code("ACME01")
            link = new_link(DEMO, customer.id, "ACME01", Scope("all"), now=int(time.time()))
            token = seal(link, keyring)
            serve = ServeProcess(
                state,
                kashflow_url,
                role="all",
                log=tmp_path / "serve.log",
                env={"KASHFLOW_PERMALINK_SMTP_PORT": "0"},
            )
            await serve.start()
            db = open_database(None, state)
            spool = SqlStore(db, keyring).spool
            stop = asyncio.Event()
            timeline = Timeline()
            pages = ("/healthz", f"/l/{token}")
            async with aiohttp.ClientSession() as warm_up:  # the first page loads the WSDL
                for name in pages:
                    async with warm_up.get(serve.url + name) as response:
                        assert response.status == 200
            smtp_port = int(serve.ready["smtp_port"])
            bomb = many_parts(BOMB_PARTS, sender=ACME, to=REQUEST, message_id="<bomb@x>")

            loop = asyncio.get_running_loop()
            receiving: list[int] = []

            def send(raw: bytes) -> None:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as client:
                    client.ehlo()
                    client.mail(ACME)
                    client.rcpt(REQUEST)
                    assert client.docmd("DATA")[0] == 354
                    # From here on the server is receiving the message.
                    loop.call_soon_threadsafe(
                        lambda: receiving.append(timeline.note("test", "DATA begun"))
                    )
                    client.send(raw + b".\r\n")
                    code, text = client.getreply()
                    if code != 250:
                        raise smtplib.SMTPDataError(code, text)

            watchers = [
                asyncio.create_task(watch(serve.url, name, stop, timeline)) for name in pages
            ]

            try:
                # 1. Over SMTP: refused while it arrives, as soon as it passes 1 000 parts,
                # and the sender cut off (the 552 reaches smtplib unless the rest of its
                # 3.6 MB was still being written when the connection closed).
                with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)) as cut:
                    await asyncio.to_thread(send, bomb)
                cut_off = timeline.note("test", "bomb refused")
                if isinstance(cut.value, smtplib.SMTPDataError):
                    assert cut.value.smtp_code == 552
                    assert b"too many MIME parts" in cut.value.smtp_error
                refused = "while receiving it: too many MIME parts (over 1000)"

                async def logged() -> bool:
                    return refused in (tmp_path / "serve.log").read_text()

                await until(logged, within=30)
                [began] = receiving
                # The loop answered while the message arrived and was counted (a loop held
                # for the whole receipt would answer no request sent after DATA began).
                assert timeline.answered_between("/healthz", began, cut_off) >= 1

                # 2. Already in the spool (accepted by an older release): parked unread.
                spooling = timeline.note("test", "old bomb spooled")
                spooled = await spool.enqueue(
                    peer="127.0.0.1:1",
                    mail_from=ACME,
                    rcpt_tos=[REQUEST],
                    raw=bomb.replace(b"<bomb@x>", b"<old-bomb@x>"),
                    message_id="<old-bomb@x>",
                    account="demo",
                )

                # 3. Under the limits but dear to parse: read in the worker and answered.
                fair = many_parts(900, sender=ACME, to=REQUEST, message_id="<900@x>")
                reading = timeline.note("test", "900 parts sent")
                await asyncio.to_thread(send, fair)
                [reply] = await capture.wait_for(1, timeout=60)
                replied = timeline.note("test", "900 parts answered")
                assert reply.rcpt_tos == (ACME,)
                for name in pages:
                    assert timeline.answered_between(name, reading, replied) >= 1, name

                async def parked() -> bool:
                    entry = await spool.get(spooled)
                    return entry is not None and entry.state == "parked"

                await until(parked, within=60)
                parked_at = timeline.note("test", "old bomb parked")
                for name in pages:
                    assert timeline.answered_between(name, spooling, parked_at) >= 1, name
                entry = await spool.get(spooled)
                assert entry is not None
                assert entry.reason == "message not read: too many MIME parts (over 1000)"
            finally:
                stop.set()
                await asyncio.gather(*watchers)
                db.close()
                await serve.terminate()


async def test_a_message_over_its_cpu_budget_is_given_up_and_the_next_is_read() -> None:
    raw = many_headers(500_000, sender=ACME)  # about 3 s of parsing, 6.7 MB
    assert too_complex(raw) == ""  # nothing to count: only the budget can stop it
    reader = MailReader(cpu_s=1.0)
    try:
        with pytest.raises(TooCostly, match="over 1 s of CPU"):
            await reader.read(raw, ACME)
        request = await reader.read(b"From: " + ACME.encode() + b"\r\n\r\nAll please.\r\n", None)
        assert request.from_address == ACME
    finally:
        await reader.close()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"--b\r\n" * 1001, "too many MIME parts (over 1000)"),
        (b"Content-Type: multipart/mixed; boundary=x\r\n" * 51, "nested too deeply"),
    ],
)
def test_too_complex_names_what_is_wrong(raw: bytes, reason: str) -> None:
    assert reason in too_complex(raw)


def bomb_prefix(parts: int) -> bytes:
    """The start of a 100 000-part message, just past ``parts`` parts, with no end."""
    return many_parts(parts, sender=ACME, to=LISTENER_REQUEST, message_id="<b@x>")[:-7]


NESTED = (
    b"From: " + ACME.encode() + b"\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    + b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(MAX_MULTIPARTS + 5)
    )
)


@pytest.mark.parametrize("lmtp", [False, True], ids=["SMTP", "LMTP"])
@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (bomb_prefix(1_200), "too many MIME parts (over 1000)"),
        (NESTED, f"MIME parts nested too deeply (over {MAX_MULTIPARTS} multiparts)"),
    ],
    ids=["parts", "nesting"],
)
async def test_a_sender_is_cut_off_as_soon_as_a_limit_is_passed(
    start_bot: StartBot, open_raw: OpenRaw, start: bytes, reason: str, lmtp: bool
) -> None:
    """The sender has sent only the start of the message and waits: the answer comes at
    once (before, the listener waited for the end of a message it would refuse)."""
    bot = await start_bot(lmtp=lmtp)
    client = await open_raw(bot.port)
    assert (await client.send(b"LHLO c.example\r\n" if lmtp else b"EHLO c.example\r\n"))[0] == 250
    assert (await client.send(b"MAIL FROM:<" + ACME.encode() + b">\r\n"))[0] == 250
    assert (await client.send(f"RCPT TO:<{LISTENER_REQUEST}>\r\n".encode()))[0] == 250
    assert (await client.send(b"DATA\r\n"))[0] == 354
    code, text = await client.send(start)  # no end of data: the sender would go on
    assert (code, text) == (552, f"5.3.4 Message refused: {reason}")
    async with asyncio.timeout(30):
        assert await client.reader.read() == b""  # and the server hung up
    assert (await bot.spool.counts())["queued"] == 0
    assert not bot.woken.is_set()
    # The next sender is served as usual.
    fair = await open_raw(bot.port)
    assert (await fair.send(b"LHLO c.example\r\n" if lmtp else b"EHLO c.example\r\n"))[0] == 250
    assert (await fair.send(b"MAIL FROM:<" + ACME.encode() + b">\r\n"))[0] == 250
    assert (await fair.send(f"RCPT TO:<{LISTENER_REQUEST}>\r\n".encode()))[0] == 250
    assert (await fair.send(b"DATA\r\n"))[0] == 354
    assert (
        await fair.send(
            many_parts(3, sender=ACME, to=LISTENER_REQUEST, message_id="<f@x>") + b".\r\n"
        )
    )[0] == 250


@settings(max_examples=40, deadline=None)
@given(
    parts=st.sampled_from([0, 999, 1000, 1001, 1200]),
    multiparts=st.sampled_from([0, MAX_MULTIPARTS, MAX_MULTIPARTS + 1]),
    cuts=st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=60),
)
def test_counting_as_it_arrives_refuses_exactly_what_the_whole_count_refuses(
    parts: int, multiparts: int, cuts: list[int]
) -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n" * multiparts + many_parts(
        parts, sender=ACME, to=REQUEST, message_id="<m@x>"
    )
    counter, at, verdicts = PartCounter(), 0, []
    for size in cuts * (len(raw) // sum(cuts) + 1):
        if at >= len(raw):
            break
        verdicts.append(counter.feed(raw[at : at + size]))
        at += size
    assert counter.verdict() == too_complex(raw)
    # Once refused, refused for good: the listener may stop at the first "no".
    refusing = [bool(v) for v in verdicts]
    assert refusing == sorted(refusing)
