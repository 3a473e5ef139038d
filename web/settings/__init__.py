"""The accountant's settings pages: sign-in, customers and links, the mail bot, the
business's details for its clients (payment, languages, logo), activity.

:func:`setup_settings` adds them to the application :func:`web.app.create_app` builds,
under ``/settings/`` (sign-in at ``/settings/login``), around the same
:class:`~permalink.core.Core`: KashFlow, the store and the account's relay all come from
it, so an emailed link or a relay test leaves exactly as the bot's replies do.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from permalink.core import Core
from web.settings import business, previews, reissue
from web.settings.auth import SETTINGS, SettingsConfig, SettingsState
from web.settings.once import FORMS, Forms, new_key
from web.settings.session import SessionCodec
from web.settings.timefmt import iso_time, local_time
from web.settings.views import add_routes


def setup_settings(app: web.Application, core: Core, config: SettingsConfig) -> None:
    """Register the settings pages on ``app`` (not yet started)."""
    app[SETTINGS] = SettingsState(
        config=config, core=core, codec=SessionCodec(lambda: core.keyring)
    )
    app[FORMS] = Forms(core.store.submissions, core.clock)
    env = aiohttp_jinja2.get_env(app)
    env.filters["settings_time"] = local_time
    env.filters["settings_iso"] = iso_time
    # Every form drawn gets a key of its own, so sending it twice does one thing.
    env.globals["once_key"] = new_key
    add_routes(app.router)
    previews.add_routes(app.router)
    reissue.add_routes(app.router)
    app.on_shutdown.append(reissue.stop_workers)
    business.add_routes(app.router)


__all__ = ["SettingsConfig", "setup_settings"]
