"""Server key changes on a running deployment, as an operator makes them.

The service runs as real processes (``serve --role web`` and ``--role bot`` on one state
directory, or ``--role all``); the operator runs ``kashflow-permalink keys …``, ``link`` and
``check`` as commands, and sends SIGHUP. A rotation reaches every running process at its
next request with no restart, re-seals the bot's stored secrets so that retiring the old
key breaks nothing, and ``retire`` refuses while anything stored still needs the key.
"""

from __future__ import annotations

import re
import signal
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import aiohttp
import pytest

from app import keys
from app.config import load
from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, Sandbox
from permalink.accounts import AccountSettings
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.sealed import Resealed, SealedSecrets
from tests.support.bot import ACME, REQUEST, request_mail
from tests.support.operator import Browser, key_id, run_cli
from tests.support.processes import ServeProcess, bot_env, prepare_state

CUSTOMER_ENV = {"KASHFLOW_USERNAME": DEMO.username, "KASHFLOW_PASSWORD": DEMO.password}


@dataclass
class Deployment:
    """A web and a bot process on one state, the sandbox and the capture relay here."""

    state: Path
    sandbox: Sandbox
    capture: CaptureServer
    web: ServeProcess
    bot: ServeProcess

    @property
    def base_url(self) -> str:
        return self.web.public_base_url

    async def link(self, scope: str = "all") -> str:
        made = await run_cli(
            "link",
            "--customer",
            "ACME01",
            "--scope",
            scope,
            "--state-dir",
            str(self.state),
            "--kashflow-endpoint",
            self.sandbox.url,
            "--public-base-url",
            self.base_url,
            env=CUSTOMER_ENV,
        )
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    async def keys(self, *args: str) -> str:
        done = await run_cli("keys", *args, "--state-dir", str(self.state))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    async def status(self, url: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status


@pytest.fixture
async def deployment(
    tmp_path: Path, sandbox: Sandbox, unused_tcp_port_factory: Callable[[], int]
) -> AsyncIterator[Deployment]:
    state = tmp_path / "state"
    port = unused_tcp_port_factory()
    async with CaptureServer(tmp_path / "outbox") as capture:
        await prepare_state(state, capture.port)
        web = ServeProcess(
            state,
            sandbox.url,
            role="web",
            port=port,
            public_base_url=f"http://127.0.0.1:{port}",
            log=tmp_path / "web.log",
        )
        bot = ServeProcess(state, sandbox.url, role="bot", log=tmp_path / "bot.log", env=bot_env())
        await web.start()
        await bot.start()
        try:
            yield Deployment(state, sandbox, capture, web, bot)
        finally:
            await web.kill()
            await bot.kill()


async def test_rotate_and_retire_reach_running_web_and_bot_processes_without_a_restart(
    deployment: Deployment,
) -> None:
    d = deployment
    old_link = await d.link()
    assert key_id(old_link) == 1 and await d.status(old_link) == 200

    rotated = await d.keys("rotate")
    assert "key 2 is now current" in rotated
    assert "at their next request" in rotated and "SIGHUP" in rotated
    assert "sealed 1 stored secret again under key 2: demo's bot's KashFlow credentials." in (
        rotated
    )

    # A link the command mints with the new key opens on the server that started before it.
    new_link = await d.link("unpaid")
    assert key_id(new_link) == 2
    assert await d.status(new_link) == 200
    # The settings pages of the running server seal with the new key too.
    async with Browser(d.base_url) as browser:
        await browser.sign_in(DEMO)
        token = await browser.csrf("/settings/customers/ACME01")
        _, page = await browser.post(
            "/settings/customers/ACME01/links", {"csrf": token, "scope": "all"}
        )
        made = re.search(re.escape(d.base_url) + r"/l/[A-Za-z0-9_-]+", page)
        assert made is not None, page
        assert key_id(made.group(0)) == 2

    retired = await d.keys("retire", "1")
    assert "key 1 retired; keys 2 (current 2)" in retired
    assert "at their next request" in retired
    assert await d.status(old_link) == 404  # at once, on the running server
    assert await d.status(new_link) == 200
    assert await d.status(made.group(0)) == 200

    # The bot, running since before the rotation, still opens its re-sealed secrets.
    await d.bot.send_mail(request_mail(message_id="<after-retire@client.example>"), ACME, REQUEST)
    [reply] = await d.capture.wait_for(1, timeout=30)
    assert reply.parsed()["In-Reply-To"] == "<after-retire@client.example>"

    checked = await run_cli(
        "check",
        "--state-dir",
        str(d.state),
        "--kashflow-endpoint",
        d.sandbox.url,
        "--http-port",
        str(d.web.port),
        "--smtp-port",
        str(d.bot.port),
        "--allow-relay",
        "127.0.0.1",  # the capture relay, on loopback
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok      account demo KashFlow sign-in: Northwind Studio Ltd" in checked.stdout
    assert "in use by this service, which is running" in checked.stdout


async def test_sighup_rereads_the_key_file_in_every_process(deployment: Deployment) -> None:
    d = deployment
    for process in (d.web, d.bot):
        mark = process.log_size()
        process.signal(signal.SIGHUP)
        line = await process.wait_for_log("server keys re-read (SIGHUP)", after=mark)
        assert "unchanged, keys 1 (current 1)" in line

    # A key file that no longer reads is reported, and the keys in use are kept.
    link = await d.link()
    key_file = d.state / "server.key"
    key_file.chmod(0o644)
    mark = d.web.log_size()
    d.web.signal(signal.SIGHUP)
    line = await d.web.wait_for_log("server keys not reloaded (SIGHUP)", after=mark)
    assert "chmod 600" in line and "still using keys 1 (current 1)" in line
    assert await d.status(link) == 200
    key_file.chmod(0o600)
    mark = d.web.log_size()
    d.web.signal(signal.SIGHUP)
    await d.web.wait_for_log("server keys re-read (SIGHUP)", after=mark)

    # Processes keep serving after every signal.
    assert await d.status(link) == 200
    await d.bot.send_mail(request_mail(message_id="<after-hup@client.example>"), ACME, REQUEST)
    assert len(await d.capture.wait_for(1, timeout=30)) == 1


async def test_retire_refuses_while_a_stored_secret_still_needs_the_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    await prepare_state(state, relay_port=2525)
    settings = load({}, state_dir=str(state))
    old = Keyring.load(settings.key_file)  # what a process that missed the rotation holds
    status, _ = await keys.rotate(settings)
    assert status == 0
    before = Keyring.load(settings.key_file)
    reseal = SealedSecrets.reseal

    async def reseal_then_a_late_save(self: SealedSecrets) -> Resealed:
        done = await reseal(self)
        # A save by a process still on key 1, landing right after the re-seal.
        await AccountSettings(self._db, old).set_relay_password("demo", "late-password")
        return done

    with mock.patch.object(SealedSecrets, "reseal", reseal_then_a_late_save):
        status, lines = await keys.retire(settings, 1)
    assert status == 1
    assert lines[-1] == (
        "key 1 was not retired: demo's relay password was saved with it while this ran. "
        "Run it again."
    )
    assert Keyring.load(settings.key_file) == before  # nothing retired

    status, lines = await keys.retire(settings, 1)  # run again, as it says
    assert status == 0 and "key 1 retired; keys 2 (current 2)." in lines
    db = open_database(None, state)
    try:
        accounts = AccountSettings(db, Keyring.load(settings.key_file))
        assert await accounts.relay_password("demo") == "late-password"
        assert await accounts.bot_credentials("demo") == DEMO
    finally:
        db.close()


async def test_retire_on_a_shared_database_says_to_copy_the_key_file(
    tmp_path: Path, state_url: str | None
) -> None:
    state = tmp_path / "state"
    await prepare_state(state, relay_port=2525, database_url=state_url)
    settings = load({}, state_dir=str(state), database_url=state_url)
    assert (await keys.rotate(settings))[0] == 0
    status, lines = await keys.retire(settings, 1)
    assert status == 0 and "key 1 retired; keys 2 (current 2)." in lines
    other_machines = (
        "Processes on other machines keep opening links sealed with key 1 until the new key "
        "file reaches them: copy it to each of them now."
    )
    # Only a database other machines may share (PostgreSQL) has other machines to tell.
    assert (other_machines in lines) == (state_url is not None)


async def test_retire_refuses_while_the_state_store_cannot_be_reached(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    key_file = state / "server.key"
    Keyring.create(key_file).rotated().save(key_file)
    before = Keyring.load(key_file)
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://kfp@127.0.0.1:{closed.getsockname()[1]}/state"
        status, lines = await keys.retire(load({}, state_dir=str(state), database_url=url), 1)
    # Whether a stored secret still needs key 1 cannot be known: nothing is retired.
    assert status == 1
    assert lines[-1] == "key 1 was not retired."
    assert "the state store could not be opened" in lines[0]
    assert Keyring.load(key_file) == before


async def test_check_reports_secrets_no_key_opens_instead_of_crashing(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    state = tmp_path / "state"
    async with CaptureServer(tmp_path / "outbox") as capture:
        await prepare_state(state, capture.port)
        # Key 1 dropped behind the product's back (by hand, or by an older release).
        key_file = state / "server.key"
        Keyring.load(key_file).rotated().retired(1).save(key_file)
        checked = await run_cli(
            "check",
            "--state-dir",
            str(state),
            "--kashflow-endpoint",
            sandbox.url,
            "--http-port",
            "0",
            "--smtp-port",
            "0",
        )
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert (
        "FAILED  account demo KashFlow sign-in: the stored credentials no longer open with the "
        "server key; enter them again on the settings pages (Mail bot)" in checked.stdout
    )
    assert checked.stdout.rstrip().endswith("checks FAILED")

    listed = await run_cli("keys", "list", "--state-dir", str(state))
    assert listed.returncode == 1
    assert "stored secrets no key opens: demo's bot's KashFlow credentials" in listed.stdout


def test_keys_create_makes_the_state_directory_on_a_fresh_machine(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "kashflow-permalink"
    created = keys.create(load({}, state_dir=str(state)))
    assert created[0] == f"created {state / 'server.key'} (key 1, mode 0600)."
    assert "when the service starts" in created[1]
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "server.key").stat().st_mode) == 0o600
