"""Housekeeping: the state database forgets what is no longer needed, on a schedule.

Activity is kept for the settings pages for a while, settled mail (with its body) for
duplicate detection and the bot page, rate-limit hits only as long as a window lasts, and
throttle counts, sign-in records and settings form submissions only while they can still
matter, and a finished re-issue as long as the activity that tells of it. Every process may
run it; the deletes are idempotent, so several processes tidying one database agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from permalink.store import Store
from permalink.submissions import KEEP_S

log = logging.getLogger(__name__)

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    activity_days: float = 180
    settled_mail_days: float = 30
    rate_hits_days: float = 2  # the longest limit window is a day (replies in one thread)
    # Well past the fortnight an IMAP reader looks back (bot.mailbox.LOOK_BACK_DAYS).
    mailbox_keys_days: float = 60


async def tidy(store: Store, now: float, retention: Retention = Retention()) -> dict[str, int]:
    """Delete what ``retention`` no longer keeps; returns how many rows of each kind."""
    removed = {
        "activity": await store.activity.prune(now - retention.activity_days * DAY),
        "settled mail": await store.spool.prune(now - retention.settled_mail_days * DAY),
        "rate-limit hits": await store.limits.prune(now - retention.rate_hits_days * DAY),
        "throttle counts": await store.throttles.prune(now),
        "sessions": await store.sessions.prune(now),
        "mailbox message keys": await store.mailboxes.prune(
            now - retention.mailbox_keys_days * DAY
        ),
        "form submissions": await store.submissions.prune(now - KEEP_S),
        # A finished re-issue is kept as long as the activity that tells of it.
        "re-issues": await store.reissues.prune(now - retention.activity_days * DAY),
    }
    if any(removed.values()):
        log.info("housekeeping removed %s", ", ".join(f"{n} {what}" for what, n in removed.items()))
    return removed


async def keep_tidy(
    store: Store,
    *,
    every_s: float = 6 * 3600,
    retention: Retention = Retention(),
    clock: Callable[[], float] = time.time,
) -> None:
    """Run :func:`tidy` now and every ``every_s`` seconds until cancelled."""
    while True:
        try:
            await tidy(store, clock(), retention)
        except Exception:
            # A failed clean-up must not stop the service; the next round tries again.
            log.exception("housekeeping failed")
        await asyncio.sleep(every_s)
