"""Run the sandbox KashFlow in its own process, so its CPU does not count against ours."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sandbox_process(latency_ms: float) -> Iterator[str]:
    """Start ``python -m kashflow.sandbox`` and yield its SOAP URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kashflow.sandbox", "--port", "0", "--latency-ms", str(latency_ms)],
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
