"""The command line on the configured store: ``revoke`` by link id on either database, and
the demo reading its database setting as every other command does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from permalink.registry import LinkRegistry
from tests.conftest import OpenDb

T0 = 1_700_000_000


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_revoke_by_link_id_on_the_configured_store(
    tmp_path: Path, state_url: str | None, open_db: OpenDb
) -> None:
    assert cli("keys", "create", "--state-dir", str(tmp_path)).returncode == 0
    registry = LinkRegistry(open_db())
    link = await registry.add(
        "acme",
        customer_code="CUST01",
        customer_name="Customer One",
        scope="unpaid",
        created=T0,
        minted_by="settings",
    )
    where = ["--state-dir", str(tmp_path)]
    where += [] if state_url is None else ["--database-url", state_url]

    first = cli("revoke", link.link_id, *where)

    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        f"revoked link {link.link_id} of acme: it no longer opens, from the next request\n"
    )
    revoked = await LinkRegistry(open_db()).find(link.link_id)
    assert revoked is not None and revoked.revoked

    again = cli("revoke", link.link_id, *where)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"link {link.link_id} of acme was already revoked\n"

    unknown = cli("revoke", "nonsense", *where)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "kashflow-permalink: that is neither a link this server can open nor a known link id\n"
    )
    assert unknown.stdout == ""


def test_the_demo_reads_its_database_from_the_environment_like_every_command(
    tmp_path: Path,
) -> None:
    state = tmp_path / "demo"
    result = cli(
        "demo",
        "--state-dir",
        str(state),
        "--http-port",
        "0",
        "--smtp-port",
        "0",
        env={"KASHFLOW_PERMALINK_DATABASE_URL": "mysql://x"},
    )

    assert result.returncode == 2
    assert result.stderr.startswith("kashflow-permalink: KASHFLOW_PERMALINK_DATABASE_URL must be ")
    assert "postgresql://" in result.stderr
    assert "Traceback" not in result.stderr
    assert not state.exists()  # refused before anything was made or started
