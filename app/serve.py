"""``kashflow-permalink serve`` (production) and ``check`` (is everything reachable?)."""

from __future__ import annotations

import logging

from app.config import Settings
from app.runtime import Runtime, stop_signal
from bot.outbound import DeliveryFailure, probe, relay_for
from kashflow.client import KashFlow
from kashflow.errors import KashFlowError
from permalink.accounts import AccountSettings
from permalink.db import Database
from permalink.keyring import Keyring

log = logging.getLogger(__name__)


async def run_serve(settings: Settings, keyring: Keyring) -> int:
    runtime = Runtime(settings, keyring)
    async with stop_signal() as stopped:
        try:
            await runtime.start()
            log.info(
                "serving %s (HTTP %s:%d), mail on %s:%d",
                settings.public_base_url,
                settings.http_host,
                settings.http_port,
                settings.smtp_host,
                runtime.smtp_port,
            )
            await stopped.wait()
        finally:
            await runtime.stop()
    return 0


async def run_check(settings: Settings, keyring: Keyring) -> int:
    """Report on the key, KashFlow and every bot's relay; exit 1 if anything fails."""
    ok = True
    print(f"key: {len(keyring.key_ids)} key(s), links sealed with key {keyring.current_id}")
    db = Database(settings.database)
    try:
        accounts = AccountSettings(db, keyring)
        async with KashFlow(settings.kashflow_endpoint, timeout=settings.kashflow_timeout) as kf:
            names = await accounts.accounts_with_bot_enabled()
            if not names:
                print("bot: no account has the mail bot switched on")
            for name in names:
                ok &= await _check_account(accounts, kf, name)
    finally:
        db.close()
    return 0 if ok else 1


async def _check_account(accounts: AccountSettings, kf: KashFlow, name: str) -> bool:
    ok = True
    credentials = await accounts.bot_credentials(name)
    if credentials is None:
        print(f"{name}: no KashFlow credentials saved for the bot")
        return False
    try:
        company = await kf.account(credentials).company_details()
        print(f"{name}: KashFlow OK ({company.name})")
    except KashFlowError as exc:
        print(f"{name}: KashFlow FAILED: {exc.message}")
        ok = False
    try:
        relay = relay_for(await accounts.get(name), await accounts.relay_password(name))
        await probe(relay)
        print(f"{name}: relay {relay.host}:{relay.port} OK")
    except ValueError as exc:
        print(f"{name}: relay settings incomplete: {exc}")
        ok = False
    except DeliveryFailure as exc:
        print(f"{name}: relay FAILED: {exc}")
        ok = False
    return ok
