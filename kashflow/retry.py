"""When to try KashFlow again: bounded retries with jittered backoff, honouring Retry-After.

A call that fails with :class:`~kashflow.errors.Unavailable` (no connection, a timeout,
an unreadable reply, HTTP 429 or 503, KashFlow's own "temporarily unavailable") is tried
again up to ``retries`` times. The pause doubles each time with random jitter, so many
callers do not come back in step; when KashFlow said how long to wait (``Retry-After``)
it is never asked sooner. All pauses of one call together stay within ``max_wait``: a
caller is told "not answering" rather than kept waiting longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from kashflow.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    retries: int = 2
    delay: float = 0.2
    max_wait: float = 10.0

    def pause(self, attempt: int, retry_after: float | None, waited: float) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based), or None to give up now."""
        if attempt > self.retries:
            return None
        if retry_after is not None:
            # Never sooner than asked; the jitter spreads callers told the same time.
            pause = retry_after + self.delay * random.random()
        else:
            pause = self.delay * (2 ** (attempt - 1)) * (0.5 + random.random())
        if waited + pause > self.max_wait:
            return None
        return pause


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as seconds from
    now; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def retrying(label: str, attempt: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
    """``attempt()`` until it succeeds, raises something else, or ``backoff`` gives up."""
    tries = 0
    waited = 0.0
    while True:
        try:
            return await attempt()
        except Unavailable as exc:
            tries += 1
            pause = backoff.pause(tries, exc.retry_after, waited)
            if pause is None:
                if exc.retry_after is not None and tries <= backoff.retries:
                    log.warning(
                        "KashFlow %s: asked to wait %.0fs, beyond the %.0fs allowed; giving up",
                        label,
                        exc.retry_after,
                        backoff.max_wait,
                    )
                raise
            log.warning(
                "KashFlow %s unavailable (%s), retry %d in %.2fs", label, exc.detail, tries, pause
            )
            await asyncio.sleep(pause)
            waited += pause
