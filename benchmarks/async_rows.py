"""Async rows: tokenstore-sql's asyncio storage, measured beside its sync figures.

Latency: the async storage's operations are cells in the same shuffled rounds as the
sync ones (:mod:`.timing`), and so are the bare asyncio drivers' (the async floor,
:mod:`.async_floor`) and, on PostgreSQL, the async storage on an engine with psycopg's
prepared statements (as the sync ``prepared`` row). Each slice runs its batches inside
the run's one event loop, so the clock sees ``await storage.operation()`` and not the
cost of entering the loop, and machine noise falls on sync and async alike. Throughput:
1, 16, 64 and 256 tasks on one event loop share one engine (the pool the sync threads
get), each task in a namespace of its own, running the sync threads' 90% get / 10%
store mix for the same window; an exception counts as an error and the task goes on.
Operations per second are over the wall time until the last task has finished its last
call, and are compared with as many sync threads and with 16 of them.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections import Counter
from collections.abc import Awaitable
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Final, TypeVar

import tokenstore_sql

from . import async_floor
from .concurrency import ERROR, mix_call, throughput_row
from .data import STORE_ONE, by_resource_server
from .databases import Database
from .report import median_ratios, ratio
from .subjects import (
    PREPARED,
    PSYCOPG_PREPARE_THRESHOLD,
    SDK_SQLITE,
    Op,
    Subject,
    pool_options,
    storage_ops,
    tokenstore_label,
)
from .timing import Cell

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tokenstore_sql import AsyncSQLAlchemyTokenStorage

KIND: Final = "tokenstore-sql async"
# Every kind of subject whose operations give coroutines.
KINDS: Final = (KIND, async_floor.KIND)
OPERATIONS: Final = ("get_hit", "get_all", "store_1", "store_3", "remove")
TASKS: Final = (1, 16, 64, 256)
SHARING: Final = "separate"
# The sync runs every async run is also compared with: 16 threads.
THREADS: Final = 16
T = TypeVar("T")


def unavailable(backend: str) -> str | None:
    """Say why the async rows of ``backend`` cannot run here (None: they can).

    The async API and its drivers come with the package's ``async`` extra; without it,
    the sync rows still run.
    """
    extra = "pip install 'tokenstore-sql[async]'"
    try:
        engines = importlib.import_module("tokenstore_sql.async_engines")
    except ImportError:
        return f"SQLAlchemy's asyncio extension is not installed ({extra})"
    driver = engines.ASYNC_DRIVERS[backend]
    return None if find_spec(driver) else f"{driver} is not installed ({extra})"


def _storage(engine: AsyncEngine, namespace: str) -> AsyncSQLAlchemyTokenStorage:
    return tokenstore_sql.AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)


def subject(
    database: Database, loop: asyncio.AbstractEventLoop, *, prepared: bool = False
) -> Subject:
    """Measure the async storage over one shared engine, on ``loop``.

    Its operations are the sync storages' (:func:`.subjects.storage_ops`), those in
    OPERATIONS; each call gives a coroutine, which its cell awaits. ``prepared``: on an
    engine with psycopg's default ``prepare_threshold`` (PostgreSQL only).
    """
    options: dict[str, Any] = dict(pool_options(database.backend))
    label, namespace = f"{KIND} ({database.backend})", "bench-async"
    if prepared:
        options["connect_args"] = {"prepare_threshold": PSYCOPG_PREPARE_THRESHOLD}
        label, namespace = f"{KIND} ({database.backend}, prepared)", "bench-async-prepared"
    engine = tokenstore_sql.create_async_engine(database.url, **options)
    read = _storage(engine, f"{namespace}-read")
    write = _storage(engine, f"{namespace}-write")
    loop.run_until_complete(read.store_token_data_by_resource_server(by_resource_server()))
    ops = storage_ops(read, write)
    return Subject(
        label,
        KIND,
        database.backend,
        {name: ops[name] for name in OPERATIONS},
        lambda: loop.run_until_complete(engine.dispose()),
        extra={"engine": engine, "loop": loop, "prepared": prepared},
    )


def subjects(database: Database, loop: asyncio.AbstractEventLoop, *, first: bool) -> list[Subject]:
    """Open the async subjects of one database.

    The storage; at the first scale (for the latency table) also the async floor and,
    on PostgreSQL, the storage with prepared statements.
    """
    made = [subject(database, loop)]
    if first:
        made.append(async_floor.subject(database, loop))
        if database.backend == "postgresql":
            made.append(subject(database, loop, prepared=True))
    return made


def _on_loop(item: Subject, awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to its end on the event loop of the subject's engine."""
    loop: asyncio.AbstractEventLoop = item.extra["loop"]
    return loop.run_until_complete(awaitable)


def release(subjects: list[Subject]) -> None:
    """Close the pooled connections of every async engine (the engines stay usable).

    aiosqlite runs a thread per connection; the sync concurrency runs fork worker
    processes next, and a fork is safest with no other thread alive.
    """
    for item in subjects:
        if "engine" in item.extra:
            _on_loop(item, item.extra["engine"].dispose())
        else:  # the async floor: its connections are of no further use
            item.close()


async def _time_batch(op: Op, calls: int) -> float:
    run = op.run
    if op.setup is not None:
        await op.setup()
    started = time.perf_counter()
    for _ in range(calls):
        await run()
    elapsed = time.perf_counter() - started
    if op.cleanup is not None:
        await op.cleanup()
    return elapsed / calls


class AsyncCell(Cell):
    """A cell whose operation returns awaitables, timed inside its subject's event loop."""

    def time_calls(self, calls: int) -> float:
        """Time ``calls`` awaited calls; return seconds per call."""
        return _on_loop(self.subject, _time_batch(self.op, calls))

    def take_slice(self, seconds: float) -> None:
        """Take samples until ``seconds`` have passed, all in one run of the loop."""
        _on_loop(self.subject, self._slice(seconds))

    async def _slice(self, seconds: float) -> None:
        slice_end = time.perf_counter() + seconds
        while True:
            self.samples.append(await _time_batch(self.op, self.batch))
            if time.perf_counter() >= slice_end:
                return


def namespaces(tasks: int) -> list[str]:
    """Name the namespace of each task (none shared with the sync threads)."""
    return [f"bench-async-conc-{index}" for index in range(tasks)]


async def _work(storage: AsyncSQLAlchemyTokenStorage, stop: float, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    one = by_resource_server(STORE_ONE)
    counts: Counter[str] = Counter()
    while time.monotonic() < stop:
        try:
            await mix_call(storage, rng, one)
            counts["ops"] += 1
        except Exception as exc:
            counts[f"{ERROR}{type(exc).__name__}"] += 1
    return counts


async def seed(engine: AsyncEngine, names: list[str]) -> None:
    """Store five resource servers in each of ``names``, at once."""
    data = by_resource_server()
    await asyncio.gather(
        *(_storage(engine, name).store_token_data_by_resource_server(data) for name in names)
    )


async def run_tasks(engine: AsyncEngine, tasks: int, seconds: float) -> tuple[Counter[str], float]:
    """Run the mix from ``tasks`` tasks for ``seconds``; give the counts and the wall time."""
    storages = [_storage(engine, name) for name in namespaces(tasks)]
    began = time.monotonic()
    counts = await asyncio.gather(
        *(_work(storage, began + seconds, index) for index, storage in enumerate(storages))
    )
    elapsed = time.monotonic() - began
    for storage in storages:
        await storage.aclose()
    return sum(counts, Counter()), elapsed


def run_throughput(subjects: list[Subject], seconds: float) -> list[dict[str, Any]]:
    """Run the mix with every task count on every subject; subjects run back to back."""
    for item in subjects:
        _on_loop(item, seed(item.extra["engine"], namespaces(max(TASKS))))
    rows = []
    for tasks in TASKS:
        for item in subjects:
            counts, elapsed = _on_loop(item, run_tasks(item.extra["engine"], tasks, seconds))
            run = {"backend": item.backend, "tasks": tasks, "sharing": SHARING}
            rows.append(throughput_row(item.label, run, counts, elapsed))
    return rows


def latency_ratios(rows: list[dict[str, Any]], sync_rows: list[dict[str, Any]]) -> None:
    """Give each async latency row its ratios to the sync storage, SDK SQLite and floors.

    ``vs_floor`` is over the sync driver's floor, ``vs_async_floor`` over the asyncio
    driver's. The async storage with prepared statements is compared with the sync one
    with them.
    """
    median_ratios(
        rows,
        sync_rows,
        lambda row: {
            "vs_sync": PREPARED
            if row["label"].endswith("prepared)")
            else tokenstore_label(row["backend"]),
            "vs_sdk_sqlite": SDK_SQLITE,
            "vs_floor": row["floor"],
        },
    )
    median_ratios(rows, rows, lambda row: {"vs_async_floor": async_floor.label(row["backend"])})


def throughput_ratios(rows: list[dict[str, Any]], sync_rows: list[dict[str, Any]]) -> None:
    """Give each run its ratios to sync threads (separate namespaces).

    To as many threads of tokenstore-sql and of SDK SQLite, and to :data:`THREADS`
    threads of tokenstore-sql.
    """
    rates = {
        (r["label"], r["workers"]): r["ops_per_second"]
        for r in sync_rows
        if r["mode"] == "threads" and r["sharing"] == SHARING
    }
    for row in rows:
        sync = tokenstore_label(row["backend"])
        for name, label in (("vs_sync_threads", sync), ("vs_sdk_sqlite", SDK_SQLITE)):
            row[name] = ratio(row["ops_per_second"], rates.get((label, row["tasks"])))
        row[f"vs_{THREADS}_threads"] = ratio(row["ops_per_second"], rates.get((sync, THREADS)))
