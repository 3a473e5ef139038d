"""Waiting, with a bound, for something another process does.

A process under test (a bot, a web replica, the demo) changes state that lives outside
this one — rows in the shared store, files in an outbox — and offers no event to await.
:func:`eventually` looks again every ``every`` seconds until the check returns a value,
and raises ``TimeoutError`` once ``within`` seconds pass: a bounded wait for the event,
never a sleep hoping it happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float, every: float = 0.02
) -> T:
    """The first value other than None that ``check`` returns, within ``within`` s."""
    async with asyncio.timeout(within):
        # The state is another process's: there is no event here to wait on instead.
        while (found := await check()) is None:  # noqa: ASYNC110
            await asyncio.sleep(every)
    return found


__all__ = ["eventually"]
