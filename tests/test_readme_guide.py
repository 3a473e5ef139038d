"""The README's "One machine, step by step", run: its commands, in its order.

The guide's paths, ports and service user are swapped for this test's own
(:class:`tests.support.guide.Site`), and ``sudo`` is left out (the test's user owns
everything here). The steps run: the state directory (step 1), the settings file (step 2),
the ``kfp`` function, ``kfp keys create`` and ``kfp check`` (step 3), the systemd unit's
``ExecStart`` with its ``EnvironmentFile`` and its ``ExecReload`` (step 4), ``kfp check``
against the running service, and ``kfp mail list`` (Keeping it running). Installing the
package is ``tests/test_wheel.py``'s; nginx, certbot, Postfix and KashFlow's own settings
need the machine's administrator and the internet, and are not run here.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from kashflow.sandbox import Sandbox
from tests.support import guide
from tests.support.guide import Block, Site
from tests.support.processes import ROOT
from tests.support.waiting import eventually

README = ROOT / "README.md"
ENV = "/etc/kashflow-permalink/env"
UNIT = "/etc/systemd/system/kashflow-permalink.service"


def readme_block(containing: str) -> Block:
    (block,) = [b for b in guide.blocks(README) if b.language == "sh" and containing in b.text]
    return block


def heredoc(block: Block) -> str:
    """The text a block writes with ``tee FILE <<'END' … END``."""
    return block.text.split("<<'END'\n", 1)[1].split("\nEND\n", 1)[0]


def sandbox_settings(settings: Path, endpoint: str) -> dict[str, str]:
    """The settings file as written (owner and group may read it, no one else), with
    KashFlow's endpoint the sandbox; the variables systemd's EnvironmentFile gives."""
    assert settings.stat().st_mode & 0o777 == 0o640
    with settings.open("a") as more:
        more.write(f"KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT={endpoint}\n")
    return guide.settings_file(settings.read_text())


async def logged(log: Path, text: str) -> bool | None:
    """True once the service's log (its journal, here a file) holds ``text``."""
    return True if text in await asyncio.to_thread(log.read_text) else None


def lmtp_greets(port: int) -> bool:
    """True when the listener answers LMTP's LHLO (an SMTP listener refuses it)."""
    with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
        code, _ = client.ehlo()
        return code == 250


async def test_the_one_machine_guide_of_the_readme(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int], sandbox: Sandbox
) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    state, etc = tmp_path / "state", tmp_path / "etc"
    http_port, smtp_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    site = Site(
        swaps=[
            ("sudo -u kashflow-permalink ", ""),
            ("sudo ", ""),
            ("-o kashflow-permalink -g kashflow-permalink", f"-o {user} -g {group}"),
            ("root:kashflow-permalink", f"{user}:{group}"),
            ("/opt/kashflow-permalink", str(Path(sys.executable).parent.parent)),
            ("/var/lib/kashflow-permalink", str(state)),
            ("/etc/kashflow-permalink", str(etc)),
            ("_PORT=8080\n", f"_PORT={http_port}\n"),
            ("_PORT=8025\n", f"_PORT={smtp_port}\n"),
        ]
    )
    # The service's environment: none of the test's own KASHFLOW_PERMALINK_* values.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KASHFLOW_PERMALINK_")}
    kfp = site(readme_block("kfp() {").text)

    def shell(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=clean,
        )

    def run(script: str) -> str:
        result = shell(script)
        assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    # 1: the state directory (the rest of step 1 installs packages and the service user).
    [make_state] = [c for c in readme_block("python3 -m venv").commands if "/var/lib/" in c]
    run(site(make_state))
    assert state.stat().st_mode & 0o777 == 0o700

    # 2: the settings file. The guide's reaches the real KashFlow; here, the sandbox.
    written = readme_block(f"{ENV} >/dev/null <<'END'")
    run(site(written.text))
    environment = {**clean, **sandbox_settings(Path(site(ENV)), sandbox.url)}
    assert environment["KASHFLOW_PERMALINK_HTTP_PORT"] == str(http_port)

    # 3: the key, then check (run in a thread: the sandbox answers on this event loop).
    steps = readme_block("kfp keys create").commands
    assert steps == ["kfp keys create", "kfp check"]
    created = await asyncio.to_thread(run, f"{kfp}\n{steps[0]}")
    assert (state / "server.key").stat().st_mode & 0o777 == 0o600, created
    checked = await asyncio.to_thread(run, f"{kfp}\n{steps[1]}")
    assert f"ok      KashFlow at {sandbox.url}" in checked
    assert f"127.0.0.1:{http_port} (--http-port / KASHFLOW_PERMALINK_HTTP_PORT): free" in checked
    assert checked.rstrip().endswith("checks passed")

    # 4: the unit, as systemd runs it: ExecStart with the EnvironmentFile.
    unit = heredoc(readme_block(f"{UNIT} >/dev/null <<'END'"))
    assert guide.unit_value(unit, "EnvironmentFile") == ENV
    log = tmp_path / "journal.log"
    with log.open("wb") as journal:
        proc = await asyncio.create_subprocess_exec(
            *site(guide.unit_value(unit, "ExecStart")).split(),
            stdout=asyncio.subprocess.PIPE,
            stderr=journal,
            env=environment,
        )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            ready = json.loads(await proc.stdout.readline())
        assert ready["smtp_port"] == smtp_port
        async with aiohttp.ClientSession() as http, http.get(ready["url"] + "/healthz") as resp:
            assert resp.status == 200
        assert await asyncio.to_thread(lmtp_greets, smtp_port)  # LMTP=true, for Postfix
        serving = log.read_text()
        assert "mail by LMTP on 127.0.0.1" in serving
        assert "KashFlow accounts allowed: northwind" in serving

        # `kfp check` with the service running: its ports are its own.
        again = await asyncio.to_thread(run, f"{kfp}\nkfp check")
        assert (
            f"127.0.0.1:{smtp_port} (--smtp-port / KASHFLOW_PERMALINK_SMTP_PORT): in use by "
            "this service, which is running"
        ) in again
        assert again.rstrip().endswith("checks passed")

        # systemctl reload: ExecReload, with $MAINPID the service's process.
        reload = guide.unit_value(unit, "ExecReload").replace("$MAINPID", str(proc.pid))
        run(reload)
        await eventually(lambda: logged(log, "server keys re-read (SIGHUP)"), within=30)
        assert proc.returncode is None  # still serving

        # Keeping it running: stuck mail, from the shell.
        [listing] = [c for c in readme_block("kfp mail list").commands if "mail list" in c]
        listed = await asyncio.to_thread(run, f"{kfp}\n{listing.split('#')[0]}")
        assert listed == "no stuck mail\n"
    finally:
        if proc.returncode is None:
            proc.terminate()  # what systemctl stop sends
        async with asyncio.timeout(30):
            stopped = await proc.wait()
    assert stopped == 0
    last = (await asyncio.to_thread(log.read_text)).splitlines()[-1]
    assert last.endswith("stopped (SIGTERM): no longer serving https://invoices.example.co.uk")
