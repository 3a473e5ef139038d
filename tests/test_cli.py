"""The ``kashflow-permalink`` command: keys, link, and settings validation."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import config
from app.config import ConfigError
from kashflow.sandbox import Sandbox
from permalink.keyring import Keyring
from permalink.links import open_link


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
    assert "keys: 2 (current 2)" in listed.stdout


async def test_link_prints_a_permalink_for_the_customer(tmp_path: Path, sandbox: Sandbox) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    env = {"KASHFLOW_USERNAME": "demo", "KASHFLOW_PASSWORD": "demo-api-pass"}
    common = ["--state-dir", str(tmp_path), "--kashflow-url", sandbox.url]
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
        "--kashflow-url",
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
        "--kashflow-url",
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
        ({"KASHFLOW_PERMALINK_PUBLIC_BASE_URL": "invoices.example.com"}, "public_base_url"),
        ({"KASHFLOW_PERMALINK_HTTP_PORT": "eighty"}, "HTTP_PORT"),
        ({"KASHFLOW_PERMALINK_SMTP_PORT": "70000"}, "smtp_port"),
        ({"KASHFLOW_PERMALINK_TLS_CERT": "/x.pem"}, "tls_cert and tls_key"),
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
