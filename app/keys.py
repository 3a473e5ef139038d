"""The server key of a deployment: kept current in running processes, and the ``keys`` commands.

A running process reads the key file through a :class:`LiveKeyring`: each use looks at
the file's identity (inode, size, times; one ``stat``) and re-reads it when it changed, so
every process of a deployment — web, bot or both — takes a new key at its next request
after ``keys rotate`` or ``keys retire``; SIGHUP re-reads it at once. A key file that no
longer reads (a bad edit, a wrong mode) is reported and the keys in use are kept.

The commands change the file and the stored secrets in the order that keeps every
process working: ``rotate`` writes the new key and then seals every stored secret again
under it; ``retire`` seals again anything still under the key it drops, refuses if
something stored would still need it, and only then removes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from app.config import SPECS, ConfigError, Settings, named
from permalink.db import StoreError, open_database
from permalink.keyring import Keyring, KeyringError, KeyringSource, keyring_source
from permalink.sealed import Resealed, SealedSecrets, StoredSecret

log = logging.getLogger(__name__)

#: When a change of the key file reaches running servers (said by every ``keys`` command).
TAKES_EFFECT: Final = (
    "Running servers (every role, on this machine) pick it up at their next request: they "
    "re-read the key file whenever it changes, and at once on SIGHUP."
)

Signature = tuple[int, int, int, int, int]


def _signature(path: Path) -> Signature | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def describe(keyring: Keyring) -> str:
    ids = ", ".join(str(i) for i in keyring.key_ids)
    return f"keys {ids} (current {keyring.current_id})"


class LiveKeyring:
    """The keyring the key file holds now: call it (a :data:`KeyringSource`) at each use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Identity first, then contents: a change landing in between is seen next time.
        self._signature = _signature(path)
        self._current = Keyring.load(path)

    def __call__(self) -> Keyring:
        signature = _signature(self.path)
        if signature != self._signature:
            self._signature = signature
            self._load("the key file changed")
        return self._current

    def reload(self, why: str = "SIGHUP") -> bool:
        """Re-read the key file now; False (and the old keys kept) if it does not read."""
        self._signature = _signature(self.path)
        return self._load(why)

    def _load(self, why: str) -> bool:
        before = self._current
        try:
            fresh = Keyring.load(self.path)
        except KeyringError as exc:
            log.error(
                "server keys not reloaded (%s): %s; still using %s", why, exc, describe(before)
            )
            return False
        self._current = fresh
        if fresh == before:
            log.info("server keys re-read (%s): unchanged, %s", why, describe(fresh))
        else:
            log.info(
                "server keys reloaded (%s) from %s: %s, before %s",
                why,
                self.path,
                describe(fresh),
                describe(before),
            )
        return True


def source_for(settings: Settings) -> tuple[KeyringSource, LiveKeyring | None]:
    """What a process reads its keys through: the key file, live, or the fixed variable."""
    if settings.keys:
        return keyring_source(settings.keyring()), None
    settings.keyring()  # the one clear message when there is no usable key file
    try:
        live = LiveKeyring(settings.key_file)
    except KeyringError as exc:
        raise ConfigError(str(exc)) from None
    return live, live


# -- the commands -------------------------------------------------------------------------


def _file_only(settings: Settings, action: str) -> Path:
    if settings.keys:
        raise ConfigError(
            f"keys {action} works on the key file, but this deployment gives its keys in "
            f"{SPECS['keys'].variable}; change that value and restart every process instead"
        )
    return settings.key_file


def create(settings: Settings) -> list[str]:
    path = _file_only(settings, "create")
    try:
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the state directory {settings.state_dir}: {exc.strerror} (run it "
            "as the user the service runs as, or choose another with "
            f"{named('state_dir')})"
        ) from None
    try:
        keyring = Keyring.create(path)
    except KeyringError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return [
        f"created {path} (key {keyring.current_id}, mode 0600).",
        "It takes effect when the service starts (`kashflow-permalink serve`).",
    ]


async def rotate(settings: Settings) -> tuple[int, list[str]]:
    path = _file_only(settings, "rotate")
    old = _load(path)
    new = old.rotated()
    new.save(path)
    lines = [
        f"key {new.current_id} is now current; {describe(new)} in {path}.",
        TAKES_EFFECT,
        f"From then on new links and sign-ins are sealed with key {new.current_id}; links "
        f"sealed with older keys keep opening until you retire them "
        f"(`kashflow-permalink keys retire {old.current_id}`).",
    ]
    if settings.database_url:
        lines.append(
            "Processes on other machines need the new key file too: copy it to each of them now."
        )
    status, more = await _reseal(settings, new, retry_hint=True)
    return status, lines + more


async def reseal(settings: Settings) -> tuple[int, list[str]]:
    keyring = settings.keyring()
    return await _reseal(settings, keyring, retry_hint=False)


async def retire(settings: Settings, key_id: int) -> tuple[int, list[str]]:
    path = _file_only(settings, "retire")
    keyring = _load(path)
    try:
        retired = keyring.retired(key_id)
    except KeyringError as exc:
        raise ConfigError(str(exc)) from None
    status, lines = await _reseal(settings, keyring, retry_hint=False)
    if status != 0:
        return status, [*lines, f"key {key_id} was not retired."]
    with _secrets(settings, keyring) as secrets:
        still = [s for s in await secrets.stored() if s.key_id == key_id and s.opens]
    if still:
        was = "was" if len(still) == 1 else "were"
        return 1, [
            *lines,
            f"key {key_id} was not retired: {_names(still)} {was} saved with it while this "
            "ran. Run it again.",
        ]
    retired.save(path)
    return 0, [
        *lines,
        f"key {key_id} retired; {describe(retired)}.",
        TAKES_EFFECT,
        f'From then on links sealed with key {key_id} get "This link is not valid" and '
        f"sign-ins sealed with it end (people sign in again).",
        *(
            [
                f"Processes on other machines keep opening links sealed with key {key_id} "
                "until the new key file reaches them: copy it to each of them now."
            ]
            if settings.database_url
            else []
        ),
    ]


async def list_keys(settings: Settings) -> tuple[int, list[str]]:
    keyring = settings.keyring()
    where = "from " + (SPECS["keys"].variable if settings.keys else str(settings.key_file))
    lines = [f"{describe(keyring)} {where}"]
    try:
        with _secrets(settings, keyring) as secrets:
            stored = await secrets.stored()
    except ConfigError as exc:
        return 1, [*lines, f"stored secrets: not read ({exc})"]
    by_key: dict[int | None, list[StoredSecret]] = {}
    for secret in stored:
        by_key.setdefault(secret.key_id if secret.opens else None, []).append(secret)
    for key_id in sorted(k for k in by_key if k is not None):
        lines.append(f"stored secrets sealed with key {key_id}: {len(by_key[key_id])}")
    broken = by_key.get(None, [])
    if broken:
        lines.append(f"stored secrets no key opens: {_names(broken)}")
    if not stored:
        lines.append("no stored secrets")
    return (1 if broken else 0), lines


def _load(path: Path) -> Keyring:
    try:
        return Keyring.load(path)
    except KeyringError as exc:
        hint = "" if path.exists() else " (create one with `kashflow-permalink keys create`)"
        raise ConfigError(f"{exc}{hint}") from None


@contextmanager
def _secrets(settings: Settings, keyring: Keyring) -> Iterator[SealedSecrets]:
    try:
        db = open_database(settings.database_url, settings.state_dir)
    except (StoreError, OSError) as exc:
        raise ConfigError(f"the state store could not be opened: {exc}") from None
    try:
        yield SealedSecrets(db, keyring)
    finally:
        db.close()


async def _reseal(
    settings: Settings, keyring: Keyring, *, retry_hint: bool
) -> tuple[int, list[str]]:
    try:
        with _secrets(settings, keyring) as secrets:
            done: Resealed = await secrets.reseal()
    except (ConfigError, StoreError) as exc:
        hint = " Once it is reachable, run `kashflow-permalink keys reseal`." if retry_hint else ""
        return 1, [
            f"stored secrets were NOT sealed again under key {keyring.current_id}: {exc}.{hint}"
        ]
    lines = []
    if done.resealed:
        lines.append(
            f"sealed {_count(done.resealed)} again under key {keyring.current_id}: "
            f"{_names(done.resealed)}."
        )
    else:
        lines.append(f"every stored secret is sealed with key {keyring.current_id}.")
    if done.unreadable:
        lines.append(
            f"{_count(done.unreadable)} no key opens any more: {_names(done.unreadable)}; "
            "the account must enter them again on the settings pages (Mail bot)."
        )
    return 0, lines


def _count(secrets: tuple[StoredSecret, ...] | list[StoredSecret]) -> str:
    return f"{len(secrets)} stored secret{'s' if len(secrets) != 1 else ''}"


def _names(secrets: tuple[StoredSecret, ...] | list[StoredSecret]) -> str:
    return ", ".join(secret.what for secret in secrets)


__all__ = [
    "TAKES_EFFECT",
    "LiveKeyring",
    "create",
    "describe",
    "list_keys",
    "reseal",
    "retire",
    "rotate",
    "source_for",
]
