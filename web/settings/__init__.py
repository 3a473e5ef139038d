"""The accountant's settings pages: sign-in, customers and links, the mail bot, activity.

:func:`setup_settings` adds them to the application :func:`web.app.create_app` built,
under ``/settings/`` (sign-in at ``/settings/login``). They use the app's shared objects
(KashFlow gateway, keyring, database, registry, activity log, clock) through its app keys.
Mail (a link to a customer, the relay test) goes out through a :data:`SendMail` callable
the composition root provides, as ``setup_settings(send_mail=...)`` or later as
``app[SEND_MAIL]``; without one, the pages say sending is not set up.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from permalink.accounts import AccountSettings
from permalink.limits import Throttle
from permalink.spool import Spool
from web.settings.auth import SETTINGS, SettingsConfig, SettingsState
from web.settings.mailing import SendMail
from web.settings.session import SessionCodec
from web.settings.timefmt import iso_time, local_time
from web.settings.views import add_routes

#: Where the composition root may put the mail sender after ``create_app``.
SEND_MAIL: web.AppKey[SendMail] = web.AppKey("settings_send_mail")


def setup_settings(
    app: web.Application,
    *,
    send_mail: SendMail | None = None,
    config: SettingsConfig | None = None,
) -> None:
    """Register the settings pages on ``app`` (made by ``create_app``, not yet started)."""
    # Imported here, not at the top: web.app calls this function from create_app.
    from web import app as web_app

    settings = config or SettingsConfig()
    db = app[web_app.DATABASE]
    state = SettingsState(
        config=settings,
        public_base_url=app[web_app.CONFIG].public_base_url,
        kashflow=app[web_app.KASHFLOW],
        keyring=app[web_app.KEYRING],
        accounts=AccountSettings(db, app[web_app.KEYRING]),
        registry=app[web_app.REGISTRY],
        activity=app[web_app.ACTIVITY],
        spool=Spool(db),
        codec=SessionCodec(app[web_app.KEYRING]),
        throttle=Throttle(
            free=settings.login_free_attempts,
            window_s=settings.login_window_s,
            base_delay_s=2.0,
            max_delay_s=settings.login_max_delay_s,
        ),
        clock=app[web_app.CLOCK],
        send_mail=send_mail,
    )
    app[SETTINGS] = state
    if send_mail is not None:
        app[SEND_MAIL] = send_mail
    app.on_startup.append(_pick_up_sender)
    env = aiohttp_jinja2.get_env(app)
    env.filters["settings_time"] = local_time
    env.filters["settings_iso"] = iso_time
    add_routes(app.router)


async def _pick_up_sender(app: web.Application) -> None:
    # A sender set as app[SEND_MAIL] after setup_settings is used from start-up on.
    sender = app.get(SEND_MAIL)
    if sender is not None:
        app[SETTINGS].send_mail = sender


__all__ = ["SEND_MAIL", "SendMail", "SettingsConfig", "setup_settings"]
