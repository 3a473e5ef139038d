"""What live key reloading and re-sealing cost: figures, not tests.

* a keyring read through :class:`app.keys.LiveKeyring` (one ``stat`` of the key file per
  use, so a rotation reaches a running process at its next request) against a fixed one;
* ``keys rotate`` re-sealing the stored secrets of many accounts (SQLite in a temporary
  directory), and ``keys retire`` afterwards.

Run: ``python -m benchmarks.keys [--accounts N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app import keys
from app.config import load
from kashflow.models import Credentials
from permalink.accounts import AccountSettings
from permalink.db import open_database
from permalink.keyring import Keyring, keyring_source

READS = 200_000


def per_read_us(source: object) -> float:
    assert callable(source)
    start = time.perf_counter()
    for _ in range(READS):
        source()
    return (time.perf_counter() - start) / READS * 1e6


async def fill(state: Path, accounts: int) -> None:
    db = open_database(None, state)
    try:
        settings = AccountSettings(db, Keyring.load(state / "server.key"))
        for n in range(accounts):
            name = f"firm{n:05d}"
            await settings.set_bot_credentials(name, Credentials(name, f"api-pass-{n}"))
            await settings.set_relay_password(name, f"relay-pass-{n}")
    finally:
        db.close()


async def main(accounts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        settings = load({}, state_dir=str(state))
        keys.create(settings)
        fixed = per_read_us(keyring_source(Keyring.load(settings.key_file)))
        live = per_read_us(keys.LiveKeyring(settings.key_file))
        print(f"keyring read: fixed {fixed:.2f} us, live (stat of the key file) {live:.2f} us")

        await fill(state, accounts)
        start = time.perf_counter()
        status, lines = await keys.rotate(settings)
        rotated = time.perf_counter() - start
        assert status == 0, lines
        start = time.perf_counter()
        status, lines = await keys.retire(settings, 1)
        retired = time.perf_counter() - start
        assert status == 0, lines
        print(
            f"keys rotate with {accounts} accounts ({2 * accounts} secrets re-sealed): "
            f"{rotated:.2f} s; keys retire afterwards: {retired:.2f} s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=500)
    asyncio.run(main(parser.parse_args().accounts))
