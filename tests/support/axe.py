"""axe-core, the accessibility engine, run inside a page Playwright has open.

axe comes from the npm registry into ``tests/tools/node_modules`` (``make`` runs
``npm ci --prefix tests/tools``); a missing copy makes the test fail, never skip. The page
must be opened in a context with ``bypass_csp=True``: the product's Content-Security-Policy
rightly refuses the injected script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

AXE = Path(__file__).resolve().parent.parent / "tools" / "node_modules" / "axe-core" / "axe.min.js"
#: The rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Every WCAG 2.2 AA violation axe finds on the page as it is now."""
    if not AXE.is_file():
        pytest.fail(
            f"accessibility tests need axe-core at {AXE}; run `make test` (or "
            "`npm ci --prefix tests/tools`)",
            pytrace=False,
        )
    await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA
    )
    return [
        {
            "id": violation["id"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in result["violations"]
    ]


__all__ = ["AXE", "WCAG_AA", "axe_violations"]
