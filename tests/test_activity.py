"""The activity log: newest-first keyset paging, per-account isolation, pruning, redaction."""

from __future__ import annotations

import base64
import os

import pytest

from permalink.activity import ActivityLog, redact
from tests.conftest import OpenDb

T0 = 1_700_000_000


@pytest.fixture
def log(open_db: OpenDb) -> ActivityLog:
    return ActivityLog(open_db())


async def test_events_page_newest_first_without_gaps_or_repeats(log: ActivityLog) -> None:
    for i in range(7):
        await log.record("acme", kind="link_opened", outcome="ok", subject=f"CUST{i}", at=T0 + i)

    seen: list[str] = []
    before: int | None = None
    pages = 0
    while True:
        page = await log.page("acme", before_id=before, limit=3)
        if not page:
            break
        pages += 1
        seen.extend(event.subject for event in page)
        before = page[-1].id

    assert seen == [f"CUST{i}" for i in reversed(range(7))]
    assert pages == 3


async def test_a_page_does_not_shift_when_new_events_arrive(log: ActivityLog) -> None:
    for i in range(4):
        await log.record("acme", kind="bot_request", outcome="replied", subject=f"s{i}", at=T0)
    first = await log.page("acme", limit=2)
    await log.record("acme", kind="bot_request", outcome="replied", subject="late", at=T0)

    second = await log.page("acme", before_id=first[-1].id, limit=2)

    assert [e.subject for e in first] == ["s3", "s2"]
    assert [e.subject for e in second] == ["s1", "s0"]


async def test_an_event_keeps_what_the_settings_page_shows(log: ActivityLog) -> None:
    event = await log.record(
        "Acme",
        kind="bot_request",
        outcome="refused",
        subject="client@example.com",
        detail="Rate limit: 3 replies in the last hour.",
        at=T0 + 0.9,
    )
    [stored] = await log.page("acme", limit=10)
    assert stored == event
    assert (stored.account, stored.at, stored.kind, stored.outcome) == (
        "acme",
        T0,
        "bot_request",
        "refused",
    )
    assert stored.detail == "Rate limit: 3 replies in the last hour."


async def test_counts_by_account_and_kind(log: ActivityLog) -> None:
    await log.record("acme", kind="link_opened", outcome="ok", at=T0)
    await log.record("acme", kind="link_opened", outcome="ok", at=T0)
    await log.record("acme", kind="pdf_downloaded", outcome="ok", at=T0)
    await log.record("beta", kind="link_opened", outcome="ok", at=T0)

    assert await log.count("acme") == 3
    assert await log.count("acme", kind="link_opened") == 2
    assert await log.count("ACME", kind="pdf_downloaded") == 1
    assert await log.count("beta") == 1
    assert [e.kind for e in await log.page("acme", limit=10, kind="pdf_downloaded")] == [
        "pdf_downloaded"
    ]


async def test_one_account_never_sees_anothers_events(log: ActivityLog) -> None:
    await log.record("beta", kind="bot_request", outcome="replied", subject="secret-client")
    mine = await log.record("acme", kind="link_opened", outcome="ok", subject="mine")
    await log.record("beta", kind="bot_request", outcome="replied", subject="secret-client")

    assert [e.subject for e in await log.page("acme", limit=50)] == ["mine"]
    assert await log.page("acme", before_id=mine.id, limit=50) == []
    assert all(e.account == "beta" for e in await log.page("beta", limit=50))


async def test_prune_drops_old_events_of_every_account(log: ActivityLog) -> None:
    await log.record("acme", kind="link_opened", outcome="ok", subject="old", at=T0)
    await log.record("beta", kind="link_opened", outcome="ok", subject="old", at=T0 + 10)
    await log.record("acme", kind="link_opened", outcome="ok", subject="new", at=T0 + 100)

    assert await log.prune(T0 + 50) == 2

    assert [e.subject for e in await log.page("acme", limit=10)] == ["new"]
    assert await log.count("beta") == 0


async def test_ids_keep_growing_after_a_prune(log: ActivityLog) -> None:
    last = await log.record("acme", kind="link_opened", outcome="ok", at=T0)
    await log.prune(T0 + 1)
    later = await log.record("acme", kind="link_opened", outcome="ok", at=T0 + 2)
    assert later.id > last.id


async def test_events_survive_a_restart(open_db: OpenDb) -> None:
    log = ActivityLog(open_db())
    await log.record("acme", kind="test_email", outcome="failed", detail="relay refused", at=T0)

    reopened = ActivityLog(open_db())

    [event] = await reopened.page("acme", limit=5)
    assert (event.kind, event.outcome, event.detail) == ("test_email", "failed", "relay refused")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "Link Opened", "outcome": "ok"}, "kind"),
        ({"kind": "link_opened", "outcome": "great"}, "outcome"),
    ],
)
async def test_unknown_kinds_and_outcomes_are_refused(
    log: ActivityLog, fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await log.record("acme", **fields)  # type: ignore[arg-type]
    assert await log.count("acme") == 0


async def test_token_like_text_is_redacted_but_the_event_kept(log: ActivityLog) -> None:
    token = base64.urlsafe_b64encode(os.urandom(60)).decode().rstrip("=")
    event = await log.record(
        "acme",
        kind="link_emailed",
        outcome="ok",
        subject="client@example.com",
        detail=f"sent https://invoices.example.com/l/{token} to client@example.com",
    )

    assert token not in event.detail
    assert "[redacted]" in event.detail
    assert event.detail.endswith("to client@example.com")
    [stored] = await log.page("acme", limit=1)
    assert token not in stored.detail


def test_ordinary_text_is_not_redacted() -> None:
    text = (
        "Replied to accounts-payable@northwind-traders.example.co.uk with invoices "
        "1001, 1002 and 1003 (merged PDF 2.4 MB) for CUSTOMER_NORTHWIND_TRADERS_LTD"
    )
    assert redact(text) == text


async def test_long_or_multiline_subjects_are_tidied(log: ActivityLog) -> None:
    event = await log.record(
        "acme", kind="bot_request", outcome="ignored", subject="a\r\nb\x00c " + "x" * 500
    )
    assert "\n" not in event.subject and "\x00" not in event.subject
    assert event.subject.startswith("a b c")
    assert len(event.subject) == 200
