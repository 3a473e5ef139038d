"""Hostile MIME for tests and benchmarks: a request made of very many tiny parts."""

from __future__ import annotations


def many_parts(parts: int, *, sender: str, to: str, message_id: str) -> bytes:
    """A multipart/mixed request of ``parts`` one-line text parts (36 bytes each)."""
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: invoices\r\nMessage-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    ).encode()
    return head + body + b"--b--\r\n"


def many_headers(count: int, *, sender: str) -> bytes:
    """A plain request with ``count`` extra header lines: cheap to count, dear to parse."""
    extra = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(count))
    return f"From: {sender}\r\nSubject: invoices\r\n".encode() + extra + b"\r\nAll please.\r\n"


__all__ = ["many_headers", "many_parts"]
