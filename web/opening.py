"""Opening the permalink a request names: one rule for every URL under ``/l/<token>``.

The page, its PDFs, the due-date calendar and the JSON view all open their token the same
way: the core opens it (sealed under the server keyring, not expired, not revoked), and a
token that does not open is counted against the client's address in the store, so every
web process counts failures together. Past the allowance the address is answered 429
instead of "not valid" for a while, which makes guessing hopeless; a token that opens is
never refused.
"""

from __future__ import annotations

import logging

from aiohttp import web

from permalink.core import Core
from permalink.limits import ThrottlePolicy
from permalink.links import InvalidLink, Link
from web.errors import LinkNotValid, TooManyAttempts
from web.security import client_address

log = logging.getLogger(__name__)


class LinkOpener:
    """Opens the ``token`` of a request's URL, or raises the page the visitor gets."""

    def __init__(self, core: Core, policy: ThrottlePolicy) -> None:
        self._core = core
        self._policy = policy

    async def open(self, request: web.Request, now: float) -> Link:
        """The link in the URL, or :class:`LinkNotValid` / :class:`TooManyAttempts`."""
        try:
            return await self._core.open_link(request.match_info["token"], now)
        except InvalidLink as exc:
            reason = exc.reason
        address = client_address(request)
        wait = await self._core.store.throttles.hit(f"invalid-link:{address}", self._policy, now)
        log.info("link not valid (%s) from %s", reason, address)
        if wait > 0:
            raise TooManyAttempts(wait)
        raise LinkNotValid


__all__ = ["LinkOpener"]
