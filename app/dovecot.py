"""A throwaway IMAP server on loopback: Debian's Dovecot, configured in a directory of its own.

``demo --imap`` and the tests read requests from a real mailbox through it. Everything it
needs lives in a temporary directory made at :meth:`Dovecot.start` and removed at
:meth:`Dovecot.stop` — configuration, users, mail (Maildir), sockets, logs, a self-signed
certificate for IMAPS and STARTTLS — and it runs in the foreground as a child of the
caller (``dovecot -F``), so no system service is touched and nothing is left running.
Dovecot comes from the ``dovecot-imapd`` package (``scripts/system-packages`` installs it).

Run as root, Dovecot's own processes run as its ``dovecot``/``dovenull`` users and the
mail processes as ``nobody`` (it refuses to work on mail as root), which is why the
directory is a fresh one that they may enter rather than one under a private state
directory; otherwise everything runs as the calling user.
"""

from __future__ import annotations

import getpass
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from bot.capture import self_signed_certificate

DOVECOT: Final = "/usr/sbin/dovecot"
HOST: Final = "127.0.0.1"
#: What Dovecot announces after sign-in when IDLE is switched off (its own list less IDLE).
_WITHOUT_IDLE: Final = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT THREAD=REFERENCES MULTIAPPEND "
    "UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 LITERAL+ MOVE"
)


class DovecotMissing(RuntimeError):
    """Dovecot is not installed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Dovecot:
    """One Dovecot with the users it was given (name -> password)."""

    users: dict[str, str] = field(default_factory=dict)
    idle: bool = True
    port: int = 0
    ssl_port: int = 0
    directory: Path = field(default=Path(), init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate: the CA file a client trusts it with."""
        return self.directory / "localhost.crt"

    @property
    def log(self) -> Path:
        return self.directory / "dovecot.log"

    def start(self, within: float = 30.0) -> None:
        """Write the configuration and start the server; returns once it accepts IMAP."""
        if not os.access(DOVECOT, os.X_OK):
            raise DovecotMissing(
                f"{DOVECOT} is missing: install Debian's dovecot-imapd (scripts/system-packages)"
            )
        self.directory = Path(tempfile.mkdtemp(prefix="kashflow-permalink-imap-"))
        self.directory.chmod(0o755)  # entered by Dovecot's unprivileged processes
        self.port = self.port or _free_port()
        self.ssl_port = self.ssl_port or _free_port()
        config = self._write_config()
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - a fixed program and our own file
                [DOVECOT, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + within
        while not self._accepts():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                said = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"dovecot did not start; its log says:\n{said}")
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (and its children) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.directory != Path():
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------

    def _write_config(self) -> Path:
        d = self.directory
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        if not self.certificate.exists():
            self_signed_certificate(d)
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            internal, login = "dovecot", "dovenull"
            # The mail processes run as nobody: they must be able to write the mail.
            shutil.chown(d / "mail", mail_user.pw_uid, mail_user.pw_gid)
        else:
            mail_user = pwd.getpwuid(os.getuid())
            internal = login = getpass.getuser()
        passwd = d / "passwd"
        passwd.write_text(
            "".join(f"{name}:{{PLAIN}}{secret}\n" for name, secret in self.users.items())
        )
        passwd.chmod(0o644)  # read by Dovecot's auth process, which is not root
        capability = "" if self.idle else f"imap_capability = {_WITHOUT_IDLE}\n"
        config = d / "dovecot.conf"
        config.write_text(
            f"""base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log}
protocols = imap
listen = {HOST}
default_internal_user = {internal}
default_login_user = {login}
ssl = yes
ssl_cert = <{self.certificate}
ssl_key = <{d}/localhost.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={d}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
"""
        )
        return config

    # -- a plain client, for putting mail in and looking at it --------------------------

    def client(self, user: str) -> imaplib.IMAP4_SSL:
        """A signed-in ``imaplib`` client (blocking: call it from a thread in async code)."""
        context = ssl.create_default_context(cafile=str(self.certificate))
        client = imaplib.IMAP4_SSL(HOST, self.ssl_port, ssl_context=context)
        client.login(user, self.users[user])
        return client

    def append(
        self, user: str, *messages: bytes, folder: str = "INBOX", when: datetime | None = None
    ) -> None:
        """Deliver ``messages`` into ``folder``, in order (as a mail server would), as
        having arrived ``when`` (now by default)."""
        client = self.client(user)
        try:
            for raw in messages:
                status, said = client.append(folder, "", when, raw)
                if status != "OK":
                    raise RuntimeError(f"APPEND refused: {said!r}")
        finally:
            client.logout()


__all__ = ["DOVECOT", "HOST", "Dovecot", "DovecotMissing"]
