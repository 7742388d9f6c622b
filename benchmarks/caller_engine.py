"""Caller engines: tokenstore-sql on an engine the caller made with ``sqlalchemy.create_engine``.

A user may pass an engine of their own to ``SQLAlchemyTokenStorage``. Its connections
are in the driver's default mode (transactions, not autocommit) and its pool rolls each
one back on return, where tokenstore-sql's engines set both up for single statements.
These rows time that storage beside the same storage on the package's engine and the
bare driver (the floor), on the same database, in the same interleaved rounds as the
latency table (:mod:`.timing`), on every backend of the run; the target is a caller
engine within :data:`LIMIT` times the package engine, operation by operation.

The benchmark run (:mod:`.run`) measures them at its first scale; alone, on SQLite and
on the servers named by ``TOKENSTORE_SQL_BENCH_POSTGRESQL_URL`` and
``TOKENSTORE_SQL_BENCH_MYSQL_URL`` (scratch databases, dropped afterwards)::

    .venv/bin/python -m benchmarks.caller_engine [--seconds 30] [--backends sqlite,mysql]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any, Final

import sqlalchemy

from tokenstore_sql import SQLAlchemyTokenStorage

from .databases import BACKENDS, Database, available, open_database
from .subjects import OPERATION_LABELS, Subject, filled_ops, floor, pool_options, tokenstore
from .subjects import tokenstore_label as package_label
from .timing import Cell, measure

KIND: Final = "tokenstore-sql, caller engine"
OPERATIONS: Final = ("get_hit", "get_all", "store_1", "store_3")
LIMIT: Final = 1.2


def label(backend: str) -> str:
    """Label tokenstore-sql on a caller's engine on ``backend``."""
    return f"tokenstore-sql ({backend}, caller engine)"


def subject(database: Database) -> Subject:
    """Measure tokenstore-sql on a plain ``sqlalchemy.create_engine`` engine.

    The pool is the package subject's (:func:`.subjects.pool_options`), so only the
    engine's setup differs. No ``grow``: its database is the package subject's.
    """
    engine = sqlalchemy.create_engine(database.url, **pool_options(database.backend))
    read = SQLAlchemyTokenStorage(engine, namespace="bench-caller-read")
    write = SQLAlchemyTokenStorage(engine, namespace="bench-caller-write")
    ops = filled_ops(read, write)
    return Subject(
        label(database.backend),
        KIND,
        database.backend,
        {name: ops[name] for name in OPERATIONS},
        engine.dispose,
        extra={"engine": engine, "url": database.url},
    )


def cells(subjects: list[Subject]) -> list[Cell]:
    """One cell per operation of each caller-engine subject."""
    return [Cell(item, operation) for item in subjects for operation in OPERATIONS]


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def add_ratios(rows: list[dict[str, Any]], latency: list[dict[str, Any]]) -> None:
    """Give each caller-engine row the package engine's and the floor's medians, and ratios.

    ``latency`` holds the package engine's and the floors' rows of the same rounds.
    """
    medians = {(r["scale"], r["label"], r["operation"]): r["median_us"] for r in latency}
    for row in rows:
        key = (row["scale"], row["operation"])
        package = medians.get((key[0], package_label(row["backend"]), key[1]))
        floor_us = medians.get((key[0], row["floor"], key[1]))
        row["package_us"], row["floor_us"] = package, floor_us
        row["vs_package"] = _ratio(row["median_us"], package)
        row["vs_floor"] = _ratio(row["median_us"], floor_us)
        row["package_vs_floor"] = _ratio(package, floor_us)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(rows: list[dict[str, Any]] | None) -> list[str]:
    """Render the caller-engine rows, each beside the package engine and the floor."""
    out = [
        "### Caller engines: tokenstore-sql on `sqlalchemy.create_engine(url)`",
        "",
        "The same storage on an engine the caller made (the driver's default transaction "
        "mode, the pool's rollback on return) and on tokenstore-sql's engine, beside the "
        "bare driver, in the same rounds as the latency table. Median µs per call.",
        "",
    ]
    if not rows:
        return [*out, "Not measured."]
    out += [
        "| operation | backend | caller engine µs | package engine µs | floor µs "
        "| caller / package | caller / floor | package / floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for operation in OPERATIONS:
        for row in rows:
            if row["operation"] == operation:
                out.append(
                    f"| {OPERATION_LABELS[operation]} | {row['backend']} | "
                    f"{_num(row['median_us'])} | {_num(row['package_us'])} | "
                    f"{_num(row['floor_us'])} | {_times(row['vs_package'])} | "
                    f"{_times(row['vs_floor'])} | {_times(row['package_vs_floor'])} |"
                )
    return out


def checks(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Check the target on each backend: every operation ≤ LIMIT x the package engine."""
    found: list[dict[str, Any]] = []
    for backend in BACKENDS:
        mine = [r for r in rows or [] if r["backend"] == backend]
        target = f"{backend}: get and store on a caller engine ≤ {LIMIT}x the package engine"
        if not mine or any(r["vs_package"] is None for r in mine):
            found.append({"target": target, "figures": "-", "met": None})
            continue
        figures = ", ".join(
            f"{OPERATION_LABELS[r['operation']]} {r['vs_package']:.2f}x" for r in mine
        )
        met = all(r["vs_package"] <= LIMIT for r in mine)
        found.append({"target": target, "figures": figures, "met": met})
    return found


def _rows(measured: list[Cell]) -> list[dict[str, Any]]:
    return [
        {
            "label": cell.subject.label,
            "kind": cell.subject.kind,
            "backend": cell.subject.backend,
            "floor": cell.subject.floor_label,
            "scale": cell.subject.scale,
            "operation": cell.operation,
            "median_us": cell.median() * 1e6,
            "p95_us": cell.p95() * 1e6,
            "samples": len(cell.samples),
        }
        for cell in measured
    ]


def main(argv: list[str] | None = None) -> None:
    """Measure the three side by side on every backend available, and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.caller_engine", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="time budget (30)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    chosen, skipped = available([b.strip() for b in args.backends.split(",") if b.strip()])
    for backend, reason in skipped.items():
        print(f"skipping {backend}: {reason}")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tokenstore-bench-")))
        made: list[Subject] = []
        for backend in chosen:
            database = stack.enter_context(open_database(backend, workdir, "caller"))
            made += [tokenstore(database), floor(database), subject(database)]
        for item in made:
            stack.callback(item.close)
        timed = [Cell(item, op) for item in made for op in OPERATIONS if op in item.ops]
        measure(timed, args.seconds, min_samples=5)
    rows = _rows([c for c in timed if c.subject.kind == KIND])
    add_ratios(rows, _rows([c for c in timed if c.subject.kind != KIND]))
    print("\n".join(table(rows)))
    for check in checks(rows):
        if check["met"] is not None:
            print(f"{check['target']}: {check['figures']}: {'met' if check['met'] else 'NOT met'}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
