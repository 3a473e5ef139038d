"""The bot's listener on a disk that is really full, in a child process of its own.

:func:`full_disk_listener` starts ``python -m tests.support.full_disk`` inside new user and
mount namespaces (``unshare``: no privileges needed, nothing mounted outside the child).
The child mounts a small tmpfs over the state directory, opens the state database and the
spool there, starts the listener on a loopback port, and then fills the tmpfs to its last
byte with a filler file, so that the next write that needs room fails with ENOSPC as on
a real full disk. The parent speaks SMTP to it and sends it one-line commands:

* ``counts`` — the spool's counts by state, as one JSON line;
* ``free`` — remove the filler (the operator makes room), answers ``freed``.

Closing the child's stdin stops it; the tmpfs goes with its mount namespace.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.listener import ListenerSettings, accept_addresses, create_listener
from permalink.db import open_database
from permalink.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
REQUEST = "invoices@biz.example"
#: Room for the state database after its migrations, before the filler takes the rest.
TMPFS_SIZE = "4m"
FILLER = "filler"


def fill(directory: Path) -> int:
    """Write a filler file until the disk refuses even one more byte; returns its size."""
    written = 0
    chunk = 1 << 16
    with (directory / FILLER).open("wb", buffering=0) as out:
        while chunk:
            try:
                written += out.write(bytes(chunk))
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk //= 2
        os.fsync(out.fileno())
    return written


async def serve(state: Path) -> None:
    """The child: the listener on the full disk, answering commands from stdin."""
    db = open_database(None, state)
    spool = Spool(db)
    listener = create_listener(
        spool,
        accept_addresses((REQUEST,), account="biz"),
        ListenerSettings(host="127.0.0.1", port=0),
    )
    await listener.start()
    filler = fill(state)
    loop = asyncio.get_running_loop()
    print(json.dumps({"port": listener.port, "filler": filler}), flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "counts":
                print(json.dumps(await spool.counts()), flush=True)
            elif command == "free":
                (state / FILLER).unlink()
                print("freed", flush=True)
    finally:
        await listener.close()
        db.close()


def main() -> None:
    state = Path(sys.argv[1])
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(state)],
        check=True,
    )
    asyncio.run(serve(state))


@dataclass
class FullDisk:
    """The parent's handle on the child: its SMTP port and its commands."""

    process: asyncio.subprocess.Process
    port: int
    filler: int

    async def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(60):
            return (await self.process.stdout.readline()).decode().strip()

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = json.loads(await self.ask("counts"))
        return counts


@asynccontextmanager
async def full_disk_listener(directory: Path) -> AsyncIterator[FullDisk]:
    """The child process, listening with its state on a full tmpfs (see the module)."""
    state = directory / "state"
    state.mkdir(parents=True)
    log = directory / "full-disk.log"
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *("unshare", "--user", "--map-root-user", "--mount"),
            *(sys.executable, "-m", "tests.support.full_disk", str(state)),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        if not line.startswith(b"{"):
            await process.wait()
            raise RuntimeError(f"the full-disk listener did not start: {log.read_text()}")
        ready: dict[str, Any] = json.loads(line)
        yield FullDisk(process, int(ready["port"]), int(ready["filler"]))
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


__all__ = ["FullDisk", "full_disk_listener"]


if __name__ == "__main__":
    main()
