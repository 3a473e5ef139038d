"""The product as separate processes, for tests and benchmarks that kill or measure them.

* :class:`ServeProcess` runs ``kashflow-permalink serve --role …`` (the real entry point,
  as ``python -m app.cli``) on a state directory, reads its ready line, and can SIGKILL it;
* :func:`prepare_state` writes the server key and the demo account's bot settings;
* :func:`sandbox_process` serves the sandbox KashFlow in its own process.

Everything runs from the checkout the tests run from.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kashflow.sandbox import DEMO, pdf_hosts_for
from permalink.db import open_database
from permalink.keyring import Keyring
from permalink.store import SqlStore

ROOT = Path(__file__).resolve().parents[2]
REQUEST = "invoices@northwind.example"
MAIL_DOMAIN = "bot.northwind.example"
BASE_URL = "https://invoices.northwind.example"


class ServeProcess:
    """``kashflow-permalink serve`` in its own process, on a fixed port across restarts
    (0 picks one on the first start)."""

    def __init__(
        self,
        state: Path,
        kashflow_url: str,
        *,
        role: str = "bot",
        port: int = 0,
        log: Path,
        database_url: str | None = None,
        public_base_url: str = BASE_URL,
        env: Mapping[str, str] | None = None,
        verbose: bool = False,  # every logger at DEBUG
    ) -> None:
        self.state, self.kashflow_url, self.role, self.port = state, kashflow_url, role, port
        self.verbose = verbose
        self.log, self.database_url, self.public_base_url = log, database_url, public_base_url
        self.extra_env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KASHFLOW_PERMALINK_STATE_DIR": str(self.state),
            "KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT": self.kashflow_url,
            "KASHFLOW_PERMALINK_PDF_HOSTS": pdf_hosts_for(self.kashflow_url),
            "KASHFLOW_PERMALINK_PUBLIC_BASE_URL": self.public_base_url,
            "KASHFLOW_PERMALINK_MAIL_DOMAIN": MAIL_DOMAIN,
            "KASHFLOW_PERMALINK_HTTP_HOST": "127.0.0.1",
            "KASHFLOW_PERMALINK_SMTP_HOST": "127.0.0.1",
            # The capture relay listens on loopback, which only an operator can allow.
            "KASHFLOW_PERMALINK_ALLOW_RELAY": "127.0.0.1",
        }
        port = (
            "KASHFLOW_PERMALINK_SMTP_PORT"
            if self.role == "bot"
            else ("KASHFLOW_PERMALINK_HTTP_PORT")
        )
        env[port] = str(self.port)
        if self.database_url:
            env["KASHFLOW_PERMALINK_DATABASE_URL"] = self.database_url
        if self.verbose:
            env["KASHFLOW_PERMALINK_LOG_LEVEL"] = "debug"
        env.update(self.extra_env)
        return env

    async def start(self, within: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--role",
                self.role,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.environment(),
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            line = (await self.proc.stdout.readline()).decode()
        if not line.startswith("{"):
            raise RuntimeError(f"the {self.role} process did not start (see {self.log})")
        self.ready = json.loads(line)
        if self.role == "bot":
            self.port = int(self.ready["smtp_port"])
        else:
            self.port = int(str(self.ready["url"]).rsplit(":", 1)[-1])

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    @property
    def smtp_port(self) -> int:
        return int(self.ready["smtp_port"])

    async def send_mail(self, raw: bytes, mail_from: str, rcpt: str) -> None:
        """One message over SMTP to the process's mail port (in a thread: smtplib blocks)."""

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as client:
                client.sendmail(mail_from, [rcpt], raw)

        await asyncio.to_thread(deliver)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait_for_log(self, text: str, *, after: int = 0, within: float = 30.0) -> str:
        """The first line of the process's log, from byte ``after`` on, holding ``text``;
        waits for it at most ``within`` seconds (a log line is what a process leaves when
        something happened that no socket shows)."""
        async with asyncio.timeout(within):
            while True:
                written = self.log.read_bytes()[after:].decode(errors="replace")
                for line in written.splitlines():
                    if text in line:
                        return line
                assert self.proc is None or self.proc.returncode is None, (
                    f"the {self.role} process exited:\n{written}"
                )
                await asyncio.sleep(0.05)

    def log_size(self) -> int:
        """Where the log ends now (for :meth:`wait_for_log`'s ``after``)."""
        return self.log.stat().st_size if self.log.exists() else 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()  # SIGKILL: no clean-up of any kind
            await self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        async with asyncio.timeout(30):
            return await self.proc.wait()


def bot_env(
    *, concurrency: int = 2, retry_base: float = 0.2, lease_s: float = 2.0
) -> dict[str, str]:
    """Bot tunables for tests: quick retries, and leases short enough that a killed
    worker's messages are taken over within a few seconds."""
    return {
        "KASHFLOW_PERMALINK_BOT_CONCURRENCY": str(concurrency),
        "KASHFLOW_PERMALINK_RETRY_BASE_SECONDS": str(retry_base),
        "KASHFLOW_PERMALINK_LEASE_SECONDS": str(lease_s),
    }


async def prepare_state(state: Path, relay_port: int, *, database_url: str | None = None) -> None:
    """A server key and the demo account's bot: on, replying through ``relay_port``.

    The rate limits are at their highest, since every request comes from a few customers.
    """
    os.makedirs(state, exist_ok=True)
    db = open_database(database_url, state)
    keyring = Keyring.create(state / "server.key")
    try:
        accounts = SqlStore(db, keyring).accounts
        await accounts.set_bot_credentials("demo", DEMO)
        await accounts.update(
            "demo",
            enabled=True,
            request_address=REQUEST,
            relay_host="127.0.0.1",
            relay_port=relay_port,
            relay_security="none",
            default_scope="unpaid",
            per_customer_limit=1000,
            global_limit=10_000,
        )
    finally:
        db.close()


@contextmanager
def sandbox_process(latency_ms: float, *extra: str) -> Iterator[str]:
    """``python -m kashflow.sandbox`` in its own process; yields its SOAP URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kashflow.sandbox",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the sandbox did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


__all__ = [
    "BASE_URL",
    "MAIL_DOMAIN",
    "REQUEST",
    "ROOT",
    "ServeProcess",
    "bot_env",
    "prepare_state",
    "sandbox_process",
]
