"""The figures beside the charts, as Markdown tables of ratios (see :mod:`benchmarks.charts`).

Written from the same results as the charts, so a page that includes them cannot quote
figures of another run.
"""

from __future__ import annotations

from typing import Any

from .charts import LATENCY_OPERATIONS, SCALE_OPERATIONS
from .subjects import OPERATION_LABELS, SDK_JSON, SDK_SQLITE, tokenstore_label


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _over(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def run_line(results: dict[str, Any]) -> str:
    """Say when and on what the run ran, and how busy the machine was."""
    meta = results["meta"]
    line = f"Run of {meta['date']} on {meta['machine']}; {meta['versions']}."
    if meta.get("load_at_start") is not None and meta.get("load_at_end") is not None:
        line += (
            f" One-minute load average {meta['load_at_start']} at the start and "
            f"{meta['load_at_end']} at the end."
        )
    return line


def latency_table(results: dict[str, Any]) -> str:
    """Ours on each database over its floor and over globus-sdk's two file storages."""
    rows = results["latency"]
    first = min(row["scale"] for row in rows)
    medians = {(r["label"], r["operation"]): r["median_us"] for r in rows if r["scale"] == first}
    out = [
        "| database | operation | tokenstore-sql µs | ÷ floor | ÷ globus-sdk SQLite "
        "| ÷ globus-sdk JSON |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for backend in results["meta"]["backends"]:
        ours = tokenstore_label(backend)
        floor = next(r["floor"] for r in rows if r["label"] == ours)
        for operation in LATENCY_OPERATIONS:
            mine = medians.get((ours, operation))
            ratios = [
                _over(mine, medians.get((label, operation)))
                for label in (floor, SDK_SQLITE, SDK_JSON)
            ]
            out.append(
                f"| {backend} | {OPERATION_LABELS[operation]} | {_us(mine)} | "
                + " | ".join(_times(r) for r in ratios)
                + " |"
            )
    return "\n".join(out) + "\n"


def scale_table(results: dict[str, Any]) -> str:
    """Each storage's median at the smallest and largest scale, and largest over smallest."""
    scales = sorted(results["meta"]["scales"])
    low, high = str(scales[0]), str(scales[-1])
    labels = [tokenstore_label(b) for b in results["meta"]["backends"]] + [SDK_SQLITE, SDK_JSON]
    entries = {(e["label"], e["operation"]): e["medians_us"] for e in results["scale"]}
    out = [
        f"| operation | storage | µs at {scales[0]:,} | µs at {scales[-1]:,} | growth |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for operation in SCALE_OPERATIONS:
        for label in labels:
            medians = entries.get((label, operation), {})
            first, last = medians.get(low), medians.get(high)
            out.append(
                f"| {OPERATION_LABELS[operation]} | {label} | {_us(first)} | {_us(last)} | "
                f"{_times(_over(last, first))} |"
            )
    return "\n".join(out) + "\n"
