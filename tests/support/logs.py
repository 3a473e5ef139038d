"""Log capture for tests that prove no secret reaches a log: every logger at DEBUG, and
each record as fully as a handler could write it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Root and every logger created so far at DEBUG; non-propagating ones captured too."""
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


def everything_logged(records: Iterable[logging.LogRecord]) -> str:
    """Each record as a handler could write it: message, traceback, and every attribute."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(f"{formatter.format(r)}\n{r.__dict__!r}" for r in records)


def assert_nothing_of(secret: str, logged: str, *, fragment: int = 16) -> None:
    """Neither ``secret`` nor any ``fragment`` characters of it appear in ``logged``."""
    assert secret not in logged
    for start in range(0, len(secret) - fragment):
        assert secret[start : start + fragment] not in logged, start


__all__ = ["assert_nothing_of", "every_logger_at_debug", "everything_logged"]
