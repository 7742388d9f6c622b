"""64 asyncio tasks against 16 sync threads, in interleaved rounds, on one database.

The run's throughput table (:mod:`.run`) times each mode once, for a fraction of a
second, and one ratio of two such runs can swing by half on a busy machine. Here the
two alternate, round after round, for as long as asked: the async storage with
:data:`TASKS` tasks on one event loop, and the sync storage with :data:`THREADS`
threads, both running the 90% get / 10% store mix of :mod:`.concurrency`, each worker in
a namespace of its own, on engines with the same pool. It prints each round's
operations per second and ratio, and the median ratio::

    .venv/bin/python -m benchmarks.async_throughput [--backend postgresql] [--rounds 10]

PostgreSQL and MySQL come from ``TOKENSTORE_SQL_BENCH_POSTGRESQL_URL`` and
``TOKENSTORE_SQL_BENCH_MYSQL_URL`` (a scratch database, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Final

import tokenstore_sql

from . import async_rows, concurrency
from .data import by_resource_server
from .databases import available, open_database
from .subjects import pool_options

TASKS: Final = 64
THREADS: Final = 16


def measure(backend: str, rounds: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Alternate the two for ``rounds`` rounds of ``seconds`` each; give every figure."""
    with open_database(backend, workdir, "throughput") as database:
        engine = tokenstore_sql.create_engine(database.url, **pool_options(backend))
        loop = asyncio.new_event_loop()
        async_engine = tokenstore_sql.create_async_engine(database.url, **pool_options(backend))
        try:

            def make(name: str) -> tokenstore_sql.SQLAlchemyTokenStorage:
                return tokenstore_sql.SQLAlchemyTokenStorage(engine, namespace=name)

            names = concurrency.namespaces(THREADS, "separate")
            for name in names:
                make(name).store_token_data_by_resource_server(by_resource_server())
            loop.run_until_complete(async_rows.seed(async_engine, async_rows.namespaces(TASKS)))
            figures = []
            for _ in range(rounds):
                counts = concurrency.run_threads(make, names, seconds)
                threads = counts["ops"] / seconds
                counts, elapsed = loop.run_until_complete(
                    async_rows.run_tasks(async_engine, TASKS, seconds)
                )
                tasks = counts["ops"] / elapsed
                figures.append({"threads": threads, "tasks": tasks, "ratio": tasks / threads})
                print(
                    f"{THREADS} threads {threads:8,.0f} ops/s   {TASKS} tasks {tasks:8,.0f} ops/s"
                    f"   {tasks / threads:.2f}x"
                )
        finally:
            loop.run_until_complete(async_engine.dispose())
            loop.close()
            engine.dispose()
    return {
        "backend": backend,
        "rounds": figures,
        "median_ratio": statistics.median(f["ratio"] for f in figures),
    }


def main(argv: list[str] | None = None) -> None:
    """Measure on the backend named on the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.async_throughput", description=__doc__
    )
    parser.add_argument("--backend", default="postgresql", help="sqlite, postgresql or mysql")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of both (10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per run (3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    chosen, skipped = available([args.backend])
    if not chosen:
        parser.exit(1, f"cannot measure: {skipped[args.backend]}\n")
    with tempfile.TemporaryDirectory(prefix="tokenstore-bench-") as workdir:
        result = measure(args.backend, args.rounds, args.seconds, Path(workdir))
    print(
        f"{args.backend}: {TASKS} tasks / {THREADS} threads, median of {args.rounds} rounds: "
        f"{result['median_ratio']:.2f}x"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
