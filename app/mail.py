"""``kashflow-permalink mail list|requeue``: the mail bot's stuck mail, from the shell.

The bot parks a message it cannot answer as things stand (a relay that refuses, credentials
that no longer open, a message that kept failing) and keeps it with the reason. Once the
cause is fixed, ``requeue`` gives it back to the bot, which answers it once: only a parked
message is requeued, once, and not when a later copy of it was taken instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final

from app.config import ConfigError, Settings
from app.runtime import IDLE_LOOK_S
from permalink.db import StoreError, open_database
from permalink.spool import Spool, SpoolEntry, State

_STATES: Final[dict[str, tuple[State, ...]]] = {
    "stuck": ("parked", "retry"),
    "parked": ("parked",),
    "retry": ("retry",),
    "queued": ("queued",),
}


@contextmanager
def _spool(settings: Settings) -> Iterator[Spool]:
    try:
        db = open_database(settings.database_url, settings.state_dir)
    except (StoreError, OSError) as exc:
        raise ConfigError(f"the state store could not be opened: {exc}") from None
    try:
        yield Spool(db)
    finally:
        db.close()


def _line(entry: SpoolEntry) -> str:
    received = datetime.fromtimestamp(entry.received_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = f"#{entry.id} {entry.state} {received} account {entry.account or '-'}"
    what += f" from {entry.mail_from or '<>'} ({entry.attempts} attempts)"
    return what + (f": {entry.reason}" if entry.reason else "")


async def list_mail(settings: Settings, which: str) -> int:
    with _spool(settings) as spool:
        entries = await spool.list(_STATES[which], limit=1000)
    for entry in reversed(entries):  # oldest first, like a queue
        print(_line(entry))
    if not entries:
        print(f"no {which} mail")
    return 0


async def requeue(settings: Settings, spool_id: int | None) -> int:
    """Requeue one parked message (by id) or every one (None); say what became of each."""
    with _spool(settings) as spool:
        if spool_id is None:
            parked = await spool.list(("parked",), limit=100_000)
            if not parked:
                print("no parked mail")
                return 0
            failed = 0
            for entry in reversed(parked):
                failed += not await _requeue_one(spool, entry)
            return 1 if failed else 0
        found = await spool.get(spool_id)
        if found is None:
            print(f"#{spool_id}: no such message in the spool")
            return 1
        return 0 if await _requeue_one(spool, found) else 1


async def _requeue_one(spool: Spool, entry: SpoolEntry) -> bool:
    if entry.state != "parked":
        print(f"#{entry.id} is not parked (it is {entry.state}): left as it is")
        return False
    if await spool.requeue(entry.id):
        print(
            f"#{entry.id} from {entry.mail_from or '<>'} is queued again: a running bot answers "
            f"it in turn (an idle one looks within {IDLE_LOOK_S:g} seconds)"
        )
        return True
    later = await spool.later_copy(entry.id)
    if later is not None:
        print(f"#{entry.id} stays parked: a later copy of it, #{later}, was taken instead")
    else:
        print(f"#{entry.id} changed while this ran: left as it is")
    return False


__all__ = ["list_mail", "requeue"]
