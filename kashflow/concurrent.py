"""KashFlow calls made at once: the first failure cancels the others and is raised as
itself, so callers handle one KashFlow error, never an ``ExceptionGroup``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def calls_at_once() -> AsyncIterator[asyncio.TaskGroup]:
    """A ``TaskGroup`` whose first failure speaks for all."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except* Exception as failed:
        raise failed.exceptions[0] from None
