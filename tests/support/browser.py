"""What the browser tests need from the machine: selenium, Debian's chromium and chromedriver."""

from __future__ import annotations

import shutil

from .private_servers import unavailable


def browser_missing() -> str | None:
    """Say what headless Chromium lacks on this machine, if anything."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium: install the test extra"
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return "no chromium or chromedriver: apt-get install chromium chromium-driver"
    return None


def require_browser(what: str) -> None:
    """Skip the test when the browser is missing, or fail it under CI, which expects ``what``."""
    reason = browser_missing()
    if reason is not None:
        unavailable(what, reason)
