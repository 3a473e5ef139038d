"""``kashflow-permalink demo``: everything on loopback with the sandbox KashFlow.

The sandbox stands in for KashFlow, a capture server for the outbound relay (each reply
lands as an ``.eml`` file in the outbox), and the demo account's bot is configured to
answer at ``invoices@northwind.example``. Restarted on the same state directory it
resumes: the same key, settings, spooled mail and links.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from app.config import Settings
from app.runtime import Runtime, bind, load_or_create_keyring, stop_signal
from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, Sandbox
from permalink.accounts import AccountSettings
from permalink.keyring import Keyring
from permalink.links import InvalidLink, open_link
from permalink.minting import mint
from permalink.registry import LinkRegistry
from permalink.scopes import Scope

log = logging.getLogger(__name__)

REQUEST_ADDRESS = "invoices@northwind.example"
MAIL_DOMAIN = "northwind.example"
HOST = "127.0.0.1"


def prepare(state_dir: str) -> tuple[Path, Keyring]:
    """The state directory and its key (made on the first run), before the loop starts."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    return state, load_or_create_keyring(state / "server.key")


async def run_demo(
    state: Path, keyring: Keyring, *, http_port: int, smtp_port: int, latency_ms: float
) -> int:
    sandbox = Sandbox(latency_ms=latency_ms)
    await sandbox.start(HOST, 0)
    capture = CaptureServer(state / "outbox", host=HOST)
    await capture.start()
    http_socket = bind(HOST, http_port)
    web_url = f"http://{HOST}:{http_socket.getsockname()[1]}"
    settings = Settings(
        state_dir=state,
        public_base_url=web_url,
        http_host=HOST,
        smtp_host=HOST,
        smtp_port=smtp_port,
        kashflow_endpoint=sandbox.url,
        mail_domain=MAIL_DOMAIN,
    )
    runtime = Runtime(settings, keyring, http_socket=http_socket)
    try:
        async with stop_signal() as stopped:
            await _run(runtime, keyring, sandbox, capture, state, web_url)
            await stopped.wait()
    finally:
        await runtime.stop()
        await capture.close()
        await sandbox.stop()
    return 0


async def _run(
    runtime: Runtime,
    keyring: Keyring,
    sandbox: Sandbox,
    capture: CaptureServer,
    state: Path,
    web_url: str,
) -> None:
    await runtime.start()
    assert runtime.db is not None and runtime.kashflow is not None
    await _configure_bot(AccountSettings(runtime.db, keyring), capture)
    customers = await _customer_links(runtime, keyring, state / "demo.json", web_url)
    info = {
        "web": web_url,
        "smtp": {"host": HOST, "port": runtime.smtp_port},
        "request_address": REQUEST_ADDRESS,
        "outbox": str(capture.outbox),
        "kashflow": {
            "url": sandbox.url,
            "username": DEMO.username,
            "password": DEMO.password,
        },
        "customers": customers,
    }
    _write_json(state / "demo.json", info)
    _print_welcome(info, state / "demo.json")


async def _configure_bot(accounts: AccountSettings, capture: CaptureServer) -> None:
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


async def _customer_links(
    runtime: Runtime, keyring: Keyring, previous: Path, web_url: str
) -> list[dict[str, Any]]:
    """A link per seeded customer and scope; links from the last run are kept if valid."""
    assert runtime.db is not None and runtime.kashflow is not None
    old = _previous_links(previous, keyring, web_url)
    registry = LinkRegistry(runtime.db)
    account = runtime.kashflow.account(DEMO)
    now = int(time.time())
    out = []
    for customer in await account.customers():
        links = {}
        for scope in ("all", "unpaid"):
            url = old.get((customer.code, scope))
            if url is None:
                minted = await mint(
                    registry=registry,
                    keyring=keyring,
                    public_base_url=web_url,
                    credentials=DEMO,
                    customer=customer,
                    scope=Scope(scope),
                    now=now,
                    expires_in=None,
                    minted_by="cli",
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
    lines += [
        "",
        "Send a test request and find the reply in the outbox:",
        f"  python3 -c \"import smtplib; smtplib.SMTP('{smtp['host']}', {smtp['port']}).sendmail("
        f"'{first['email']}', ['{info['request_address']}'], b'From: {first['email']}\\r\\n"
        f"Subject: my invoices\\r\\n\\r\\nPlease send me my invoices.\\r\\n')\"",
        "",
    ]
    print("\n".join(lines), flush=True)
