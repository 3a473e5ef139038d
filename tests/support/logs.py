"""Reading everything the product logs, to show that no secret is in it.

:func:`every_logger_at_debug` turns the root logger and every logger created so far to
DEBUG (catching those that do not propagate too); :func:`everything_logged` writes each
captured record out as a handler could (message, traceback and every attribute);
:func:`assert_no_secret` looks in that text for each secret, and for every 16-character
window of each token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest

#: A fragment this long (96 bits of a token) is worth as much as a key to a guesser.
FRAGMENT = 16


@contextmanager
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Root and every logger created so far at DEBUG; non-propagating ones captured too.

    Loggers that raise their own level later (aiosmtpd's ``mail.log`` does when a listener
    starts) must be set again after that: see :func:`all_at_debug`.
    """
    caplog.set_level(logging.DEBUG)
    detached: list[logging.Logger] = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        caplog.set_level(logging.DEBUG, logger=name)
        if not logger.propagate:
            logger.addHandler(caplog.handler)
            detached.append(logger)
    try:
        yield
    finally:
        for logger in detached:
            logger.removeHandler(caplog.handler)


def all_at_debug(caplog: pytest.LogCaptureFixture, *names: str) -> None:
    """Set ``names`` (and the root) to DEBUG again, whatever they did to themselves."""
    caplog.set_level(logging.DEBUG)
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)


def everything_logged(records: Iterable[logging.LogRecord]) -> str:
    """Each record as a handler could write it: message, traceback, and every attribute."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(f"{formatter.format(r)}\n{r.__dict__!r}" for r in records)


def assert_no_secret(logged: str, secrets: Iterable[str], tokens: Iterable[str] = ()) -> None:
    """No secret in ``logged``, and no :data:`FRAGMENT`-character window of any token."""
    for secret in secrets:
        _absent(logged, secret, "a secret")
    for token in tokens:
        # Every window, the last one included.
        for start in range(len(token) - FRAGMENT + 1):
            _absent(logged, token[start : start + FRAGMENT], f"characters {start}- of a token")


def _absent(logged: str, needle: str, what: str) -> None:
    found = logged.find(needle)
    if found < 0:
        return
    start = logged.rfind("\n", 0, found) + 1
    end = logged.find("\n", found)
    pytest.fail(f"{what} is in the log, here: {logged[start : end if end >= 0 else None][:400]}")


__all__ = [
    "FRAGMENT",
    "all_at_debug",
    "assert_no_secret",
    "every_logger_at_debug",
    "everything_logged",
]
