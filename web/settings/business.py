"""The "Your business" settings page: what clients are told beyond KashFlow.

``/settings/business`` edits the account's payment instructions (shown beside the total
on every client's page, in the bot's replies and on the statement pack's cover), its
default language, whether merged PDFs open with the statement page, and its logo (an
upload, checked and re-encoded by :func:`permalink.business.clean_logo`).
``/settings/customers/{code}/language`` sets one client's language from the customer page.
Each form is sent once (:mod:`web.settings.once`): it answers with a redirect to the page
and a message shown once; a refused field comes back marked.
Everything is filed under the signed-in account, like the other settings pages.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from permalink.accounts import SettingError
from permalink.business import FIELDS, MAX_LOGO_UPLOAD, REFERENCE_KINDS, clean_logo
from permalink.i18n import languages_offered
from permalink.submissions import Outcome
from web.errors import ErrorPage, render
from web.settings import forms
from web.settings.auth import render_page, signed_in, state, url
from web.settings.once import Form, notice, problem, submitted, take
from web.settings.session import Session

ROUTE_BUSINESS: Final = "settings.business"
ROUTE_SAVE_BUSINESS: Final = "settings.save_business"
ROUTE_LOGO: Final = "settings.business_logo"
ROUTE_UPLOAD_LOGO: Final = "settings.upload_logo"
ROUTE_CUSTOMER_LANGUAGE: Final = "settings.customer_language"

_TEXT_FIELDS: Final = tuple(name for name in FIELDS if name != "statement_cover")
SAVED: Final = "Saved: clients see these details from their next visit."
LOGO_SAVED: Final = "The logo is saved."
LOGO_REMOVED: Final = "The logo is removed."
LANGUAGE_SAVED: Final = "The client's language is saved."
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


@signed_in
async def business(request: web.Request, session: Session) -> web.StreamResponse:
    """The business's payment instructions, languages, statement page and logo, with the
    one-time message the last form left."""
    st = state(request)
    message = await take(request, session)
    profile = await st.core.store.business.get(session.account)
    return await render_page(
        request,
        "settings/business.html",
        session,
        {
            "profile": profile,
            "values": message.values or None,
            "languages": list(languages_offered()),
            "references": [(kind, REFERENCE_LABELS[kind]) for kind in REFERENCE_KINDS],
            "logo_url": url(request, ROUTE_LOGO) + f"?v={profile.logo_version}",
        },
        message=message,
    )


@signed_in
@submitted
async def save_business(request: web.Request, session: Session, form: Form) -> Outcome:
    """Save the payment instructions, the default language and the statement page."""
    page = url(request, ROUTE_BUSINESS)
    changes: dict[str, object] = {name: forms.text(form, name) for name in _TEXT_FIELDS}
    changes["statement_cover"] = forms.checked(form, "statement_cover")
    try:
        await state(request).core.store.business.update(session.account, **changes)
    except SettingError as error:
        text = str(error)
        return problem(page, text, errors={error.field: text}, values=forms.typed_values(form))
    return notice(page, SAVED)


async def upload_logo(request: web.Request) -> web.StreamResponse:
    """A new logo, or none; a body over the limit is refused before it is read."""
    if (request.content_length or 0) > MAX_LOGO_UPLOAD + 64 * 1024:
        return render(request, LOGO_TOO_LARGE)
    return await _upload_logo(request)


@signed_in
@submitted
async def _upload_logo(request: web.Request, session: Session, form: Form) -> Outcome:
    st = state(request)
    page = url(request, ROUTE_BUSINESS) + "#logo-heading"
    profiles = st.core.store.business
    if forms.checked(form, "remove"):
        await profiles.set_logo(session.account, None)
        return notice(page, LOGO_REMOVED, where="logo")
    field = form.get("logo")
    data = field.file.read(MAX_LOGO_UPLOAD + 1) if isinstance(field, web.FileField) else b""
    try:
        png = await st.core.off_loop(clean_logo, data)
    except ValueError as error:
        text = str(error)
        return problem(page, text, errors={"logo": text}, where="logo")
    await profiles.set_logo(session.account, png)
    return notice(page, LOGO_SAVED, where="logo")


@signed_in
async def logo(request: web.Request, session: Session) -> web.StreamResponse:
    """The account's logo, for its preview on this page."""
    png = await state(request).core.store.business.logo(session.account)
    if png is None:
        raise web.HTTPNotFound()
    return web.Response(body=png, content_type="image/png")


@signed_in
@submitted
async def customer_language(request: web.Request, session: Session, form: Form) -> Outcome:
    """Choose the language one client's page, replies and statement speak."""
    code = request.match_info["code"]
    page = url(request, "settings.customer", code=code)
    try:
        await state(request).core.store.business.set_customer_language(
            session.account, code, forms.text(form, "language") or None
        )
    except ValueError:
        text = "Choose one of the languages."
        return problem(page, text, errors={"client-language": text}, where="language")
    return notice(page, LANGUAGE_SAVED, where="language")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/settings/business", business, name=ROUTE_BUSINESS)
    router.add_post("/settings/business", save_business, name=ROUTE_SAVE_BUSINESS)
    router.add_get("/settings/business/logo", logo, name=ROUTE_LOGO)
    router.add_post("/settings/business/logo", upload_logo, name=ROUTE_UPLOAD_LOGO)
    router.add_post(
        "/settings/customers/{code}/language", customer_language, name=ROUTE_CUSTOMER_LANGUAGE
    )


__all__ = ["add_routes"]
