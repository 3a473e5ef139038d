"""The server keyring: the AES-256 keys that seal links and stored secrets, and their file.

A keyring holds up to 255 keys, each a 32-byte AES-256-GCM key under a small integer id
(1-255); one of them is *current* and seals everything new, the others only open what
they sealed before a rotation. Every sealed blob (a link's bytes, a stored password) is
one envelope::

    version (1 byte) | key id (1 byte) | nonce (12 random bytes) | ciphertext + 16-byte tag

with ``version | key id`` and the caller's ``purpose`` as associated data, so nobody can
move a blob to another key or replay a secret sealed for one use as another.

A keyring also makes *fingerprints*: ``version | key id | HMAC-SHA256(k, purpose, data)``
cut to 16 bytes, where ``k`` is derived from a key with HKDF under its own label (never
the sealing key itself). A fingerprint tells whether some later data is the same as
before — whether a link was made with today's API password — without keeping the data or
letting anyone without the keyring test guesses against it.

Key file and environment form are the same text: entries ``<id>:<base64 of 32 bytes>``
separated by newlines or commas (``#`` starts a comment line); **the last entry is the
current key**. In the environment, e.g. ``KASHFLOW_PERMALINK_KEYS="1:<b64>,2:<b64>"``.
The file must be mode 0600 (no group or other bits); it is created that way, never
chmod-ed afterwards, and rewritten atomically.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 2
#: Bytes an envelope adds to what it seals.
OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
FINGERPRINT_VERSION = 1
#: Bytes of HMAC kept in a fingerprint (after its two header bytes).
FINGERPRINT_MAC_BYTES = 16
_FINGERPRINT_LABEL = b"kashflow-permalink/fingerprint/v1"
MIN_KEY_ID = 1
MAX_KEY_ID = 255

UnreadableReason = Literal["short", "version", "unknown_key", "tag"]

_ENTRY = re.compile(r"([0-9]{1,3}):([A-Za-z0-9+/_-]{43}=?)")


#: Where a long-lived object finds the current keyring (it may be reloaded while it runs).
KeyringSource = Callable[[], "Keyring"]


def keyring_source(keys: Keyring | KeyringSource) -> KeyringSource:
    """A fixed keyring as a source, or the source itself."""
    if isinstance(keys, Keyring):
        fixed = keys
        return lambda: fixed
    return keys


class KeyringError(Exception):
    """The key file or environment value is missing, unsafe or malformed.

    Messages name the file and the problem, never key material.
    """


class SecretUnreadable(Exception):
    """A sealed blob could not be opened. ``reason`` is for metrics; the message never varies."""

    def __init__(self, reason: UnreadableReason) -> None:
        super().__init__("sealed data could not be opened")
        self.reason: UnreadableReason = reason


class Keyring:
    """Immutable set of AES-256-GCM keys by id, one of them current. ``repr`` shows ids only."""

    __slots__ = ("_ciphers", "_current_id", "_keys", "_mac_keys")

    def __init__(self, keys: Mapping[int, bytes], current_id: int) -> None:
        for key_id, key in keys.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id} must be {KEY_BYTES} bytes")
        if current_id not in keys:
            raise ValueError(f"current key id {current_id} is not in the keyring")
        self._keys: Mapping[int, bytes] = MappingProxyType(dict(sorted(keys.items())))
        self._current_id = current_id
        # AESGCM objects hold the expanded key; building them once keeps sealing cheap.
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.items()}
        self._mac_keys = {key_id: _mac_key(key) for key_id, key in self._keys.items()}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls, key_id: int = MIN_KEY_ID) -> Keyring:
        """A fresh in-memory keyring with one random key."""
        _check_key_id(key_id)
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    @classmethod
    def from_env(cls, value: str) -> Keyring:
        """Parse the environment form ``"1:<base64>,2:<base64>"``; the last entry is current."""
        return cls._parse(value, source="the keyring environment value")

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read a key file, refusing one that group or others could read or write."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise KeyringError(f"key file {path} does not exist") from None
        except OSError as exc:
            raise KeyringError(f"cannot open key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            # fstat on the open descriptor: the checked file is the one read.
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyringError(f"key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyringError(
                    f"key file {path} has mode {mode:04o}; group and others must have no "
                    f"access (run: chmod 600 {path})"
                )
            raw = handle.read(64 * 1024)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError(f"key file {path} is not ASCII text") from None
        return cls._parse(text, source=f"key file {path}")

    @classmethod
    def create(cls, path: Path) -> Keyring:
        """Write a new key file (mode 0600, created so) with one fresh key; never overwrites."""
        keyring = cls.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyringError(f"key file {path} already exists; refusing to overwrite") from None
        try:
            _write_all(fd, keyring._serialise())
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        _fsync_dir(path.parent)
        return keyring

    @classmethod
    def _parse(cls, text: str, *, source: str) -> Keyring:
        keys: dict[int, bytes] = {}
        current: int | None = None
        for number, entry in enumerate(_entries(text), start=1):
            match = _ENTRY.fullmatch(entry)
            if match is None:
                raise KeyringError(
                    f"{source}: entry {number} is not '<id>:<base64 of {KEY_BYTES} bytes>'"
                )
            key_id = int(match.group(1))
            if not MIN_KEY_ID <= key_id <= MAX_KEY_ID:
                raise KeyringError(f"{source}: key id {key_id} is outside 1-255")
            if key_id in keys:
                raise KeyringError(f"{source}: key id {key_id} appears twice")
            key = _decode_key(match.group(2))
            if key is None:
                raise KeyringError(f"{source}: key {key_id} is not {KEY_BYTES} bytes of base64")
            keys[key_id] = key
            current = key_id
        if current is None:
            raise KeyringError(f"{source} holds no keys")
        return cls(keys, current)

    # -- rotation and storage -----------------------------------------------------------

    @property
    def current_id(self) -> int:
        return self._current_id

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(self._keys)

    def rotated(self) -> Keyring:
        """A keyring with one new random key, now current; older keys still open old blobs."""
        free = [i for i in range(MIN_KEY_ID, MAX_KEY_ID + 1) if i not in self._keys]
        if not free:
            raise KeyringError("all 255 key ids are in use; retire an old key first")
        # Prefer the next id up so ids read in age order; wrap to the lowest free one.
        above = [i for i in free if i > max(self._keys)]
        new_id = above[0] if above else free[0]
        keys = dict(self._keys)
        keys[new_id] = AESGCM.generate_key(bit_length=256)
        return Keyring(keys, new_id)

    def retired(self, key_id: int) -> Keyring:
        """A keyring without ``key_id``: everything it sealed stops opening."""
        if key_id == self._current_id:
            raise KeyringError(f"key {key_id} is current; rotate before retiring it")
        if key_id not in self._keys:
            raise KeyringError(f"key {key_id} is not in the keyring")
        keys = {i: k for i, k in self._keys.items() if i != key_id}
        return Keyring(keys, self._current_id)

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically: a 0600 temp file beside it, fsync, rename, fsync dir."""
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                _write_all(fd, self._serialise())
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def to_env(self) -> str:
        """The environment form of this keyring (it contains the keys: handle as a secret)."""
        return ",".join(self._entries())

    def _entries(self) -> Iterable[str]:
        # Current key last: that position is what marks it current.
        order = [i for i in self._keys if i != self._current_id] + [self._current_id]
        return (f"{i}:{base64.b64encode(self._keys[i]).decode('ascii')}" for i in order)

    def _serialise(self) -> bytes:
        lines = [
            "# KashFlow Permalink server keys: <id>:<base64 key>; the last line is current.",
            "# Anyone holding this file can read every link. Keep it mode 0600.",
            *self._entries(),
        ]
        return ("\n".join(lines) + "\n").encode("ascii")

    # -- sealing ------------------------------------------------------------------------

    def seal_secret(self, data: bytes, *, purpose: bytes) -> bytes:
        """Seal ``data`` under the current key; it opens only with the same ``purpose``."""
        _check_purpose(purpose)
        header = bytes((ENVELOPE_VERSION, self._current_id))
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self._current_id].encrypt(nonce, data, header + purpose)
        return header + nonce + sealed

    def open_secret(self, blob: bytes, *, purpose: bytes) -> bytes:
        """Open a blob from ``seal_secret``; raises :class:`SecretUnreadable` on any failure."""
        _check_purpose(purpose)
        if len(blob) < OVERHEAD:
            raise SecretUnreadable("short")
        if blob[0] != ENVELOPE_VERSION:
            raise SecretUnreadable("version")
        cipher = self._ciphers.get(blob[1])
        if cipher is None:
            raise SecretUnreadable("unknown_key")
        nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        opened: bytes | None
        try:
            opened = cipher.decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], blob[:2] + purpose)
        except InvalidTag:
            opened = None
        # Raised outside the except block so the failure carries no chained context.
        if opened is None:
            raise SecretUnreadable("tag")
        return opened

    # -- fingerprints -------------------------------------------------------------------

    def fingerprint(self, data: bytes, *, purpose: bytes) -> bytes:
        """A keyed fingerprint of ``data`` under the current key (see the module docstring)."""
        return self._fingerprint(self._current_id, data, purpose)

    def fingerprint_matches(self, mark: bytes, data: bytes, *, purpose: bytes) -> bool | None:
        """Whether ``mark`` is the fingerprint of ``data``; None when it cannot be told (a
        mark from a retired key, or not a fingerprint at all)."""
        if len(mark) != HEADER_BYTES + FINGERPRINT_MAC_BYTES or mark[0] != FINGERPRINT_VERSION:
            return None
        if mark[1] not in self._mac_keys:
            return None
        return secrets.compare_digest(self._fingerprint(mark[1], data, purpose), mark)

    def _fingerprint(self, key_id: int, data: bytes, purpose: bytes) -> bytes:
        _check_purpose(purpose)
        mac = hmac.HMAC(self._mac_keys[key_id], hashes.SHA256())
        # The purpose is length-prefixed, so no (purpose, data) pair reads as another.
        mac.update(len(purpose).to_bytes(4, "big") + purpose + data)
        header = bytes((FINGERPRINT_VERSION, key_id))
        return header + mac.finalize()[:FINGERPRINT_MAC_BYTES]

    # -- dunder -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Keyring(current_id={self._current_id}, key_ids={self.key_ids})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyring):
            return NotImplemented
        return self._current_id == other._current_id and dict(self._keys) == dict(other._keys)

    __hash__ = None  # type: ignore[assignment]


def sealed_with(blob: bytes) -> int | None:
    """The id of the key an envelope names in its header, or None if it is no envelope."""
    if len(blob) < OVERHEAD or blob[0] != ENVELOPE_VERSION:
        return None
    return blob[1]


def _mac_key(key: bytes) -> bytes:
    # A key of its own for fingerprints: the sealing key is never used for anything else.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_FINGERPRINT_LABEL)
    return hkdf.derive(key)


def _check_key_id(key_id: int) -> None:
    if not isinstance(key_id, int) or not MIN_KEY_ID <= key_id <= MAX_KEY_ID:
        raise ValueError(f"key ids are integers {MIN_KEY_ID}-{MAX_KEY_ID}")


def _check_purpose(purpose: bytes) -> None:
    if not purpose:
        raise ValueError("purpose must name what the secret is for")


def _entries(text: str) -> list[str]:
    entries: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        entries.extend(part.strip() for part in line.split(",") if part.strip())
    return entries


def _decode_key(text: str) -> bytes | None:
    padded = text.replace("-", "+").replace("_", "/")
    padded += "=" * (-len(padded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    # The rename or creation is only durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
