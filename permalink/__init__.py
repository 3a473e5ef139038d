"""The product's core, shared by both doors (``web`` and ``bot``) and owned by neither.

It owns sealing and opening links (``links``, ``keyring``), which invoices a scope covers
(``scopes``), and the state store (``db`` and the tables beside it). It imports neither
aiohttp's web side nor aiosmtpd.
"""

from pathlib import Path

#: jinja2 templates for every page and every email (the top-level ``templates/`` folder).
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
