"""What the reliability benchmarks share: a web app served on loopback, and timings said
the same way everywhere (median and worst of several runs, in milliseconds or seconds)."""

from __future__ import annotations

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


__all__ = ["ms", "served", "spread"]
