"""Reading inbound mail without letting one message stall the process.

The stdlib MIME parser is pure Python: a 3.6 MB message of 100 000 tiny parts costs it
many seconds of CPU, and run on the event loop that the web pages, the SMTP listener and
the worker share, it stalls all of them. Two defences:

* :func:`too_complex` counts, in one pass over the raw bytes at C speed, the lines that
  could be MIME boundaries and the ``boundary=`` parameters (every nested multipart
  declares one, so they bound the depth). :class:`PartCounter` does the same a piece at
  a time, so the listener stops receiving such a message as soon as it passes a limit;
  the worker parks one already spooled, before any parsing;
* :class:`MailReader` runs :func:`bot.mailparse.parse` in a worker process of its own
  (``python -m bot.reading``) with a CPU budget (``RLIMIT_CPU``): the event loop only
  waits, and a message that still costs too much is given up on (:class:`TooCostly`)
  while the worker is replaced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import re
import resource
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO, Final

from bot.mailparse import Request, parse

log = logging.getLogger(__name__)

#: More lines starting with "--" than any real request has (each MIME part needs one).
MAX_PARTS: Final = 1000
#: More multiparts (``boundary=`` parameters) than any real mail client nests.
MAX_MULTIPARTS: Final = 50
#: CPU seconds one message may cost the parser.
CPU_BUDGET_S: Final = 5.0

_DELIMITER: Final = b"\n--"
_BOUNDARY: Final = re.compile(rb"boundary\s*=", re.IGNORECASE)


#: Kept between pieces so a ``boundary=`` split across two of them is still seen.
_BOUNDARY_TAIL: Final = 32


class PartCounter:
    """:func:`too_complex` a piece at a time, for a message still arriving.

    Each piece is counted as it comes (a delimiter or ``boundary=`` split between two
    pieces counts once), so the listener can stop reading the moment a limit is passed.
    A ``boundary=`` with more white space before its ``=`` than the kept tail holds is
    missed here, and nothing is counted twice: this never refuses what
    :func:`too_complex` would accept.
    """

    def __init__(self) -> None:
        self.parts = 0
        self.multiparts = 0
        # As if a line ended just before the message: a first line "--…" counts.
        self._tail = b"\n"
        self._boundary_tail = b""

    def feed(self, piece: bytes) -> str:
        """Count ``piece``; why the message so far is refused ("" while it may go on)."""
        # Delimiters (3 bytes) wholly inside the piece, then those straddling the join.
        self.parts += piece.count(_DELIMITER) + (self._tail + piece[:2]).count(_DELIMITER)
        self._tail = (self._tail + piece[-2:])[-2:]
        if b"=" in piece:  # a match ends with "=": none can end in a piece without one
            window = self._boundary_tail + piece
            kept = len(self._boundary_tail)
            self.multiparts += sum(1 for m in _BOUNDARY.finditer(window) if m.end() > kept)
        self._boundary_tail = (self._boundary_tail + piece[-_BOUNDARY_TAIL:])[-_BOUNDARY_TAIL:]
        return self.verdict()

    def verdict(self) -> str:
        if self.parts > MAX_PARTS:
            return f"too many MIME parts (over {MAX_PARTS})"
        if self.multiparts > MAX_MULTIPARTS:
            return f"MIME parts nested too deeply (over {MAX_MULTIPARTS} multiparts)"
        return ""


def too_complex(raw: bytes) -> str:
    """Why ``raw`` is refused unread ("" when it may be parsed)."""
    return PartCounter().feed(raw)


class TooCostly(Exception):
    """The message cost the parser more than its budget; ``str()`` says so."""


# -- the worker process: ``python -m bot.reading`` ----------------------------------------
#
# Framing, both ways: a 4-byte big-endian length, then that many bytes. The parent sends a
# JSON header ({"sender": ..., "cpu_s": ...}) and then the raw message; the worker answers
# with the Request as JSON (plain data both ways: nothing the worker says is executed).

_LENGTH: Final = struct.Struct(">I")


def _to_json(request: Request) -> bytes:
    return json.dumps(dataclasses.asdict(request)).encode("utf-8")


def _from_json(data: bytes) -> Request:
    fields = json.loads(data.decode("utf-8"))
    names = {f.name for f in dataclasses.fields(Request)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in names
    }
    return Request(**values)


def _budget(cpu_s: float) -> None:
    # RLIMIT_CPU counts the process's whole life: allow what it used so far plus the
    # budget. Past it the kernel sends SIGXCPU, which ends the worker; the parent sees
    # its pipe close and starts a fresh one for the next message.
    used = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used.ru_utime + used.ru_stime + cpu_s)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    return stream.read(size)


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The worker's loop: one message in, one Request out, until stdin closes."""
    while (header := _read_frame(stdin)) is not None:
        raw = _read_frame(stdin) or b""
        meta = json.loads(header.decode("utf-8"))
        _budget(float(meta["cpu_s"]))
        answer = _to_json(parse(raw, envelope_sender=meta["sender"]))
        stdout.write(_LENGTH.pack(len(answer)) + answer)
        stdout.flush()


class MailReader:
    """Parses messages in one worker process of its own, one CPU budget per message.

    The worker starts on first use and is replaced after a message that killed it; one
    message is read at a time (parsing a real request takes milliseconds).
    """

    def __init__(self, *, cpu_s: float = CPU_BUDGET_S) -> None:
        self.cpu_s = cpu_s
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _worker(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.reading",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=_ROOT,
            )
        return self._proc

    async def start(self) -> None:
        """Start the worker now, so the first message does not wait for it."""
        async with self._lock:
            await self._worker()

    async def read(self, raw: bytes, envelope_sender: str | None) -> Request:
        """The parsed request; :class:`TooCostly` past the budget. The loop stays free."""
        header = json.dumps({"sender": envelope_sender, "cpu_s": self.cpu_s}).encode()
        async with self._lock:
            proc = await self._worker()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                # The CPU limit ends a runaway parse; the wall-clock bound only covers a
                # machine so busy that the budget takes long to spend.
                async with asyncio.timeout(self.cpu_s * 4 + 10):
                    proc.stdin.write(_LENGTH.pack(len(header)) + header)
                    proc.stdin.write(_LENGTH.pack(len(raw)) + raw)
                    await proc.stdin.drain()
                    (size,) = _LENGTH.unpack(await proc.stdout.readexactly(_LENGTH.size))
                    answer = await proc.stdout.readexactly(size)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                await self._stop(proc)
                log.warning("a message cost the parser over %.0f s of CPU: not read", self.cpu_s)
                raise TooCostly(
                    f"reading the message took over {self.cpu_s:g} s of CPU; it was not read"
                ) from None
        return _from_json(answer)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if self._proc is proc:
            self._proc = None

    async def close(self) -> None:
        """End the worker (it exits when its input closes)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


_ROOT: Final = str(Path(__file__).resolve().parents[1])


__all__ = [
    "CPU_BUDGET_S",
    "MAX_MULTIPARTS",
    "MAX_PARTS",
    "MailReader",
    "PartCounter",
    "TooCostly",
    "serve",
    "too_complex",
]


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
