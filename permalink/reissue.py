"""Re-issuing the links a KashFlow password change broke, in one step.

A link seals the account's API password, so once the password changes in KashFlow every
link made with the old one stops opening. Signed in with the new password, the accountant
sees how many (:func:`survey`, from the registry's password marks), and the plan: one new
link per customer and scope they had, with the same expiry, and one email per customer
(:func:`plan`). :func:`start` updates the bot's stored credentials to the new password and
records the job (:mod:`permalink.reissues`); :func:`run` works it — mint, revoke the broken
links, email the client — following the protocol written down there, so it can be stopped
at any point and resumed without a client being emailed twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from kashflow.errors import KashFlowError
from kashflow.models import CompanyDetails, Credentials, Customer
from permalink.accounts import account_key
from permalink.activity import LINK_REISSUED
from permalink.core import Core, RelayNotReady
from permalink.keyring import SecretUnreadable
from permalink.links import new_link_id
from permalink.mail import NewLink, Wording, compose_reissue_email, sender
from permalink.presentation import customer_label
from permalink.registry import LinkRecord
from permalink.reissues import Item, Job, LeaseLost, PlannedCustomer, PlannedLink
from permalink.relay import DeliveryFailure
from permalink.scopes import Scope
from permalink.trouble import words_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Survey:
    """What a password change did to an account's live links and its bot."""

    #: Live links made with another password: they no longer open.
    broken: int
    #: Live links made before password marks were kept: which password is unknown.
    unmarked: int
    #: The bot keeps a different password (or one that no longer opens).
    bot_outdated: bool

    @property
    def needed(self) -> bool:
        return self.broken > 0 or self.bot_outdated


async def _broken_marks(core: Core, credentials: Credentials, now: int) -> dict[bytes, int]:
    marks = await core.store.links.active_marks(credentials.username, now)
    # A mark from a retired key (None) is not counted: its link was sealed under that key
    # too, so it stopped opening when the key went, whatever the password.
    return {
        mark: count
        for mark, count in marks.items()
        if mark is not None and core.mark_matches(mark, credentials) is False
    }


async def _bot_outdated(core: Core, credentials: Credentials) -> bool:
    accounts = core.store.accounts
    try:
        kept = await accounts.bot_credentials(credentials.username)
    except SecretUnreadable:
        return True
    return kept is not None and kept.password != credentials.password


async def survey(core: Core, credentials: Credentials, now: int) -> Survey:
    """How many live links the account's password change broke, and whether the bot's
    password is out of date. ``credentials`` must be the ones KashFlow accepts now."""
    marks = await core.store.links.active_marks(credentials.username, now)
    broken = await _broken_marks(core, credentials, now)
    return Survey(
        broken=sum(broken.values()),
        unmarked=marks.get(None, 0),
        bot_outdated=await _bot_outdated(core, credentials),
    )


async def affected(
    core: Core, credentials: Credentials, now: int, *, include_unmarked: bool = False
) -> list[LinkRecord]:
    """The live links to re-issue, oldest first."""
    wanted: list[bytes | None] = list(await _broken_marks(core, credentials, now))
    if include_unmarked:
        wanted.append(None)
    return await core.store.links.active_with_marks(credentials.username, wanted, now)


def plan(records: Iterable[LinkRecord]) -> list[PlannedCustomer]:
    """One entry per customer, one new link per scope they had: the latest expiry of the
    links it replaces (none if any of them never expired). Ordered by customer name."""
    by_customer: dict[str, tuple[str, dict[str, list[LinkRecord]]]] = {}
    for record in records:
        _, scopes = by_customer.setdefault(record.customer_code, (record.customer_name, {}))
        scopes.setdefault(record.scope, []).append(record)
    planned = []
    for code, (name, scopes) in by_customer.items():
        links = []
        for scope, group in scopes.items():
            expiries = [r.expires for r in group]
            expires = None if None in expiries else max(e for e in expiries if e is not None)
            links.append(PlannedLink(scope, expires, tuple(r.link_id for r in group)))
        planned.append(PlannedCustomer(code, name, tuple(links)))
    return sorted(planned, key=lambda c: (c.name.casefold(), c.code))


async def start(
    core: Core, credentials: Credentials, *, now: int, include_unmarked: bool = False
) -> str | None:
    """Bring the bot's password up to date and record the re-issue; returns the job's id
    (None when no link needs re-issuing). The credentials must be checked with KashFlow
    first: they become the bot's."""
    if await _bot_outdated(core, credentials):
        await core.store.accounts.set_bot_credentials(credentials.username, credentials)
    customers = plan(await affected(core, credentials, now, include_unmarked=include_unmarked))
    if not customers:
        return None
    return await core.store.reissues.create(credentials.username, customers)


# -- working a job -------------------------------------------------------------------------


#: Why a run stops before any mail when the account has no address it may send from.
NO_SENDER: Final = (
    "Nothing was sent: mail from this account goes out only from an address at a domain it "
    "has proved. Save a request or reply-from address on the Mail bot page, then go on."
)


@dataclass(frozen=True, slots=True)
class _Mailing:
    """What every mail of one run shares."""

    company: CompanyDetails
    from_addr: str
    wording: Wording


async def run(core: Core, job_id: str, credentials: Credentials, *, owner: str) -> None:
    """Work the job to its end (or until cancelled): each item pending, interrupted while
    sending, or failed is done once more. Returns at once if another worker holds it."""
    account = account_key(credentials.username)
    reissues = core.store.reissues
    if not await reissues.take(job_id, owner):
        return
    try:
        job = await reissues.get(account, job_id)
        if job is None:
            return
        kashflow = core.kashflow(credentials)
        company = await kashflow.company_details()
        bot = await core.store.accounts.get(account)
        from_address = await core.settings_sender(account, bot.sender, company.email)
        if not from_address:
            await reissues.release(job_id, owner, problem=NO_SENDER)
            return
        # The whole customer list only once it is known that mail can go.
        customers = {c.code.upper(): c for c in await kashflow.customers()}
        mailing = _Mailing(
            company=company,
            from_addr=sender(company.name, from_address),
            # The bot's introduction is written for replies; the greeting and sign-off fit.
            wording=Wording(greeting=bot.wording.greeting, sign_off=bot.wording.sign_off),
        )
        for item in job.items:
            if item.state == "done":
                continue
            await reissues.renew(job_id, owner)
            await _reissue_one(core, job, item, customers, credentials, mailing, owner)
        await reissues.finish(job_id, owner)
    except LeaseLost:
        log.warning("re-issue %s was taken over by another worker", job_id)
    except KashFlowError as error:
        log.warning("re-issue %s stopped: KashFlow %s", job_id, type(error).__name__)
        await reissues.release(job_id, owner, problem=words_for(error, "accountant").text)
    except asyncio.CancelledError:
        # Stopping (the process shuts down): let another worker resume at once.
        await asyncio.shield(reissues.release(job_id, owner, problem="The re-issue was stopped."))
        raise


async def _reissue_one(
    core: Core,
    job: Job,
    item: Item,
    customers: dict[str, Customer],
    credentials: Credentials,
    mailing: _Mailing,
    owner: str,
) -> None:
    reissues, links = core.store.reissues, core.store.links
    now = int(core.clock())
    old = [link_id for planned in item.links for link_id in planned.replaces]
    customer = customers.get(item.customer_code.upper())
    if customer is None:
        await links.revoke_many(job.account, old, now=now)
        await reissues.settle(
            job.id, owner, item.position, "done", detail="No longer in KashFlow: nothing sent."
        )
        return
    new_ids = item.new_link_ids or tuple(new_link_id() for _ in item.links)
    message_id = item.message_id or email.utils.make_msgid(domain=core.config.mail_domain)
    if item.state == "pending":
        # Step 2 of the protocol: recorded before anything is made or sent.
        await reissues.sending(
            job.id, owner, item.position, new_link_ids=new_ids, message_id=message_id
        )
    made = await _make_links(core, job.account, item.links, new_ids, customer, credentials, now)
    await links.revoke_many(job.account, old, now=now)
    if made is None:
        await reissues.settle(
            job.id,
            owner,
            item.position,
            "failed",
            detail="KashFlow's password changed again: sign in with the current one to go on.",
        )
        return
    state, emailed_to, detail = await _email(core, job.account, customer, made, mailing, message_id)
    await reissues.settle(job.id, owner, item.position, state, emailed_to=emailed_to, detail=detail)
    await core.store.activity.record(
        job.account,
        kind=LINK_REISSUED,
        outcome="ok" if state == "done" else "failed",
        subject=customer_label(customer.name, customer.code),
        detail=f"{len(old)} broken link{'s' if len(old) != 1 else ''} replaced; "
        + (f"sent to {emailed_to}" if emailed_to else detail),
        at=now,
    )


async def _make_links(
    core: Core,
    account: str,
    planned: Sequence[PlannedLink],
    new_ids: Sequence[str],
    customer: Customer,
    credentials: Credentials,
    now: int,
) -> list[NewLink] | None:
    """The new links, minted now or (resuming) written again; None if they cannot be."""
    made = []
    for link, link_id in zip(planned, new_ids, strict=True):
        scope = Scope.parse(link.scope)
        record = await core.store.links.get(account, link_id)
        if record is None:
            if link.expires is not None and link.expires <= now:
                continue  # it would have expired by now anyway: nothing to replace
            minted = await core.mint(
                credentials,
                customer,
                scope,
                minted_by="settings",
                expires_in=None if link.expires is None else link.expires - now,
                now=now,
                link_id=link_id,
            )
            url, expires = minted.url, minted.link.expires
        else:
            again = core.url_again(record, credentials, customer.id)
            if again is None:
                return None
            url, expires = again, record.expires
        day = None if expires is None else datetime.fromtimestamp(expires, UTC).date()
        made.append(NewLink(url, scope, day))
    return made


async def _email(
    core: Core,
    account: str,
    customer: Customer,
    made: list[NewLink],
    mailing: _Mailing,
    message_id: str,
) -> tuple[Literal["done", "failed"], str, str]:
    """Send the client their new links: (item state, emailed to, detail)."""
    if not made:
        return "done", "", "Every link had expired: nothing to send."
    recipients = list(customer.emails)
    if not recipients:
        return (
            "done",
            "",
            "No email address on file in KashFlow: copy the new link from the Links page.",
        )
    if not mailing.from_addr:
        return "failed", "", "Set a request address on the Mail bot page first."
    client = await core.client_settings(account, customer.code)
    message = compose_reissue_email(
        to=", ".join(recipients),
        from_addr=mailing.from_addr,
        company=mailing.company,
        customer=customer,
        links=made,
        our_domain=core.config.mail_domain,
        wording=mailing.wording,
        message_id=message_id,
        language=client.language(),
    )
    try:
        await core.send_for_account(account, message, recipients)
    except (DeliveryFailure, RelayNotReady) as error:
        return "failed", "", f"Not sent: {error or type(error).__name__}"
    except SecretUnreadable:
        return "failed", "", "Not sent: the saved relay password can no longer be read."
    return "done", ", ".join(recipients), ""


__all__ = ["Survey", "affected", "plan", "run", "start", "survey"]
