"""How the settings pages write a moment: UK time, to the minute, the same in every locale."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def _zone() -> tzinfo:
    # KashFlow is UK accounting; a machine without tz data still gets a labelled UTC.
    try:
        return ZoneInfo("Europe/London")
    except ZoneInfoNotFoundError:
        return UTC


def local_time(at: float) -> str:
    """``24 Nov 2025 13:45 GMT`` for a unix time."""
    moment = datetime.fromtimestamp(at, _zone())
    month = _MONTHS[moment.month - 1]
    return f"{moment.day} {month} {moment.year} {moment:%H:%M} {moment.tzname() or 'UTC'}"


def iso_time(at: float) -> str:
    """The machine-readable form for ``<time datetime=…>``."""
    return datetime.fromtimestamp(int(at), UTC).isoformat().replace("+00:00", "Z")


__all__ = ["iso_time", "local_time"]
