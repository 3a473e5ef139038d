"""Permalink tokens: round trips, tampering, rotation, expiry and what errors reveal."""

from __future__ import annotations

import base64
import string
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kashflow.models import Credentials
from permalink.keyring import Keyring
from permalink.links import (
    MAX_TOKEN_CHARS,
    InvalidLink,
    Link,
    new_link,
    open_link,
    seal,
)
from permalink.scopes import MAX_SCOPE_INVOICES, Scope

NOW = 1_700_000_000
PASSWORD = "s3cret-Passw0rd!"
CREDENTIALS = Credentials(username="acme-ltd", password=PASSWORD)
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"
# Module-level so hypothesis examples share it (function-scoped fixtures and @given clash).
KEYRING = Keyring.generate()


def b64url_decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64url_encode(blob: bytes) -> str:
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def typical_link(scope: Scope | None = None, expires_in: int | None = 30 * 86400) -> Link:
    return new_link(
        CREDENTIALS, 1234, "CUST01", scope or Scope("all"), now=NOW, expires_in=expires_in
    )


def assert_invalid(token: str, keyring: Keyring = KEYRING, *, now: int = NOW) -> InvalidLink:
    with pytest.raises(InvalidLink) as caught:
        open_link(token, keyring, now=now)
    exc = caught.value
    assert str(exc) == "invalid link"
    assert exc.__context__ is None and exc.__cause__ is None
    return exc


# -- scopes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("all", Scope("all")),
        ("unpaid", Scope("unpaid")),
        ("invoice:1234", Scope("invoice", 1234)),
        (" Unpaid ", Scope("unpaid")),
        ("invoice:1250,1234", Scope("invoice", [1234, 1250])),
        ("invoices:1241, 1242", Scope("invoice", (1242, 1241))),
    ],
)
def test_scope_parse(text: str, scope: Scope) -> None:
    assert Scope.parse(text) == scope
    assert Scope.parse(str(scope)) == scope


@pytest.mark.parametrize(
    "text",
    [
        "",
        "paid",
        "invoice",
        "invoice:",
        "invoice:0",
        "invoice:-3",
        "invoice:1e3",
        "all:1",
        "invoice:1,",
    ],
)
def test_scope_parse_rejects_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"scope must be 'all', 'unpaid' or 'invoice:<number>"):
        Scope.parse(text)


def test_a_scope_of_several_invoices_is_sorted_and_bounded() -> None:
    scope = Scope("invoice", [1250, 1234, 1250])
    assert scope.numbers == (1234, 1250) and scope.invoice is None
    assert str(scope) == "invoice:1234,1250"
    assert Scope("invoice", 7).invoice == 7
    with pytest.raises(ValueError, match="at most"):
        Scope("invoice", range(1, MAX_SCOPE_INVOICES + 2))


@pytest.mark.parametrize(
    "scope", [Scope("invoice", 77), Scope("invoice", [1241, 1242, 1248]), Scope("unpaid")]
)
def test_every_scope_survives_sealing(scope: Scope) -> None:
    link = typical_link(scope)
    assert open_link(seal(link, KEYRING), KEYRING, now=NOW).scope == scope


def test_scope_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="needs an invoice number"):
        Scope("invoice")
    with pytest.raises(ValueError, match="takes no invoice number"):
        Scope("all", 5)


# -- round trips ------------------------------------------------------------------------


def test_typical_link_round_trips_in_a_short_url_safe_token() -> None:
    link = typical_link()
    token = seal(link, KEYRING)
    assert set(token) <= set(TOKEN_ALPHABET)
    assert len(token) == 111
    assert open_link(token, KEYRING, now=NOW) == link
    assert link.account == "acme-ltd"
    assert len(link.link_id) == 16 and int(link.link_id, 16) >= 0


def test_each_seal_differs_and_each_new_link_has_its_own_id() -> None:
    link = typical_link()
    assert seal(link, KEYRING) != seal(link, KEYRING)
    assert typical_link().link_id != typical_link().link_id


def test_the_token_does_not_carry_credentials_in_clear() -> None:
    blob = b64url_decode(seal(typical_link(), KEYRING))
    assert b"acme-ltd" not in blob
    assert PASSWORD.encode() not in blob
    assert b"CUST01" not in blob


scopes = st.one_of(
    st.sampled_from([Scope("all"), Scope("unpaid")]),
    st.builds(Scope, st.just("invoice"), st.integers(1, 2**31 - 1)),
)


@settings(max_examples=60, deadline=None)
@given(
    username=st.text(max_size=40),
    password=st.text(max_size=40),
    code=st.text(max_size=40),
    customer_id=st.integers(1, 2**31 - 1),
    scope=scopes,
    now=st.integers(0, 2**40),
    expires_in=st.none() | st.integers(1, 10**9),
)
def test_any_link_round_trips(
    username: str,
    password: str,
    code: str,
    customer_id: int,
    scope: Scope,
    now: int,
    expires_in: int | None,
) -> None:
    link = new_link(
        Credentials(username, password), customer_id, code, scope, now=now, expires_in=expires_in
    )
    token = seal(link, KEYRING)
    assert len(token) <= MAX_TOKEN_CHARS
    assert open_link(token, KEYRING, now=now) == link


def test_contents_too_long_for_a_token_are_refused_at_seal_time() -> None:
    link = new_link(Credentials("u", "p" * 800), 1, "C", Scope("all"), now=NOW)
    with pytest.raises(ValueError, match="too long") as caught:
        seal(link, KEYRING)
    assert "ppp" not in str(caught.value)


def test_unencodable_text_is_refused_without_quoting_it() -> None:
    link = new_link(Credentials("u", "pw\ud800"), 1, "C", Scope("all"), now=NOW)
    with pytest.raises(ValueError, match="valid Unicode") as caught:
        seal(link, KEYRING)
    assert "pw" not in str(caught.value) and caught.value.__context__ is None


# -- tampering --------------------------------------------------------------------------


def test_every_single_bit_flip_fails() -> None:
    blob = b64url_decode(seal(typical_link(), KEYRING))
    for i in range(len(blob)):
        for bit in range(8):
            flipped = bytearray(blob)
            flipped[i] ^= 1 << bit
            assert_invalid(b64url_encode(bytes(flipped)))


def test_every_single_character_substitution_fails() -> None:
    token = seal(typical_link(Scope("invoice", 77)), KEYRING)
    for i, original in enumerate(token):
        for replacement in TOKEN_ALPHABET + "=+/.~ %":
            if replacement != original:
                assert_invalid(token[:i] + replacement + token[i + 1 :])


def test_truncation_and_extension_fail() -> None:
    token = seal(typical_link(), KEYRING)
    for end in range(len(token)):
        assert_invalid(token[:end])
    for extra in ("A", "AA", "AAA", "AAAA", "-", "=", "\n"):
        assert_invalid(token + extra)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=600) | st.text(TOKEN_ALPHABET, max_size=600))
def test_random_strings_never_open(token: str) -> None:
    assert_invalid(token)


def test_overlong_input_is_refused_before_decoding() -> None:
    exc = assert_invalid("A" * 100_000)
    assert exc.reason == "too_long"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:20], "short"),
        (lambda b: bytes([9]) + b[1:], "version"),
        (lambda b: b[:1] + bytes([200]) + b[2:], "unknown_key"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0x80]), "tag"),
    ],
)
def test_reason_is_kept_for_metrics(mangle: Callable[[bytes], bytes], reason: str) -> None:
    blob = b64url_decode(seal(typical_link(), KEYRING))
    assert assert_invalid(b64url_encode(mangle(blob))).reason == reason


def test_a_non_canonical_encoding_of_a_valid_token_is_refused() -> None:
    token = seal(typical_link(), KEYRING)
    # 111 characters: the last one has 2 spare bits that the stdlib decoder ignores, so
    # three other texts decode to the same bytes; only the canonical one may open.
    assert len(token) == 111
    twins = [
        token[:-1] + c
        for c in TOKEN_ALPHABET
        if c != token[-1] and b64url_decode(token[:-1] + c) == b64url_decode(token)
    ]
    assert len(twins) == 3
    for twin in twins:
        assert assert_invalid(twin).reason == "malformed"
    assert assert_invalid(token[:5] + " " + token[5:]).reason == "malformed"


def test_a_secret_sealed_for_another_purpose_does_not_open_as_a_link() -> None:
    blob = KEYRING.seal_secret(b"\x00" * 60, purpose=b"bot-credentials")
    assert assert_invalid(b64url_encode(blob)).reason == "tag"


# -- keys -------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_until_their_key_is_retired() -> None:
    first = Keyring.generate()
    link = typical_link()
    old_token = seal(link, first)
    rotated = first.rotated()
    new_token = seal(link, rotated)
    assert b64url_decode(old_token)[1] == 1
    assert b64url_decode(new_token)[1] == 2
    assert open_link(old_token, rotated, now=NOW) == link
    assert open_link(new_token, rotated, now=NOW) == link
    retired = rotated.retired(1)
    assert open_link(new_token, retired, now=NOW) == link
    assert assert_invalid(old_token, retired).reason == "unknown_key"


def test_a_token_relabelled_with_another_existing_key_id_fails() -> None:
    keyring = Keyring.generate().rotated()
    blob = bytearray(b64url_decode(seal(typical_link(), keyring)))
    assert blob[1] == 2
    blob[1] = 1
    assert assert_invalid(b64url_encode(bytes(blob)), keyring).reason == "tag"


def test_a_token_from_another_server_fails() -> None:
    token = seal(typical_link(), Keyring.generate())
    assert assert_invalid(token).reason == "tag"


# -- expiry -----------------------------------------------------------------------------


def test_expiry_is_exact_to_the_second() -> None:
    link = typical_link(expires_in=3600)
    token = seal(link, KEYRING)
    assert link.expires == NOW + 3600
    assert open_link(token, KEYRING, now=NOW + 3599) == link
    assert assert_invalid(token, now=NOW + 3600).reason == "expired"
    assert assert_invalid(token, now=NOW + 10**6).reason == "expired"


def test_a_link_without_expiry_opens_far_in_the_future() -> None:
    link = typical_link(expires_in=None)
    assert open_link(seal(link, KEYRING), KEYRING, now=NOW + 50 * 365 * 86400) == link


def test_new_link_rejects_a_non_positive_lifetime() -> None:
    with pytest.raises(ValueError, match="positive"):
        typical_link(expires_in=0)


# -- what leaks -------------------------------------------------------------------------


def test_no_password_or_token_in_reprs_or_errors() -> None:
    link = typical_link()
    token = seal(link, KEYRING)
    for text in (repr(link), str(link), repr(KEYRING)):
        assert PASSWORD not in text
        assert token not in text
    assert "acme-ltd" in repr(link)  # the account is fine to show, and useful
    bad = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    exc = assert_invalid(bad)
    for text in (str(exc), repr(exc), repr(exc.reason), repr(exc.args)):
        assert bad[:12] not in text
        assert PASSWORD not in text
    assert exc.args == ("invalid link",)
