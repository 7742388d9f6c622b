"""Refresh storm: every user's access token expired at once, and many workers need them.

N users each hold an expired transfer token. P worker processes (spawned) of T threads
each go through every user, each process in an order of its own, and call
``tokenstore_sql.refresh.refresh_once`` for that user's namespace (``user:<uuid>``), so for each
user P processes race. A stand-in for Globus Auth (:mod:`.token_endpoint`) answers each
refresh after a delay, rotates refresh tokens and answers ``invalid_grant`` to a spent
one. Reported, per database: Auth calls (should be N), ``invalid_grant`` answers and
errors (should be 0), the pooled connections the caller held while its Auth call was in
flight (should be 0; the whole pool's count at that moment is shown too, which includes
other threads working on other users), the latency of the callers that waited for
another's refresh (or found it done) and of those that refreshed, and the wall time from
the workers' start to the last one's end. Afterwards every stored token is read back: a
user whose stored refresh token Auth no longer accepts is counted as logged out.

Run alone: ``python -m benchmarks.refresh_storm [--smoke] [--users N] [--processes P]``;
``python -m benchmarks.run`` includes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any, Final

from sqlalchemy import Engine, select

import tokenstore_sql
from tokenstore_sql import TokenStorageData, TokenStore, user_namespace
from tokenstore_sql.models import TokenRow

from .data import HIT, row_values
from .databases import BACKENDS, Database, available, insert_rows, open_database
from .storm_worker import storm_worker
from .subjects import pool_options
from .token_endpoint import AUTH_URL_VARIABLE, TokenEndpoint, serving

LABEL: Final = "refresh storm"
USERS: Final = 1000
PROCESSES: Final = 8
SMOKE_USERS: Final = 50
SMOKE_PROCESSES: Final = 2
THREADS: Final = 4
AUTH_DELAY_SECONDS: Final = 0.05
RESOURCE_SERVER: Final = HIT
SCOPE: Final = f"urn:globus:auth:scope:{RESOURCE_SERVER}:all"
CLIENT_ID: Final = "7c2a3f0e-5d4b-4e7a-9a51-0c4d6f2e8b13"
# How long the workers may take, start-up included, before the run counts them as lost.
TIMEOUT_SECONDS: Final = 600.0
_READ_BATCH: Final = 500


def seed(database: Database, endpoint: TokenEndpoint, users: int) -> list[str]:
    """Store ``users`` users' tokens, issued by ``endpoint`` and expired an hour ago."""
    expired = int(time.time()) - 3600
    namespaces, rows = [], []
    for _ in range(users):
        identity = str(uuid.uuid4())
        namespace = user_namespace(identity)
        tokens = endpoint.issue()
        data = TokenStorageData(
            resource_server=RESOURCE_SERVER,
            identity_id=identity,
            scope=tokens["scope"],
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            expires_at_seconds=expired,
            token_type="Bearer",
        )
        namespaces.append(namespace)
        rows.append(row_values(namespace, data, database.backend))
    insert_rows(database, rows)
    return namespaces


@contextlib.contextmanager
def _auth_at(url: str) -> Iterator[None]:
    """Point the environment the workers are spawned with at the stand-in Auth."""
    before = os.environ.get(AUTH_URL_VARIABLE)
    os.environ[AUTH_URL_VARIABLE] = url
    try:
        yield
    finally:
        if before is None:
            del os.environ[AUTH_URL_VARIABLE]
        else:
            os.environ[AUTH_URL_VARIABLE] = before


class Storm:
    """A stand-in Auth and worker processes, ready to run a storm on each database in turn.

    The workers are spawned once (a spawned interpreter takes seconds to start and to
    end) and run each database's storm when :meth:`run` hands it to them.
    """

    def __init__(
        self,
        processes: int,
        threads: int = THREADS,
        auth_delay: float = AUTH_DELAY_SECONDS,
    ) -> None:
        self.processes, self.threads = processes, threads
        self.endpoint = TokenEndpoint(RESOURCE_SERVER, SCOPE, auth_delay)
        self._stack = contextlib.ExitStack()
        self._workers: list[Any] = []
        self._tasks: list[Any] = []

    def __enter__(self) -> Storm:
        context = multiprocessing.get_context("spawn")
        # Referenced until the end: a spawned child that unpickles them after the parent
        # dropped them finds their semaphores gone.
        self._barrier = context.Barrier(self.processes)
        self._results = context.Queue()
        try:
            auth_url = self._stack.enter_context(serving(self.endpoint))
            settings = {"auth_url": auth_url, "client_id": CLIENT_ID, "threads": self.threads}
            with _auth_at(auth_url):  # set before the child imports globus-sdk
                for index in range(self.processes):
                    tasks = context.Queue()
                    worker = context.Process(
                        target=storm_worker,
                        args=(index, settings, self._barrier, tasks, self._results),
                        daemon=True,
                    )
                    worker.start()
                    self._workers.append(worker)
                    self._tasks.append(tasks)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for tasks, worker in zip(self._tasks, self._workers, strict=True):
            if worker.is_alive():
                tasks.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
        self._stack.close()

    def _collect(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Wait for a report from every worker; give the reports and the failures."""
        reports: list[dict[str, Any]] = []
        failures: list[str] = []
        waiting = set(range(self.processes))
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while waiting and time.monotonic() < deadline:
            try:
                report = self._results.get(timeout=1.0)
            except Empty:
                if not any(self._workers[index].is_alive() for index in waiting):
                    break
                continue
            waiting.discard(report["index"])
            if "fatal" in report:
                failures.append(report["fatal"])
            else:
                reports.append(report)
        failures += ["WorkerLost"] * len(waiting)
        return reports, failures

    def run(self, database: Database, users: int) -> dict[str, Any]:
        """Seed ``users`` expired tokens in ``database``, run the storm, give its result row."""
        endpoint = self.endpoint
        engine = tokenstore_sql.create_engine(database.url)
        try:
            TokenStore(engine).check_schema()  # creates the schema where it is missing
            namespaces = seed(database, endpoint, users)
            before = endpoint.counts()
            task = {
                "url": database.url.render_as_string(hide_password=False),
                "engine_options": pool_options(database.backend),
                "resource_server": RESOURCE_SERVER,
                "namespaces": namespaces,
            }
            for index, tasks in enumerate(self._tasks):
                tasks.put({**task, "seed": index})
            reports, failures = self._collect()
            after = endpoint.counts()
            found = read_back(engine, namespaces, endpoint)
        finally:
            engine.dispose()
        auth = {name: after[name] - before[name] for name in after}
        return storm_row(database.backend, users, self, auth, reports, failures, found)


def read_back(engine: Engine, namespaces: list[str], endpoint: TokenEndpoint) -> dict[str, int]:
    """Read every user's row: who is missing, logged out, still expired, still leased."""
    table = TokenRow.__table__
    found: dict[str, Any] = {}
    with engine.connect() as connection:
        for start in range(0, len(namespaces), _READ_BATCH):
            chunk = namespaces[start : start + _READ_BATCH]
            query = select(
                table.c.namespace,
                table.c.refresh_token,
                table.c.expires_at_seconds,
                table.c.refresh_lease_owner,
            ).where(table.c.namespace.in_(chunk), table.c.resource_server == RESOURCE_SERVER)
            found.update((row.namespace, row) for row in connection.execute(query))
    now = time.time()
    rows = list(found.values())
    return {
        "missing": len(namespaces) - len(rows),
        "logged_out": sum(not endpoint.is_live(row.refresh_token) for row in rows),
        "expired_after": sum(row.expires_at_seconds <= now for row in rows),
        "leases_left": sum(row.refresh_lease_owner is not None for row in rows),
    }


def percentile(values: list[float], fraction: float) -> float | None:
    """Give the nearest-rank percentile of ``values`` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def storm_row(
    backend: str,
    users: int,
    storm: Storm,
    auth: dict[str, int],
    reports: list[dict[str, Any]],
    failures: list[str],
    found: dict[str, int],
) -> dict[str, Any]:
    """Build the result row of a storm on ``backend`` from its workers' reports.

    ``auth``: what the stand-in Auth counted during it; ``failures``: workers that failed
    (each counts as an error); ``found``: what :func:`read_back` found afterwards.
    """
    refreshed = [s for report in reports for s in report["refreshed"]]
    waited = [s for report in reports for s in report["waited"]]
    held = [n for report in reports for n in report["held_by_caller"]]
    pool = [n for report in reports for n in report["pool_checked_out"]]
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    errors.update(f"worker: {failure.split(':', 1)[0]}" for failure in failures)
    wall = max(r["ended"] for r in reports) - min(r["began"] for r in reports) if reports else None
    return {
        "label": LABEL,
        "backend": backend,
        "users": users,
        "processes": storm.processes,
        "threads": storm.threads,
        "auth_delay_ms": storm.endpoint.delay * 1000,
        "calls": users * storm.processes,
        "auth_calls": auth["refresh_calls"],
        "invalid_grant": auth["invalid_grants"],
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "worker_failures": failures,
        "refreshed_calls": len(refreshed),
        "waited_calls": len(waited),
        "held_during_auth_max": max(held, default=0),
        "held_during_auth_sum": sum(held),
        "auth_calls_seen": len(held),
        "pool_checked_out_during_auth_max": max(pool, default=0),
        "waited_p50_ms": _ms(percentile(waited, 0.50)),
        "waited_p99_ms": _ms(percentile(waited, 0.99)),
        "refreshed_p50_ms": _ms(percentile(refreshed, 0.50)),
        "refreshed_p99_ms": _ms(percentile(refreshed, 0.99)),
        "wall_seconds": None if wall is None else round(wall, 3),
        **found,
    }


def run_all(
    backends: list[str],
    workdir: Path,
    users: int,
    processes: int,
    threads: int = THREADS,
    auth_delay: float = AUTH_DELAY_SECONDS,
) -> list[dict[str, Any]]:
    """Run the storm on each backend in turn, each in a scratch database (dropped after)."""
    rows: list[dict[str, Any]] = []
    if not backends:
        return rows
    with Storm(processes, threads, auth_delay) as storm:
        for backend in backends:
            with open_database(backend, workdir, "storm") as database:
                row = storm.run(database, users)
            print(
                f"refresh storm on {backend}: {row['auth_calls']:,} Auth calls for "
                f"{users:,} users, {row['invalid_grant']} invalid_grant, {row['errors']} errors, "
                f"{row['wall_seconds']} s"
            )
            rows.append(row)
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line of a run of the storm alone."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refresh_storm", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="few users, two processes")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--users", type=int, help=f"users whose tokens expired ({USERS})")
    parser.add_argument("--processes", type=int, help=f"worker processes ({PROCESSES})")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per process")
    parser.add_argument(
        "--auth-delay-ms", type=float, default=AUTH_DELAY_SECONDS * 1000, help="Auth's delay"
    )
    parser.add_argument("--output", type=Path, help="directory for refresh_storm.{json,md}")
    args = parser.parse_args(argv)
    if args.users is None:
        args.users = SMOKE_USERS if args.smoke else USERS
    if args.processes is None:
        args.processes = SMOKE_PROCESSES if args.smoke else PROCESSES
    args.backends = [part.strip() for part in args.backends.split(",") if part.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the storm alone, print its table and targets, and write them if asked."""
    from . import machine, report, targets

    args = parse(argv)
    chosen, skipped = available(args.backends)
    for backend, reason in skipped.items():
        print(f"skipping {backend}: {reason}")
    with tempfile.TemporaryDirectory(prefix="tokenstore-storm-") as workdir:
        rows = run_all(
            chosen,
            Path(workdir),
            args.users,
            args.processes,
            args.threads,
            args.auth_delay_ms / 1000,
        )
    results = {
        "meta": {**machine.describe(), "smoke": args.smoke, "skipped": skipped},
        "refresh_storm": rows,
        "targets": targets.storm_checks(rows),
    }
    text = "\n".join(
        [
            *report.storm_table(rows),
            "",
            *report.targets_table(results["targets"]),
        ]
    )
    print(text)
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        as_json = args.output / "refresh_storm.json"
        as_json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        (args.output / "refresh_storm.md").write_text(text + "\n", encoding="utf-8")
        print(f"wrote {as_json}")


if __name__ == "__main__":
    main()
