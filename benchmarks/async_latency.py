"""One task's async get against the bare asyncio driver, in interleaved rounds.

The run's latency table (:mod:`.run`) shuffles many cells; this asks one question and
repeats it: on one event loop, a batch of ``await storage.get_token_data(...)`` on the
async storage, then the same number of the bare driver's ``SELECT`` of that row
(:mod:`.async_floor`: psycopg's ``AsyncConnection``, aiomysql or aiosqlite), round after
round. It prints each round's µs per get and ratio, and the median ratio::

    .venv/bin/python -m benchmarks.async_latency [--backend sqlite] [--rounds 9]

``--prepared`` measures the storage on a PostgreSQL engine that prepares statements
(psycopg's default threshold), as the floor does. PostgreSQL and MySQL come from
``TOKENSTORE_SQL_BENCH_POSTGRESQL_URL`` and ``TOKENSTORE_SQL_BENCH_MYSQL_URL`` (a
scratch database, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import tokenstore_sql

from .async_floor import AsyncFloor
from .data import HIT, RESOURCE_SERVERS, by_resource_server
from .databases import Database, available, open_database
from .subjects import PSYCOPG_PREPARE_THRESHOLD, pool_options

GETS: Final = 300  # per batch
WARM_UP: Final = 50


async def _per_call(call: Callable[[], Awaitable[Any]], count: int) -> float:
    """Await ``call()`` ``count`` times; give the µs per call."""
    started = time.perf_counter()
    for _ in range(count):
        await call()
    return (time.perf_counter() - started) / count * 1e6


async def _measure(database: Database, rounds: int, prepared: bool) -> list[tuple[float, float]]:
    backend = database.backend
    tokenstore_sql.TokenStore(database.url).upgrade()
    options: dict[str, Any] = dict(pool_options(backend))
    if prepared:
        options["connect_args"] = {"prepare_threshold": PSYCOPG_PREPARE_THRESHOLD}
    engine = tokenstore_sql.create_async_engine(database.url, **options)
    floor = await AsyncFloor.open(database, "bench-latency-floor")
    try:
        storage = tokenstore_sql.AsyncSQLAlchemyTokenStorage(engine, namespace="bench-latency")
        await storage.store_token_data_by_resource_server(by_resource_server(RESOURCE_SERVERS))

        async def ours() -> Any:
            return await storage.get_token_data(HIT)

        for call in (ours, floor.get_hit):
            await _per_call(call, WARM_UP)
        figures = []
        for _ in range(rounds):
            mine, bare = await _per_call(ours, GETS), await _per_call(floor.get_hit, GETS)
            figures.append((mine, bare))
            print(f"get {mine:7.1f} µs   floor {bare:7.1f} µs   {mine / bare:.2f}x")
        return figures
    finally:
        await floor.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """Measure on the backend named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.async_latency", description=__doc__)
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgresql or mysql")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of both (9)")
    parser.add_argument("--prepared", action="store_true", help="PostgreSQL: prepare statements")
    args = parser.parse_args(argv)
    chosen, skipped = available([args.backend])
    if not chosen:
        parser.exit(1, f"cannot measure: {skipped[args.backend]}\n")
    if args.prepared and args.backend != "postgresql":
        parser.exit(2, "--prepared is for PostgreSQL\n")
    with (
        tempfile.TemporaryDirectory(prefix="tokenstore-bench-") as workdir,
        open_database(args.backend, Path(workdir), "latency") as database,
    ):
        figures = asyncio.run(_measure(database, args.rounds, args.prepared))
    ratio = statistics.median(mine / bare for mine, bare in figures)
    print(f"{args.backend}: async get / async floor, median of {args.rounds} rounds: {ratio:.2f}x")


if __name__ == "__main__":
    main()
