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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenstore_sql import SQLAlchemyTokenStorage
from tokenstore_sql._sdk import TokenStorage

from .data import HIT, by_resource_server
from .sdk import SQLiteTokenStorage, close_storage
from .subjects import SDK_SQLITE, SERVER_POOL

MODES = (("threads", 1), ("threads", 4), ("threads", 16), ("processes", 4))
SHARING = ("separate", "one")
WRITE_SHARE = 0.1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker opens: ``kind`` is ``tokenstore-sql`` (a URL) or ``sdk-sqlite`` (a path)."""

    kind: str
    target: str
    namespace: str


def open_storage(spec: WorkerSpec) -> TokenStorage:
    """Open a storage in a worker process (tokenstore-sql gets an engine of its own)."""
    if spec.kind == "tokenstore-sql":
        options = {} if spec.target.startswith("sqlite") else SERVER_POOL
        return SQLAlchemyTokenStorage(spec.target, namespace=spec.namespace, engine_options=options)
    return SQLiteTokenStorage(spec.target, namespace=spec.namespace)


def work(storage: TokenStorage, seconds: float, seed: int) -> Counter[str]:
    """Run the mix for ``seconds``; count operations and errors by exception type."""
    rng = random.Random(seed)
    one = by_resource_server((HIT,))
    counts: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            if rng.random() < WRITE_SHARE:
                storage.store_token_data_by_resource_server(one)
            else:
                storage.get_token_data(HIT)
            counts["ops"] += 1
        except Exception as exc:
            counts[f"error:{type(exc).__name__}"] += 1
    return counts


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
            total["error:WorkerLost"] += 1
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


def run_modes(subjects: list[Any], seconds: float) -> list[dict[str, Any]]:
    """Measure every mode on every subject; within a mode the subjects run back to back."""
    makers = {subject.label: _storage_makers(subject) for subject in subjects}
    for make, _ in makers.values():
        for name in {*namespaces(16, "separate"), *namespaces(1, "one")}:
            storage = make(name)
            storage.store_token_data_by_resource_server(by_resource_server())
            close_storage(storage)
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
                errors = {k[6:]: v for k, v in counts.items() if k.startswith("error:")}
                rows.append(
                    {
                        "label": subject.label,
                        "mode": mode,
                        "workers": workers,
                        "sharing": sharing,
                        "seconds": seconds,
                        "ops": counts["ops"],
                        "ops_per_second": counts["ops"] / seconds,
                        "errors": sum(errors.values()),
                        "error_kinds": errors,
                    }
                )
    sdk = {(r["mode"], r["workers"], r["sharing"]): r for r in rows if r["label"] == SDK_SQLITE}
    for row in rows:
        base = sdk.get((row["mode"], row["workers"], row["sharing"]))
        usable = base is not None and base["ops_per_second"] > 0
        row["vs_sdk_sqlite"] = row["ops_per_second"] / base["ops_per_second"] if usable else None
    return rows
