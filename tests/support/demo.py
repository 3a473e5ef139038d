"""``kashflow-permalink demo`` as a separate process, driven from plain (non-async) code.

:class:`DemoProcess` runs a demo command — this checkout's ``python -m app.cli`` by
default, or an installed ``kashflow-permalink`` — waits, bounded, until the demo has
written ``demo.json`` and printed its welcome, and stops it with SIGTERM. A reader thread
keeps draining the demo's output, so a chatty demo never blocks on a full pipe, and keeps
it for the message when the demo does not start. Being synchronous, it also serves
module-scoped fixtures, which share one demo between several tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT

#: The demo prints this once everything listens and demo.json is written.
WELCOME = "Links for the seeded customers"
CHECKOUT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "app.cli")


class DemoProcess:
    """One ``demo`` run on ``state`` with the given extra arguments."""

    def __init__(
        self,
        state: Path,
        *args: str,
        command: Sequence[str] = CHECKOUT_COMMAND,
        cwd: Path = ROOT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.state = state
        self.argv = [*command, "demo", "--state-dir", str(state), *args]
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.info: dict[str, Any] = {}
        self._reader: threading.Thread | None = None

    def start(self, within: float = 180.0) -> dict[str, Any]:
        """Start the demo and return its demo.json once it is ready (at most ``within`` s)."""
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: if it ever has to be killed, its children go with it.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + within
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(
                    f"the demo was not ready after {within:.0f} s:\n{self.log}"
                ) from None
            if line is None:
                raise RuntimeError(f"the demo exited before it was ready:\n{self.log}")
            if WELCOME in line:
                break
        self.info = json.loads((self.state / "demo.json").read_text())
        return self.info

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    @property
    def log(self) -> str:
        return "".join(self.output[-60:])

    def stop(self, within: float = 60.0) -> int:
        """SIGTERM, then the demo's exit status (it stops its own children first)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._close_output()

    def _close_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL the demo and every process it started."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._close_output()


__all__ = ["CHECKOUT_COMMAND", "WELCOME", "DemoProcess"]
