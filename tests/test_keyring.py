"""The server keyring: key files, the environment form, rotation and sealed secrets."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from permalink.keyring import Keyring, KeyringError, SecretUnreadable

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_a_0600_file_that_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    created = Keyring.create(path)
    assert mode_of(path) == 0o600
    assert Keyring.load(path) == created
    assert created.current_id == 1


def test_create_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Keyring.create(tmp_path / "server.key")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "server.key") == 0o600


def test_create_refuses_to_overwrite_an_existing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    first = Keyring.create(path)
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.create(path)
    assert Keyring.load(path) == first


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_a_file_others_can_reach(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "server.key"
    Keyring.create(path)
    path.chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600") as caught:
        Keyring.load(path)
    assert f"{mode:04o}" in str(caught.value)


def test_load_accepts_a_0400_file(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    created = Keyring.create(path)
    path.chmod(0o400)
    assert Keyring.load(path) == created


def test_load_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        Keyring.load(tmp_path / "nope.key")


def test_from_env_last_entry_is_current() -> None:
    keyring = Keyring.from_env(f"1:{b64(KEY_A)},2:{b64(KEY_B)}")
    assert keyring.current_id == 2
    assert keyring.key_ids == (1, 2)
    assert Keyring.from_env(f" 2:{b64(KEY_B)} , 1:{b64(KEY_A)} ").current_id == 1


def test_from_env_accepts_urlsafe_unpadded_keys() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")
    assert Keyring.from_env(f"7:{urlsafe}") == Keyring({7: b"\xfb" * 32}, 7)


def test_to_env_round_trips() -> None:
    keyring = Keyring.generate().rotated().rotated()
    assert Keyring.from_env(keyring.to_env()) == keyring


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "holds no keys"),
        ("1", "entry 1 is not"),
        (f"0:{b64(KEY_A)}", "outside 1-255"),
        (f"256:{b64(KEY_A)}", "outside 1-255"),
        (f"1:{b64(KEY_A)},1:{b64(KEY_B)}", "appears twice"),
        (f"1:{b64(KEY_A[:24])}", "entry 1 is not"),
        (f"1:{b64(KEY_A)[:-2]}!=", "entry 1 is not"),
    ],
)
def test_from_env_rejects_bad_values_without_echoing_keys(value: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.from_env(value)
    assert b64(KEY_A)[:20] not in str(caught.value)


def test_rotation_adds_a_current_key_and_keeps_the_old() -> None:
    first = Keyring.generate()
    second = first.rotated()
    assert second.current_id == 2
    assert second.key_ids == (1, 2)
    old_blob = first.seal_secret(b"relay password", purpose=b"relay")
    assert second.open_secret(old_blob, purpose=b"relay") == b"relay password"
    assert second.seal_secret(b"x", purpose=b"relay")[1] == 2


def test_retiring_a_key_stops_what_it_sealed_from_opening() -> None:
    first = Keyring.generate()
    blob = first.seal_secret(b"s", purpose=b"p")
    retired = first.rotated().retired(1)
    assert retired.key_ids == (2,)
    with pytest.raises(SecretUnreadable) as caught:
        retired.open_secret(blob, purpose=b"p")
    assert caught.value.reason == "unknown_key"


def test_the_current_key_cannot_be_retired() -> None:
    with pytest.raises(KeyringError, match="current"):
        Keyring.generate().retired(1)


def test_rotation_wraps_to_a_free_id_after_255() -> None:
    keyring = Keyring({255: KEY_A, 3: KEY_B}, 255).rotated()
    assert keyring.current_id == 1


def test_save_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    rotated = Keyring.create(path).rotated()
    rotated.save(path)
    assert mode_of(path) == 0o600
    assert Keyring.load(path) == rotated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]


def test_secret_round_trip_and_fresh_nonce_each_time() -> None:
    keyring = Keyring.generate()
    first = keyring.seal_secret(b"hunter2", purpose=b"bot-credentials")
    second = keyring.seal_secret(b"hunter2", purpose=b"bot-credentials")
    assert first != second
    assert b"hunter2" not in first
    assert keyring.open_secret(first, purpose=b"bot-credentials") == b"hunter2"
    assert keyring.open_secret(second, purpose=b"bot-credentials") == b"hunter2"


def test_a_secret_sealed_for_one_purpose_does_not_open_as_another() -> None:
    keyring = Keyring.generate()
    blob = keyring.seal_secret(b"hunter2", purpose=b"relay-password")
    with pytest.raises(SecretUnreadable) as caught:
        keyring.open_secret(blob, purpose=b"bot-credentials")
    assert caught.value.reason == "tag"
    assert caught.value.__context__ is None


def test_a_secret_from_another_keyring_does_not_open() -> None:
    blob = Keyring.generate().seal_secret(b"hunter2", purpose=b"p")
    with pytest.raises(SecretUnreadable):
        Keyring.generate().open_secret(blob, purpose=b"p")


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:29], "short"),
        (lambda b: bytes([2]) + b[1:], "version"),
        (lambda b: b[:1] + bytes([9]) + b[2:], "unknown_key"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "tag"),
    ],
)
def test_damaged_secrets_fail_with_one_message(
    mangle: Callable[[bytes], bytes], reason: str
) -> None:
    keyring = Keyring.generate()
    blob = keyring.seal_secret(b"hunter2", purpose=b"p")
    with pytest.raises(SecretUnreadable) as caught:
        keyring.open_secret(mangle(blob), purpose=b"p")
    assert caught.value.reason == reason
    assert str(caught.value) == "sealed data could not be opened"


def test_repr_never_shows_key_bytes() -> None:
    keyring = Keyring({1: KEY_A, 2: KEY_B}, 2)
    text = repr(keyring) + str(keyring)
    assert text == "Keyring(current_id=2, key_ids=(1, 2))" * 2
    assert b64(KEY_A) not in text
    assert KEY_A.hex() not in text


def test_constructor_rejects_wrong_key_sizes_and_missing_current() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring({1: b"short"}, 1)
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring({1: KEY_A}, 2)


def test_a_fingerprint_tells_the_same_password_from_another_and_hides_it() -> None:
    keyring = Keyring.generate()
    purpose = b"api-password\x00acme"
    mark = keyring.fingerprint(b"old-pass", purpose=purpose)
    assert keyring.fingerprint_matches(mark, b"old-pass", purpose=purpose) is True
    assert keyring.fingerprint_matches(mark, b"new-pass", purpose=purpose) is False
    # Bound to its purpose (the account), and to this keyring's keys.
    assert keyring.fingerprint_matches(mark, b"old-pass", purpose=b"api-password\x00other") is False
    assert b"old-pass" not in mark
    assert Keyring.generate().fingerprint(b"old-pass", purpose=purpose) != mark


def test_fingerprints_survive_a_rotation_until_their_key_is_retired() -> None:
    keyring = Keyring.generate()
    mark = keyring.fingerprint(b"pass", purpose=b"p")
    rotated = keyring.rotated()
    assert rotated.fingerprint_matches(mark, b"pass", purpose=b"p") is True
    assert rotated.fingerprint(b"pass", purpose=b"p") != mark  # new marks use the new key
    retired = rotated.retired(keyring.current_id)
    assert retired.fingerprint_matches(mark, b"pass", purpose=b"p") is None
    assert retired.fingerprint_matches(b"junk", b"pass", purpose=b"p") is None
