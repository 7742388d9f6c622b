"""Regenerate the pictures the docs show, into docs/_generated/ (not kept in git).

- ``charts/``: the benchmark's SVG charts, drawn from ``docs/performance/results.json``
  (the committed results of a benchmark run) by ``benchmarks.charts``, and the tables
  of ratios the performance page includes beside them (``benchmarks.summary``).
- ``screenshots/``: the example web app's pages, taken by the browser test
  (tests/examples/test_browser.py, on SQLite) in headless Chromium; needs Debian's ``chromium``
  and ``chromium-driver``.

Run from a checkout with the dev extra installed::

    python docs/generate.py                 # both
    python docs/generate.py --only charts   # no browser needed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
RESULTS = DOCS / "performance" / "results.json"
PAGES = ("signed-out", "signed-in", "profile", "logged-out")


def charts() -> list[Path]:
    """Draw the charts of the committed benchmark results."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.charts import draw
    from benchmarks.summary import latency_table, run_line, scale_table

    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    written = draw(results, GENERATED / "charts")
    # the figures the pages quote, from the same results as the charts
    for name, text in (
        ("run.md", run_line(results) + "\n"),
        ("latency.md", latency_table(results)),
        ("scale.md", scale_table(results)),
    ):
        path = GENERATED / "charts" / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def screenshots() -> list[Path]:
    """Run the browser test on SQLite with its screenshots going into the docs."""
    folder = GENERATED / "screenshots"
    shutil.rmtree(folder, ignore_errors=True)
    environ = {**os.environ, "TOKENSTORE_SQL_SCREENSHOTS": str(folder)}
    # a skip must not pass for success here: without a browser there are no pictures
    environ["CI"] = "true"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0"]
    command += ["-m", "browser and sqlite", "tests/examples/test_browser.py"]
    completed = subprocess.run(command, cwd=ROOT, env=environ, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"error: the browser test failed (exit {completed.returncode})")
    taken = [folder / f"{page}.png" for page in PAGES]
    missing = [path.name for path in taken if not path.exists()]
    if missing:
        raise SystemExit(f"error: the browser test left no {', '.join(missing)}")
    return taken


def main(argv: list[str] | None = None) -> None:
    """Regenerate the charts, the screenshots, or both."""
    parser = argparse.ArgumentParser(prog="python docs/generate.py", description=__doc__)
    parser.add_argument("--only", choices=("charts", "screenshots"), help="one kind only")
    args = parser.parse_args(argv)
    written: list[Path] = []
    if args.only in (None, "charts"):
        written += charts()
    if args.only in (None, "screenshots"):
        written += screenshots()
    for path in written:
        sys.stdout.write(f"{path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
