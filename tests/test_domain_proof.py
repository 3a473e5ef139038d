"""Request and reply-from addresses only at domains the account proved it controls.

Over real sockets: the settings pages on loopback, the sandbox KashFlow, and a DNS server
of the test's own on loopback that the product's resolver (dnspython) asks for the TXT
record. An account cannot take over another firm's request address by typing it; it can
once it has published the record, or once the operator grants the domain. The pages'
tests run on both stores.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kashflow.client import KashFlow
from kashflow.sandbox import DEMO, SECOND, Sandbox
from permalink.keyring import Keyring
from tests.support.processes import ROOT
from tests.support.signed_in import Accountant, Site, settings_site

BOT_FORM = {
    "default_scope": "all",
    "unknown_sender": "ignore",
    "per_customer_limit": "3",
    "global_limit": "60",
    "max_attachment_mb": "10",
    "relay_host": "",
    "relay_port": "587",
    "relay_security": "starttls",
    "relay_username": "",
}
_RECORD = re.compile(
    r"named (_kashflow-permalink\.[a-z.-]+) with the text (kashflow-permalink-verify=[\w-]+)"
)


@pytest.fixture
async def site(
    tmp_path: Path, kashflow: KashFlow, sandbox: Sandbox, state_url: str | None
) -> AsyncIterator[Site]:
    """The settings pages on each store: the proofs are rows in the shared state."""
    async with settings_site(tmp_path, kashflow, sandbox, database_url=state_url) as built:
        yield built


@pytest.fixture
async def accountant(site: Site) -> AsyncIterator[Accountant]:
    browser = Accountant(site)
    assert (await browser.sign_in()).status == 303
    yield browser
    await browser.close()


async def save(browser: Accountant, **fields: str) -> str:
    page = await browser.post("/settings/bot", {**BOT_FORM, **fields})
    return html.unescape(page.text)


async def test_an_address_at_an_unproved_domain_is_refused_with_the_record_to_publish(
    site: Site, accountant: Accountant
) -> None:
    text = await save(accountant, request_address="invoices@acme-fab.example")
    assert "Nothing was saved: first prove that this account controls acme-fab.example" in text
    assert (await site.core.store.accounts.get("demo")).request_address == ""
    record = _RECORD.search(text)
    assert record is not None
    name, value = record.groups()
    assert name == "_kashflow-permalink.acme-fab.example"

    # Checking before the record is published says what DNS has.
    checked = await accountant.post("/settings/bot/domain", {"domain": "acme-fab.example"})
    assert checked.status == 400
    assert "DNS has no TXT record at _kashflow-permalink.acme-fab.example" in checked.text

    # A record with another token proves nothing.
    site.dns.publish(name, "kashflow-permalink-verify=someone-elses-token")
    checked = await accountant.post("/settings/bot/domain", {"domain": "acme-fab.example"})
    assert "does not hold" in html.unescape(checked.text)

    site.dns.publish(name, "v=spf1 -all", value)
    checked = await accountant.post("/settings/bot/domain", {"domain": "acme-fab.example"})
    assert "The domain is proved" in checked.text
    assert name in site.dns.questions

    text = await save(accountant, request_address="invoices@acme-fab.example")
    assert "The bot settings are saved." in text
    assert (await site.core.store.accounts.get("demo")).request_address == (
        "invoices@acme-fab.example"
    )


async def test_another_account_cannot_claim_a_firms_address(
    site: Site, accountant: Accountant
) -> None:
    """The attack: the firm moves to a new address; another account types the old one."""
    await site.core.store.domains.mark_proved("demo", "northwind.example", "operator")
    assert "saved" in await save(accountant, request_address="invoices@northwind.example")
    assert "saved" in await save(accountant, request_address="bills@northwind.example")

    rival = Accountant(site)
    try:
        assert (await rival.sign_in(SECOND)).status == 303
        text = await save(rival, request_address="invoices@northwind.example")
        assert "first prove that this account controls northwind.example" in text
        text = await save(rival, reply_from="accounts@northwind.example")
        assert "first prove that this account controls northwind.example" in text
    finally:
        await rival.close()
    assert await site.core.store.accounts.account_for_address("invoices@northwind.example") is None
    assert (await site.core.store.accounts.get("second")).reply_from == ""


async def test_an_unchanged_address_saves_without_a_new_proof(
    site: Site, accountant: Accountant
) -> None:
    # Set before proofs existed (or by the operator): saving other fields keeps working.
    await site.core.store.accounts.update("demo", request_address="invoices@legacy.example")
    text = await save(accountant, request_address="invoices@legacy.example", global_limit="50")
    assert "The bot settings are saved." in text


def test_the_operator_grants_a_domain_from_the_command_line(tmp_path: Path) -> None:
    Keyring.create(tmp_path / "server.key")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "accounts",
            "allow-domain",
            "Demo",
            "Acme-Fab.Example",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "demo may now use addresses at acme-fab.example"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "accounts",
            "allow-domain",
            "demo",
            "not a domain",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "'not a domain' is not a domain name" in bad.stderr
    assert "Traceback" not in bad.stderr


async def test_a_granted_domain_is_shown_as_granted(site: Site, accountant: Accountant) -> None:
    await site.core.store.domains.mark_proved(DEMO.username, "acme-fab.example", "operator")
    page = await accountant.get("/settings/bot")
    assert "acme-fab.example</strong>:\n      proved (granted by the server" in page.text
    assert "saved" in await save(accountant, request_address="invoices@acme-fab.example")


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """A real process started with a permissive umask still writes owner-only files."""
    state = tmp_path / "state"
    for command in (["keys", "create"], ["accounts", "allow-domain", "demo", "acme.example"]):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys; os.umask(0o022); from app.cli import main; sys.exit(main())",
                *command,
                "--state-dir",
                str(state),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    written = [state, *state.rglob("*")]
    assert {p.name for p in written} >= {"state", "server.key", "state.sqlite3"}
    for path in written:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path.name, oct(mode))
