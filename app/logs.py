"""What a process logs, and how: the level, plain or JSON lines, and aiosmtpd kept quiet.

Everything goes to standard error (a supervisor such as systemd's journal keeps it). At
``info`` a running service writes a line when it starts, one per mail message with its
outcome, one per HTTP request (the access log, with link tokens redacted) and one when it
stops. aiosmtpd writes every SMTP command of every session at INFO on its ``mail.log``
logger (seventeen lines a message, among them a misleading "Available AUTH mechanisms");
those are moved to DEBUG here, and its DEBUG lines (which carry message bodies, and so
permalinks) are never written at all (:mod:`bot.listener` keeps that logger at INFO).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

#: aiosmtpd's logger.
AIOSMTPD: Final = "mail.log"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message[, error]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class Demote(logging.Filter):
    """Rewrites INFO records of one logger as DEBUG, and drops records below ``threshold``.

    It filters the handler, not the logger: the logger's own filter
    (:mod:`bot.listener`'s, which drops aiosmtpd's DEBUG records, the message bodies) runs
    first and sees the command lines still at INFO, so ``debug`` brings them back.
    """

    def __init__(self, name: str, threshold: int) -> None:
        super().__init__()
        self.logger = name
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self.logger and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def configure(level: str = "info", fmt: str = "text") -> None:
    """Set up the process's logging once, from the ``log_level`` and ``log_format`` settings."""
    threshold = logging.getLevelName(level.upper())
    assert isinstance(threshold, int), f"unknown log level {level!r}"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(Demote(AIOSMTPD, threshold))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    # Its DEBUG lines hold message bodies: never let them through, whatever the level.
    logging.getLogger(AIOSMTPD).setLevel(logging.INFO)


__all__ = ["AIOSMTPD", "Demote", "JsonLines", "configure"]
