"""Every logger the web door writes to, redacted before any handler sees a record.

Our own log lines name paths through :func:`web.security.redact_path`, but aiohttp writes
too: its server logger quotes a malformed request line (token included) in the parse
error, its access and web loggers name requests, and asyncio reports exceptions whose
messages may hold a path. :func:`redact_web_logs` puts a :class:`RedactingFilter` on each
of these loggers (and on the web door's own), so a token never reaches a log line
whichever handler, format or level the operator configures.

A logger's filters run when a record is made on that logger, before it propagates to
any handler: each record is rewritten in place, its message rendered and cleaned, its
traceback formatted and cleaned, and its arguments dropped.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from permalink.activity import redact
from web.security import REDACTED_TOKEN

#: aiohttp's loggers (``aiohttp.log``) and asyncio's: what the library side can write.
LIBRARY_LOGGERS: Final = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "asyncio",
)

#: The web door's own package: every logger below it is filtered too.
OWN_PACKAGE: Final = "web"

# A permalink path anywhere in free text (a request line, a URL, an exception message),
# up to a separator, a quote or white space; a feed's ".json" is kept, as redact_path does.
_LINK_IN_TEXT = re.compile(r"/l/[^\s/?#'\"\\]*?(?=(?:\.json)?(?:[\s/?#'\"\\]|$))")
# What permalink.activity.redact judges: long runs of base64 or hex characters.
_RUN = re.compile(r"[A-Za-z0-9_+/=-]{32,}")
# What a LogRecord carries by itself; anything else on it came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def scrub(text: str) -> str:
    """``text`` with permalink tokens and other token-like runs cut out."""
    return _RUN.sub(_judged, _LINK_IN_TEXT.sub(f"/l/{REDACTED_TOKEN}", text))


def _judged(run: re.Match[str]) -> str:
    if run[0].startswith("/"):
        # A path: each segment is judged alone (as redact_path does), so that
        # "/settings/customers/ACME01/links" stays readable.
        return "/".join(redact(segment) for segment in run[0].split("/"))
    return redact(run[0])


class RedactingFilter(logging.Filter):
    """Rewrites each record so that nothing a handler writes can hold a token."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown of it
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        # The traceback lives on, cleaned, as text; the exception object (whose message
        # and frames may hold a token) is let go.
        record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, scrub(value))
        return True


def redact_web_logs() -> None:
    """Filter every logger the web door can write to (once per logger; idempotent).

    The web door's own loggers are those created by the time it is built (its modules
    are imported by then).
    """
    names = list(LIBRARY_LOGGERS)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (
            name == OWN_PACKAGE or name.startswith(OWN_PACKAGE + ".")
        ):
            names.append(name)
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


__all__ = ["LIBRARY_LOGGERS", "RedactingFilter", "redact_web_logs", "scrub"]
