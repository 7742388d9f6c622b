"""Charts of a benchmark run: ``python -m benchmarks.charts RESULTS.json OUTDIR``.

Two kinds, as SVG files (see :mod:`benchmarks.svg`):

- ``latency-<database>.svg``: median µs per operation with the database holding the
  run's smallest number of namespaces: tokenstore-sql on that database, the bare driver
  running the same statements (the floor), and globus-sdk's SQLite and JSON storages.
- ``scale-<operation>.svg``: the median of one operation against the number of
  namespaces the database holds, one line per storage.

``python -m benchmarks.run`` draws them into its output directory after every run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .subjects import OPERATION_LABELS, OPERATIONS, SDK_JSON, SDK_SQLITE, tokenstore_label
from .svg import NoDataError, Values, bar_panels, line_chart

# construct opens no connection and has no floor: a bar of it would say nothing
LATENCY_OPERATIONS = tuple(op for op in OPERATIONS if op != "construct")
SCALE_OPERATIONS = ("get_hit", "store_1")
# Reads take microseconds and durable writes milliseconds: each gets an axis of its own.
LATENCY_PANELS = {
    "Reads": [OPERATION_LABELS[op] for op in ("get_hit", "get_miss", "get_all")],
    "Writes (each a committed transaction)": [
        OPERATION_LABELS[op] for op in ("store_1", "store_3", "remove")
    ],
}
UNIT = "median µs per call"
# One colour per storage in every chart (Okabe and Ito's colour-blind-safe palette);
# every driver floor is orange, there being one per latency chart.
COLOURS = {
    tokenstore_label("sqlite"): "#0072b2",
    tokenstore_label("postgresql"): "#56b4e9",
    tokenstore_label("mysql"): "#d55e00",
    SDK_SQLITE: "#009e73",
    SDK_JSON: "#cc79a7",
}
FLOOR_COLOUR = "#e69f00"


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = results.get("latency") or []
    if not rows:
        raise NoDataError("the results hold no latency rows: nothing to chart")
    return rows


def latency_values(results: dict[str, Any], backend: str) -> Values:
    """Per storage, per operation label, the median µs at the run's first scale."""
    rows = _rows(results)
    first = min(row["scale"] for row in rows)
    ours = tokenstore_label(backend)
    floor = next((r["floor"] for r in rows if r["label"] == ours), None)
    if floor is None:
        raise NoDataError(f"no latency rows for tokenstore-sql on {backend}")
    values: dict[str, dict[str, float | None]] = {}
    for label in (ours, floor, SDK_SQLITE, SDK_JSON):
        values[label] = {
            OPERATION_LABELS[r["operation"]]: r["median_us"]
            for r in rows
            if r["label"] == label and r["scale"] == first and r["operation"] in LATENCY_OPERATIONS
        }
    return {label: by_op for label, by_op in values.items() if by_op}


def latency_chart(results: dict[str, Any], backend: str) -> str:
    """Draw the latency bars of one database."""
    first = min(row["scale"] for row in _rows(results))
    held = f"{first:,} namespace" + ("" if first == 1 else "s")
    title = f"Latency on {backend}, database holding {held}"
    values = latency_values(results, backend)
    colours = {label: COLOURS.get(label, FLOOR_COLOUR) for label in values}
    return bar_panels(title, LATENCY_PANELS, values, UNIT, colours)


def scale_values(results: dict[str, Any], operation: str) -> Values:
    """Per storage (ours on each database, then globus-sdk's), per scale, the median µs."""
    backends = list(results["meta"]["backends"])
    wanted = [*(tokenstore_label(b) for b in backends), SDK_SQLITE, SDK_JSON]
    rows = [r for r in _rows(results) if r["operation"] == operation]
    values: dict[str, dict[str, float | None]] = {}
    for label in wanted:
        by_scale = {str(r["scale"]): r["median_us"] for r in rows if r["label"] == label}
        if by_scale:
            values[label] = dict(by_scale)
    return values


def scale_chart(results: dict[str, Any], operation: str) -> str:
    """Draw one operation's median against the number of namespaces held."""
    scales = sorted({int(s) for s in results["meta"]["scales"]})
    title = f"{OPERATION_LABELS[operation]}: cost against the namespaces held"
    return line_chart(
        title,
        scales,
        scale_values(results, operation),
        "namespaces in the database (5 tokens each), log scale",
        f"{UNIT}, log scale",
        COLOURS,
        log_y=True,
    )


def draw(results: dict[str, Any], directory: Path) -> list[Path]:
    """Write every chart of ``results`` into ``directory``; return the files written."""
    charts = {f"latency-{b}.svg": latency_chart(results, b) for b in results["meta"]["backends"]}
    if len(results["meta"]["scales"]) > 1:
        charts.update({f"scale-{op}.svg": scale_chart(results, op) for op in SCALE_OPERATIONS})
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, svg in charts.items():
        path = directory / name
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Draw the charts of a results file from the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__)
    parser.add_argument("results", type=Path, help="a results.json written by benchmarks.run")
    parser.add_argument("output", type=Path, help="the directory to write the SVG files into")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    try:
        written = draw(results, args.output)
    except NoDataError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {len(written)} charts in {args.output}: {', '.join(p.name for p in written)}")


if __name__ == "__main__":
    main()
