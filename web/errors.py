"""Errors translated at the edge: every failure a visitor can meet becomes a plain, human page.

Views raise what went wrong — :class:`LinkNotValid`, :class:`TooManyAttempts`, a KashFlow
error, an aiohttp HTTP error — and :func:`error_middleware` turns it into a page from
:data:`PAGES`. A page never shows a traceback, and the "link is not valid" page is the
same bytes whatever made the link fail (bad token, wrong key, expired, revoked), so it
tells a guesser nothing.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import aiohttp_jinja2
from aiohttp import web

from kashflow.errors import KashFlowError
from permalink.activity import redact
from permalink.i18n import N_, Words, negotiate, pick_language
from permalink.trouble import words_for
from web.security import redact_path

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_TEMPLATE: Final = "web/error.html"


class LinkNotValid(Exception):
    """The token did not open, or the link was revoked or has expired. Says nothing more."""

    def __init__(self) -> None:
        super().__init__("link not valid")


class TooManyAttempts(Exception):
    """This address has sent too many invalid links lately; it must wait ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many attempts")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ErrorPage:
    status: int
    title: str
    message: str
    retry_after: int | None = None


LINK_NOT_VALID: Final = ErrorPage(
    404,
    N_("This link is not valid"),
    N_("Please ask the business that sent it to you for a new link."),
)
PAGE_NOT_FOUND: Final = ErrorPage(
    404,
    N_("Page not found"),
    N_("There is nothing at this address. Check the link you were sent."),
)
TOO_MANY_ATTEMPTS: Final = ErrorPage(
    429,
    N_("Too many attempts"),
    N_(
        "Too many links from your connection did not work. Please wait a minute, then try "
        "your link again."
    ),
)
SERVER_ERROR: Final = ErrorPage(
    500,
    N_("Something went wrong"),
    N_("Sorry, we could not show this page. Please try again in a few minutes."),
)


def page_for_kashflow(error: KashFlowError) -> ErrorPage:
    """The page a client sees when KashFlow fails (words from :mod:`permalink.trouble`)."""
    words = words_for(error, "client")
    return ErrorPage(words.status, words.title, words.text, words.retry_after)


def render(request: web.Request, page: ErrorPage) -> web.Response:
    """The error page as a response, in the language the browser asks for; the body
    depends on ``page`` and that language alone."""
    language = pick_language(negotiate(request.headers.get("Accept-Language")))
    _ = Words(language)
    response = aiohttp_jinja2.render_template(
        ERROR_TEMPLATE,
        request,
        {"title": _(page.title), "message": _(page.message), "language": language},
        status=page.status,
    )
    if page.retry_after is not None:
        response.headers["Retry-After"] = str(page.retry_after)
    return response


def _http_page(exc: web.HTTPException) -> ErrorPage:
    if exc.status == 404:
        return PAGE_NOT_FOUND
    return ErrorPage(exc.status, exc.reason, "This request could not be completed.")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map what a handler raised to its page; log what needs a human, never the token."""
    try:
        return await handler(request)
    except LinkNotValid:
        return render(request, LINK_NOT_VALID)
    except TooManyAttempts as exc:
        response = render(request, TOO_MANY_ATTEMPTS)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    except KashFlowError as exc:
        page = page_for_kashflow(exc)
        log.warning(
            "KashFlow %s on %s %s", type(exc).__name__, request.method, redact_path(request.path)
        )
        return render(request, page)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render(request, _http_page(exc))
        # Keep what the exception says about the resource (Allow on a 405, for one).
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        # The traceback is formatted here, then redacted: an exception message or a
        # frame's source line could otherwise carry a token into the log.
        details = redact("".join(traceback.format_exception(exc)))
        log.error(
            "unhandled %s on %s %s\n%s",
            type(exc).__name__,
            request.method,
            redact_path(request.path),
            details,
        )
        return render(request, SERVER_ERROR)


__all__ = [
    "LINK_NOT_VALID",
    "PAGE_NOT_FOUND",
    "SERVER_ERROR",
    "TOO_MANY_ATTEMPTS",
    "ErrorPage",
    "LinkNotValid",
    "TooManyAttempts",
    "error_middleware",
    "page_for_kashflow",
    "render",
]
