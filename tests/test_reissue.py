"""Re-issuing after a KashFlow password change, against the sandbox and a real SMTP capture:
what broke is counted, each client is emailed their new link once, the broken links are
revoked, the bot takes the new password, and an interrupted re-issue picks up where it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from bot.capture import CapturedMessage, CaptureServer
from kashflow.models import Credentials
from kashflow.sandbox import DEMO
from permalink.links import InvalidLink
from permalink.registry import LinkRecord
from permalink.reissue import plan, run, start, survey
from permalink.scopes import Scope
from tests.support import WebRig, web_rig

NEW = Credentials("demo", "changed-api-pass")
DAY = 86_400


@dataclass
class Setup:
    rig: WebRig
    capture: CaptureServer

    @property
    def now(self) -> int:
        return int(self.rig.clock())

    async def mint(self, code: str, scope: str = "all", **kwargs: object) -> str:
        customer = await self.rig.core.kashflow(DEMO).customer_by_code(code)
        minted = await self.rig.core.mint(
            DEMO,
            customer,
            Scope.parse(scope),
            minted_by="bot",
            **kwargs,  # type: ignore[arg-type]
        )
        return minted.url

    def token(self, url: str) -> str:
        return url.rsplit("/", 1)[1]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with web_rig(tmp_path) as rig, CaptureServer(tmp_path / "outbox") as capture:
        accounts = rig.core.store.accounts
        await accounts.set_bot_credentials("demo", DEMO)
        await accounts.update(
            "demo",
            request_address="invoices@northwind-studio.example",
            relay_host="127.0.0.1",
            relay_port=capture.port,
            relay_security="none",
        )
        yield Setup(rig, capture)


def links_in(mail: CapturedMessage) -> list[str]:
    text = mail.parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return [line for line in text.splitlines() if "/l/" in line]


async def test_the_change_is_counted_and_each_client_gets_one_email(setup: Setup) -> None:
    rig, core = setup.rig, setup.rig.core
    old = [
        await setup.mint("FOX01", "unpaid", expires_in=30 * DAY),
        await setup.mint("FOX01", "unpaid", expires_in=60 * DAY),  # a second, later expiry
        await setup.mint("FOX01", "all"),
        await setup.mint("GRAN01", "all"),
    ]
    assert (await survey(core, DEMO, setup.now)).needed is False
    rig.sandbox.set_api_password("demo", NEW.password)

    found = await survey(core, NEW, setup.now)
    assert (found.broken, found.unmarked, found.bot_outdated) == (4, 0, True)
    job_id = await start(core, NEW, now=setup.now)
    assert job_id is not None
    # The bot keeps the new password from this step on.
    assert await core.store.accounts.bot_credentials("demo") == NEW
    await run(core, job_id, NEW, owner="test")

    mails = setup.capture.messages
    assert sorted(m.rcpt_tos for m in mails) == [
        ("office@graniterow.example",),
        ("ruth@foxglove.example",),
    ]
    fox = next(m for m in mails if m.rcpt_tos == ("ruth@foxglove.example",))
    assert str(fox.parsed()["From"]) == "Northwind Studio Ltd <invoices@northwind-studio.example>"
    new_links = links_in(fox)
    assert len(new_links) == 2  # one per scope the client had, not one per old link
    opened = {}
    for url in new_links:
        link = await core.open_link(setup.token(url))
        assert link.credentials == NEW
        opened[str(link.scope)] = link
    assert set(opened) == {"unpaid", "all"}
    unpaid = opened["unpaid"]
    assert unpaid.expires == int(rig.clock()) + 60 * DAY  # the latest of the two expiries
    for url in old:
        with pytest.raises(InvalidLink):
            await core.open_link(setup.token(url))
    assert (await survey(core, NEW, setup.now)).needed is False
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.finished is not None and job.count("done") == 2


async def test_an_interrupted_reissue_resumes_without_emailing_anyone_twice(
    setup: Setup,
) -> None:
    core = setup.rig.core
    codes = ["ACME01", "CORV01", "DUNE01", "ELM01", "FOX01", "GRAN01", "HOLL01", "IVY01"]
    for code in codes:
        await setup.mint(code)
    setup.rig.sandbox.set_api_password("demo", NEW.password)
    job_id = await start(core, NEW, now=setup.now)
    assert job_id is not None

    real_send = core.send_for_account
    sent = 0

    async def send_then_stop(*args: Any, **kwargs: Any) -> None:
        nonlocal sent
        await real_send(*args, **kwargs)
        sent += 1
        if sent == 3:
            # The process stops right after the relay took the third mail, before the
            # job could record it: the one window SMTP cannot close.
            raise asyncio.CancelledError

    with (
        mock.patch.object(core, "send_for_account", send_then_stop),
        pytest.raises(asyncio.CancelledError),
    ):
        await run(core, job_id, NEW, owner="first")
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.interrupted(core.clock()) and job.left == len(codes) - 2

    await run(core, job_id, NEW, owner="second")
    mails = setup.capture.messages
    by_client: dict[tuple[str, ...], list[CapturedMessage]] = {}
    for mail in mails:
        by_client.setdefault(mail.rcpt_tos, []).append(mail)
    assert len(by_client) == len(codes) and len(mails) == len(codes) + 1
    # The client whose mail was in flight got it twice — as the same message with the same
    # link (sealed again, so other bytes, opening to the same link id).
    (twice,) = [got for got in by_client.values() if len(got) == 2]
    assert len({str(m.parsed()["Message-ID"]) for m in twice}) == 1
    ids = [
        [(await core.open_link(setup.token(url))).link_id for url in links_in(mail)]
        for mail in twice
    ]
    assert ids[0] == ids[1]
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.finished is not None and job.count("done") == len(codes)


async def test_a_refused_email_is_tried_again_with_the_same_link(setup: Setup) -> None:
    core = setup.rig.core
    await setup.mint("FOX01")
    setup.rig.sandbox.set_api_password("demo", NEW.password)
    job_id = await start(core, NEW, now=setup.now)
    assert job_id is not None
    setup.capture.fail_with = (554, "5.7.1 Relaying denied")
    await run(core, job_id, NEW, owner="test")
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.count("failed") == 1
    assert "Relaying denied" in job.items[0].detail
    first_ids = job.items[0].new_link_ids

    setup.capture.fail_with = None
    assert await core.store.reissues.retry_failed("demo", job_id) == 1
    await run(core, job_id, NEW, owner="test")
    (mail,) = setup.capture.messages
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.count("done") == 1
    assert job.items[0].new_link_ids == first_ids
    (url,) = links_in(mail)
    assert (await core.open_link(setup.token(url))).link_id == first_ids[0]


async def test_with_no_address_at_a_proved_domain_nothing_is_sent_and_the_job_says_why(
    setup: Setup,
) -> None:
    # No request or reply-from address saved, and KashFlow's company address at a domain
    # the account never proved: the re-issue may not speak for that domain.
    core = setup.rig.core
    await core.store.accounts.update("demo", request_address="")
    old = await setup.mint("FOX01")
    setup.rig.sandbox.set_api_password("demo", NEW.password)
    job_id = await start(core, NEW, now=setup.now)
    assert job_id is not None
    await run(core, job_id, NEW, owner="test")
    assert setup.capture.messages == []
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None and job.finished is None and job.count("done") == 0
    assert "only from an address at a domain it has proved" in job.problem
    assert not job.items[0].new_link_ids  # no link was made for mail that cannot go
    assert (await core.open_link(setup.token(old))).link_id  # nor the old one revoked

    # With a request address saved (its domain proved when it was saved), it goes on.
    await core.store.accounts.update("demo", request_address="invoices@northwind-studio.example")
    await run(core, job_id, NEW, owner="test")
    (mail,) = setup.capture.messages
    assert str(mail.parsed()["From"]) == "Northwind Studio Ltd <invoices@northwind-studio.example>"


async def test_links_of_unknown_password_are_re_issued_only_when_asked(setup: Setup) -> None:
    core = setup.rig.core
    await setup.mint("FOX01")
    customer = await core.kashflow(DEMO).customer_by_code("ACME01")
    await core.store.links.add(  # a link from before password marks were kept
        "demo",
        customer_code=customer.code,
        customer_name=customer.name,
        scope="all",
        created=setup.now,
        minted_by="cli",
    )
    setup.rig.sandbox.set_api_password("demo", NEW.password)
    found = await survey(core, NEW, setup.now)
    assert (found.broken, found.unmarked) == (1, 1)
    job_id = await start(core, NEW, now=setup.now, include_unmarked=True)
    assert job_id is not None
    job = await core.store.reissues.get("demo", job_id)
    assert job is not None
    assert [item.customer_code for item in job.items] == ["ACME01", "FOX01"]


def test_the_plan_groups_by_customer_then_scope() -> None:
    def record(link_id: str, code: str, scope: str, expires: int | None) -> LinkRecord:
        return LinkRecord(
            link_id, "demo", code, f"Name {code}", scope, 0, expires, "bot", 0, None, None
        )

    planned = plan(
        [
            record("a" * 16, "B", "all", 10),
            record("b" * 16, "A", "all", None),
            record("c" * 16, "B", "all", 20),
            record("d" * 16, "B", "unpaid", 5),
        ]
    )
    assert [c.code for c in planned] == ["A", "B"]
    b_links = {link.scope: link for link in planned[1].links}
    assert b_links["all"].expires == 20 and b_links["all"].replaces == ("a" * 16, "c" * 16)
    assert b_links["unpaid"].expires == 5
    assert planned[0].links[0].expires is None
