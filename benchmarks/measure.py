"""What the reliability benchmarks share: a web app served on loopback, timings said the
same way everywhere (median and worst of several runs, in milliseconds or seconds), and
the machine's load when they were taken (other work on it shows in every time)."""

from __future__ import annotations

import os
import statistics
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port (no access log: it is not what is measured)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(seconds: Sequence[float], *, unit: str = "ms") -> str:
    """``median X, max Y (N runs)``, in ``ms`` or ``s``."""
    if not seconds:
        return "no runs"
    say = ms if unit == "ms" else (lambda s: f"{s:.2f} s")
    middle, worst = say(statistics.median(seconds)), say(max(seconds))
    return f"median {middle}, max {worst} ({len(seconds)} runs)"


def machine() -> str:
    """The cores and the one-minute load average, for a benchmark's first line."""
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


__all__ = ["machine", "ms", "served", "spread"]
