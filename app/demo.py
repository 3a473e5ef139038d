"""``kashflow-permalink demo``: everything on loopback with the sandbox KashFlow.

The sandbox stands in for KashFlow, a capture server for the outbound relay (each reply
lands as an ``.eml`` file in the outbox), and the demo account's bot is configured to
answer at ``invoices@northwind.example``. With ``--imap`` a Dovecot on loopback
(:mod:`app.dovecot`) holds the request address's mailbox, and the bot reads it too. The
demo business has payment instructions and a logo, and its German client (Corvid
Analytics GmbH) is written to in German. Restarted on the same state directory it
resumes: the same key, settings, spooled mail and links (the IMAP mailbox itself starts
empty each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.dovecot import HOST as IMAP_HOST
from app.dovecot import Dovecot
from app.runtime import (
    PortUnavailable,
    Runtime,
    bind,
    build_core,
    close_core,
    load_or_create_keyring,
    stop_signal,
)
from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, Sandbox
from permalink.business import clean_logo
from permalink.core import Core
from permalink.keyring import Keyring
from permalink.links import InvalidLink, open_link
from permalink.scopes import Scope

log = logging.getLogger(__name__)

REQUEST_ADDRESS = "invoices@northwind.example"
#: The demo mailbox's user and password (a throwaway server on loopback).
IMAP_USER = "invoices"
IMAP_PASSWORD = "demo-imap-pass"  # noqa: S105 - the demo's own loopback mailbox
MAIL_DOMAIN = "northwind.example"
HOST = "127.0.0.1"
#: How long a child process may take to say it is ready.
START_TIMEOUT_S = 60.0


def prepare(state_dir: str) -> tuple[Path, Keyring]:
    """The state directory and its key (made on the first run), before the loop starts."""
    state = Path(state_dir).resolve()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state, load_or_create_keyring(state / "server.key")


@dataclass(frozen=True, slots=True)
class Shape:
    """How many processes the demo runs, and on which database."""

    database_url: str | None = None
    web_replicas: int = 1
    bot_workers: int = 1
    #: Also read requests from an IMAP mailbox (a Dovecot on loopback).
    imap: bool = False

    @property
    def one_process(self) -> bool:
        return self.web_replicas == 1 and self.bot_workers == 1


async def run_demo(
    state: Path,
    keyring: Keyring,
    *,
    http_port: int,
    smtp_port: int,
    latency_ms: float,
    shape: Shape = Shape(),
    trusted_proxies: str = "",
    child_env: dict[str, str] | None = None,
) -> int:
    """Run the demo until SIGINT or SIGTERM; ``child_env`` is added to the environment of
    the ``serve`` processes it starts (several replicas)."""
    sandbox = Sandbox(latency_ms=latency_ms)
    await sandbox.start(HOST, 0)
    capture = CaptureServer(state / "outbox", host=HOST)
    await capture.start()
    processes = Processes(trusted_proxies, child_env or {})
    mailbox = Dovecot(users={IMAP_USER: IMAP_PASSWORD}) if shape.imap else None
    try:
        if mailbox is not None:
            await asyncio.to_thread(mailbox.start)
        async with stop_signal() as stopped:
            if shape.one_process:
                await _one_process(
                    processes, state, keyring, sandbox, capture, http_port, smtp_port, shape,
                    mailbox,
                )  # fmt: skip
            else:
                await _many_processes(
                    processes, state, keyring, sandbox, capture, http_port, smtp_port, shape,
                    mailbox,
                )  # fmt: skip
            await stopped.wait()
    finally:
        await processes.stop()
        if mailbox is not None:
            await asyncio.to_thread(mailbox.stop)
        await capture.close()
        await sandbox.stop()
    return 0


def _settings(
    processes: Processes,
    state: Path,
    sandbox: Sandbox,
    capture: CaptureServer,
    web_url: str,
    smtp_port: int,
    shape: Shape,
    mailbox: Dovecot | None,
) -> Settings:
    return Settings(
        state_dir=state,
        public_base_url=web_url,
        http_host=HOST,
        smtp_host=HOST,
        smtp_port=smtp_port,
        kashflow_endpoint=sandbox.url,
        pdf_hosts=sandbox.pdf_hosts,
        mail_domain=MAIL_DOMAIN,
        database_url=shape.database_url,
        trusted_proxies=processes.trusted_proxies,
        # The capture relay is on loopback: allowed by the operator, as any internal one.
        allow_relay=f"{capture.host}:{capture.port}",
        # The demo mailbox's certificate is its own: trust it, and only for IMAP.
        imap_ca_file=None if mailbox is None else mailbox.certificate,
        imap_idle_seconds=60.0,
    )


class Processes:
    """What the demo started besides the sandbox and the capture: stopped in reverse."""

    def __init__(self, trusted_proxies: str = "", child_env: dict[str, str] | None = None) -> None:
        self.trusted_proxies = trusted_proxies
        #: Added to the environment of every ``serve`` process started (its log settings).
        self.child_env = dict(child_env or {})
        self.runtimes: list[Runtime] = []
        self.children: list[asyncio.subprocess.Process] = []

    async def stop(self) -> None:
        for runtime in self.runtimes:
            await runtime.stop()
        self.runtimes.clear()
        for proc in self.children:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.children:
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.children.clear()


async def _one_process(
    processes: Processes,
    state: Path,
    keyring: Keyring,
    sandbox: Sandbox,
    capture: CaptureServer,
    http_port: int,
    smtp_port: int,
    shape: Shape,
    mailbox: Dovecot | None,
) -> None:
    try:
        http_socket = bind(HOST, http_port)
    except OSError as error:
        raise PortUnavailable("http_port", HOST, http_port, error) from None
    web_url = f"http://{HOST}:{http_socket.getsockname()[1]}"
    settings = _settings(processes, state, sandbox, capture, web_url, smtp_port, shape, mailbox)
    # The account is configured before the bot starts, so its IMAP door reads at once.
    setup = build_core(settings, keyring)
    try:
        await _configure_bot(setup, capture)
        await _configure_mailbox(setup, mailbox)
    finally:
        await close_core(setup)
    runtime = Runtime(settings, keyring, http_socket=http_socket)
    processes.runtimes.append(runtime)
    await runtime.start()
    assert runtime.core is not None
    listed = [
        {"role": "web", "pid": os.getpid(), "url": web_url},
        {"role": "bot", "pid": os.getpid()},
    ]
    await _announce(
        runtime.core, state, sandbox, capture, web_url, runtime.smtp_port, listed, mailbox
    )


def _free_port() -> int:
    sock = bind(HOST, 0)
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def _many_processes(
    processes: Processes,
    state: Path,
    keyring: Keyring,
    sandbox: Sandbox,
    capture: CaptureServer,
    http_port: int,
    smtp_port: int,
    shape: Shape,
    mailbox: Dovecot | None,
) -> None:
    """N web and M bot processes (``serve --role …``) on one database; the demo itself
    only configures the account and mints the customers' links."""
    web_ports = [http_port or _free_port()] + [_free_port() for _ in range(shape.web_replicas - 1)]
    web_url = f"http://{HOST}:{web_ports[0]}"
    smtp_port = smtp_port or _free_port()
    settings = _settings(processes, state, sandbox, capture, web_url, smtp_port, shape, mailbox)
    # Migrated and configured before any child starts, so every child finds it ready.
    core = build_core(settings, keyring)
    try:
        await _configure_bot(core, capture)
        await _configure_mailbox(core, mailbox)
        listed: list[dict[str, Any]] = []
        for port in web_ports:
            listed.append(await _start_child(processes, settings, "web", port, state))
        for _ in range(shape.bot_workers):
            listed.append(await _start_child(processes, settings, "bot", 0, state))
        await _announce(core, state, sandbox, capture, web_url, smtp_port, listed, mailbox)
    finally:
        await close_core(core)


async def _start_child(
    processes: Processes, settings: Settings, role: str, http_port: int, state: Path
) -> dict[str, Any]:
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KASHFLOW_PERMALINK_STATE_DIR": str(settings.state_dir),
        "KASHFLOW_PERMALINK_PUBLIC_BASE_URL": settings.public_base_url,
        "KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT": settings.kashflow_endpoint,
        "KASHFLOW_PERMALINK_PDF_HOSTS": settings.pdf_hosts,
        "KASHFLOW_PERMALINK_MAIL_DOMAIN": settings.mail_domain,
        "KASHFLOW_PERMALINK_HTTP_HOST": HOST,
        "KASHFLOW_PERMALINK_HTTP_PORT": str(http_port),
        "KASHFLOW_PERMALINK_SMTP_HOST": HOST,
        "KASHFLOW_PERMALINK_SMTP_PORT": str(settings.smtp_port),
        "KASHFLOW_PERMALINK_TRUSTED_PROXIES": settings.trusted_proxies,
        "KASHFLOW_PERMALINK_ALLOW_RELAY": settings.allow_relay,
        **processes.child_env,
    }
    if settings.database_url:
        env["KASHFLOW_PERMALINK_DATABASE_URL"] = settings.database_url
    if settings.imap_ca_file is not None:
        env["KASHFLOW_PERMALINK_IMAP_CA_FILE"] = str(settings.imap_ca_file)
        env["KASHFLOW_PERMALINK_IMAP_IDLE_SECONDS"] = str(settings.imap_idle_seconds)
    log_path = logs / f"{role}-{len(processes.children)}.log"
    log_file = log_path.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--role",
        role,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        env=env,
    )
    log_file.close()
    processes.children.append(proc)
    assert proc.stdout is not None
    async with asyncio.timeout(START_TIMEOUT_S):
        line = await proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {role} process exited before it was ready (see {logs})")
    ready = json.loads(line)
    entry: dict[str, Any] = {"role": role, "pid": proc.pid}
    if role == "web":
        entry["url"] = ready["url"]
    return entry


async def _announce(
    core: Core,
    state: Path,
    sandbox: Sandbox,
    capture: CaptureServer,
    web_url: str,
    smtp_port: int,
    processes: list[dict[str, Any]],
    mailbox: Dovecot | None,
) -> None:
    await _configure_bot(core, capture)
    await _configure_business(core)
    customers = await _customer_links(core, state / "demo.json", web_url)
    first = customers[0]["links"]["all"]
    info: dict[str, Any] = {
        "web": web_url,
        "smtp": {"host": HOST, "port": smtp_port},
        "request_address": REQUEST_ADDRESS,
        "outbox": str(capture.outbox),
        "kashflow": {
            "url": sandbox.url,
            "username": DEMO.username,
            "password": DEMO.password,
        },
        "processes": processes,
        "customers": customers,
        "feeds": {
            "customer": customers[0]["code"],
            "calendar": f"{first}/due.ics",
            "webcal": "webcal://" + f"{first}/due.ics".split("://", 1)[1],
            "json": f"{first}.json",
        },
    }
    if mailbox is not None:
        info["imap"] = {
            "host": IMAP_HOST,
            "port": mailbox.ssl_port,
            "security": "ssl",
            "username": IMAP_USER,
            "password": IMAP_PASSWORD,
            "folder": "INBOX",
            "ca_file": str(mailbox.certificate),
        }
    _write_json(state / "demo.json", info)
    _print_welcome(info, state / "demo.json")


async def _configure_bot(core: Core, capture: CaptureServer) -> None:
    accounts = core.store.accounts
    # The demo's operator vouches for its own mail domain, as `accounts allow-domain` does.
    await core.store.domains.mark_proved(DEMO.username, MAIL_DOMAIN, "operator")
    await accounts.set_bot_credentials(DEMO.username, DEMO)
    await accounts.update(
        DEMO.username,
        request_address=REQUEST_ADDRESS,
        reply_from=REQUEST_ADDRESS,
        relay_host=capture.host,
        relay_port=capture.port,
        relay_security="none",
        enabled=True,
    )


async def _configure_mailbox(core: Core, mailbox: Dovecot | None) -> None:
    """Point the demo account's mailbox at the demo's Dovecot (or at nothing)."""
    mailboxes = core.store.mailboxes
    if mailbox is None:
        await mailboxes.update(DEMO.username, host="")
        return
    await mailboxes.set_password(DEMO.username, IMAP_PASSWORD)
    await mailboxes.update(
        DEMO.username,
        host=IMAP_HOST,
        port=mailbox.ssl_port,
        security="ssl",
        username=IMAP_USER,
        folder="INBOX",
        done_folder="Answered",
    )


async def _configure_business(core: Core) -> None:
    """Payment instructions, a logo and a German client, unless the demo's accountant has
    already set them (a restarted demo keeps their changes)."""
    profiles = core.store.business
    if (await profiles.get(DEMO.username)).payment.given:
        return
    await profiles.update(
        DEMO.username,
        bank_name="Barclays Bank UK PLC",
        account_name="Northwind Studio Ltd",
        sort_code="20-00-00",
        account_number="55779911",
        # The IBAN the standard (ISO 13616) gives as its British example.
        iban="GB29NWBK60161331926819",
        bic="NWBKGB2L",
        reference="invoice",
        pay_url="https://pay.northwind-studio.example/",
    )
    await profiles.set_logo(DEMO.username, clean_logo(_demo_logo()))
    await profiles.set_customer_language(DEMO.username, "CORV01", "de")


def _demo_logo() -> bytes:
    """A small wordmark for the demo business, drawn here so the demo ships no image."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGBA", (360, 96), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 8, 80, 88), radius=16, fill=(29, 79, 145, 255))
    draw.polygon([(20, 70), (40, 24), (60, 70)], fill=(255, 255, 255, 255))
    font = ImageFont.load_default(size=34)
    draw.text((96, 28), "Northwind", font=font, fill=(27, 31, 36, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def _customer_links(core: Core, previous: Path, web_url: str) -> list[dict[str, Any]]:
    """A link per seeded customer and scope; links from the last run are kept if valid."""
    old = _previous_links(previous, core.keyring, web_url)
    account = core.kashflow(DEMO)
    now = int(time.time())
    out = []
    for customer in await account.customers():
        links = {}
        for scope in ("all", "unpaid"):
            url = old.get((customer.code, scope))
            if url is None:
                minted = await core.mint(
                    DEMO, customer, Scope.parse(scope), minted_by="cli", now=now
                )
                url = minted.url
            links[scope] = url
        out.append(
            {"code": customer.code, "name": customer.name, "email": customer.email, "links": links}
        )
    return out


def _previous_links(path: Path, keyring: Keyring, web_url: str) -> dict[tuple[str, str], str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("web") != web_url:
        return {}
    found: dict[tuple[str, str], str] = {}
    now = int(time.time())
    for customer in data.get("customers", []):
        for scope, url in customer.get("links", {}).items():
            try:
                open_link(url.rsplit("/l/", 1)[-1], keyring, now=now)
            except (InvalidLink, AttributeError):
                continue
            found[(customer["code"], scope)] = url
    return found


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _print_welcome(info: dict[str, Any], json_path: Path) -> None:
    smtp = info["smtp"]
    first = info["customers"][0]
    lines = [
        "",
        "KashFlow Permalink demo is running (Ctrl-C to stop).",
        f"  web:            {info['web']}",
        f"  settings:       {info['web']}/settings/login  (sign in as demo / demo-api-pass)",
        f"  mail bot:       smtp://{smtp['host']}:{smtp['port']}  -> {info['request_address']}",
        f"  outgoing mail:  {info['outbox']}",
        f"  sandbox:        {info['kashflow']['url']}",
        f"  details:        {json_path}",
        "",
        "Links for the seeded customers:",
    ]
    for c in info["customers"]:
        lines.append(f"  {c['code']:<9} {c['name']}")
        lines.append(f"      all:    {c['links']['all']}")
        lines.append(f"      unpaid: {c['links']['unpaid']}")
    feeds = info["feeds"]
    lines += [
        "",
        f"Due dates and JSON of {feeds['customer']}'s link:",
        f"  calendar:       {feeds['calendar']}",
        f"  subscribe:      {feeds['webcal']}",
        f"  JSON:           {feeds['json']}",
    ]
    imap = info.get("imap")
    if imap is not None:
        lines += [
            "",
            f"The bot also reads the mailbox {imap['username']} on imaps://{imap['host']}:"
            f"{imap['port']} (password {imap['password']}); drop a request in it:",
            '  python3 -c "import imaplib, ssl; c = imaplib.IMAP4_SSL('
            f"'{imap['host']}', {imap['port']}, ssl_context=ssl.create_default_context("
            f"cafile='{imap['ca_file']}')); c.login('{imap['username']}', "
            f"'{imap['password']}'); c.append('INBOX', '', None, b'From: {first['email']}"
            "\\r\\nSubject: my invoices\\r\\n\\r\\nPlease send me my invoices.\\r\\n')\"",
        ]
    lines += [
        "",
        "Send a test request and find the reply in the outbox:",
        f"  python3 -c \"import smtplib; smtplib.SMTP('{smtp['host']}', {smtp['port']}).sendmail("
        f"'{first['email']}', ['{info['request_address']}'], b'From: {first['email']}\\r\\n"
        f"Subject: my invoices\\r\\n\\r\\nPlease send me my invoices.\\r\\n')\"",
        "",
    ]
    print("\n".join(lines), flush=True)
