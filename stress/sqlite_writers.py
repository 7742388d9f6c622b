"""How long SQLite writers wait for the write lock, and how evenly they share it.

    python -m stress.sqlite_writers --processes 4 --seconds 2 --rounds 3 --busy-loops 2

Each round runs every mode, one after the other, on a fresh SQLite file: ``--processes``
processes store and remove keys through ``SQLAlchemyTokenStorage`` (one write in four
is a read) for ``--seconds`` after a barrier. Modes:

- ``driver``: ``BEGIN IMMEDIATE`` waits in SQLite's own busy handler, as tokenstore-sql
  did before it polled for the lock itself (patched in, in the worker processes only);
- ``package``: the package as it is (:func:`tokenstore_sql.transactions.begin_sqlite_write`);
  ``package:5`` the same with its longest sleep between tries set to 5 ms.

Prints, per mode and round: operations per worker (min and max), the longest wait for the
write lock (time spent in ``BEGIN IMMEDIATE``), the longest write call and the longest
one less its wait (about how long a writer held the lock: a slow disk or a descheduled
holder shows here, not as unfairness), and errors.
``--busy-loops N`` runs N CPU-bound processes meanwhile, as a busy machine would (they
are ended, by their own PIDs, when the run ends). Nothing here asserts anything: figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tokenstore_sql import SQLAlchemyTokenStorage, TokenStorageData

MODES = ("driver", "package")
KEYS = ("shared-0", "shared-1", "shared-2")


def token_data(key: str, value: str) -> TokenStorageData:
    """Token data for ``key`` carrying ``value``."""
    return TokenStorageData(
        resource_server=key,
        identity_id="id",
        scope=f"scope:{key}",
        access_token=value,
        refresh_token=f"rt-{value}",
        expires_at_seconds=1_700_000_000,
        token_type="Bearer",
    )


def _timed_begin(mode: str, waits: list[float]) -> None:
    """Replace the worker's way to begin a SQLite write with a timed one of ``mode``."""
    from tokenstore_sql import direct, transactions

    mode, _, longest_ms = mode.partition(":")
    if longest_ms:
        transactions._BUSY_LONGEST_SLEEP = float(longest_ms) / 1000  # type: ignore[misc]
    original: Callable[[Any, Any], None] = direct._begin_sqlite_write

    def begin(connection: Any, cursor: Any) -> None:
        started = time.monotonic()
        try:
            if mode == "driver":
                cursor.execute("BEGIN IMMEDIATE")  # under PRAGMA busy_timeout alone
            else:
                original(connection, cursor)
        finally:
            waits.append(time.monotonic() - started)

    direct._begin_sqlite_write = begin


def worker(url: str, mode: str, index: int, seconds: float, barrier: Any, out: str) -> None:
    """Write for ``seconds``; leave ops, lock waits, slowest write and errors in ``out``."""
    waits: list[float] = []
    _timed_begin(mode, waits)
    rng = random.Random(index)
    ops = errors = 0
    slowest = longest_hold = 0.0
    with SQLAlchemyTokenStorage(url, namespace="writers") as storage:
        barrier.wait(60)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ops += 1
            roll, key = rng.random(), rng.choice(KEYS)
            started = time.monotonic()
            try:
                if roll < 0.5:
                    storage.store_token_data_by_resource_server(
                        {key: token_data(key, f"w{index}-{ops}")}
                    )
                elif roll < 0.75:
                    storage.remove_token_data(key)
                else:
                    storage.get_token_data(key)
                    continue
            except Exception:
                errors += 1
            took = time.monotonic() - started
            slowest = max(slowest, took)
            longest_hold = max(longest_hold, took - (waits[-1] if waits else 0.0))
    waits.sort()
    report = {
        "ops": ops,
        "errors": errors,
        "worst_wait": waits[-1] if waits else 0.0,
        "p99_wait": waits[int(len(waits) * 0.99)] if waits else 0.0,
        "slowest_write": slowest,
        "longest_hold": longest_hold,
    }
    Path(out).write_text(json.dumps(report))


def run_mode(mode: str, processes: int, seconds: float, directory: Path) -> list[dict[str, Any]]:
    """Run one mode on a fresh file; give each worker's report."""
    url = f"sqlite:///{directory / f'{mode}-{time.monotonic_ns()}.db'}"
    SQLAlchemyTokenStorage(url, namespace="writers").close()  # the schema, before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    outs = [str(directory / f"{mode}-{n}.json") for n in range(processes)]
    started = [
        context.Process(target=worker, args=(url, mode, n, seconds, barrier, outs[n]))
        for n in range(processes)
    ]
    for process in started:
        process.start()
    for process in started:
        process.join(timeout=seconds + 120)
        if process.is_alive():
            process.kill()
    return [json.loads(Path(out).read_text()) for out in outs]


@contextmanager
def busy_loops(count: int) -> Iterator[list[int]]:
    """Run ``count`` CPU-bound processes while the block runs; end them by PID."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield [loop.pid for loop in loops]
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def describe(mode: str, reports: list[dict[str, Any]]) -> str:
    """One line of figures for one mode's run."""
    ops = [r["ops"] for r in reports]
    worst = max(r["worst_wait"] for r in reports) * 1000
    p99 = max(r["p99_wait"] for r in reports) * 1000
    slowest = max(r["slowest_write"] for r in reports) * 1000
    hold = max(r["longest_hold"] for r in reports) * 1000
    errors = sum(r["errors"] for r in reports)
    return (
        f"{mode:8s} ops/worker {ops} (min {min(ops)}, max {max(ops)})  "
        f"lock wait: worst {worst:.0f} ms, p99 {p99:.1f} ms  "
        f"slowest write {slowest:.0f} ms (longest without the wait {hold:.0f} ms)  "
        f"errors {errors}"
    )


def main() -> int:
    """Parse the arguments, run the rounds, print one line per mode and round."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy-loops", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    args = parser.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as directory, busy_loops(args.busy_loops) as pids:
        if pids:
            print(f"busy loops: PIDs {pids}")
        for round_ in range(1, args.rounds + 1):
            for mode in modes:
                reports = run_mode(mode, args.processes, args.seconds, Path(directory))
                print(f"round {round_}  {describe(mode, reports)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
