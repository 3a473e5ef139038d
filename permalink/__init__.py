"""The product's core, shared by both doors (``web`` and ``bot``) and owned by neither.

It owns sealing and opening links (``links``, ``keyring``), which invoices a scope covers
(``scopes``), and the state store (``db`` and the tables beside it). It imports neither
aiohttp's web side nor aiosmtpd.
"""

from pathlib import Path

#: Where the jinja2 templates of every page and every email are read from, as this
#: package's resources (``jinja2.PackageLoader(TEMPLATES_PACKAGE, "templates/…")``). In the
#: checkout ``permalink/templates`` is a link to the top-level ``templates/`` folder; a built
#: wheel ships the files themselves there (``[tool.setuptools.package-data]``).
TEMPLATES_PACKAGE = __name__

#: The same folder on disk, for code that needs a path.
TEMPLATES = Path(__file__).resolve().parent / "templates"
