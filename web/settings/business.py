"""The "Your business" settings page: what clients are told beyond KashFlow.

``/settings/business`` edits the account's payment instructions (shown beside the total
on every client's page, in the bot's replies and on the statement pack's cover), its
default language, whether merged PDFs open with the statement page, and its logo (an
upload, checked and re-encoded by :func:`permalink.business.clean_logo`).
``/settings/customers/{code}/language`` sets one client's language from the customer page.
Everything is filed under the signed-in account, like the other settings pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from permalink.business import FIELDS, MAX_LOGO_UPLOAD, REFERENCE_KINDS, clean_logo
from permalink.i18n import languages_offered
from web.errors import ErrorPage, render
from web.settings import forms
from web.settings.auth import render_page, see_other, signed_in, state, url
from web.settings.session import Session

ROUTE_BUSINESS: Final = "settings.business"
ROUTE_SAVE_BUSINESS: Final = "settings.save_business"
ROUTE_LOGO: Final = "settings.business_logo"
ROUTE_UPLOAD_LOGO: Final = "settings.upload_logo"
ROUTE_CUSTOMER_LANGUAGE: Final = "settings.customer_language"

_TEXT_FIELDS: Final = tuple(name for name in FIELDS if name != "statement_cover")
DONE: Final = {
    "saved": "Saved: clients see these details from their next visit.",
    "logo": "The logo is saved.",
    "logo_removed": "The logo is removed.",
}
LOGO_TOO_LARGE: Final = ErrorPage(
    413,
    "That file is too large",
    f"A logo can be at most {MAX_LOGO_UPLOAD // 1024} KB. Go back and choose a smaller image.",
)
REFERENCE_LABELS: Final = {
    "invoice": "The invoice number (e.g. 1251)",
    "customer": "The customer's account code (e.g. ACME01)",
    "customer-invoice": "Both (e.g. ACME01-1251)",
}


async def _page(
    request: web.Request,
    session: Session,
    *,
    values: Mapping[str, object] | None = None,
    error: str = "",
    logo_error: str = "",
    status: int = 200,
) -> web.Response:
    st = state(request)
    profile = await st.core.store.business.get(session.account)
    done = DONE.get(request.query.get("done", ""), "")
    return await render_page(
        request,
        "settings/business.html",
        session,
        {
            "profile": profile,
            "values": values,
            "languages": list(languages_offered()),
            "references": [(kind, REFERENCE_LABELS[kind]) for kind in REFERENCE_KINDS],
            "logo_url": url(request, ROUTE_LOGO) + f"?v={profile.logo_version}",
            "error": error,
            "logo_error": logo_error,
            "done": done,
        },
        status=status,
    )


@signed_in
async def business(request: web.Request, session: Session) -> web.StreamResponse:
    """The business's payment instructions, languages, statement page and logo."""
    return await _page(request, session)


@signed_in
async def save_business(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    changes: dict[str, object] = {name: forms.text(form, name) for name in _TEXT_FIELDS}
    changes["statement_cover"] = forms.checked(form, "statement_cover")
    try:
        await state(request).core.store.business.update(session.account, **changes)
    except ValueError as error:
        return await _page(request, session, values=form, error=str(error), status=400)
    return see_other(url(request, ROUTE_BUSINESS) + "?done=saved")


async def upload_logo(request: web.Request) -> web.StreamResponse:
    """A new logo, or none; a body over the limit is refused before it is read."""
    if (request.content_length or 0) > MAX_LOGO_UPLOAD + 64 * 1024:
        return render(request, LOGO_TOO_LARGE)
    return await _upload_logo(request)


@signed_in
async def _upload_logo(request: web.Request, session: Session) -> web.StreamResponse:
    st = state(request)
    form = await request.post()
    profiles = st.core.store.business
    if forms.checked(form, "remove"):
        await profiles.set_logo(session.account, None)
        return see_other(url(request, ROUTE_BUSINESS) + "?done=logo_removed")
    field = form.get("logo")
    data = field.file.read(MAX_LOGO_UPLOAD + 1) if isinstance(field, web.FileField) else b""
    try:
        png = await st.core.off_loop(clean_logo, data)
    except ValueError as error:
        return await _page(request, session, logo_error=str(error), status=400)
    await profiles.set_logo(session.account, png)
    return see_other(url(request, ROUTE_BUSINESS) + "?done=logo")


@signed_in
async def logo(request: web.Request, session: Session) -> web.StreamResponse:
    """The account's logo, for its preview on this page."""
    png = await state(request).core.store.business.logo(session.account)
    if png is None:
        raise web.HTTPNotFound()
    return web.Response(body=png, content_type="image/png")


@signed_in
async def customer_language(request: web.Request, session: Session) -> web.StreamResponse:
    """Choose the language one client's page, replies and statement speak."""
    form = await request.post()
    code = request.match_info["code"]
    try:
        await state(request).core.store.business.set_customer_language(
            session.account, code, forms.text(form, "language") or None
        )
    except ValueError:
        return render(request, ErrorPage(400, "Not a language", "Choose one of the languages."))
    return see_other(url(request, "settings.customer", code=code) + "?done=language")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/settings/business", business, name=ROUTE_BUSINESS)
    router.add_post("/settings/business", save_business, name=ROUTE_SAVE_BUSINESS)
    router.add_get("/settings/business/logo", logo, name=ROUTE_LOGO)
    router.add_post("/settings/business/logo", upload_logo, name=ROUTE_UPLOAD_LOGO)
    router.add_post(
        "/settings/customers/{code}/language", customer_language, name=ROUTE_CUSTOMER_LANGUAGE
    )


__all__ = ["add_routes"]
