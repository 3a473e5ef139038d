"""What an operator sees of ``serve`` and ``check``: real processes, real ports.

A busy port stops ``serve`` with one line naming the setting and the port; the start-up
line says SMTP or LMTP and which KashFlow; logs can be JSON lines; ``debug`` adds each
SMTP command (never a message body) and ``warning`` leaves out the INFO lines; ``check`` always
contacts the configured KashFlow endpoint, naming it, and reports a port another program
holds — whether or not any account has switched the bot on.
"""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.capture import CaptureServer
from kashflow.sandbox import Sandbox
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.store import SqlStore
from tests.support.bot import ACME, REQUEST, request_mail
from tests.support.operator import run_cli
from tests.support.processes import ServeProcess, prepare_state
from tests.support.waiting import eventually


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program listens on (without sharing it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        yield other.getsockname()[1]


async def test_a_busy_port_stops_serve_with_one_line_naming_the_setting(
    tmp_path: Path, sandbox: Sandbox, held_port: int
) -> None:
    assert (await run_cli("keys", "create", "--state-dir", str(tmp_path))).returncode == 0
    common = ["--state-dir", str(tmp_path), "--kashflow-endpoint", sandbox.url]
    web = await run_cli("serve", *common, "--role", "web", "--http-port", str(held_port))
    assert web.returncode == 2
    assert web.stderr == (
        f"kashflow-permalink: cannot listen on 127.0.0.1:{held_port} (--http-port / "
        "KASHFLOW_PERMALINK_HTTP_PORT): the port is already in use\n"
    )
    both = await run_cli(
        "serve",
        *common,
        "--http-port",
        "0",
        "--smtp-port",
        str(held_port),
        "--log-level",
        "warning",
    )
    assert both.returncode == 2
    assert both.stderr == (
        f"kashflow-permalink: cannot listen on 127.0.0.1:{held_port} (--smtp-port / "
        "KASHFLOW_PERMALINK_SMTP_PORT): the port is already in use\n"
    )


async def test_start_up_line_json_logs_and_lmtp(tmp_path: Path, sandbox: Sandbox) -> None:
    state = tmp_path / "state"
    async with CaptureServer(tmp_path / "outbox") as capture:
        await prepare_state(state, capture.port)
        bot = ServeProcess(
            state,
            sandbox.url,
            role="bot",
            log=tmp_path / "bot.log",
            env={"KASHFLOW_PERMALINK_LMTP": "true", "KASHFLOW_PERMALINK_LOG_FORMAT": "json"},
        )
        await bot.start()
        try:
            line = await bot.wait_for_log("serving ")
            assert f"mail by LMTP on 127.0.0.1:{bot.port}" in line
            assert f"KashFlow at {sandbox.url} (not the real KashFlow)" in line

            def deliver() -> None:
                with smtplib.LMTP("127.0.0.1", bot.port, timeout=10) as client:
                    client.sendmail(ACME, [REQUEST], request_mail())

            await asyncio.to_thread(deliver)
            await capture.wait_for(1, timeout=30)
            await bot.wait_for_log("spool #1")
        finally:
            assert await bot.terminate() == 0
    lines = [json.loads(text) for text in bot.log.read_text().splitlines()]
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    outcome = [line for line in lines if line["message"].startswith("spool #1 ")]
    assert len(outcome) == 1 and outcome[0]["level"] == "info"
    assert ": done (replied: " in outcome[0]["message"]
    assert (
        lines[-1]["message"]
        == "stopped (SIGTERM): no longer serving https://invoices.northwind.example"
    )
    assert not [line for line in lines if line["logger"] == "mail.log"]


async def answer_one_request(
    tmp_path: Path, sandbox: Sandbox, name: str, level: str
) -> tuple[list[dict[str, str]], str]:
    """A bot at log level ``level`` answers one request and stops: its log lines, and the
    link its reply carried."""
    state = tmp_path / name
    async with CaptureServer(tmp_path / f"outbox-{name}") as capture:
        await prepare_state(state, capture.port)
        bot = ServeProcess(
            state,
            sandbox.url,
            role="bot",
            log=tmp_path / f"{name}.log",
            env={"KASHFLOW_PERMALINK_LOG_LEVEL": level, "KASHFLOW_PERMALINK_LOG_FORMAT": "json"},
        )
        await bot.start()
        db = open_database(None, state)
        try:
            await bot.send_mail(request_mail(), ACME, REQUEST)
            [reply] = await capture.wait_for(1, timeout=30)
            spool = SqlStore(db, Keyring.load(state / "server.key")).spool

            async def answered() -> bool | None:
                return True if await spool.list(["done"]) else None

            # Settled (its outcome line written, if the level lets it through), then stopped.
            await eventually(answered, within=30)
        finally:
            db.close()
            assert await bot.terminate() == 0
    body = reply.parsed().get_body(preferencelist=("plain",))
    assert body is not None
    link = re.search(r"https://\S+/l/\S+", str(body.get_content()))
    assert link is not None
    return [json.loads(text) for text in bot.log.read_text().splitlines()], link.group(0)


async def test_the_log_level_adds_the_smtp_commands_or_leaves_only_warnings(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    lines, link = await answer_one_request(tmp_path, sandbox, "debug", "debug")
    smtp = [line for line in lines if line["logger"] == "mail.log"]
    assert smtp and {line["level"] for line in smtp} == {"debug"}
    assert any("mail from:<" in line["message"].lower() for line in smtp)
    assert any(line["message"].startswith("serving ") for line in lines)
    assert any(line["message"].startswith("spool #1 ") for line in lines)
    # Never the message body, nor the link sent back.
    text = json.dumps(lines)
    assert "please send me my invoices" not in text and link not in text

    lines, _ = await answer_one_request(tmp_path, sandbox, "quiet", "warning")
    assert not [line for line in lines if line["level"] in ("debug", "info")], lines
    assert not [line for line in lines if line["message"].startswith(("serving ", "spool #"))]


async def test_check_always_checks_the_kashflow_endpoint_and_names_it(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    assert (await run_cli("keys", "create", "--state-dir", str(tmp_path))).returncode == 0
    ports = ["--http-port", "0", "--smtp-port", "0"]
    good = await run_cli(
        "check", "--state-dir", str(tmp_path), "--kashflow-endpoint", sandbox.url, *ports
    )
    assert good.returncode == 0, good.stdout
    assert f"ok      KashFlow at {sandbox.url} (not the real KashFlow): answers SOAP" in good.stdout
    assert "no account has it switched on" in good.stdout  # and still KashFlow was asked
    assert "GetCompanyDetails" in [call.operation for call in sandbox.calls]

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/api/service.asmx"
    down = await run_cli("check", "--state-dir", str(tmp_path), "--kashflow-endpoint", dead, *ports)
    assert down.returncode == 1
    assert f"FAILED  KashFlow at {dead} (not the real KashFlow): KashFlow is not answering" in (
        down.stdout
    )
    assert down.stdout.rstrip().endswith("1 of 5 checks FAILED")


async def test_check_reports_a_port_another_program_holds(
    tmp_path: Path, sandbox: Sandbox, held_port: int
) -> None:
    assert (await run_cli("keys", "create", "--state-dir", str(tmp_path))).returncode == 0
    result = await run_cli(
        "check",
        "--state-dir",
        str(tmp_path),
        "--kashflow-endpoint",
        sandbox.url,
        "--role",
        "web",
        "--http-port",
        str(held_port),
    )
    assert result.returncode == 1
    assert (
        f"FAILED  127.0.0.1:{held_port} (--http-port / KASHFLOW_PERMALINK_HTTP_PORT): "
        "in use by another program" in result.stdout
    )
    assert "--smtp-port" not in result.stdout  # a web process has no mail port to check


async def test_serve_fetches_pdfs_only_from_the_hosts_its_setting_lists(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    import aiohttp

    from kashflow.sandbox.faults import PDF_FETCH

    state = tmp_path / "state"
    assert (await run_cli("keys", "create", "--state-dir", str(state))).returncode == 0
    credentials = {"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "demo-api-pass"}
    made = await run_cli(
        "link",
        "--customer",
        "ACME01",
        "--state-dir",
        str(state),
        "--kashflow-endpoint",
        sandbox.url,
        env=credentials,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().rsplit("/l/", 1)[1]
    number = sandbox.invoices("demo", "ACME01")[0].number

    async def invoice_pdf(hosts: str, log: str) -> tuple[int, str, str]:
        """The invoice's PDF route on a web process whose PDF host list is ``hosts``: the
        status, its content type, and the page's text (or "%PDF-")."""
        web = ServeProcess(
            state,
            sandbox.url,
            role="web",
            log=tmp_path / log,
            env={"KASHFLOW_PERMALINK_PDF_HOSTS": hosts},
        )
        await web.start()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{web.url}/l/{token}") as page:
                    assert page.status == 200  # KashFlow answers either way
                async with http.get(f"{web.url}/l/{token}/invoice/{number}.pdf") as pdf:
                    body = await pdf.read()
                    text = "%PDF-" if body.startswith(b"%PDF-") else body.decode()
                    return pdf.status, pdf.content_type, text
        finally:
            await web.kill()

    # The sandbox's print URLs are on 127.0.0.1: listed, the PDF comes through.
    assert await invoice_pdf(sandbox.pdf_hosts, "allowed.log") == (200, "application/pdf", "%PDF-")
    fetched = [call.operation for call in sandbox.calls].count(PDF_FETCH)
    printed = [call.operation for call in sandbox.calls].count("PrintInvoice")
    assert fetched == 1

    # Only the real KashFlow's host listed: the document error page, and no PDF fetched.
    status, content_type, text = await invoice_pdf("securedwebapp.com", "refused.log")
    assert (status, content_type) == (502, "text/html")
    assert "The invoice document could not be read" in text
    refused = (tmp_path / "refused.log").read_text()
    assert "KashFlow PDF not fetched: PrintInvoice URL refused: host 127.0.0.1 is not on" in refused
    # KashFlow was asked to print; the URL it gave was never opened.
    assert [call.operation for call in sandbox.calls].count("PrintInvoice") > printed
    assert [call.operation for call in sandbox.calls].count(PDF_FETCH) == fetched
