"""The package's PostgreSQL engine beside one that lets psycopg prepare: one get, in rounds.

tokenstore-sql's engines tell psycopg never to prepare a statement
(``prepare_threshold=None``): behind PgBouncer's transaction pooling a statement
psycopg prepared on one server connection runs on another, and fails or returns another
statement's rows. The storages' reads are prepared instead under names made from their
text (:mod:`tokenstore_sql.named_reads`), which pooling cannot mix up. psycopg's default
prepares a statement on a connection after its fifth use; this shows what, if anything,
the package's engine still gives up against that.

This module times ``get_token_data`` (a primary-key ``SELECT`` that finds its row)
on the package's engine and on one with psycopg's default
(:data:`.subjects.PSYCOPG_PREPARE_THRESHOLD`), on the same database: ``calls`` calls
each, split into ``rounds`` rounds, each round timing a slice of both in a shuffled
order, so noise on the machine falls on both alike. The figure per engine is the median
over rounds of µs per call; the ratio is the package's over the prepared one.

The benchmark run (:mod:`.run`) measures it on the storages of its latency table;
alone, it makes a scratch database on ``TOKENSTORE_SQL_BENCH_POSTGRESQL_URL`` and drops
it afterwards::

    .venv/bin/python -m benchmarks.prepared [--calls 5000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from .databases import available, open_database
from .subjects import PREPARED, PSYCOPG_PREPARE_THRESHOLD, Subject, tokenstore, tokenstore_prepared

CALLS: Final = 5000
ROUNDS: Final = 50
SMOKE_CALLS: Final = 500
SMOKE_ROUNDS: Final = 10


def measure_get(
    default: Subject, prepared: Subject, calls: int = CALLS, rounds: int = ROUNDS, seed: int = 0
) -> dict[str, Any]:
    """Time ``calls`` gets on each subject's storage, in ``rounds`` interleaved rounds.

    :param default: tokenstore-sql on PostgreSQL with the package's engine.
    :param prepared: the same with psycopg preparing statements.
    :returns: Median µs per call of each, their ratio, and how they were taken.
    """
    per_round = max(1, calls // rounds)
    runs = {"default": default.ops["get_hit"].run, "prepared": prepared.ops["get_hit"].run}
    for run in runs.values():  # past psycopg's threshold, and a warm pool
        for _ in range(PSYCOPG_PREPARE_THRESHOLD * 4):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            run = runs[name]
            started = time.perf_counter()
            for _ in range(per_round):
                run()
            samples[name].append((time.perf_counter() - started) / per_round * 1e6)
    default_us = statistics.median(samples["default"])
    prepared_us = statistics.median(samples["prepared"])
    return {
        "operation": "get_hit",
        "calls": per_round * rounds,
        "rounds": rounds,
        "default_us": default_us,
        "prepared_us": prepared_us,
        "default_over_prepared": default_us / prepared_us,
        "default_p90_round_us": statistics.quantiles(samples["default"], n=10)[-1]
        if rounds > 1
        else default_us,
        "prepared_p90_round_us": statistics.quantiles(samples["prepared"], n=10)[-1]
        if rounds > 1
        else prepared_us,
        "prepare_threshold": PSYCOPG_PREPARE_THRESHOLD,
    }


def describe(row: dict[str, Any]) -> str:
    """One line for a :func:`measure_get` result."""
    return (
        f"get (hit), {row['calls']:,} calls each in {row['rounds']} interleaved rounds: "
        f"package default (prepare_threshold=None) {row['default_us']:.0f} µs, "
        f"prepared (prepare_threshold={row['prepare_threshold']}) "
        f"{row['prepared_us']:.0f} µs per call (medians over rounds); "
        f"default / prepared = {row['default_over_prepared']:.2f}x"
    )


def main(argv: list[str] | None = None) -> None:
    """Measure on a scratch database of the PostgreSQL server in the environment."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prepared", description=__doc__)
    parser.add_argument("--calls", type=int, default=CALLS, help="gets per engine (5000)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (50)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    chosen, skipped = available(["postgresql"])
    if not chosen:
        parser.exit(1, f"cannot measure: {skipped['postgresql']}\n")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tokenstore-bench-")))
        database = stack.enter_context(open_database("postgresql", workdir, "prepared"))
        default = tokenstore(database)
        stack.callback(default.close)
        prepared = tokenstore_prepared(database)
        stack.callback(prepared.close)
        row = measure_get(default, prepared, args.calls, args.rounds)
    print(f"{PREPARED}: {describe(row)}")
    if args.json is not None:
        args.json.write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
