"""The built wheel installs and runs away from the checkout.

The project's sources are copied to a temporary folder (so the build leaves nothing in the
checkout), built into a wheel and installed, with its dependencies from the package
registry, into a fresh virtual environment, by the deployment guide's own commands
(``docs/DEPLOY.md``, section 1); then ``kashflow-permalink demo`` runs from there, in a
folder of its own, until it answers over HTTP (pages rendered from the templates, the
static files, a link's page) and by mail. Templates and static files are package
resources, so they come from the installed package, never from the checkout.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import subprocess
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.demo import DemoProcess
from tests.support.guide import PREFIX, SOURCES, Site, install_commands
from tests.support.processes import ROOT
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def send_request(info: dict[str, Any], sender: str) -> None:
    to = info["request_address"]
    with smtplib.SMTP(info["smtp"]["host"], info["smtp"]["port"], timeout=30) as smtp:
        smtp.sendmail(
            sender,
            [to],
            f"From: {sender}\r\nTo: {to}\r\nSubject: invoices\r\n\r\nMy invoices?\r\n".encode(),
        )


def first_reply(outbox: Path) -> EmailMessage | None:
    for path in outbox.glob("*.eml"):
        reply = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(reply, EmailMessage)
        return reply
    return None


def run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_sources(tmp: Path) -> Path:
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            # Links stay links (permalink/templates is one), as in a checkout.
            shutil.copytree(
                path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(path, source / name)
    return source


def build_and_install(tmp: Path) -> Path:
    """The guide's build and install commands, run in a copy of the sources; the bin
    folder of the environment they made."""
    source = copy_sources(tmp)
    env = tmp / "venv"
    site = Site(
        swaps=[(PREFIX, str(env))], patterns=[(re.compile(r"^python3 "), f"{sys.executable} ")]
    )
    commands = install_commands()
    assert [c.split()[:3] for c in commands] == [
        ["python3", "-m", "pip"],
        ["python3", "-m", "venv"],
        [f"{PREFIX}/bin/pip", "install", "dist/kashflow_permalink-*.whl"],
    ]
    for command in commands:
        run("bash", "-euc", site(command), cwd=source)
    return env / "bin"


async def test_the_wheel_installs_and_runs_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    bin_dir = build_and_install(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = run(
        bin_dir / "python",
        "-c",
        "import permalink, web.app; print(permalink.TEMPLATES); print(web.app.STATIC)",
        cwd=elsewhere,
    ).split()
    templates, static = Path(where[0]), Path(where[1])
    for folder in (templates, static):
        assert (tmp_path / "venv") in folder.parents  # the installed package's own files
        assert folder.is_dir() and not folder.is_symlink()
    assert (templates / "web" / "invoices.html").is_file()
    assert (templates / "mail" / "reply.txt").is_file()

    demo = DemoProcess(
        elsewhere / "state",
        "--http-port",
        "0",
        "--smtp-port",
        "0",
        command=[str(bin_dir / "kashflow-permalink")],
        cwd=elsewhere,
    )
    info = demo.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(info["web"] + "/settings/login") as resp:
                assert resp.status == 200 and "KashFlow" in await resp.text()
            async with http.get(info["web"] + "/static/web.css") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/css"
            customer = info["customers"][0]
            async with http.get(customer["links"]["all"]) as resp:
                page = await resp.text()
                assert resp.status == 200
                assert customer["name"] in page.replace("&amp;", "&")
            async with http.get(info["web"] + "/l/not-a-link") as resp:
                assert resp.status == 404 and "not valid" in await resp.text()
        # The mail templates too: a request by mail gets its reply.
        sender = str(customer["email"]).split(";")[0].strip()
        await asyncio.to_thread(send_request, info, sender)
        outbox = Path(info["outbox"])
        reply = await eventually(lambda: asyncio.to_thread(first_reply, outbox), within=120)
        body = reply.get_body(("plain",))
        assert reply["To"] == sender and body is not None and "/l/" in body.get_content()
    finally:
        assert demo.stop() == 0, demo.log
