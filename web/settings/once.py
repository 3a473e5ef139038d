"""Post/redirect/get for every settings form, and each form sent only once.

Every form carries a random key in a hidden field (``once``, see
:mod:`permalink.submissions`). A form view wrapped in :func:`submitted` reads the form and
returns an :class:`~permalink.submissions.Outcome` — the page that shows the result and a
one-time message — instead of a response. The wrapper claims the key before the view runs:
a key already used (a double click, a form sent again from history) is answered with the
page the first send led to, and nothing is done twice. Then it answers ``303 See Other``
to that page with ``?m=<key>``; the page takes the message the first time it is shown
(:func:`take`), so a reload shows the page alone and repeats nothing.

A message is a small mapping: ``text`` and ``kind`` (``notice`` or ``error``), and for a
form that was refused, ``errors`` (field name → sentence, for ``aria-invalid`` and
``aria-describedby``) and ``values`` (what was typed, never a password).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from permalink.submissions import Claim, FormSubmissions, Outcome, valid_key
from web.settings.session import Session

log = logging.getLogger(__name__)

FIELD: Final = "once"
MESSAGE_PARAM: Final = "m"
#: How long a second send waits for the first one, still at work, to finish.
WAIT_S: Final = 20.0
_POLL_S: Final = 0.05

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]
FormView = Callable[[web.Request, Session, Form], Awaitable[Outcome]]
SessionView = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Forms:
    """Where form keys are kept, and the clock they are claimed by."""

    submissions: FormSubmissions
    clock: Callable[[], float]


FORMS = web.AppKey("settings.forms", Forms)


def see_other(location: str) -> web.Response:
    """303 to ``location``: a POST is never repeated on reload."""
    return web.Response(status=303, headers={"Location": location})


def new_key() -> str:
    """A fresh form key (rendered into each form as it is drawn)."""
    return secrets.token_urlsafe(18)


def owner(session: Session) -> str:
    """Whose key it is: the signed-in account, or a signed-out browser's form secret."""
    if session.signed_in:
        return session.account
    return "anon:" + hashlib.sha256(session.csrf.encode()).hexdigest()[:32]


def notice(location: str, text: str, **extra: Any) -> Outcome:
    """A done thing: ``text`` shown once on ``location``."""
    return Outcome(location, 200, {"text": text, "kind": "notice", **extra})


def problem(
    location: str,
    text: str,
    *,
    status: int = 400,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    **extra: Any,
) -> Outcome:
    """A refused form: ``text`` (and each field's sentence) shown once on ``location``,
    which answers ``status`` that once."""
    message: dict[str, Any] = {"text": text, "kind": "error", **extra}
    if errors:
        message["errors"] = dict(errors)
    if values:
        message["values"] = dict(values)
    return Outcome(location, status, message)


def with_message(location: str, key: str) -> str:
    return str(URL(location).update_query({MESSAGE_PARAM: key}))


@dataclass(frozen=True, slots=True)
class Message:
    """The one-time message a page shows (empty when there is none)."""

    text: str = ""
    kind: str = "notice"
    errors: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200

    def __bool__(self) -> bool:
        return bool(self.text or self.errors)


async def take(request: web.Request, session: Session) -> Message:
    """The message the URL's key left for this page, the first time it is asked for."""
    key = request.query.get(MESSAGE_PARAM, "")
    if not key:
        return Message()
    outcome = await request.app[FORMS].submissions.take_message(key, owner(session))
    if outcome is None:
        return Message()
    raw = dict(outcome.message)
    return Message(
        text=str(raw.pop("text", "")),
        kind=str(raw.pop("kind", "notice")),
        errors=raw.pop("errors", {}),
        values=raw.pop("values", {}),
        extra=raw,
        status=outcome.status,
    )


async def remember(request: web.Request, session: Session, outcome: Outcome) -> web.Response:
    """Store ``outcome`` under a fresh key and redirect to it (a form without a key of its
    own: the sign-in form, or one sent by a script)."""
    forms = request.app[FORMS]
    key = new_key()
    await forms.submissions.claim(key, owner(session), forms.clock())
    await forms.submissions.finish(key, owner(session), outcome)
    return see_other(with_message(outcome.location, key))


def submitted(view: FormView) -> SessionView:
    """Run ``view`` once per form key and answer with a redirect to its outcome."""

    async def handle(request: web.Request, session: Session) -> web.StreamResponse:
        forms = request.app[FORMS]
        submissions = forms.submissions
        form = await request.post()
        key, who = form.get(FIELD), owner(session)
        claim = None
        if isinstance(key, str) and valid_key(key):
            claim = await submissions.claim(key, who, forms.clock())
            if claim.state == "running":
                claim = await _wait(submissions, key, who)
        if claim is None or claim.state == "foreign":
            # A form drawn before keys existed, or sent by a script (a key of another
            # owner cannot come from a genuine form): done, just not deduplicated.
            return await remember(request, session, await view(request, session, form))
        assert isinstance(key, str)
        if claim.state == "done" and claim.outcome is not None:
            log.info("a settings form was sent again; it was done once")
            await submissions.show_again(key, who)
            return see_other(with_message(claim.outcome.location, key))
        if claim.state == "running":
            return see_other(str(request.app.router["settings.customers"].url_for()))
        try:
            outcome = await view(request, session, form)
        except BaseException:
            # Nothing was finished: the same form may be sent again.
            await asyncio.shield(submissions.release(key, who))
            raise
        await submissions.finish(key, who, outcome)
        return see_other(with_message(outcome.location, key))

    handle.__name__ = view.__name__
    handle.__doc__ = view.__doc__
    return handle


async def _wait(submissions: FormSubmissions, key: str, who: str) -> Claim:
    """The first send's claim once it is done, or still running after :data:`WAIT_S`."""
    claim = await submissions.state(key, who)
    try:
        async with asyncio.timeout(WAIT_S):
            while claim.state == "running":
                await asyncio.sleep(_POLL_S)
                claim = await submissions.state(key, who)
    except TimeoutError:
        pass
    return claim


__all__ = [
    "FIELD",
    "FORMS",
    "MESSAGE_PARAM",
    "Forms",
    "Message",
    "new_key",
    "notice",
    "owner",
    "problem",
    "remember",
    "see_other",
    "submitted",
    "take",
    "with_message",
]
