"""One line for the tests skipped for want of a database server, not one line a test.

Without ``TOKENSTORE_SQL_TEST_*`` URLs and without Docker, every PostgreSQL and MySQL
test skips with the same reason (:func:`tests.support.databases.no_server_reason`).
``-ra`` would list them one line per test; this plugin takes them out of the short
summary and says instead, in one line, how many skipped on which backends and what
to set. They still count as skipped in the final tally. Other skips are listed as
before.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

from .databases import URL_VARIABLES

_NO_SERVER = re.compile(r"(?:Skipped: )?no (\w+) server: set ")


def no_server_backend(report: Any) -> str | None:
    """The backend a skipped report lacked a server for, or None for any other outcome."""
    if not report.skipped or not isinstance(report.longrepr, (tuple, list)):
        return None
    found = _NO_SERVER.match(str(report.longrepr[2]))
    return found.group(1) if found and found.group(1) in URL_VARIABLES else None


def summary_line(backends: Counter[str]) -> str:
    """``SKIPPED [N] ...``: the one line for every test skipped for want of a server."""
    counts = ", ".join(f"{backend} {count}" for backend, count in sorted(backends.items()))
    variables = " and ".join(URL_VARIABLES[backend] for backend in sorted(backends))
    return (
        f"SKIPPED [{sum(backends.values())}] no database server ({counts}): "
        f"set {variables}, or start a Docker engine for testcontainers"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside the terminal reporter's own
def pytest_terminal_summary(terminalreporter: Any) -> Generator[None, None, None]:
    """Hide the no-server skips from the short summary; print one line for them after it."""
    skipped = terminalreporter.stats.get("skipped", [])
    hidden = [report for report in skipped if no_server_backend(report) is not None]
    if not hidden:
        return (yield)
    terminalreporter.stats["skipped"] = [report for report in skipped if report not in hidden]
    try:
        return (yield)
    finally:
        # back in the tally: the final line still counts them as skipped
        terminalreporter.stats["skipped"] = skipped
        backends = Counter(no_server_backend(report) for report in hidden)
        terminalreporter.write_line(summary_line(backends), yellow=True)  # type: ignore[arg-type]
