"""Run the benchmarks: ``python -m benchmarks.run [--smoke] [--seconds S] ...``.

PostgreSQL and MySQL are measured when ``TOKENSTORE_SQL_BENCH_POSTGRESQL_URL`` and
``TOKENSTORE_SQL_BENCH_MYSQL_URL`` hold admin URLs (a scratch database is created there
and dropped afterwards); otherwise they are skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from . import (
    async_rows,
    caller_engine,
    charts,
    concurrency,
    machine,
    prepared,
    refresh_storm,
    report,
    subjects,
    targets,
)
from .databases import BACKENDS, available, count_statements, open_database
from .importing import measure_import, write_import_file
from .subjects import OPERATIONS, SDK_SQLITE, Subject
from .timing import Cell, measure

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
SMOKE = {
    "seconds": 3.0,
    "scales": "1,200",
    "json_max_scale": 200,
    "import_namespaces": 50,
    "storm_users": refresh_storm.SMOKE_USERS,
    "storm_processes": refresh_storm.SMOKE_PROCESSES,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; ``--smoke`` gives small defaults for CI."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, every code path")
    parser.add_argument("--seconds", type=float, help="time budget of the measurements (60)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--scales", help="namespaces held, comma-separated (1,10000,100000)")
    parser.add_argument("--json-max-scale", type=int, help="largest scale for JSON (10000)")
    parser.add_argument("--import-namespaces", type=int, help="namespaces to import (10000)")
    parser.add_argument("--storm-users", type=int, help="users in the refresh storm (1000)")
    parser.add_argument(
        "--storm-processes", type=int, help="worker processes of the refresh storm (8)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results directory")
    args = parser.parse_args(argv)
    defaults = (
        SMOKE
        if args.smoke
        else {
            "seconds": 60.0,
            "scales": "1,10000,100000",
            "json_max_scale": 10_000,
            "import_namespaces": 10_000,
            "storm_users": refresh_storm.USERS,
            "storm_processes": refresh_storm.PROCESSES,
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.scales = sorted({int(part) for part in args.scales.split(",")})
    args.backends = [part.strip() for part in args.backends.split(",") if part.strip()]
    return args


def latency_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """One result row per cell."""
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
            "batch": cell.batch,
        }
        for cell in cells
    ]


def construct_statements(subject: Subject) -> int:
    """Statements sent while constructing 1,000 storages over the subject's engine."""
    seen = count_statements(subject.extra["engine"])
    construct = subject.ops["construct"].run
    for _ in range(1000):
        construct()
    return len(seen)


def build(
    args: argparse.Namespace,
    chosen: list[str],
    workdir: Path,
    stack: contextlib.ExitStack,
    loop: asyncio.AbstractEventLoop,
    async_backends: list[str],
) -> tuple[list[Subject], dict[str, float]]:
    """Open every subject at every scale, its data filled to that scale; time the fills.

    The async storage, on ``async_backends``, is opened at the first scale (for latency)
    and the last (for throughput, as the sync threads run there); on PostgreSQL, so is
    the storage with psycopg's prepared statements (latency, at both). The async floor,
    and the async storage with prepared statements, are opened at the first scale.
    """
    measured: list[Subject] = []
    fill_seconds: dict[str, float] = {}
    for scale in args.scales:
        started = time.perf_counter()
        made: list[Subject] = []
        for backend in chosen:
            database = stack.enter_context(open_database(backend, workdir, str(scale)))
            made += [subjects.tokenstore(database), subjects.floor(database)]
            if backend == "postgresql" and scale in (args.scales[0], args.scales[-1]):
                made.append(subjects.tokenstore_prepared(database))
            if backend in async_backends and scale in (args.scales[0], args.scales[-1]):
                made += async_rows.subjects(database, loop, first=scale == args.scales[0])
            if scale == args.scales[0]:
                made.append(caller_engine.subject(database))
        made.append(subjects.sdk_sqlite(workdir / f"sdk-{scale}.db"))
        if scale <= args.json_max_scale:
            made.append(subjects.sdk_json(workdir / f"sdk-{scale}.json"))
        if scale == args.scales[0]:
            made.append(subjects.sdk_memory())
        for subject in made:
            stack.callback(subject.close)
            if subject.grow is not None:
                subject.grow(scale)
            subject.scale = scale
        fill_seconds[str(scale)] = round(time.perf_counter() - started, 2)
        print(f"scale {scale:,}: filled in {fill_seconds[str(scale)]} s")
        measured += made
    return measured, fill_seconds


def measure_prepared(first: list[Subject], smoke: bool) -> dict[str, Any] | None:
    """Time gets with and without psycopg's prepared statements, side by side (PostgreSQL).

    On the storages of the latency table at the first scale; None without PostgreSQL.
    """
    default = [s for s in first if s.label == subjects.tokenstore_label("postgresql")]
    preparing = [s for s in first if s.label == subjects.PREPARED]
    if not default or not preparing:
        return None
    calls, rounds = (
        (prepared.SMOKE_CALLS, prepared.SMOKE_ROUNDS)
        if smoke
        else (prepared.CALLS, prepared.ROUNDS)
    )
    print(f"prepared statements: {calls:,} gets on each of two PostgreSQL engines")
    return prepared.measure_get(default[0], preparing[0], calls, rounds)


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Set everything up, measure, and return the results."""
    chosen, skipped = available(args.backends)
    for backend, reason in skipped.items():
        print(f"skipping {backend}: {reason}")
    async_skipped = {b: r for b in chosen if (r := async_rows.unavailable(b)) is not None}
    for backend, reason in async_skipped.items():
        print(f"skipping async rows on {backend}: {reason}")
    meta: dict[str, Any] = {**machine.describe(), "scales": args.scales, "smoke": args.smoke}
    meta["load_at_start"] = machine.load()
    meta.update(backends=chosen, skipped=skipped, async_skipped=async_skipped)
    meta["seconds"] = args.seconds
    loop = asyncio.new_event_loop()
    stack.callback(loop.close)  # registered first, so closed after every async engine
    async_backends = [b for b in chosen if b not in async_skipped]
    built, meta["preload_seconds"] = build(args, chosen, workdir, stack, loop, async_backends)
    measured = [s for s in built if s.kind not in (*async_rows.KINDS, caller_engine.KIND)]
    asyncs = [s for s in built if s.kind in async_rows.KINDS]
    caller_cells = caller_engine.cells([s for s in built if s.kind == caller_engine.KIND])
    first = [s for s in measured if s.scale == args.scales[0]]
    last = [s for s in measured if s.scale == args.scales[-1]]
    ours = [s for s in first if s.kind == "tokenstore-sql"]
    meta["servers"] = {
        s.backend: machine.server_version(s.extra["engine"]) for s in ours if s.backend != "sqlite"
    }
    meta["durability"] = {
        s.label: machine.sqlite_durability(engine=s.extra["engine"])
        for s in ours
        if s.backend == "sqlite"
    }
    sdk_first = next(s for s in first if s.label == SDK_SQLITE)
    meta["durability"][SDK_SQLITE] = machine.sqlite_durability(path=sdk_first.extra["path"])
    meta["construct_statements"] = {s.backend: construct_statements(s) for s in ours}
    cells = [Cell(s, op) for s in measured for op in OPERATIONS if op in s.ops]
    async_cells: list[Cell] = [
        async_rows.AsyncCell(s, op)
        for s in asyncs
        if s.scale == args.scales[0]
        for op in async_rows.OPERATIONS
    ]
    print(
        f"latency: {len(cells) + len(async_cells)} cells ({len(async_cells)} async), "
        f"interleaved, {args.seconds * 0.6:.0f} s"
    )
    measure(
        cells + async_cells + caller_cells, args.seconds * 0.6, min_samples=3 if args.smoke else 5
    )
    latency, async_latency = latency_rows(cells), latency_rows(async_cells)
    report.add_ratios(latency)
    caller_latency = latency_rows(caller_cells)
    caller_engine.add_ratios(caller_latency, latency)
    side_by_side = measure_prepared(first, args.smoke)
    async_rows.latency_ratios(async_latency, latency)
    async_rows.release(asyncs)
    contenders = [s for s in last if s.kind == "tokenstore-sql" or s.label == SDK_SQLITE]
    modes = len(concurrency.MODES) * len(concurrency.SHARING) * len(contenders)
    async_last = [
        s
        for s in asyncs
        if s.scale == args.scales[-1] and s.kind == async_rows.KIND and not s.extra["prepared"]
    ]
    async_runs = len(async_rows.TASKS) * len(async_last)
    # the sync and async runs share one budget, each run as long as the others
    meta["concurrency_seconds"] = max(0.05, args.seconds * 0.3 / (modes + async_runs))
    print(f"concurrency: {modes} runs of {meta['concurrency_seconds']:.2f} s")
    conc = concurrency.run_modes(contenders, meta["concurrency_seconds"])
    print(f"async throughput: {async_runs} runs of {meta['concurrency_seconds']:.2f} s")
    throughput = async_rows.run_throughput(async_last, meta["concurrency_seconds"])
    async_rows.throughput_ratios(throughput, conc)
    print(f"import: {args.import_namespaces:,} namespaces")
    path = write_import_file(workdir, args.import_namespaces)
    imports = {
        s.backend: measure_import(s.extra["engine"], path, args.import_namespaces, repeats=1)
        for s in ours
    }
    print(
        f"refresh storm: {args.storm_users:,} users, {args.storm_processes} processes "
        f"of {refresh_storm.THREADS} threads"
    )
    storm = refresh_storm.run_all(chosen, workdir, args.storm_users, args.storm_processes)
    results = {"meta": meta, "latency": latency, "concurrency": conc, "import": imports}
    results["async"] = {"latency": async_latency, "throughput": throughput}
    results["caller_engine"] = caller_latency
    results["refresh_storm"] = storm
    results["prepared"] = {"cells": report.prepared_rows(latency), "get": side_by_side}
    results["scale"] = report.growth(latency)
    results["targets"] = targets.check(results)
    return results


def main(argv: list[str] | None = None) -> None:
    """Run from the command line; write results.md, results.json and the charts."""
    args = parse(argv)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tokenstore-bench-")))
        results = run(args, workdir, stack)
    results["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["load_at_end"] = machine.load()
    as_json, as_markdown = report.write(results, args.output)
    drawn = charts.draw(results, args.output)
    print(report.markdown(results))
    print(f"wrote {as_markdown} and {as_json} in {results['meta']['wall_seconds']} s")
    print(f"drew {', '.join(path.name for path in drawn)} in {args.output}")


if __name__ == "__main__":
    main()
