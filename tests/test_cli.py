"""The ``kashflow-permalink`` command: keys, link, and settings validation."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from app import config
from app.config import ConfigError
from bot.capture import CaptureServer
from kashflow.sandbox import DEMO, IPLOCKED, Sandbox
from permalink.accounts import AccountSettings
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.links import open_link
from permalink.store import SqlStore
from tests.support.imap import MakeDovecot, configure_mailbox


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def acli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``cli`` for tests whose sandbox runs on this event loop, which must keep serving."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def test_keys_create_rotate_retire(tmp_path: Path) -> None:
    created = cli("keys", "create", "--state-dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    key_file = tmp_path / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    again = cli("keys", "create", "--state-dir", str(tmp_path))
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites a key

    assert cli("keys", "rotate", "--state-dir", str(tmp_path)).returncode == 0
    assert Keyring.load(key_file).key_ids == (1, 2)
    assert Keyring.load(key_file).current_id == 2
    assert cli("keys", "retire", "1", "--state-dir", str(tmp_path)).returncode == 0
    listed = cli("keys", "list", "--state-dir", str(tmp_path))
    assert listed.stdout.startswith(f"keys 2 (current 2) from {key_file}")


async def test_link_prints_a_permalink_for_the_customer(tmp_path: Path, sandbox: Sandbox) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    env = {"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "demo-api-pass"}
    common = ["--state-dir", str(tmp_path), "--kashflow-endpoint", sandbox.url]
    common += ["--public-base-url", "https://invoices.example.test"]
    result = await acli(
        "link",
        "--customer",
        "accounts@acme-fab.example",
        "--scope",
        "unpaid",
        "--expires",
        "30",
        *common,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("https://invoices.example.test/l/")
    link = open_link(
        url.rsplit("/", 1)[1],
        Keyring.load(tmp_path / "server.key"),
        now=int(time.time()),
    )
    assert link.customer_code == "ACME01" and str(link.scope) == "unpaid"
    assert link.expires is not None and link.expires - link.issued == 30 * 86400
    assert "demo-api-pass" not in result.stdout + result.stderr


async def test_link_refuses_an_invoice_of_another_customer(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    theirs = sandbox.invoices("demo", "BRIGHT01")[0].number
    env = {"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "demo-api-pass"}
    result = await acli(
        "link",
        "--customer",
        "ACME01",
        "--scope",
        f"invoice:{theirs}",
        "--state-dir",
        str(tmp_path),
        "--kashflow-endpoint",
        sandbox.url,
        env=env,
    )
    assert result.returncode == 2
    assert "is not ACME01's" in result.stderr and "Traceback" not in result.stderr


async def test_link_with_wrong_credentials_says_so(tmp_path: Path, sandbox: Sandbox) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    env = {"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "not-it"}
    result = await acli(
        "link",
        "--customer",
        "ACME01",
        "--state-dir",
        str(tmp_path),
        "--kashflow-endpoint",
        sandbox.url,
        env=env,
    )
    assert result.returncode == 2
    assert "did not accept the username or password" in result.stderr
    assert "not-it" not in result.stderr


def test_link_without_credentials_or_key_explains_what_to_do(tmp_path: Path) -> None:
    result = cli(
        "link",
        "--customer",
        "ACME01",
        "--state-dir",
        str(tmp_path),
        env={"KASHFLOW_USERNAME": "", "KASHFLOW_PASSWORD": ""},
    )
    assert result.returncode == 2 and "KASHFLOW_USERNAME" in result.stderr
    result = cli(
        "link",
        "--customer",
        "ACME01",
        "--state-dir",
        str(tmp_path),
        env={"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "x"},
    )
    assert result.returncode == 2 and "keys create" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KASHFLOW_PERMALINK_PUBLIC_BASE_URL": "invoices.example.com"}, "PUBLIC_BASE_URL"),
        ({"KASHFLOW_PERMALINK_HTTP_PORT": "eighty"}, "HTTP_PORT"),
        ({"KASHFLOW_PERMALINK_SMTP_PORT": "70000"}, "SMTP_PORT must be a port, 0-65535"),
        ({"KASHFLOW_PERMALINK_TLS_CERT": "/x.pem"}, "TLS_CERT and .*TLS_KEY go together"),
        ({"KASHFLOW_PERMALINK_PDF_HOSTS": "https://kashflow.com/x"}, "PDF_HOSTS"),
        ({"KASHFLOW_PERMALINK_PDF_BATCH": "500"}, "PDF_BATCH must be a whole number from 0 to 100"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load({**env, "KASHFLOW_PERMALINK_STATE_DIR": str(tmp_path)})


def test_settings_come_from_options_then_environment_then_defaults(tmp_path: Path) -> None:
    env = {
        "KASHFLOW_PERMALINK_STATE_DIR": str(tmp_path),
        "KASHFLOW_PERMALINK_HTTP_PORT": "9000",
        "KASHFLOW_PERMALINK_SMTP_PORT": "2525",
    }
    settings = config.load(env, smtp_port=25, http_host=None)
    assert (settings.http_port, settings.smtp_port, settings.http_host) == (9000, 25, "127.0.0.1")
    assert settings.state_dir == tmp_path.resolve()


async def test_serve_runs_both_doors_until_sigterm(
    tmp_path: Path, sandbox: Sandbox, unused_tcp_port_factory: Callable[[], int]
) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    http_port, smtp_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--state-dir",
        str(tmp_path),
        "--http-port",
        str(http_port),
        "--smtp-port",
        str(smtp_port),
        "--public-base-url",
        f"http://127.0.0.1:{http_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT": sandbox.url},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"serving http://127.0.0.1" not in await proc.stdout.readline():
                assert proc.returncode is None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{http_port}/settings/login") as resp:
                assert resp.status == 200
        _, writer = await asyncio.open_connection("127.0.0.1", smtp_port)
        writer.close()  # the mail door listens too
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.communicate()
    assert proc.returncode == 0


def test_serve_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = cli("serve", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "keys create" in result.stderr and "Traceback" not in result.stderr


async def test_check_reports_the_key_and_the_bots(tmp_path: Path, sandbox: Sandbox) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    result = await acli(
        "check",
        "--state-dir",
        str(tmp_path),
        "--kashflow-endpoint",
        sandbox.url,
        "--http-port",
        "0",
        "--smtp-port",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert f"ok      server key: keys 1 (current 1) from {tmp_path / 'server.key'}" in result.stdout
    assert "mail bot: no account has it switched on" in result.stdout


async def test_check_tries_each_bots_kashflow_and_relay(tmp_path: Path, sandbox: Sandbox) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    keyring = Keyring.load(tmp_path / "server.key")
    async with CaptureServer(tmp_path / "outbox") as relay:
        db = open_database(None, tmp_path)
        try:
            accounts = AccountSettings(db, keyring)
            await accounts.set_bot_credentials("demo", DEMO)
            await accounts.update(
                "demo",
                request_address="invoices@northwind.example",
                relay_host=relay.host,
                relay_port=relay.port,
                relay_security="none",
                enabled=True,
            )
        finally:
            db.close()
        args = ["check", "--state-dir", str(tmp_path), "--kashflow-endpoint", sandbox.url]
        args += ["--allow-relay", relay.host]  # the capture relay is on loopback
        args += ["--http-port", "0", "--smtp-port", "0"]
        healthy = await acli(*args)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "ok      account demo KashFlow sign-in: Northwind Studio Ltd" in healthy.stdout
        relay_line = f"account demo relay {relay.host}:{relay.port}"
        assert f"ok      {relay_line}: connects and signs in" in healthy.stdout
        # The operator's list leaves the account out: its bot would refuse all its mail.
        left_out = await acli(*args, "--allowed-accounts", "second")
        assert left_out.returncode == 1
        assert (
            "FAILED  account demo: the bot is on but the account is not in --allowed-accounts "
            "/ KASHFLOW_PERMALINK_ALLOWED_ACCOUNTS"
        ) in left_out.stdout

    down = await acli(*args)  # the relay has gone
    assert down.returncode == 1
    assert f"FAILED  {relay_line}: " in down.stdout


async def test_check_tries_the_relay_of_an_account_whose_bot_is_off(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # The settings pages send "email this link" through an account's relay, bot on or off.
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    db = open_database(None, tmp_path)
    try:
        accounts = AccountSettings(db, Keyring.load(tmp_path / "server.key"))
        await accounts.update(
            "demo", relay_host="127.0.0.1", relay_port=9, relay_security="none"
        )  # nothing listens there
        await accounts.update("second", relay_host="127.0.0.1", relay_port=9, relay_security="none")
        # Sealed with a key this server does not have.
        await AccountSettings(db, Keyring.generate(7)).set_relay_password("second", "secret")
    finally:
        db.close()
    args = ["--kashflow-endpoint", sandbox.url, "--http-port", "0", "--smtp-port", "0"]
    args += ["--allow-relay", "127.0.0.1"]
    result = await acli("check", "--state-dir", str(tmp_path), *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED  account demo relay 127.0.0.1:9: " in result.stdout
    assert (
        "FAILED  account second relay: the stored relay password no longer opens with the "
        "server key"
    ) in result.stdout
    assert "mail bot: no account has it switched on" in result.stdout


async def test_check_prints_kashflows_own_words_when_it_refuses(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    db = open_database(None, tmp_path)
    try:
        accounts = AccountSettings(db, Keyring.load(tmp_path / "server.key"))
        await accounts.set_bot_credentials("iplocked", IPLOCKED)
        await accounts.update(
            "iplocked",
            request_address="in@lockwood.example",
            relay_host="127.0.0.1",
            relay_port=9,  # nothing listens: the relay fails too, after KashFlow
            relay_security="none",
            enabled=True,
        )
    finally:
        db.close()
    args = ["--kashflow-endpoint", sandbox.url, "--http-port", "0", "--smtp-port", "0"]
    result = await acli("check", "--state-dir", str(tmp_path), *args)
    assert result.returncode == 1
    assert (
        "FAILED  account iplocked KashFlow sign-in: KashFlow refused this server's IP address. "
        'KashFlow said: "The IP address of 127.0.0.1 is not in the access list"'
    ) in result.stdout
    assert IPLOCKED.password not in result.stdout + result.stderr


def test_an_unreadable_pdf_host_list_stops_a_command_with_a_clear_message(
    tmp_path: Path,
) -> None:
    result = cli("check", "--state-dir", str(tmp_path), "--pdf-hosts", "kashflow.com:443")
    assert result.returncode == 2
    assert "--pdf-hosts must be" in result.stderr and "without a port" in result.stderr
    assert "Traceback" not in result.stderr


async def test_check_signs_in_to_each_bots_mailbox(
    tmp_path: Path, sandbox: Sandbox, make_dovecot: MakeDovecot
) -> None:
    server = make_dovecot()
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    keyring = Keyring.load(tmp_path / "server.key")
    async with CaptureServer(tmp_path / "outbox") as relay:
        db = open_database(None, tmp_path)
        try:
            store = SqlStore(db, keyring)
            await store.accounts.set_bot_credentials("demo", DEMO)
            await store.accounts.update(
                "demo",
                request_address="invoices@northwind.example",
                relay_host=relay.host,
                relay_port=relay.port,
                relay_security="none",
                enabled=True,
            )
            await configure_mailbox(store.mailboxes, server)
        finally:
            db.close()
        args = ["check", "--state-dir", str(tmp_path), "--kashflow-endpoint", sandbox.url]
        args += ["--allow-relay", relay.host]  # the capture relay is on loopback
        args += ["--http-port", "0", "--smtp-port", "0"]
        env = {"KASHFLOW_PERMALINK_IMAP_CA_FILE": str(server.certificate)}
        healthy = await acli(*args, env=env)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        mailbox = f"account demo mailbox invoices on 127.0.0.1:{server.ssl_port}"
        assert f"ok      {mailbox}: signs in and opens INBOX" in healthy.stdout

        untrusted = await acli(*args)  # the server's certificate is not in the system's CAs
        assert untrusted.returncode == 1
        assert f"FAILED  {mailbox}: " in untrusted.stdout
        assert "certificate is not trusted" in untrusted.stdout


def test_the_demo_says_it_leaves_a_deployments_variables_aside(tmp_path: Path) -> None:
    # A shell that sourced a real deployment's env file, running the demo.
    real = tmp_path / "real-state"
    env = {"KASHFLOW_PERMALINK_STATE_DIR": str(real), "KASHFLOW_PERMALINK_HTTP_PORT": "9999"}
    result = cli("demo", "--web-replicas", "0", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "kashflow-permalink demo: KASHFLOW_PERMALINK_STATE_DIR, KASHFLOW_PERMALINK_HTTP_PORT "
        "left aside: the demo takes --state-dir, --http-port, --smtp-port as options only"
    )
    assert not real.exists()
    shown = " ".join(cli("demo", "--help").stdout.split())
    assert "(--state-dir, --http-port, --smtp-port) are options only" in shown


def test_check_reports_a_state_store_it_cannot_reach(tmp_path: Path) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://kfp@127.0.0.1:{closed.getsockname()[1]}/state"
        result = cli(
            "check",
            "--state-dir",
            str(tmp_path),
            "--database-url",
            url,
            "--http-port",
            "0",
            "--smtp-port",
            "0",
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED  state: cannot connect to PostgreSQL at {url}" in result.stdout
    assert "(--database-url / KASHFLOW_PERMALINK_DATABASE_URL" in result.stdout
    assert "accounts: not checked (they need the key and the state store)" in result.stdout
    assert "Traceback" not in result.stderr
