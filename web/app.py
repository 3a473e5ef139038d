"""The web application factory: configuration, shared objects under typed keys, and routes.

:func:`create_app` wires the resolver, the security headers, the error pages and the
templates onto one :class:`aiohttp.web.Application` and returns it, so other parts (the
settings pages) can add their own routes and templates to it before it is served. The
caller owns the KashFlow client and the database (both are shared with the mail bot);
the application owns what it opens itself, in cleanup contexts.

Serve the app with :func:`runner` (or pass ``access_log_class=RedactingAccessLogger``):
aiohttp's default access log would write link tokens to disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

import permalink
from kashflow.client import KashFlow
from kashflow.documents import DEFAULT_CONCURRENCY
from permalink.activity import ActivityLog
from permalink.db import Database
from permalink.keyring import Keyring
from permalink.limits import Throttle
from permalink.registry import LinkRegistry
from web.errors import error_middleware
from web.resolver import Resolver
from web.security import RedactingAccessLogger, add_security_headers
from web.settings import setup_settings

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: Where the stylesheet and script live; served under ``/static/``.
STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the web door needs to know about itself; read once, validated here.

    ``public_base_url`` is the address clients use (``https://invoices.example.co.uk``);
    every absolute URL the app writes is built from it, never from the request's Host.
    """

    public_base_url: str
    pdf_concurrency: int = DEFAULT_CONCURRENCY
    #: Invalid-token requests one address may make per minute before it gets 429s.
    invalid_link_limit: int = 20
    #: Threads merging PDFs at once (CPU and memory bound; more requests wait their turn).
    merge_workers: int = 2

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "public_base_url must be an absolute http(s) URL, "
                f"e.g. https://invoices.example.co.uk (got {self.public_base_url!r})"
            )
        if parts.query or parts.fragment:
            raise ValueError("public_base_url must not have a query string or fragment")
        object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))
        if not 1 <= self.pdf_concurrency <= 64:
            raise ValueError("pdf_concurrency must be between 1 and 64")
        if not 1 <= self.invalid_link_limit <= 10_000:
            raise ValueError("invalid_link_limit must be between 1 and 10000 per minute")
        if not 1 <= self.merge_workers <= 32:
            raise ValueError("merge_workers must be between 1 and 32")

    def absolute(self, path: str) -> str:
        """``path`` (from a route name's ``url_for``) on the public base URL."""
        return self.public_base_url + path


CONFIG = web.AppKey("config", WebConfig)
KASHFLOW = web.AppKey("kashflow", KashFlow)
KEYRING = web.AppKey("keyring", Keyring)
DATABASE = web.AppKey("database", Database)
REGISTRY = web.AppKey("registry", LinkRegistry)
ACTIVITY = web.AppKey("activity", ActivityLog)
#: Failed-request counters per client address (invalid link tokens); settings may share it.
THROTTLE = web.AppKey("throttle", Throttle)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
RESOLVER = web.AppKey("resolver", Resolver)


def create_app(
    config: WebConfig,
    *,
    kashflow: KashFlow,
    keyring: Keyring,
    db: Database,
    clock: Clock = time.time,
) -> web.Application:
    """The web application with the resolver, health check, headers and error pages."""
    app = web.Application(middlewares=[error_middleware])
    registry = LinkRegistry(db)
    activity = ActivityLog(db)
    throttle = Throttle(free=config.invalid_link_limit, window_s=60.0)
    app[CONFIG] = config
    app[KASHFLOW] = kashflow
    app[KEYRING] = keyring
    app[DATABASE] = db
    app[REGISTRY] = registry
    app[ACTIVITY] = activity
    app[THROTTLE] = throttle
    app[CLOCK] = clock

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(permalink.TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Every response, including ones streamed by a handler and aiohttp's own 404s, is
    # given its headers here: a middleware runs too late for a prepared StreamResponse.
    app.on_response_prepare.append(add_security_headers)

    resolver = Resolver(
        public_base_url=config.public_base_url,
        pdf_concurrency=config.pdf_concurrency,
        merge_workers=config.merge_workers,
        kashflow=kashflow,
        keyring=keyring,
        registry=registry,
        activity=activity,
        throttle=throttle,
        clock=clock,
    )
    app[RESOLVER] = resolver
    app.cleanup_ctx.append(resolver.lifespan)

    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    resolver.add_routes(app.router)
    setup_settings(app)
    return app


async def healthz(request: web.Request) -> web.Response:
    """200 "ok" while the process serves requests (it does not call KashFlow)."""
    return web.Response(text="ok")


def runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An :class:`~aiohttp.web.AppRunner` whose access log never holds a link token."""
    kwargs.setdefault("access_log_class", RedactingAccessLogger)
    return web.AppRunner(app, **kwargs)


__all__ = [
    "ACTIVITY",
    "CLOCK",
    "CONFIG",
    "DATABASE",
    "KASHFLOW",
    "KEYRING",
    "REGISTRY",
    "RESOLVER",
    "THROTTLE",
    "Clock",
    "WebConfig",
    "create_app",
    "healthz",
    "runner",
]
