"""``kashflow-permalink demo`` as a user runs it: a real process, real ports, real mail."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import smtplib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp


class Demo:
    """A running demo process: its demo.json and its output, read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info
        self.output: list[str] = []  # every line read so far

    async def wait_for_output(self, text: str, within: float = 30.0) -> str:
        """The first output line containing ``text``, waiting at most ``within`` seconds."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, "the demo exited"
                self.output.append(line)
                if text in line:
                    return line


@asynccontextmanager
async def demo(state: Path, *ports: str) -> AsyncIterator[Demo]:
    """Start the demo, wait (bounded) until it is ready, stop it with SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "demo",
        "--state-dir",
        str(state),
        *ports,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        running = Demo(proc, {})
        # The welcome is printed once everything listens and demo.json is written.
        await running.wait_for_output("Links for the seeded customers", within=60)
        running.info = json.loads((state / "demo.json").read_text())
        yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.communicate()
    assert proc.returncode == 0


def send_request(info: dict[str, Any], sender: str, text: str) -> None:
    with smtplib.SMTP(info["smtp"]["host"], info["smtp"]["port"], timeout=10) as smtp:
        smtp.sendmail(
            sender,
            [info["request_address"]],
            (
                f"From: {sender}\r\nTo: {info['request_address']}\r\n"
                f"Subject: invoices please\r\nMessage-ID: <demo-test@client.example>\r\n\r\n"
                f"{text}\r\n"
            ).encode(),
        )


async def test_demo_serves_links_settings_and_answers_mail(tmp_path: Path) -> None:
    async with demo(tmp_path, "--http-port", "0", "--smtp-port", "0") as running:
        info = running.info
        assert set(info) >= {"web", "smtp", "request_address", "outbox", "kashflow", "customers"}
        assert Path(info["outbox"]).is_absolute()
        async with aiohttp.ClientSession() as http:
            async with http.get(info["web"] + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(info["web"] + "/settings/login") as resp:
                assert resp.status == 200 and "KashFlow" in await resp.text()
            pages = {}
            for customer in info["customers"]:
                async with http.get(customer["links"]["unpaid"]) as resp:
                    page = await resp.text()
                    assert resp.status == 200 and customer["name"] in page.replace("&amp;", "&")
                    pages[customer["code"]] = page
            # The demo business says how to pay, shows its logo, and CORV01 reads German.
            for text in (
                "How to pay",
                "20-00-00",
                "GB29 NWBK 6016 1331 9268 19",
                '<img class="logo"',
            ):
                assert text in pages["ACME01"], text
            assert '<html lang="de">' in pages["CORV01"] and "So zahlen Sie" in pages["CORV01"]

        acme = next(c for c in info["customers"] if c["code"] == "ACME01")
        await asyncio.to_thread(send_request, info, acme["email"], "My unpaid invoices, please.")
        await running.wait_for_output("done (replied: ")
        (reply_file,) = Path(info["outbox"]).glob("*.eml")  # noqa: ASYNC240
        reply = message_from_bytes(reply_file.read_bytes(), policy=policy.default)
        assert reply["To"] == acme["email"]
        assert reply["In-Reply-To"] == "<demo-test@client.example>"
        assert [a.get_content_type() for a in reply.iter_attachments()] == ["application/pdf"]


async def test_demo_resumes_on_the_same_state_dir(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int]
) -> None:
    ports = (
        "--http-port",
        str(unused_tcp_port_factory()),
        "--smtp-port",
        str(unused_tcp_port_factory()),
    )
    async with demo(tmp_path, *ports) as first:
        key = (tmp_path / "server.key").read_bytes()
    async with demo(tmp_path, *ports) as second:
        assert (tmp_path / "server.key").read_bytes() == key
        # The same links, and they still open.
        assert second.info["customers"] == first.info["customers"]
        link = second.info["customers"][0]["links"]["all"]
        async with aiohttp.ClientSession() as http, http.get(link) as resp:
            assert resp.status == 200


def printed_command(line: str) -> list[str]:
    """The ``python3 -c "…"`` line the welcome prints, as this interpreter would run it."""
    words = shlex.split(line.strip())
    assert words[:2] == ["python3", "-c"], line
    return [sys.executable, *words[1:]]


async def test_demo_with_imap_answers_the_mailbox_and_prints_the_feeds(tmp_path: Path) -> None:
    async with demo(tmp_path, "--http-port", "0", "--smtp-port", "0", "--imap") as running:
        info = running.info
        feeds = info["feeds"]
        acme = next(c for c in info["customers"] if c["code"] == feeds["customer"])
        assert feeds["json"] == acme["links"]["all"] + ".json"
        assert feeds["webcal"] == "webcal://" + feeds["calendar"].split("://", 1)[1]
        # The welcome prints the three feed addresses a user copies.
        await running.wait_for_output(feeds["json"])
        printed = "".join(running.output)
        assert f"  calendar:       {feeds['calendar']}\n" in printed
        assert f"  subscribe:      {feeds['webcal']}\n" in printed
        assert f"  JSON:           {feeds['json']}\n" in printed
        async with aiohttp.ClientSession() as http:
            async with http.get(feeds["json"]) as resp:
                assert resp.status == 200
                assert (await resp.json())["customer"]["code"] == acme["code"]
            async with http.get(feeds["calendar"]) as resp:
                assert resp.status == 200
                assert (await resp.text()).startswith("BEGIN:VCALENDAR")

        # The welcome's own one-liner drops a request in the mailbox; the bot answers it.
        await running.wait_for_output("drop a request in it:")
        command = printed_command(await running.wait_for_output("import imaplib"))
        dropped = await asyncio.create_subprocess_exec(*command)
        async with asyncio.timeout(60):
            assert await dropped.wait() == 0
        await running.wait_for_output("done (replied: ")
        (reply_file,) = Path(info["outbox"]).glob("*.eml")  # noqa: ASYNC240
        reply = message_from_bytes(reply_file.read_bytes(), policy=policy.default)
        assert reply["To"] == acme["email"]
        assert reply["Subject"] == "Re: my invoices"
    # The mailbox went with the demo: its directory is gone.
    assert not Path(info["imap"]["ca_file"]).exists()  # noqa: ASYNC240
