"""The deployment guide (``docs/DEPLOY.md``) and the Containerfile, read as tests run them.

The guide's fenced blocks are either shell commands (```` ```sh ````), run by the tests,
or files as they go on disk, whose first line is a comment naming the file
(``# /etc/kashflow-permalink/env``). :class:`Site` swaps the guide's paths, names, ports
and service user for a test's own, so the very commands of the guide run in a temporary
folder against the throwaway PostgreSQL.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import ROOT

GUIDE = ROOT / "docs" / "DEPLOY.md"
CONTAINERFILE = ROOT / "Containerfile"
#: What the wheel is built from: the files the Containerfile copies, and test_wheel too.
SOURCES = ("pyproject.toml", "README.md", "app", "bot", "kashflow", "permalink", "web", "templates")
#: Where the guide installs the service.
PREFIX = "/opt/kashflow-permalink"

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True, slots=True)
class Block:
    language: str
    text: str

    @property
    def names(self) -> str | None:
        """The file a configuration block shows, from its first line ``# /path``."""
        first = self.text.split("\n", 1)[0]
        return first[2:].split()[0] if first.startswith("# /") else None

    @property
    def commands(self) -> list[str]:
        """A shell block's commands, one per line (comments and blank lines left out)."""
        return [
            line.strip()
            for line in self.text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]


def blocks(path: Path = GUIDE) -> list[Block]:
    return [Block(m.group(1), m.group(2)) for m in _FENCE.finditer(path.read_text())]


def shell_blocks() -> list[Block]:
    return [b for b in blocks() if b.language == "sh"]


def is_install(command: str) -> bool:
    """Building the wheel and installing it: run by ``tests/test_wheel.py``."""
    return command.startswith(
        ("python3 -m pip wheel ", "python3 -m venv ", f"{PREFIX}/bin/pip install ")
    )


def install_commands() -> list[str]:
    return [c for b in shell_blocks() for c in b.commands if is_install(c)]


def file(name: str) -> str:
    """The content of the file the guide shows as ``name`` (without its naming line)."""
    (found,) = [b for b in blocks() if b.names == name]
    return found.text.split("\n", 1)[1]


def settings_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines of an environment file, as systemd reads them."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def unit_value(unit: str, key: str) -> str:
    (value,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]
    return value


@dataclass
class Site:
    """The guide's site-specific words and what a test uses instead, in order."""

    swaps: list[tuple[str, str]] = field(default_factory=list)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    @classmethod
    def for_test(
        cls,
        *,
        prefix: Path,
        state: Path,
        backups: Path,
        settings: Path,
        user: str,
        group: str,
        database: str,
        ports: Mapping[str, int],
    ) -> Site:
        """``prefix``: an installed environment; ``database``: a fresh name for ``kfp``,
        reached through ``PGHOST`` (the throwaway server's socket); the service user and
        PostgreSQL's superuser are the test's own user, which owns everything here."""
        site = cls()
        site.swaps = [
            ("sudo -u postgres ", ""),
            ("sudo -u kashflow-permalink ", ""),
            ("-o kashflow-permalink -g kashflow-permalink", f"-o {user} -g {group}"),
            (PREFIX, str(prefix)),
            ("/var/lib/kashflow-permalink", str(state)),
            ("/var/backups/kashflow-permalink", str(backups)),
            ("/etc/kashflow-permalink/env", str(settings)),
            ("@db.example.internal/", "@/"),
            *((f"={port}\n", f"={mine}\n") for port, mine in ports.items()),
        ]
        site.patterns = [
            (re.compile(r"^python3 ", re.M), f"{sys.executable} "),
            (re.compile(r"\bkfp"), database),
        ]
        return site

    def __call__(self, text: str) -> str:
        for old, new in self.swaps:
            text = text.replace(old, new)
        for pattern, new in self.patterns:
            text = pattern.sub(new.replace("\\", "\\\\"), text)
        return text


# -- the Containerfile --------------------------------------------------------------------


def container_instructions(path: Path = CONTAINERFILE) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an ENTRYPOINT or CMD in exec form."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def copied_sources(path: Path = CONTAINERFILE) -> set[str]:
    """What the build stage copies from the build context (not ``--from`` another stage)."""
    out: set[str] = set()
    for word, rest in container_instructions(path):
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            out.update(s.rstrip("/") for s in sources)
    return out


__all__ = [
    "CONTAINERFILE",
    "GUIDE",
    "PREFIX",
    "SOURCES",
    "Block",
    "Site",
    "blocks",
    "container_instructions",
    "copied_sources",
    "exec_form",
    "file",
    "install_commands",
    "is_install",
    "settings_file",
    "shell_blocks",
    "unit_value",
]
