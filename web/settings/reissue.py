"""The re-issue pages: after a KashFlow password change, one step gives every client a
working link again (the flow itself is :mod:`permalink.reissue`).

* ``GET /settings/reissue``: what the change broke — how many live links no longer open,
  for which customers, what each will get — and the email they will receive, previewed.
  A sign-in that finds broken links lands here.
* ``POST /settings/reissue``: the password is checked with KashFlow once more, the bot
  takes it, the job is recorded and this process starts working it; the answer is the
  job's page.
* ``GET /settings/reissue/{id}``: progress, customer by customer, followed live while it
  runs (the page refreshes its progress part by itself; without script, reload it).
* ``POST /settings/reissue/{id}/continue``: take up a job whose worker stopped (a restart,
  KashFlow refusing) or try its failed emails again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from kashflow.errors import BadCredentials, KashFlowError
from kashflow.models import Customer
from permalink.mail import NewLink, Wording, compose_reissue_email, sender
from permalink.presentation import customer_label, scope_text
from permalink.reissue import affected, plan, run, start, survey
from permalink.reissues import Job, PlannedCustomer
from permalink.scopes import Scope
from permalink.submissions import Outcome
from permalink.trouble import words_for
from web.errors import ErrorPage, render
from web.security import MailPreview
from web.settings import forms
from web.settings.auth import (
    ROUTE_REISSUE,
    SETTINGS,
    SessionRefused,
    SettingsState,
    render_page,
    see_other,
    signed_in,
    state,
)
from web.settings.mailing import MailView, mail_view
from web.settings.once import Form, notice, problem, submitted
from web.settings.session import Session
from web.settings.views import company_of, trouble_page

log = logging.getLogger(__name__)

ROUTE_START: Final = "settings.reissue_start"
ROUTE_JOB: Final = "settings.reissue_job"
ROUTE_CONTINUE: Final = "settings.reissue_continue"
ROUTE_PREVIEW: Final = "settings.reissue_preview"

NO_SUCH_JOB: Final = ErrorPage(404, "Re-issue not found", "Your account has no such re-issue.")
STATE_WORDS: Final = {
    "pending": "waiting",
    "sending": "being sent",
    "done": "done",
    "failed": "not sent",
}


def _plan_row(planned: PlannedCustomer, customers: dict[str, Customer]) -> dict[str, object]:
    customer = customers.get(planned.code.upper())
    return {
        "customer": customer_label(planned.name, planned.code),
        "links": [_planned_text(link.scope, link.expires) for link in planned.links],
        "replaced": sum(len(link.replaces) for link in planned.links),
        "email": ", ".join(customer.emails) if customer is not None else "",
        "known": customer is not None,
    }


def _planned_text(scope: str, expires: int | None) -> str:
    shows = scope_text(Scope.parse(scope))
    if expires is None:
        return shows
    day = datetime.fromtimestamp(expires, UTC).date()
    return f"{shows}, until {day.day} {day:%b} {day.year}"


async def _preview(
    st: SettingsState,
    session: Session,
    planned: list[PlannedCustomer],
    customers: dict[str, Customer],
) -> MailView | None:
    """The email the first customer with an address on file would get (links to be made
    are shown as the address they will have, without their token)."""
    first = next(
        (
            (entry, customers[entry.code.upper()])
            for entry in planned
            if entry.code.upper() in customers and customers[entry.code.upper()].emails
        ),
        None,
    )
    if first is None:
        return None
    entry, customer = first
    company = await company_of(st, session)
    bot = await st.core.store.accounts.get(session.account)
    message = compose_reissue_email(
        to=", ".join(customer.emails),
        from_addr=sender(company.name, bot.sender or company.email),
        company=company,
        customer=customer,
        links=[
            NewLink(
                f"{st.public_base_url}/l/…",
                Scope.parse(link.scope),
                None if link.expires is None else datetime.fromtimestamp(link.expires, UTC).date(),
            )
            for link in entry.links
        ],
        wording=Wording(greeting=bot.wording.greeting, sign_off=bot.wording.sign_off),
        language=(await st.core.client_settings(session.account, customer.code)).language(),
    )
    return mail_view(message)


async def _planned(
    st: SettingsState, session: Session, *, include_unmarked: bool
) -> tuple[list[PlannedCustomer], dict[str, Customer]]:
    assert session.credentials is not None
    now = int(st.now())
    planned = plan(
        await affected(st.core, session.credentials, now, include_unmarked=include_unmarked)
    )
    customers = {c.code.upper(): c for c in await st.account(session).customers()}
    return planned, customers


@signed_in
async def overview(request: web.Request, session: Session) -> web.StreamResponse:
    """What the password change broke, the plan and the email, before anything is done."""
    st = state(request)
    assert session.credentials is not None
    running = await st.core.store.reissues.unfinished(session.account)
    if running is not None:
        return see_other(_job_page(request, running))
    include_unmarked = request.query.get("unmarked") == "1"
    try:
        found = await survey(st.core, session.credentials, int(st.now()))
        planned, customers = await _planned(st, session, include_unmarked=include_unmarked)
        preview = await _preview(st, session, planned, customers)
    except KashFlowError as error:
        return await trouble_page(request, session, error)
    bot = await st.core.store.accounts.get(session.account)
    return await render_page(
        request,
        "settings/reissue.html",
        session,
        {
            "survey": found,
            "rows": [_plan_row(entry, customers) for entry in planned],
            "link_count": sum(len(entry.links) for entry in planned),
            "preview": preview,
            "include_unmarked": include_unmarked,
            "relay_ready": bool(bot.relay.host and (bot.sender or session.company_email)),
        },
    )


def _job_page(request: web.Request, job_id: str) -> str:
    return str(request.app.router[ROUTE_JOB].url_for(job_id=job_id))


def _worker(st: SettingsState, job_id: str, session: Session) -> None:
    """Work the job in this process, in the background, with the session's credentials
    (held in memory only, for as long as the job runs)."""
    assert session.credentials is not None
    owner = f"web-{os.getpid()}-{secrets.token_hex(4)}"
    task = asyncio.create_task(run(st.core, job_id, session.credentials, owner=owner))
    st.workers.add(task)
    task.add_done_callback(_finished)
    task.add_done_callback(st.workers.discard)


def _finished(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The job stays unfinished and its lease runs out: its page offers to go on.
        log.error("a re-issue stopped: %s", type(task.exception()).__name__)


async def _checked(st: SettingsState, session: Session, back: str) -> Outcome | None:
    """Whether KashFlow still takes the session's password (it is about to become the
    bot's and every new link's); a refusal as an outcome, else None."""
    assert session.credentials is not None
    try:
        await st.core.kashflow(session.credentials).company_details()
    except BadCredentials:
        raise SessionRefused from None  # changed again: the guard ends the session
    except KashFlowError as error:
        words = words_for(error, "accountant")
        return problem(back, words.text, status=words.status)
    return None


@signed_in
@submitted
async def begin(request: web.Request, session: Session, form: Form) -> Outcome:
    """Start the re-issue: the bot takes the new password, the job is recorded and run."""
    st = state(request)
    assert session.credentials is not None
    back = str(request.app.router[ROUTE_REISSUE].url_for())
    refused = await _checked(st, session, back)
    if refused is not None:
        return refused
    running = await st.core.store.reissues.unfinished(session.account)
    if running is not None:
        return notice(_job_page(request, running), "A re-issue is already under way.")
    include_unmarked = forms.checked(form, "include_unmarked")
    job_id = await start(
        st.core, session.credentials, now=int(st.now()), include_unmarked=include_unmarked
    )
    if job_id is None:
        return notice(
            str(request.app.router["settings.links"].url_for()),
            "No link needed re-issuing. The bot now uses the password you signed in with.",
        )
    _worker(st, job_id, session)
    return notice(
        _job_page(request, job_id),
        "The re-issue has started. The bot now uses the password you signed in with.",
    )


@signed_in
async def job(request: web.Request, session: Session) -> web.StreamResponse:
    """A re-issue's progress, customer by customer."""
    st = state(request)
    found = await st.core.store.reissues.get(session.account, request.match_info["job_id"])
    if found is None:
        return render(request, NO_SUCH_JOB)
    return await render_page(request, "settings/reissue_job.html", session, _job_context(st, found))


def _job_context(st: SettingsState, found: Job) -> dict[str, object]:
    now = st.now()
    total = len(found.items)
    return {
        "job": found,
        "total": total,
        "settled": found.count("done", "failed"),
        "done": found.count("done"),
        "failed": found.count("failed"),
        "running": found.running(now),
        "interrupted": found.interrupted(now),
        "state_words": STATE_WORDS,
        "items": [
            {
                "customer": customer_label(item.customer_name, item.customer_code),
                "links": [_planned_text(link.scope, link.expires) for link in item.links],
                "state": item.state,
                "emailed_to": item.emailed_to,
                "detail": item.detail,
            }
            for item in found.items
        ],
    }


@signed_in
@submitted
async def resume(request: web.Request, session: Session, form: Form) -> Outcome:
    """Go on with a stopped re-issue, or try its failed emails again."""
    st = state(request)
    job_id = request.match_info["job_id"]
    page = _job_page(request, job_id)
    reissues = st.core.store.reissues
    found = await reissues.get(session.account, job_id)
    if found is None:
        return problem(
            str(request.app.router[ROUTE_REISSUE].url_for()), NO_SUCH_JOB.message, status=404
        )
    if found.running(st.now()):
        return notice(page, "The re-issue is already running.")
    refused = await _checked(st, session, page)
    if refused is not None:
        return refused
    if found.finished is not None and not await reissues.retry_failed(session.account, job_id):
        return notice(page, "Nothing is left to do.")
    _worker(st, job_id, session)
    return notice(page, "The re-issue goes on where it stopped.")


@signed_in
async def preview(request: web.Request, session: Session) -> web.StreamResponse:
    """The first client's email, HTML part (or ``?part=text``)."""
    st = state(request)
    try:
        planned, customers = await _planned(
            st, session, include_unmarked=request.query.get("unmarked") == "1"
        )
        view = await _preview(st, session, planned, customers)
    except KashFlowError:
        view = None
    if view is None:
        return web.Response(text="", content_type="text/plain", status=404)
    if request.query.get("part") == "text":
        return web.Response(text=view.text, content_type="text/plain")
    return MailPreview(view.html)


async def stop_workers(app: web.Application) -> None:
    """At shutdown: stop this process's re-issues (each lets its job go, to be resumed)."""
    workers = list(app[SETTINGS].workers)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/settings/reissue", overview, name=ROUTE_REISSUE)
    router.add_post("/settings/reissue", begin, name=ROUTE_START)
    router.add_get("/settings/reissue/preview", preview, name=ROUTE_PREVIEW)
    router.add_get("/settings/reissue/{job_id}", job, name=ROUTE_JOB)
    router.add_post("/settings/reissue/{job_id}/continue", resume, name=ROUTE_CONTINUE)


__all__ = ["add_routes", "stop_workers"]
