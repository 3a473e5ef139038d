"""The product's core, shared by both doors (``web`` and ``bot``) and owned by neither.

It owns sealing and opening links (``links``, ``keyring``), which invoices a scope covers
(``scopes``), and the state store (``db`` and the tables beside it). It imports neither
aiohttp's web side nor aiosmtpd.
"""
