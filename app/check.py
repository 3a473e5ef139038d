"""``kashflow-permalink check``: is everything the service needs there and answering?

It checks, in order, and whatever the configuration: the server key, the state store, the
configured KashFlow endpoint (by name, always, whether or not any bot is on), the ports the
process's role listens on, and for each account with the mail bot on: its stored secrets,
its KashFlow sign-in (with KashFlow's own words when it refuses), its relay and its IMAP
mailbox, if it has one; and the relay of each account with the bot off that has one saved
(the settings pages send "email this link" through it). Each check prints one line, ``ok``
or ``FAILED`` with the reason; nothing it meets ends it early or prints a traceback. The
exit status is 1 if any check failed.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from app.config import SPECS, ConfigError, Settings, named
from app.keys import describe
from app.runtime import build_core, close_core
from bot.imap import MailboxError, Server, open_session
from bot.listener import IDENT
from kashflow.client import ENDPOINT, KashFlow
from kashflow.errors import KashFlowError, Unavailable
from kashflow.models import Credentials
from permalink.core import Core, RelayNotReady
from permalink.db import StoreError, open_database
from permalink.keyring import Keyring
from permalink.relay import DeliveryFailure
from web.security import SERVER_NAME

log = logging.getLogger(__name__)

#: The sign-in the endpoint check sends: any KashFlow refuses it with Status NO, which
#: shows the endpoint speaks KashFlow's SOAP without using anyone's credentials.
NOBODY: Final = Credentials("kashflow-permalink-check", "not-a-password")
_PROBE_TIMEOUT_S: Final = 5.0


@dataclass
class Report:
    """The lines printed so far and whether any check failed."""

    failures: int = 0
    checks: int = 0
    lines: list[str] = field(default_factory=list)

    def ok(self, what: str, detail: str) -> None:
        self.checks += 1
        self._say(f"ok      {what}: {detail}")

    def failed(self, what: str, detail: str) -> None:
        self.checks += 1
        self.failures += 1
        self._say(f"FAILED  {what}: {detail}")

    def note(self, what: str, detail: str) -> None:
        self._say(f"        {what}: {detail}")

    def _say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    async def run(self, what: str, check: Callable[[], Awaitable[None]]) -> None:
        """Run one check; an error nobody foresaw is a failed check, not a crash."""
        try:
            await check()
        except Exception as error:
            log.debug("check %s", what, exc_info=True)
            self.failed(what, f"unexpected {type(error).__name__}: {error}")


async def run_check(settings: Settings) -> int:
    report = Report()
    report.note("settings", _summary(settings))
    keyring = _check_key(settings, report)
    store_ok = _check_state(settings, report)
    await report.run("KashFlow", lambda: _check_kashflow(settings, report))
    await report.run("ports", lambda: _check_ports(settings, report))
    if keyring is None or not store_ok:
        report.note("accounts", "not checked (they need the key and the state store)")
    else:
        await report.run("accounts", lambda: _check_accounts(settings, keyring, report))
    if report.failures:
        print(f"check: {report.failures} of {report.checks} checks FAILED", flush=True)
        return 1
    print(f"check: all {report.checks} checks passed", flush=True)
    return 0


def _summary(settings: Settings) -> str:
    doors = []
    if settings.role in ("all", "web"):
        doors.append(f"web on {settings.http_host}:{settings.http_port}")
    if settings.role in ("all", "bot"):
        kind = "LMTP" if settings.lmtp else "SMTP"
        doors.append(f"mail by {kind} on {settings.smtp_host}:{settings.smtp_port}")
    return f"role {settings.role} ({', '.join(doors)}), public address {settings.public_base_url}"


def _check_key(settings: Settings, report: Report) -> Keyring | None:
    try:
        keyring = settings.keyring()
    except ConfigError as exc:
        report.failed("server key", str(exc))
        return None
    where = "from " + (SPECS["keys"].variable if settings.keys else str(settings.key_file))
    report.ok("server key", f"{describe(keyring)} {where}")
    return keyring


def _check_state(settings: Settings, report: Report) -> bool:
    try:
        db = open_database(settings.database_url, settings.state_dir)
    except (StoreError, OSError) as exc:
        report.failed("state", f"{exc} ({named('database_url')}, {named('state_dir')})")
        return False
    try:
        report.ok("state", db.description)
    finally:
        db.close()
    return True


def endpoint_kind(endpoint: str) -> str:
    return "the real KashFlow" if endpoint == ENDPOINT else "not the real KashFlow"


async def _check_kashflow(settings: Settings, report: Report) -> None:
    endpoint = settings.kashflow_endpoint
    what = f"KashFlow at {endpoint} ({endpoint_kind(endpoint)})"
    async with KashFlow(endpoint, timeout=settings.kashflow_timeout, retries=0) as kashflow:
        try:
            await kashflow.account(NOBODY).company_details()
        except Unavailable as exc:
            report.failed(what, f"{exc.message} ({exc.detail}); {named('kashflow_endpoint')}")
            return
        except KashFlowError as exc:
            # Refusing a made-up sign-in is what a working KashFlow does.
            report.ok(what, f"answers SOAP (refused a made-up sign-in: {type(exc).__name__})")
            return
    report.failed(what, "accepted a made-up sign-in: this is not KashFlow")


async def _check_ports(settings: Settings, report: Report) -> None:
    if settings.role in ("all", "web"):
        await _check_port(report, "http_port", settings.http_host, settings.http_port, _is_web)
    if settings.role in ("all", "bot"):
        await _check_port(report, "smtp_port", settings.smtp_host, settings.smtp_port, _is_mail)


async def _check_port(
    report: Report,
    setting: str,
    host: str,
    port: int,
    ours: Callable[[str, int], Awaitable[bool]],
) -> None:
    what = f"{host}:{port} ({named(setting)})"
    if port == 0:
        report.ok(what, "a free port is picked at start-up")
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            if await ours(host, port):
                report.ok(what, "in use by this service, which is running")
            else:
                report.failed(what, "in use by another program")
        elif error.errno == errno.EACCES:
            report.failed(
                what, "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            )
        else:
            report.failed(what, error.strerror or type(error).__name__)
        return
    finally:
        sock.close()
    report.ok(what, "free")


async def _is_web(host: str, port: int) -> bool:
    timeout = aiohttp.ClientTimeout(total=_PROBE_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://{host}:{port}/healthz") as response,
        ):
            return response.headers.get("Server") == SERVER_NAME
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _is_mail(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                banner = await reader.readline()
            finally:
                writer.close()
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return IDENT.encode() in banner


async def _check_accounts(settings: Settings, keyring: Keyring, report: Report) -> None:
    core = build_core(settings, keyring)
    try:
        accounts = core.store.accounts
        names = await accounts.accounts_with_bot_enabled()
        if not names:
            report.note("mail bot", "no account has it switched on")
        for name in names:
            await report.run(
                f"account {name}", functools.partial(_check_account, core, name, report, settings)
            )
        # With the bot off, an account's relay still sends "email this link" and the
        # re-issued invoices from the settings pages.
        relays = [
            name
            for name in await accounts.accounts_with_relay()
            if name not in names and core.allows(name)
        ]
        for name in relays:
            unreadable = await core.store.secrets.unreadable(name)
            await report.run(
                f"account {name} relay",
                functools.partial(
                    _check_account_relay, core, name, report, dead="relay_password" in unreadable
                ),
            )
        for secret in await core.store.secrets.stored():
            checked = secret.account in relays and secret.name == "relay_password"
            if not secret.opens and secret.account not in names and not checked:
                report.note(
                    f"account {secret.account}",
                    f"its {secret.sealed.words} no longer opens with the server key (the bot "
                    "is off; enter it again before turning it on)",
                )
    finally:
        await close_core(core)


async def _check_account(core: Core, name: str, report: Report, settings: Settings) -> None:
    what = f"account {name}"
    if not core.allows(name):
        report.failed(what, f"the bot is on but the account is not in {named('allowed_accounts')}")
    accounts = core.store.accounts
    unreadable = await core.store.secrets.unreadable(name)
    if "bot_credentials" in unreadable:
        report.failed(
            f"{what} KashFlow sign-in",
            "the stored credentials no longer open with the server key; enter them again "
            "on the settings pages (Mail bot)",
        )
    else:
        credentials = await accounts.bot_credentials(name)
        if credentials is None:
            report.failed(f"{what} KashFlow sign-in", "no credentials saved for the bot")
        else:
            try:
                company = await core.kashflow(credentials).company_details()
            except KashFlowError as exc:
                # KashFlow's own words (StatusDetail) say what to change; they hold no secret.
                said = f' KashFlow said: "{exc.detail}"' if exc.detail else ""
                report.failed(f"{what} KashFlow sign-in", exc.message + said)
            else:
                report.ok(f"{what} KashFlow sign-in", company.name)
    await _check_account_relay(core, name, report, dead="relay_password" in unreadable)
    await _check_mailbox(core, name, report, settings, dead="imap_password" in unreadable)


async def _check_account_relay(core: Core, name: str, report: Report, *, dead: bool) -> None:
    if dead:
        report.failed(
            f"account {name} relay",
            "the stored relay password no longer opens with the server key; enter it again "
            "on the settings pages (Mail bot)",
        )
    else:
        await _check_relay(core, name, report)


async def _check_relay(core: Core, name: str, report: Report) -> None:
    what = f"account {name} relay"
    try:
        relay = await core.relay(name)
    except RelayNotReady as exc:
        report.failed(what, f"settings incomplete: {exc}")
        return
    try:
        await core.mailer.probe(relay)
    except DeliveryFailure as exc:
        report.failed(f"{what} {relay.host}:{relay.port}", str(exc))
    else:
        report.ok(f"{what} {relay.host}:{relay.port}", "connects and signs in")


async def _check_mailbox(
    core: Core, name: str, report: Report, settings: Settings, *, dead: bool
) -> None:
    """Sign in to the account's IMAP mailbox, if it has one, and open its folder."""
    mailbox = await core.store.mailboxes.get(name)
    if not mailbox.host:
        return
    what = f"account {name} mailbox {mailbox.username} on {mailbox.host}:{mailbox.port}"
    if dead:
        report.failed(
            what,
            "the stored IMAP password no longer opens with the server key; enter it again on "
            "the settings pages (Mail bot)",
        )
        return
    password = await core.store.mailboxes.password(name)
    if not password or not mailbox.username:
        report.failed(what, "settings incomplete: a username and a password are needed")
        return
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
        report.failed(what, str(exc))
        return
    report.ok(what, f"signs in and opens {mailbox.folder}")


__all__ = ["NOBODY", "Report", "endpoint_kind", "run_check"]
