"""The web door: the aiohttp application clients and the accountant open in a browser.

It owns the resolver (a permalink's invoice page, one invoice's PDF, the merged PDF),
the security headers and access-log redaction every response gets, and the error pages.
The accountant's settings pages register themselves on the same application.
"""

from web.app import WebConfig, create_app, runner

__all__ = ["WebConfig", "create_app", "runner"]
