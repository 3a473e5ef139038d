"""The web application factory: configuration, the core under a typed key, and routes.

:func:`create_app` wires the resolver, the link's feeds (calendar and JSON), the settings
pages, the security headers, the error pages and the templates onto one
:class:`aiohttp.web.Application` around the
:class:`~permalink.core.Core` the composition root built (shared with the mail bot when
both run in one process). The app owns nothing the core does not: closing the core is the
root's job.

Serve the app with :func:`runner` (:mod:`web.serving`): aiohttp's default access log would
write link tokens to disk, and its own answer to a malformed request quotes the request
back. Building the app redacts every logger the web door writes to (:mod:`web.logs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

import permalink
from permalink import i18n
from permalink.core import Core
from permalink.limits import ThrottlePolicy
from web.errors import error_middleware
from web.feeds import Feeds
from web.logs import redact_web_logs
from web.resolver import RESOLVER, Resolver
from web.security import TRUSTED_PROXIES, TrustedProxies, add_security_headers
from web.serving import runner
from web.settings import SettingsConfig, setup_settings

log = logging.getLogger(__name__)


def _static_folder() -> Path:
    """The stylesheets, scripts and icon: this package's resources, served under
    ``/static/`` (aiohttp serves a folder, so the package must be installed as files)."""
    folder = resources.files("web") / "static"
    if not isinstance(folder, Path):
        raise RuntimeError("the web package's static files must be installed on disk")
    return folder


STATIC = _static_folder()


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the web door needs to know about itself; read once, validated here."""

    #: Invalid-token requests one address may make per minute before it gets 429s.
    invalid_link_limit: int = 20
    #: Reverse proxies whose X-Forwarded-For / Forwarded name the client (none: the peer).
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    settings: SettingsConfig = field(default_factory=SettingsConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.invalid_link_limit <= 10_000:
            raise ValueError("invalid_link_limit must be between 1 and 10000 per minute")

    @property
    def invalid_link_policy(self) -> ThrottlePolicy:
        return ThrottlePolicy(free=self.invalid_link_limit, window_s=60.0)


CONFIG = web.AppKey("config", WebConfig)
CORE = web.AppKey("core", Core)


def create_app(core: Core, config: WebConfig | None = None) -> web.Application:
    """The web application: resolver, settings pages, health check, headers, error pages."""
    config = config or WebConfig()
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    app[CORE] = core
    app[TRUSTED_PROXIES] = config.trusted_proxies

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(permalink.TEMPLATES_PACKAGE, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    # Pages speak the language in their context (English when none is given).
    i18n.install(env)
    # Every response, including ones streamed by a handler and aiohttp's own 404s, is
    # given its headers here: a middleware runs too late for a prepared StreamResponse.
    app.on_response_prepare.append(add_security_headers)

    resolver = Resolver(core, invalid_link_policy=config.invalid_link_policy)
    app[RESOLVER] = resolver

    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    # The feeds first: the page's route would otherwise take /l/<token>.json.
    Feeds(core, invalid_link_policy=config.invalid_link_policy).add_routes(app.router)
    resolver.add_routes(app.router)
    setup_settings(app, core, config.settings)
    redact_web_logs()
    return app


async def healthz(request: web.Request) -> web.Response:
    """200 "ok" while the process serves requests (it does not call KashFlow)."""
    return web.Response(text="ok")


__all__ = ["CONFIG", "CORE", "RESOLVER", "WebConfig", "create_app", "healthz", "runner"]
