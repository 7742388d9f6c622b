"""The issue's targets, checked against one run's results: met, not met, or not measured."""

from __future__ import annotations

from typing import Any

from . import caller_engine
from .subjects import OPERATION_LABELS, SDK_SQLITE, tokenstore_label

GETS = ("get_hit", "get_miss", "get_all")
STORES = ("store_1", "store_3")
SCALE_LIMIT = 1.25
CONSTRUCT_LIMIT_US = 5.0
IMPORT_TARGETS = {"sqlite": 20_000, "postgresql": 10_000, "mysql": 10_000}


def _ratio_check(
    checks: list[dict[str, Any]], target: str, row: dict[str, Any] | None, key: str, limit: float
) -> None:
    if row is None or row[key] is None:
        checks.append({"target": target, "figures": "-", "met": None})
        return
    other = row["median_us"] / row[key]
    figures = f"{row[key]:.2f}x ({row['median_us']:.1f} µs vs {other:.1f} µs)"
    checks.append({"target": target, "figures": figures, "met": row[key] <= limit})


def check(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate every target; a target whose figures are missing is ``met: None``."""
    meta = results["meta"]
    first = meta["scales"][0]
    latency = {(r["label"], r["operation"]): r for r in results["latency"] if r["scale"] == first}
    checks: list[dict[str, Any]] = []
    sqlite = tokenstore_label("sqlite")
    _ratio_check(
        checks,
        "SQLite get (hit) ≤ 0.10x SDK SQLite",
        latency.get((sqlite, "get_hit")),
        "vs_sdk_sqlite",
        0.10,
    )
    _ratio_check(
        checks,
        "SQLite get (hit) ≤ 6x sqlite3 floor",
        latency.get((sqlite, "get_hit")),
        "vs_floor",
        6.0,
    )
    _ratio_check(
        checks,
        "SQLite get all (5) ≤ 0.15x SDK SQLite",
        latency.get((sqlite, "get_all")),
        "vs_sdk_sqlite",
        0.15,
    )
    for operation in STORES:
        _ratio_check(
            checks,
            f"SQLite {OPERATION_LABELS[operation]} ≤ 0.8x SDK SQLite",
            latency.get((sqlite, operation)),
            "vs_sdk_sqlite",
            0.8,
        )
    durability = meta.get("durability", {}).get(sqlite)
    if durability is not None:
        synced = durability["synchronous"] == 2
        checks.append(
            {
                "target": "SQLite commits synced to disk (synchronous=FULL)",
                "figures": f"journal_mode={durability['journal_mode']}, "
                f"synchronous={durability['synchronous']}",
                "met": synced,
            }
        )
    for backend in ("postgresql", "mysql"):
        for operation in (*GETS, *STORES):
            limit = 2.0 if operation in GETS else 1.5
            _ratio_check(
                checks,
                f"{backend} {OPERATION_LABELS[operation]} ≤ {limit}x floor",
                latency.get((tokenstore_label(backend), operation)),
                "vs_floor",
                limit,
            )
    _scale_checks(checks, results)
    _construct_checks(checks, results, latency)
    _concurrency_checks(checks, results)
    _async_checks(checks, results)
    checks += storm_checks(results.get("refresh_storm", []))
    checks += caller_engine.checks(results.get("caller_engine"))
    for backend, limit in IMPORT_TARGETS.items():
        row = results["import"].get(backend, {"status": "not run"})
        target = f"import into {backend} ≥ {limit:,} tokens/s"
        if row["status"] != "measured":
            checks.append({"target": target, "figures": row["status"], "met": None})
        else:
            rate = row["tokens_per_second"]
            checks.append(
                {"target": target, "figures": f"{rate:,.0f} tokens/s", "met": rate >= limit}
            )
    return checks


def _scale_checks(checks: list[dict[str, Any]], results: dict[str, Any]) -> None:
    for backend in ("sqlite", "postgresql", "mysql"):
        ours = tokenstore_label(backend)
        entries = [e for e in results["scale"] if e["label"] == ours and e["growth"] is not None]
        target = f"{backend}: every operation at the largest scale ≤ {SCALE_LIMIT}x its cost at 1"
        if not entries:
            checks.append({"target": target, "figures": "-", "met": None})
            continue
        figures = ", ".join(f"{e['operation']} {e['growth']:.2f}x" for e in entries)
        to_scale = entries[0]["to_scale"]
        met = all(e["growth"] <= SCALE_LIMIT for e in entries)
        checks.append({"target": f"{target} (at {to_scale:,})", "figures": figures, "met": met})


def _construct_checks(
    checks: list[dict[str, Any]], results: dict[str, Any], latency: dict[Any, Any]
) -> None:
    statements = results["meta"].get("construct_statements", {})
    for backend, sent in statements.items():
        row = latency.get((tokenstore_label(backend), "construct"))
        target = f"{backend}: construct over a shared engine ≤ {CONSTRUCT_LIMIT_US} µs, no I/O"
        if row is None:
            checks.append({"target": target, "figures": "-", "met": None})
            continue
        met = row["median_us"] <= CONSTRUCT_LIMIT_US and sent == 0
        figures = f"{row['median_us']:.2f} µs, {sent} statements in 1,000 constructions"
        checks.append({"target": target, "figures": figures, "met": met})


def _concurrency_checks(checks: list[dict[str, Any]], results: dict[str, Any]) -> None:
    rows = results["concurrency"]
    for backend in ("sqlite", "postgresql", "mysql"):
        ours = [r for r in rows if r["label"] == tokenstore_label(backend)]
        if ours:
            errors = sum(r["errors"] for r in ours)
            checks.append(
                {
                    "target": f"{backend}: zero errors in every concurrency mode",
                    "figures": f"{errors} errors in {len(ours)} modes",
                    "met": errors == 0,
                }
            )
    postgresql = tokenstore_label("postgresql")
    for sharing in ("separate", "one"):
        pg = [
            r
            for r in rows
            if r["label"] == postgresql and r["workers"] == 16 and r["sharing"] == sharing
        ]
        sdk = [
            r
            for r in rows
            if r["label"] == SDK_SQLITE and r["workers"] == 16 and r["sharing"] == sharing
        ]
        shown = "separate namespaces" if sharing == "separate" else "one namespace"
        target = f"postgresql 16 threads ≥ 3x SDK SQLite 16 threads ({shown})"
        if not pg or not sdk:
            checks.append({"target": target, "figures": "-", "met": None})
            continue
        ratio = pg[0]["ops_per_second"] / sdk[0]["ops_per_second"]
        ours, theirs = pg[0]["ops_per_second"], sdk[0]["ops_per_second"]
        figures = f"{ratio:.2f}x ({ours:,.0f} vs {theirs:,.0f} ops/s)"
        checks.append({"target": target, "figures": figures, "met": ratio >= 3.0})


def _async_checks(checks: list[dict[str, Any]], results: dict[str, Any]) -> None:
    rows = results.get("async", {}).get("throughput", [])
    for backend in ("sqlite", "postgresql", "mysql"):
        ours = [r for r in rows if r["backend"] == backend]
        if ours:
            tasks = ", ".join(str(r["tasks"]) for r in ours)
            errors = sum(r["errors"] for r in ours)
            checks.append(
                {
                    "target": f"{backend} async: zero errors with {tasks} tasks",
                    "figures": f"{errors} errors in {len(ours)} runs",
                    "met": errors == 0,
                }
            )
    _async_speed_checks(checks, results)


ASYNC_FLOOR_LIMIT = 1.5
ASYNC_TASKS, SYNC_THREADS = 64, 16


def _async_speed_checks(checks: list[dict[str, Any]], results: dict[str, Any]) -> None:
    """Async get within ASYNC_FLOOR_LIMIT of the asyncio driver; 64 tasks vs 16 threads."""
    first = results["meta"]["scales"][0]
    latency = {
        (r["label"], r["operation"]): r
        for r in results.get("async", {}).get("latency", [])
        if r["scale"] == first
    }
    for backend in ("sqlite", "postgresql", "mysql"):
        if any(r["backend"] == backend for r in latency.values()):
            _ratio_check(
                checks,
                f"{backend} async get (hit) ≤ {ASYNC_FLOOR_LIMIT}x async floor",
                latency.get((f"tokenstore-sql async ({backend})", "get_hit")),
                "vs_async_floor",
                ASYNC_FLOOR_LIMIT,
            )
    runs = [
        r
        for r in results.get("async", {}).get("throughput", [])
        if r["backend"] == "postgresql" and r["tasks"] == ASYNC_TASKS
    ]
    target = f"postgresql async: {ASYNC_TASKS} tasks ≥ {SYNC_THREADS} sync threads (ops/s)"
    if not runs or runs[0].get("vs_16_threads") is None:
        checks.append({"target": target, "figures": "-", "met": None})
        return
    rate, ratio = runs[0]["ops_per_second"], runs[0]["vs_16_threads"]
    figures = f"{ratio:.2f}x ({rate:,.0f} vs {rate / ratio:,.0f} ops/s)"
    checks.append({"target": target, "figures": figures, "met": ratio >= 1.0})


def storm_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check the refresh storm's targets on each database it ran on."""
    checks: list[dict[str, Any]] = []
    for row in rows:
        name = f"{row['backend']} refresh storm ({row['processes']} processes)"
        users = row["users"]
        checks.append(
            {
                "target": f"{name}: one Auth call per user",
                "figures": f"{row['auth_calls']:,} Auth calls for {users:,} users",
                "met": row["auth_calls"] == users,
            }
        )
        checks.append(
            {
                "target": f"{name}: no invalid_grant from Auth",
                "figures": f"{row['invalid_grant']} invalid_grant",
                "met": row["invalid_grant"] == 0,
            }
        )
        logged_out = row["logged_out"] + row["missing"]
        kinds = ", ".join(f"{kind} {count}" for kind, count in row["error_kinds"].items())
        figures = f"{row['errors']} errors in {row['calls']:,} calls"
        figures += f" ({kinds})" if kinds else ""
        figures += (
            f", {logged_out} users logged out, {row['expired_after']} left expired, "
            f"{row['leases_left']} leases left"
        )
        checks.append(
            {
                "target": f"{name}: no errors; every user ends logged in, fresh, lease cleared",
                "figures": figures,
                "met": row["errors"] == 0
                and logged_out == 0
                and row["expired_after"] == 0
                and row["leases_left"] == 0,
            }
        )
        checks.append(
            {
                "target": f"{name}: no pooled connection held during an Auth call",
                "figures": f"max {row['held_during_auth_max']}, "
                f"sum {row['held_during_auth_sum']} over {row['auth_calls_seen']:,} Auth calls",
                "met": row["held_during_auth_sum"] == 0 and row["auth_calls_seen"] > 0,
            }
        )
    return checks
