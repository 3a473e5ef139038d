"""The deployment guide, run: every shell command of ``docs/DEPLOY.md``, in its order.

The guide's paths, names, ports and service user are swapped for this test's own
(:class:`tests.support.guide.Site`); PostgreSQL is the throwaway server. The steps:
the database and its role, the state directory and the key; the web and bot units
started from their ``ExecStart`` lines with the settings file, two instances of each on
one port (the bot speaking LMTP, as for Postfix); ``check``; backups of the database and
the key and their restore; the SQLite backup and restore; key rotation and retirement.
Building and installing the wheel (section 1) is ``tests/test_wheel.py``'s. Last, what can
be checked of the Containerfile without a container engine.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import secrets
import shlex
import smtplib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kashflow.sandbox import Sandbox
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.registry import LinkRegistry
from tests.support import guide
from tests.support.guide import Block, Site
from tests.support.stores import postgres_server_url

pytestmark = pytest.mark.slow

WEB_UNIT = "/etc/systemd/system/kashflow-permalink-web@.service"
BOT_UNIT = "/etc/systemd/system/kashflow-permalink-bot@.service"
SETTINGS = "/etc/kashflow-permalink/env"


@dataclass
class Run:
    """The guide's shell blocks, run one by one as bash scripts on the test's site."""

    site: Site
    cwd: Path
    done: list[Block] = field(default_factory=list)

    def block(self, containing: str) -> str:
        """Run the one shell block containing ``containing``; its output."""
        (block,) = [b for b in guide.shell_blocks() if containing in b.text]
        script = self.site(block.text)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
        self.done.append(block)
        return result.stdout


@dataclass
class Service:
    """One instance of a unit: its ExecStart, with the settings file, as systemd runs it."""

    proc: asyncio.subprocess.Process
    ready: dict[str, Any]


@asynccontextmanager
async def unit(site: Site, name: str, environment: dict[str, str]) -> AsyncIterator[Service]:
    text = guide.file(name)
    assert guide.unit_value(text, "EnvironmentFile") == SETTINGS
    argv = shlex.split(site(guide.unit_value(text, "ExecStart")))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=environment
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        assert line.startswith(b"{"), f"{name} did not start"
        yield Service(proc, json.loads(line))
    finally:
        if proc.returncode is None:
            proc.terminate()  # what systemctl stop sends
        async with asyncio.timeout(30):
            await proc.wait()
    assert proc.returncode == 0  # a clean stop


def service_environment(site: Site, settings: Path) -> dict[str, str]:
    """The test's environment (PGHOST for the throwaway server) without any of its own
    KASHFLOW_PERMALINK_* values, plus the guide's settings file."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("KASHFLOW_PERMALINK_")}
    return {**keep, **guide.settings_file(settings.read_text())}


def lmtp_greets(port: int) -> bool:
    """True when the listener answers LMTP's LHLO (an SMTP listener refuses it)."""
    with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
        code, _ = client.ehlo()
        return code == 250


async def test_every_command_of_the_deployment_guide(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int], sandbox: Sandbox
) -> None:
    postgres_server_url()  # fails with a clear message when there is no server
    database = f"kfp_{secrets.token_hex(4)}"
    settings = tmp_path / "etc" / "env"
    settings.parent.mkdir()
    site = Site.for_test(
        prefix=Path(sys.executable).parent.parent,
        state=tmp_path / "state",
        backups=tmp_path / "backups",
        settings=settings,
        user=pwd.getpwuid(os.getuid()).pw_name,
        group=grp.getgrgid(os.getgid()).gr_name,
        database=database,
        ports={"8080": unused_tcp_port_factory(), "8024": unused_tcp_port_factory()},
    )
    guide_run = Run(site, tmp_path)
    # The guide's settings reach the real KashFlow; here `check` asks the sandbox instead.
    endpoint = f"KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT={sandbox.url}\n"
    settings.write_text(site(guide.file(SETTINGS)) + endpoint)
    environment = service_environment(site, settings)
    url = environment["KASHFLOW_PERMALINK_DATABASE_URL"]
    assert url == f"postgresql://{database}:change-me@/{database}"

    # 2-3: the database, the state directory and the key.
    guide_run.block("createdb --owner=kfp kfp\n")
    guide_run.block("keys create")
    state = tmp_path / "state"
    assert (state / "server.key").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700

    # 5: two instances of each unit; each role's instances share their port.
    async with (
        unit(site, WEB_UNIT, environment) as web1,
        unit(site, WEB_UNIT, environment) as web2,
        unit(site, BOT_UNIT, environment) as bot1,
        unit(site, BOT_UNIT, environment) as bot2,
    ):
        assert (web1.ready["role"], bot1.ready["role"]) == ("web", "bot")
        assert web1.ready["url"] == web2.ready["url"]
        assert bot1.ready["smtp_port"] == bot2.ready["smtp_port"]
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/settings/login"):
                async with http.get(web1.ready["url"] + path) as resp:
                    assert resp.status == 200, path
        assert await asyncio.to_thread(lmtp_greets, bot1.ready["smtp_port"])
        checked = await asyncio.to_thread(guide_run.block, "kashflow-permalink check")
        assert "state: PostgreSQL" in checked
        assert f"ok      KashFlow at {sandbox.url}" in checked
        assert checked.rstrip().endswith("checks passed")

        # Something to back up: a link, as the settings pages record it.
        db = open_database(url)
        try:
            await LinkRegistry(db).add(
                "demo",
                customer_code="ACME01",
                customer_name="Acme",
                scope="all",
                created=1,
                minted_by="settings",
            )
        finally:
            db.close()

    # 7: backups and restores.
    guide_run.block("pg_dump ")
    key = (state / "server.key").read_bytes()
    assert (tmp_path / "backups" / "server.key").read_bytes() == key
    guide_run.block("pg_restore ")
    restored = open_database(url.rsplit("/", 1)[0] + f"/{database}_restored")
    try:
        [link] = await LinkRegistry(restored).list("demo")
        assert link.customer_code == "ACME01"
    finally:
        restored.close()

    sqlite = open_database(None, state)
    try:
        await LinkRegistry(sqlite).add(
            "demo",
            customer_code="BRIGHT01",
            customer_name="Bright",
            scope="unpaid",
            created=1,
            minted_by="settings",
        )
    finally:
        sqlite.close()
    guide_run.block("VACUUM INTO")
    for leftover in state.glob("state.sqlite3*"):
        leftover.unlink()
    guide_run.block("install -m 0600 -o kashflow-permalink")
    assert (state / "state.sqlite3").stat().st_mode & 0o777 == 0o600
    sqlite = open_database(None, state)
    try:
        [link] = await LinkRegistry(sqlite).list("demo")
        assert link.customer_code == "BRIGHT01"
    finally:
        sqlite.close()

    # 8: the operator vouches for the bot's mail domain.
    allowed = guide_run.block("accounts allow-domain")
    assert "northwind may now use addresses at bot.example.co.uk" in allowed

    # 9: key rotation, then retiring the first key.
    listed = guide_run.block("keys rotate")
    assert "key 2 is now current" in listed and "at their next request" in listed
    assert "keys 1, 2 (current 2)" in listed
    guide_run.block("keys retire 1")
    assert Keyring.load(state / "server.key").key_ids == (2,)

    # Every shell command of the guide ran here or in tests/test_wheel.py.
    for block in guide.shell_blocks():
        installs = [guide.is_install(c) for c in block.commands]
        assert all(installs) or (not any(installs) and block in guide_run.done), block.text


def test_the_containerfile_runs_the_guides_commands_from_the_wheels_sources() -> None:
    instructions = guide.container_instructions()
    runs = [rest for word, rest in instructions if word == "RUN"]
    # The same commands as the guide's section 1, in the same order (tests/test_wheel.py).
    assert runs == guide.install_commands()
    assert guide.copied_sources() == set(guide.SOURCES)
    for source in guide.SOURCES:
        assert (guide.CONTAINERFILE.parent / source).exists()
    [entrypoint] = [guide.exec_form(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    [command] = [guide.exec_form(rest) for word, rest in instructions if word == "CMD"]
    web = shlex.split(guide.unit_value(guide.file(WEB_UNIT), "ExecStart"))
    bot = shlex.split(guide.unit_value(guide.file(BOT_UNIT), "ExecStart"))
    assert entrypoint + command == web
    assert bot == [*web[:-1], "bot"]
    # The base image's Python is one the project supports (requires-python >= 3.11).
    images = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    assert images and all(":3.11-" in image for image in images)
    environment = dict(
        pair.split("=", 1)
        for word, rest in instructions
        if word == "ENV"
        for pair in shlex.split(rest)
    )
    assert environment["KASHFLOW_PERMALINK_HTTP_HOST"] == "0.0.0.0"  # noqa: S104
    assert environment["KASHFLOW_PERMALINK_SMTP_HOST"] == "0.0.0.0"  # noqa: S104
