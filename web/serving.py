"""How the web door is served: aiohttp's runner, with our answer to requests too broken
to reach the application.

aiohttp answers a request it cannot parse (a bare LF in the request line, a line over
8 190 bytes, a broken header) itself, before routing, middlewares or the response
signals: with the parser's message, which quotes the raw request back, token included,
under ``Server: Python/… aiohttp/…`` and without our headers. aiohttp has no hook for that
answer (aio-libs/aiohttp#3287 is open), so :func:`runner` serves the application with a
protocol whose ``handle_error`` — the method aiohttp's request handler calls for it, also
for a handler that raised past every middleware — answers with the product's headers and
a fixed sentence, and logs the kind of failure but never the request. The only aiohttp
internals this leans on are named here: ``RequestHandler.handle_error``, the protocol
factory ``Server.__call__`` (with the server's ``_loop`` and ``_kwargs``) and
``AppRunner._make_server``. ``tests/test_malformed_requests.py`` fails if an aiohttp
upgrade moves them.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod

from web.security import RedactingAccessLogger, client_address, security_headers

log = logging.getLogger(__name__)

#: What a request we could not read is told, by status; nothing of the request itself.
ANSWERS = {
    400: "This request could not be read.",
    500: "Sorry, something went wrong. Please try again in a few minutes.",
}


def answer(status: int) -> web.Response:
    """The plain answer to a request that never reached the application."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    sentence = ANSWERS.get(status, ANSWERS[500] if status >= 500 else ANSWERS[400])
    response = web.Response(
        status=status,
        text=f"{status} {phrase}\n\n{sentence}\n",
        content_type="text/plain",
        # A malformed request has no trustworthy path: the strictest headers, those of
        # the permalink pages.
        headers=security_headers("/"),
    )
    # What follows a request we could not read cannot be trusted to be a request.
    response.force_close()
    return response


class Protocol(web.RequestHandler):
    """aiohttp's HTTP protocol with :func:`answer` for its own error answers."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            # Our bug, not the client's: the traceback is kept (web.logs cleans it).
            self.logger.error(
                "%s answered %d (%s)", client_address(request), status, kind, exc_info=exc
            )
        elif isinstance(exc, BadHttpMethod):
            # TLS or other non-HTTP traffic on the port: the internet's background noise.
            self.logger.debug("%s sent no HTTP (%s)", client_address(request), kind)
        else:
            # ``exc`` and ``message`` quote the request (a token with it): only the kind.
            self.logger.info("%s sent a malformed request (%s)", client_address(request), kind)
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection is beyond repair.
            raise ConnectionError("response already started; closing the connection")
        return answer(status)


class Server(web.Server):
    """The low-level server, making :class:`Protocol` for each connection."""

    def __call__(self) -> web.RequestHandler:
        return Protocol(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` serving through :class:`Server`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )


def runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner production serves ``app`` with: our answer to malformed requests, and
    an access log that never holds a link token."""
    kwargs.setdefault("access_log_class", RedactingAccessLogger)
    return Runner(app, **kwargs)


__all__ = ["ANSWERS", "Protocol", "Runner", "Server", "answer", "runner"]
