"""The state on disk is the owner's alone, whatever the umask and whatever an older
release left behind: the state directory 0700, the key, the database and its journal
(SQLite's ``-wal`` and ``-shm`` files) 0600, checked on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.processes import ROOT, ServeProcess, prepare_state, sandbox_process

#: Run the command line as a process started under a permissive umask would.
UNDER_UMASK_022 = "import os, sys; os.umask(0o022); from app.cli import main; sys.exit(main())"


def cli(*command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNDER_UMASK_022, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def modes(state: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in [state, *state.rglob("*")]}


def older_release_state(state: Path) -> None:
    """A state directory as an older release left it after a crash, under umask 022: the
    directory 0755, the database 0644, and its journal (-wal, -shm) still there, 0644."""
    script = textwrap.dedent(
        f"""
        import os, sqlite3
        os.umask(0o022)
        os.makedirs({str(state)!r})
        conn = sqlite3.connect({str(state / "state.sqlite3")!r})
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE left_behind (x)")
        conn.commit()
        os._exit(0)  # no close: the journal stays, as after a crash
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_state_an_older_release_left_open_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    older_release_state(state)
    assert modes(state) == {
        "state": "0o755",
        "state.sqlite3": "0o644",
        "state.sqlite3-wal": "0o644",
        "state.sqlite3-shm": "0o644",
    }
    cli("keys", "create", "--state-dir", str(state))
    cli("accounts", "allow-domain", "demo", "acme.example", "--state-dir", str(state))
    found = modes(state)
    assert found["state"] == "0o700"
    assert found["state.sqlite3"] == "0o600"
    for name, mode in found.items():  # the journal too, if SQLite kept it
        assert mode == ("0o700" if name == "state" else "0o600"), name


async def test_a_running_server_keeps_its_database_and_journal_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = os.umask(0o022)
    try:
        with sandbox_process(0) as kashflow_url:
            await prepare_state(state, relay_port=2525)
            served = ServeProcess(state, kashflow_url, role="all", log=tmp_path / "serve.log")
            await served.start()
            try:
                # While it runs, SQLite's journal is open beside the database.
                running = modes(state)
            finally:
                assert await served.terminate() == 0
    finally:
        os.umask(before)
    assert {"server.key", "state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"} <= set(running)
    for name, mode in running.items():
        assert mode == ("0o700" if name == "state" else "0o600"), name
