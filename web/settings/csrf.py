"""Cross-site request forgery protection for every settings form.

Two independent checks, both required for a POST:

* the form carries the session's CSRF secret in a hidden field (``csrf``), compared in
  constant time — a page on another site cannot read it, because the cookie holding it
  is sealed, HttpOnly and SameSite=Strict;
* when the browser sends an ``Origin``, it must be the configured public origin (the
  address clients use), never whatever the request's Host claims, and never ``null``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

FIELD: Final = "csrf"


def public_origin(public_base_url: str) -> str:
    """``scheme://host[:port]`` of the public base URL, as a browser writes ``Origin``."""
    parts = urlsplit(public_base_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(origin: str | None, expected: str) -> bool:
    """No ``Origin`` header leaves it to the token; a named origin must be the public one.

    The settings pages are sent with ``Referrer-Policy: same-origin``, under which browsers
    name our origin on their own form posts; ``Origin: null`` comes from a sandboxed frame,
    a ``data:`` page or a redirect chain through another site, never from our own form.
    """
    if origin is None:
        return True
    return hmac.compare_digest(origin.strip().lower().encode(), expected.encode())


def token_valid(form: Mapping[str, object], secret: str) -> bool:
    """The form's hidden token equals the session's secret (constant-time)."""
    sent = form.get(FIELD)
    if not isinstance(sent, str) or not sent or not secret:
        return False
    return hmac.compare_digest(sent.encode(), secret.encode())


__all__ = ["FIELD", "origin_allowed", "public_origin", "token_valid"]
