"""Form submissions: a form's key does its work once, and its message is shown once."""

from __future__ import annotations

import pytest

from permalink.submissions import FormSubmissions, Outcome
from tests.conftest import OpenDb

KEY = "k" * 20
T0 = 1_700_000_000.0


@pytest.fixture
def forms(open_db: OpenDb) -> FormSubmissions:
    return FormSubmissions(open_db())


async def test_a_key_is_claimed_once_and_later_sends_lead_to_the_same_page(
    forms: FormSubmissions,
) -> None:
    assert (await forms.claim(KEY, "demo", T0)).state == "new"
    assert (await forms.claim(KEY, "demo", T0 + 1)).state == "running"  # a double click
    outcome = Outcome("/settings/links", 200, {"text": "The link is revoked.", "kind": "notice"})
    await forms.finish(KEY, "demo", outcome)
    again = await forms.claim(KEY, "demo", T0 + 2)
    assert again.state == "done" and again.outcome == outcome
    # Another account's browser never gets this key's result.
    assert (await forms.claim(KEY, "second", T0 + 3)).state == "foreign"


async def test_the_message_is_shown_once_and_only_to_its_owner(forms: FormSubmissions) -> None:
    await forms.claim(KEY, "demo", T0)
    assert await forms.take_message(KEY, "demo") is None  # not finished yet
    await forms.finish(KEY, "demo", Outcome("/settings/bot", 400, {"text": "Nope"}))
    assert await forms.take_message(KEY, "second") is None
    taken = await forms.take_message(KEY, "demo")
    assert taken is not None and (taken.status, taken.message) == (400, {"text": "Nope"})
    assert await forms.take_message(KEY, "demo") is None  # a reload shows no message
    assert await forms.take_message("not a key!", "demo") is None


async def test_a_released_claim_can_be_sent_again(forms: FormSubmissions) -> None:
    await forms.claim(KEY, "demo", T0)
    await forms.release(KEY, "demo")
    assert (await forms.claim(KEY, "demo", T0 + 1)).state == "new"
    with pytest.raises(ValueError, match="form key"):
        await forms.claim("short", "demo", T0)
