"""Results: ratios, the Markdown tables and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import caller_engine
from .subjects import OPERATION_LABELS, OPERATIONS, PREPARED, SDK_SQLITE, tokenstore_label


def ratio(value: float, base: float | None) -> float | None:
    """Divide ``value`` by ``base``; None where there is no base (or it is zero)."""
    return value / base if base else None


def median_ratios(
    rows: list[dict[str, Any]],
    measured: list[dict[str, Any]],
    bases: Callable[[dict[str, Any]], dict[str, str]],
) -> None:
    """Give each latency row the ratios ``bases(row)`` names, each with the label it is over.

    A ratio is the row's median over the median, in ``measured``, of that label at the
    row's scale and operation.
    """
    medians = {(r["scale"], r["label"], r["operation"]): r["median_us"] for r in measured}
    for row in rows:
        for name, label in bases(row).items():
            base = medians.get((row["scale"], label, row["operation"]))
            row[name] = ratio(row["median_us"], base)


def add_ratios(latency: list[dict[str, Any]]) -> None:
    """Give each latency row its ratio to globus-sdk's SQLite storage and to its floor."""
    median_ratios(
        latency, latency, lambda row: {"vs_sdk_sqlite": SDK_SQLITE, "vs_floor": row["floor"]}
    )


def prepared_rows(latency: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair tokenstore-sql on PostgreSQL with its prepared-statements twin, cell by cell.

    One row per scale and operation both measured: the two medians, and the default's
    over the prepared one (above 1: doing without prepared statements costs that much).
    """
    default = tokenstore_label("postgresql")
    medians = {(r["scale"], r["label"], r["operation"]): r["median_us"] for r in latency}
    rows = []
    for (scale, label, operation), prepared_us in medians.items():
        default_us = medians.get((scale, default, operation))
        if label == PREPARED and default_us is not None:
            rows.append(
                {
                    "scale": scale,
                    "operation": operation,
                    "default_us": default_us,
                    "prepared_us": prepared_us,
                    "default_over_prepared": ratio(default_us, prepared_us),
                }
            )
    return rows


def prepared_table(prepared: dict[str, Any] | None) -> list[str]:
    """Render what ``prepare_threshold=None`` costs: the side-by-side gets, then every cell."""
    out = [
        "### PostgreSQL without prepared statements",
        "",
        "tokenstore-sql's engines tell psycopg never to prepare a statement "
        "(`prepare_threshold=None`), which PgBouncer's transaction pooling would break; "
        f"`{PREPARED}` is the same storage with psycopg's default (prepared after the fifth "
        "use), on the same database. Median µs per call.",
        "",
    ]
    rows = (prepared or {}).get("cells") or []
    get = (prepared or {}).get("get")
    if not rows and get is None:
        return [*out, "Not measured (PostgreSQL was not part of the run)."]
    if get is not None:
        out += [
            f"Side by side: {get['calls']:,} gets (hit) on each engine in {get['rounds']} "
            f"interleaved rounds: {_num(get['default_us'])} µs without prepared statements, "
            f"{_num(get['prepared_us'])} µs with them: "
            f"{_times(get['default_over_prepared'])}.",
            "",
        ]
    out += [
        "In the latency rounds above:",
        "",
        "| namespaces | operation | default µs | prepared µs | default / prepared |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for row in sorted(rows, key=lambda r: (r["scale"], OPERATIONS.index(r["operation"]))):
        out.append(
            f"| {row['scale']:,} | {OPERATION_LABELS[row['operation']]} | "
            f"{_num(row['default_us'])} | {_num(row['prepared_us'])} | "
            f"{_times(row['default_over_prepared'])} |"
        )
    return out


def growth(latency: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (storage, operation)'s median at every scale, and largest over smallest."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for row in latency:
        entry = table.setdefault(
            (row["label"], row["operation"]),
            {"label": row["label"], "operation": row["operation"], "medians_us": {}},
        )
        entry["medians_us"][str(row["scale"])] = row["median_us"]
    for entry in table.values():
        by_scale = sorted(entry["medians_us"].items(), key=lambda item: int(item[0]))
        first, last = by_scale[0], by_scale[-1]
        entry["from_scale"], entry["to_scale"] = int(first[0]), int(last[0])
        entry["growth"] = last[1] / first[1] if len(by_scale) > 1 else None
    return list(table.values())


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(results: dict[str, Any]) -> str:
    """Render the results as Markdown tables."""
    meta = results["meta"]
    scales = meta["scales"]
    labels = list(dict.fromkeys(row["label"] for row in results["latency"]))
    loads = (meta.get("load_at_start"), meta.get("load_at_end"))
    out = [
        f"Run of {meta['date']} on {meta['machine']}; {meta['versions']}."
        + (
            ""
            if None in loads
            else f" Load average {loads[0]} at the start, {loads[1]} at the end."
        ),
        "",
        f"### Latency, database holding {scales[0]:,} namespace(s)",
        "",
        "Microseconds per call; ratios of medians.",
        "",
        "| operation | storage | median µs | p95 µs | x SDK SQLite | x floor |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    first = {(r["label"], r["operation"]): r for r in results["latency"] if r["scale"] == scales[0]}
    for operation in OPERATIONS:
        for label in labels:
            row = first.get((label, operation))
            if row is not None:
                out.append(
                    f"| {OPERATION_LABELS[operation]} | {label} | {_num(row['median_us'])} | "
                    f"{_num(row['p95_us'])} | {_times(row['vs_sdk_sqlite'])} | "
                    f"{_times(row['vs_floor'])} |"
                )
    out += ["", *prepared_table(results.get("prepared"))]
    out += ["", *caller_engine.table(results.get("caller_engine"))]
    out += [
        "",
        "### Scale: median µs with the database holding N namespaces of 5 resource servers",
        "",
        "| operation | storage | " + " | ".join(f"{s:,}" for s in scales) + " | growth |",
        "| --- | --- | " + " | ".join("---:" for _ in scales) + " | ---: |",
    ]
    for operation in OPERATIONS:
        for entry in results["scale"]:
            if entry["operation"] != operation:
                continue
            cells = [_num(entry["medians_us"].get(str(s))) for s in scales]
            out.append(
                f"| {OPERATION_LABELS[operation]} | {entry['label']} | {' | '.join(cells)} | "
                f"{_times(entry['growth'])} |"
            )
    out += [
        "",
        "### Concurrency: operations per second, 90% get / 10% store",
        "",
        f"Each mode ran {meta['concurrency_seconds']:.2f} s with the database at "
        f"{scales[-1]:,} namespaces.",
        "",
        "| storage | workers | namespaces | ops/s | errors | x SDK SQLite |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in results["concurrency"]:
        out.append(
            f"| {row['label']} | {row['workers']} {row['mode']} | {row['sharing']} | "
            f"{_num(row['ops_per_second'], 0)} | {row['errors']} | "
            f"{_times(row['vs_sdk_sqlite'])} |"
        )
    out += _async_tables(results)
    out += ["", *storm_table(results.get("refresh_storm", []))]
    out += ["", "### Import of a JSON token file", ""]
    out += ["| backend | tokens | seconds | tokens/s |", "| --- | ---: | ---: | ---: |"]
    for backend, row in results["import"].items():
        if row["status"] != "measured":
            out.append(f"| {backend} | {row['status']} | | |")
        else:
            out.append(
                f"| {backend} | {row['tokens']:,} | {row['seconds']:.2f} | "
                f"{row['tokens_per_second']:,.0f} |"
            )
    out += ["", *targets_table(results["targets"])]
    return "\n".join(out) + "\n"


def targets_table(checks: list[dict[str, Any]]) -> list[str]:
    """Render the targets: each with its figures, and whether it was met."""
    out = ["### Targets", "", "| target | figures | met |", "| --- | --- | --- |"]
    for check in checks:
        met = {True: "yes", False: "**no**", None: "not measured"}[check["met"]]
        out.append(f"| {check['target']} | {check['figures']} | {met} |")
    return out


def _pair(first: float | None, second: float | None) -> str:
    return f"{_num(first)} / {_num(second)}"


def storm_table(rows: list[dict[str, Any]]) -> list[str]:
    """Render the refresh storm: one row per database."""
    out = ["### Refresh storm: every user's access token expired at once", ""]
    if not rows:
        return [*out, "Not run."]
    first = rows[0]
    out += [
        f"{first['users']:,} users' expired tokens; {first['processes']} spawned worker "
        f"processes of {first['threads']} threads each go through every user, each process "
        "in an order of its own, and call `refresh_once` for that user, so "
        f"{first['processes']} processes race for each one. A stand-in Globus Auth on "
        f"127.0.0.1 answers in {first['auth_delay_ms']:.0f} ms, rotates refresh tokens and "
        "answers `invalid_grant` to a spent one. Connections held: pooled connections the "
        "calling thread had checked out when it called Auth, max / sum over the Auth calls "
        "(pool-wide: the most any process's pool had out then, other threads' work on other "
        "users included). Latency per call, in ms: *waited* did not call Auth (it waited for "
        "another caller's refresh, or found it done); *refreshed* called Auth. Logged out: "
        "users whose stored refresh token Auth no longer accepts, afterwards.",
        "",
        "| database | users | calls | Auth calls | invalid_grant | errors | logged out | "
        "connections held | pool-wide | waited p50 / p99 | refreshed p50 / p99 | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        out.append(
            f"| {row['backend']} | {row['users']:,} | {row['calls']:,} | "
            f"{row['auth_calls']:,} | {row['invalid_grant']} | {row['errors']} | "
            f"{row['logged_out'] + row['missing']} | "
            f"{row['held_during_auth_max']} / {row['held_during_auth_sum']} | "
            f"{row['pool_checked_out_during_auth_max']} | "
            f"{_pair(row['waited_p50_ms'], row['waited_p99_ms'])} | "
            f"{_pair(row['refreshed_p50_ms'], row['refreshed_p99_ms'])} | "
            f"{_num(row['wall_seconds'], 2)} |"
        )
    return out


def _async_tables(results: dict[str, Any]) -> list[str]:
    """Render the async rows: latency beside the sync figures, throughput by task count."""
    rows = results.get("async", {"latency": [], "throughput": []})
    meta = results["meta"]
    out = ["", "### Async storage (asyncio, one engine)", ""]
    for backend, reason in meta.get("async_skipped", {}).items():
        out.append(f"Not measured on {backend}: {reason}.")
    if not rows["latency"] and not rows["throughput"]:
        return out
    out += [
        f"Latency with the database holding {meta['scales'][0]:,} namespace(s), in the "
        "same rounds as the sync figures; µs per awaited call; ratios of medians. x floor: "
        "over the sync driver; x async floor: over the asyncio driver (psycopg's "
        "AsyncConnection with its prepared statements, aiomysql, aiosqlite).",
        "",
        "| operation | storage | median µs | p95 µs | x sync | x SDK SQLite | x floor "
        "| x async floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for operation in OPERATIONS:
        for row in rows["latency"]:
            if row["operation"] == operation:
                out.append(
                    f"| {OPERATION_LABELS[operation]} | {row['label']} | "
                    f"{_num(row['median_us'])} | {_num(row['p95_us'])} | "
                    f"{_times(row['vs_sync'])} | {_times(row['vs_sdk_sqlite'])} | "
                    f"{_times(row['vs_floor'])} | {_times(row.get('vs_async_floor'))} |"
                )
    out += [
        "",
        "Throughput: 90% get / 10% store from N tasks on one event loop, each in its own "
        f"namespace, {meta['concurrency_seconds']:.2f} s per run, database at "
        f"{meta['scales'][-1]:,} namespaces; ratios to as many sync threads (separate "
        "namespaces), and to 16 threads of the sync storage.",
        "",
        "| storage | tasks | ops/s | errors | x sync threads | x SDK SQLite | x 16 threads |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows["throughput"]:
        out.append(
            f"| {row['label']} | {row['tasks']} | {_num(row['ops_per_second'], 0)} | "
            f"{row['errors']} | {_times(row['vs_sync_threads'])} | "
            f"{_times(row['vs_sdk_sqlite'])} | {_times(row.get('vs_16_threads'))} |"
        )
    return out


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_markdown = directory / "results.json", directory / "results.md"
    as_json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    as_markdown.write_text(markdown(results), encoding="utf-8")
    return as_json, as_markdown
