"""``kashflow-permalink serve`` (production) and ``check`` (is everything reachable?)."""

from __future__ import annotations

import json
import logging
import os

from app.config import Settings
from app.runtime import Runtime, build_core, close_core, stop_signal
from bot.imap import MailboxError, Server, open_session
from kashflow.errors import KashFlowError
from permalink.core import Core, RelayNotReady
from permalink.keyring import Keyring, SecretUnreadable
from permalink.relay import DeliveryFailure

log = logging.getLogger(__name__)


async def run_serve(settings: Settings, keyring: Keyring) -> int:
    runtime = Runtime(settings, keyring)
    async with stop_signal() as stopped:
        try:
            await runtime.start()
            assert runtime.core is not None
            doors = []
            if runtime.runs_web:
                doors.append(f"HTTP {settings.http_host}:{runtime.http_port}")
            if runtime.runs_bot:
                kind = "LMTP" if settings.lmtp else "SMTP"
                doors.append(f"mail ({kind}) on {settings.smtp_host}:{runtime.smtp_port}")
            _announce_ready(settings, runtime)
            log.info(
                "serving %s as role %s: %s; state in %s; KashFlow at %s",
                settings.public_base_url,
                settings.role,
                ", ".join(doors),
                runtime.core.store.description,
                settings.kashflow_endpoint,
            )
            await stopped.wait()
        finally:
            await runtime.stop()
    return 0


def _announce_ready(settings: Settings, runtime: Runtime) -> None:
    """One JSON line on stdout once everything listens, for a supervisor or a test."""
    ready: dict[str, object] = {"ready": True, "role": settings.role, "pid": os.getpid()}
    if runtime.runs_web:
        ready["url"] = f"http://{settings.http_host}:{runtime.http_port}"
    if runtime.runs_bot:
        ready["smtp_port"] = runtime.smtp_port
    print(json.dumps(ready), flush=True)


async def run_check(settings: Settings, keyring: Keyring) -> int:
    """Report on the key, KashFlow and every bot's relay; exit 1 if anything fails."""
    ok = True
    print(f"key: {len(keyring.key_ids)} key(s), links sealed with key {keyring.current_id}")
    core = build_core(settings, keyring)
    try:
        print(f"state: {core.store.description}")
        names = await core.store.accounts.accounts_with_bot_enabled()
        if not names:
            print("bot: no account has the mail bot switched on")
        for name in names:
            ok &= await _check_account(core, name)
            ok &= await _check_mailbox(core, name, settings)
    finally:
        await close_core(core)
    return 0 if ok else 1


async def _check_account(core: Core, name: str) -> bool:
    ok = True
    accounts = core.store.accounts
    try:
        credentials = await accounts.bot_credentials(name)
    except SecretUnreadable:
        print(f"{name}: the bot's KashFlow credentials no longer open with the server key")
        return False
    if credentials is None:
        print(f"{name}: no KashFlow credentials saved for the bot")
        return False
    try:
        company = await core.kashflow(credentials).company_details()
        print(f"{name}: KashFlow OK ({company.name})")
    except KashFlowError as exc:
        # KashFlow's own words (StatusDetail) say what to change; they hold no secret.
        said = f' KashFlow said: "{exc.detail}"' if exc.detail else ""
        print(f"{name}: KashFlow FAILED: {exc.message}{said}")
        ok = False
    try:
        relay = await core.relay(name)
        await core.mailer.probe(relay)
        print(f"{name}: relay {relay.host}:{relay.port} OK")
    except RelayNotReady as exc:
        print(f"{name}: relay settings incomplete: {exc}")
        ok = False
    except SecretUnreadable:
        print(f"{name}: the relay password no longer opens with the server key")
        ok = False
    except DeliveryFailure as exc:
        print(f"{name}: relay FAILED: {exc}")
        ok = False
    return ok


async def _check_mailbox(core: Core, name: str, settings: Settings) -> bool:
    """Sign in to the account's IMAP mailbox, if it has one, and open its folder."""
    mailbox = await core.store.mailboxes.get(name)
    if not mailbox.host:
        return True
    try:
        password = await core.store.mailboxes.password(name)
    except SecretUnreadable:
        print(f"{name}: the IMAP password no longer opens with the server key")
        return False
    if not password or not mailbox.username:
        print(f"{name}: mailbox settings incomplete: a username and a password are needed")
        return False
    server = Server(
        host=mailbox.host,
        port=mailbox.port,
        security=mailbox.security,
        username=mailbox.username,
        password=password,
        timeout=10.0,
        ca_file=None if settings.imap_ca_file is None else str(settings.imap_ca_file),
    )
    try:
        session = await open_session(server)
        try:
            await session.select(mailbox.folder)
        finally:
            await session.close()
    except MailboxError as exc:
        print(f"{name}: mailbox FAILED: {exc}")
        return False
    print(f"{name}: mailbox {mailbox.username} on {mailbox.host}:{mailbox.port} OK")
    return True
