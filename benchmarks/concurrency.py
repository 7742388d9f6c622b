"""Throughput under concurrency: a 90% read / 10% write mix from threads or processes.

Threads share one storage engine (tokenstore-sql) or open a storage each (globus-sdk's
``SQLiteTokenStorage``, whose connection belongs to the thread that made it). Processes
each open their own. Every worker runs for the same wall-clock window after a barrier;
any exception a call raises counts as an error and the worker goes on.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import make_url

from tokenstore_sql import SQLAlchemyTokenStorage, TokenStorageData
from tokenstore_sql._sdk import TokenStorage

from .data import HIT, STORE_ONE, by_resource_server
from .report import ratio
from .sdk import SQLiteTokenStorage, close_storage
from .subjects import SDK_SQLITE, Storage, pool_options

MODES = (("threads", 1), ("threads", 4), ("threads", 16), ("processes", 4))
SHARING = ("separate", "one")
WRITE_SHARE = 0.1
# A worker counts "ops", and each error under ERROR + the exception's type name.
ERROR = "error:"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker opens: ``kind`` is ``tokenstore-sql`` (a URL) or ``sdk-sqlite`` (a path)."""

    kind: str
    target: str
    namespace: str


def open_storage(spec: WorkerSpec) -> TokenStorage:
    """Open a storage in a worker process (tokenstore-sql gets an engine of its own)."""
    if spec.kind == "tokenstore-sql":
        options = pool_options(make_url(spec.target).get_backend_name())
        return SQLAlchemyTokenStorage(spec.target, namespace=spec.namespace, engine_options=options)
    return SQLiteTokenStorage(spec.target, namespace=spec.namespace)


def mix_call(storage: Storage, rng: random.Random, one: Mapping[str, TokenStorageData]) -> Any:
    """Make the mix's next call: store ``one`` (with chance WRITE_SHARE), else get (hit).

    The async storage's call gives a coroutine to await.
    """
    if rng.random() < WRITE_SHARE:
        return storage.store_token_data_by_resource_server(one)
    return storage.get_token_data(HIT)


def work(storage: TokenStorage, seconds: float, seed: int) -> Counter[str]:
    """Run the mix for ``seconds``; count operations and errors by exception type."""
    rng = random.Random(seed)
    one = by_resource_server(STORE_ONE)
    counts: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            mix_call(storage, rng, one)
            counts["ops"] += 1
        except Exception as exc:
            counts[f"{ERROR}{type(exc).__name__}"] += 1
    return counts


def throughput_row(
    label: str, run: dict[str, Any], counts: Counter[str], seconds: float
) -> dict[str, Any]:
    """One result row: ``label`` and what ``run`` was, then its ``counts`` over ``seconds``."""
    errors = {k.removeprefix(ERROR): v for k, v in counts.items() if k.startswith(ERROR)}
    return {
        "label": label,
        **run,
        "seconds": seconds,
        "ops": counts["ops"],
        "ops_per_second": counts["ops"] / seconds,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def _worker_thread(
    make: Callable[[], TokenStorage],
    barrier: threading.Barrier,
    seconds: float,
    seed: int,
    results: list[Counter[str]],
) -> None:
    storage = make()
    try:
        barrier.wait()
        results.append(work(storage, seconds, seed))
    finally:
        close_storage(storage)


def _worker_process(
    spec: WorkerSpec, barrier: threading.Barrier, seconds: float, seed: int, queue: object
) -> None:
    storage = open_storage(spec)
    try:
        barrier.wait()
        queue.put(work(storage, seconds, seed))  # type: ignore[attr-defined]
    finally:
        close_storage(storage)


def namespaces(workers: int, sharing: str) -> list[str]:
    """Name the namespace of each worker."""
    if sharing == "one":
        return ["bench-conc-shared"] * workers
    return [f"bench-conc-{index}" for index in range(workers)]


def run_threads(
    make: Callable[[str], TokenStorage], names: list[str], seconds: float
) -> Counter[str]:
    """Run one worker thread per namespace in ``names``; sum their counts."""
    barrier = threading.Barrier(len(names))
    results: list[Counter[str]] = []
    threads = [
        threading.Thread(
            target=_worker_thread,
            args=(lambda name=name: make(name), barrier, seconds, index, results),
        )
        for index, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(results, Counter())


def run_processes(specs: list[WorkerSpec], seconds: float) -> Counter[str]:
    """Run one worker process per spec; sum their counts (a lost worker is an error)."""
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    barrier = context.Barrier(len(specs))
    queue = context.Queue()
    processes = [
        context.Process(target=_worker_process, args=(spec, barrier, seconds, index, queue))
        for index, spec in enumerate(specs)
    ]
    for process in processes:
        process.start()
    total: Counter[str] = Counter()
    for _ in processes:
        try:
            total += queue.get(timeout=seconds + 60)
        except Exception:
            total[f"{ERROR}WorkerLost"] += 1
    for process in processes:
        process.join()
    return total


def _storage_makers(
    subject: Any,
) -> tuple[Callable[[str], TokenStorage], Callable[[str], WorkerSpec]]:
    """How threads open a storage of ``subject``, and what a worker process gets."""
    if subject.kind == "tokenstore-sql":
        engine = subject.extra["engine"]
        url = subject.extra["url"].render_as_string(hide_password=False)
        return (
            lambda name: SQLAlchemyTokenStorage(engine, namespace=name),
            lambda name: WorkerSpec("tokenstore-sql", url, name),
        )
    path = str(subject.extra["path"])
    return (
        lambda name: SQLiteTokenStorage(path, namespace=name),
        lambda name: WorkerSpec("sdk-sqlite", path, name),
    )


def _seed(make: Callable[[str], TokenStorage]) -> None:
    """Store five resource servers in every namespace a worker may use."""
    for name in {*namespaces(16, "separate"), *namespaces(1, "one")}:
        storage = make(name)
        storage.store_token_data_by_resource_server(by_resource_server())
        close_storage(storage)


def _add_sdk_ratios(rows: list[dict[str, Any]]) -> None:
    """Give each row its ratio to SDK SQLite's row of the same mode, workers and sharing."""

    def run(row: dict[str, Any]) -> tuple[str, int, str]:
        return row["mode"], row["workers"], row["sharing"]

    sdk = {run(row): row["ops_per_second"] for row in rows if row["label"] == SDK_SQLITE}
    for row in rows:
        row["vs_sdk_sqlite"] = ratio(row["ops_per_second"], sdk.get(run(row)))


def run_modes(subjects: list[Any], seconds: float) -> list[dict[str, Any]]:
    """Measure every mode on every subject; within a mode the subjects run back to back."""
    makers = {subject.label: _storage_makers(subject) for subject in subjects}
    for make, _ in makers.values():
        _seed(make)
    rows = []
    for mode, workers in MODES:
        for sharing in SHARING:
            names = namespaces(workers, sharing)
            for subject in subjects:
                make, spec = makers[subject.label]
                if mode == "threads":
                    counts = run_threads(make, names, seconds)
                else:
                    counts = run_processes([spec(name) for name in names], seconds)
                run = {"mode": mode, "workers": workers, "sharing": sharing}
                rows.append(throughput_row(subject.label, run, counts, seconds))
    _add_sdk_ratios(rows)
    return rows
