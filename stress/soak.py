"""Soak test: N processes run a mixed workload for a while; then check that nothing was lost.

    python -m stress.soak --url URL --processes 4 --seconds 60 --kill-every 2
    python -m stress.soak --topology galera --processes 6 --seconds 30

``--url`` is an admin URL: a scratch database is created there and dropped at the end
(for SQLite, any ``sqlite://`` URL means a new file in a temporary directory).
``--database-url`` uses a database as it is and leaves it in place; it must hold no
other data in the namespaces ``soak-*``.

``--topology`` starts private servers instead (the test suite's harnesses, each on ports
of its own in a temporary directory, stopped at the end): ``pgbouncer`` (PostgreSQL
behind PgBouncer in transaction pooling, 8 server connections), ``failover`` (a primary
and a synchronous standby behind a multi-host URL; the primary is stopped with
``-m immediate`` a third of the way through and the standby promoted) or ``galera`` (3
MariaDB Galera nodes; process ``n`` writes through node ``n % 3``, and at the end every
node must hold the same rows).

Each process stores one or three resource servers at once, removes, reads one and reads
a whole namespace, over a few namespaces and keys shared by every process. Every value
written is unique and every field is derived from it, and each process records when each
of its operations started and ended. With ``--kill-every``, an admin connection ends
every session on the database that often (PostgreSQL ``pg_terminate_backend``, MySQL
``KILL``); SQLite has no server sessions, so it runs without kills.

At the end every row is read back through the API and checked:

- lost: a key whose latest acknowledged store was not followed or overlapped by any
  remove is missing, or holds a value whose store ended before that latest one started;
- corrupted: a row (or a value read during the run) whose fields do not match exactly
  the value they were written with.

Prints operations done, caller-visible errors, sessions killed, lost and corrupted rows;
exits 1 if any row was lost or corrupted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import random
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, make_url

from tests.support.databases import scratch_database
from tests.support.faults import kill_sessions
from tests.support.private_galera import private_galera
from tests.support.private_pgbouncer import private_pgbouncer
from tests.support.private_servers import private_postgresql
from tests.support.private_standby import REPLICATION_SETTINGS, private_standby
from tokenstore_sql import RetryPolicy, SQLAlchemyTokenStorage
from tokenstore_sql._sdk import TokenStorageData

NAMESPACES = [f"soak-{n}" for n in range(4)]
KEYS = [f"rs-{n}.example.org" for n in range(6)]


def token_data(key: str, value: str) -> TokenStorageData:
    """Token data whose every field is derived from ``value``, so a read can be checked."""
    return TokenStorageData(
        resource_server=key,
        identity_id=f"id-{value}",
        scope=f"scope:{key} {value}",
        access_token=f"at-{value}",
        refresh_token=f"rt-{value}",
        expires_at_seconds=1_700_000_000 + sum(value.encode()),
        token_type="Bearer",
        extra={"value": value},
    )


def is_intact(key: str, data: TokenStorageData) -> bool:
    """Tell whether read token data is exactly what its value's writer stored."""
    value = str(data.access_token).removeprefix("at-")
    expected = token_data(key, value)
    fields = ("identity_id", "scope", "access_token", "refresh_token", "expires_at_seconds")
    return all(getattr(data, f) == getattr(expected, f) for f in fields) and (
        data.extra == expected.extra and data.resource_server == key
    )


TOPOLOGIES = ("pgbouncer", "failover", "galera")
# Rides over a primary's death and a standby's promotion (see the README's failover notes).
FAILOVER_RETRY = RetryPolicy(attempts=100, max_delay=1.0, deadline=30.0)


def worker(
    urls: list[str], index: int, seconds: float, barrier: Any, out: str, patient: bool
) -> None:
    """Run the workload through ``urls[index % len(urls)]``; one JSON line per operation."""
    rng = random.Random(secrets.randbits(64))
    url = urls[index % len(urls)]
    retry = FAILOVER_RETRY if patient else None
    storages = {ns: SQLAlchemyTokenStorage(url, namespace=ns, retry=retry) for ns in NAMESPACES}
    records: list[dict[str, Any]] = []
    barrier.wait(120)
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        seq += 1
        ns = rng.choice(NAMESPACES)
        storage = storages[ns]
        value = f"p{index}-{seq}"
        roll = rng.random()
        if roll < 0.3:
            kind, keys = "store", [rng.choice(KEYS)]
        elif roll < 0.45:
            kind, keys = "store", rng.sample(KEYS, 3)
        elif roll < 0.6:
            kind, keys = "remove", [rng.choice(KEYS)]
        elif roll < 0.8:
            kind, keys = "get", [rng.choice(KEYS)]
        else:
            kind, keys = "get-all", []
        record: dict[str, Any] = {"ns": ns, "kind": kind, "keys": keys, "value": value}
        record["start"] = time.monotonic()
        try:
            if kind == "store":
                storage.store_token_data_by_resource_server(
                    {key: token_data(key, value) for key in keys}
                )
            elif kind == "remove":
                storage.remove_token_data(keys[0])
            elif kind == "get":
                found = storage.get_token_data(keys[0])
                record["bad_reads"] = int(found is not None and not is_intact(keys[0], found))
            else:
                every = storage.get_token_data_by_resource_server()
                record["bad_reads"] = sum(not is_intact(k, d) for k, d in every.items())
            record["ok"] = True
        except Exception as exc:  # counted and shown: the point is that there are none
            record["ok"] = False
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["end"] = time.monotonic()
        records.append(record)
    for storage in storages.values():
        storage.close()
    Path(out).write_text("\n".join(json.dumps(r) for r in records))


def kill_loop(admin_url: URL, database: str, every: float, stop: threading.Event) -> list[int]:
    """Every ``every`` seconds, end every session on ``database``; return counts."""
    killed: list[int] = []

    def run() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):
                killed.append(kill_sessions(admin_url, database))

    threading.Thread(target=run, daemon=True).start()
    return killed


def verify(url: str, records: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Compare the final rows with the operations: (rows, lost, corrupted)."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for record in records:
        if record["kind"] in ("store", "remove"):
            for key in record["keys"]:
                by_key[(record["ns"], key)].append(record)
    lost = corrupted = rows = 0
    for ns in NAMESPACES:
        with SQLAlchemyTokenStorage(url, namespace=ns) as storage:
            try:
                final = storage.get_token_data_by_resource_server()
            except Exception:
                final = {}
                corrupted += 1
        for key in KEYS:
            ops = by_key[(ns, key)]
            data = final.get(key)
            rows += data is not None
            written = {r["value"]: r for r in ops if r["kind"] == "store"}
            if data is not None:
                value = str(data.access_token).removeprefix("at-")
                if value not in written or not is_intact(key, data):
                    corrupted += 1
                    continue
            acked = [r for r in ops if r["kind"] == "store" and r["ok"]]
            if not acked:
                continue
            latest = max(acked, key=lambda r: r["end"])
            removed_later = any(r["kind"] == "remove" and r["end"] > latest["start"] for r in ops)
            if removed_later:
                continue
            if data is None or written[value]["end"] < latest["start"]:
                lost += 1
    return rows, lost, corrupted


@contextlib.contextmanager
def scratch(args: argparse.Namespace) -> Any:
    """Yield (database URLs, admin URL or None, a mid-run disruption or None)."""
    if args.topology:
        with topology(args.topology) as made:
            yield made
        return
    if args.database_url:
        admin = make_url(args.admin_url) if args.admin_url else None
        yield [make_url(args.database_url)], admin, None
        return
    admin_url = make_url(args.url)
    if admin_url.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield [make_url(f"sqlite:///{folder}/soak.db")], None, None
        return
    with scratch_database(args.url, f"tokenstore_soak_{secrets.token_hex(4)}") as url:
        yield [url], admin_url, None


@contextlib.contextmanager
def topology(name: str) -> Any:
    """Start a topology of private servers; yield what :func:`scratch` yields."""
    if name == "pgbouncer":
        with (
            private_postgresql() as server,
            private_pgbouncer(server.port, pool_mode="transaction", pool_size=8) as bouncer,
        ):
            server.create_database("soak")
            yield [bouncer.url_for("soak")], None, None
    elif name == "failover":
        with (
            private_postgresql(**REPLICATION_SETTINGS) as primary,
            private_standby(primary, synchronous=True) as standby,
        ):
            primary.create_database("soak")
            hosts = [f"127.0.0.1:{primary.port}", f"127.0.0.1:{standby.port}"]
            url = URL.create(
                "postgresql+psycopg",
                username="postgres",
                database="soak",
                query={"host": hosts, "target_session_attrs": "read-write"},
            )

            def fail_over() -> None:
                primary.stop("immediate")
                standby.promote()
                print("failover: primary stopped (immediate), standby promoted")

            yield [url], None, fail_over
    else:
        with private_galera(3) as cluster:
            yield cluster.create_database("soak"), None, None


def nodes_agree(urls: list[URL]) -> bool:
    """Tell whether every database in ``urls`` holds the same token data."""
    seen = []
    for url in urls:
        rendered = url.render_as_string(hide_password=False)
        held = {}
        for ns in NAMESPACES:
            with SQLAlchemyTokenStorage(rendered, namespace=ns) as storage:
                held[ns] = {
                    key: data.to_dict()
                    for key, data in storage.get_token_data_by_resource_server().items()
                }
        seen.append(held)
    return all(held == seen[0] for held in seen)


def main() -> int:
    """Run the soak test as the command line asks; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="admin URL: a scratch database is made and dropped there")
    where.add_argument("--database-url", help="use this database as it is")
    where.add_argument("--topology", choices=TOPOLOGIES, help="private servers to start")
    parser.add_argument("--admin-url", help="with --database-url: where kills come from")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kill-every", type=float, default=0.0, help="0: no kills")
    args = parser.parse_args()

    with scratch(args) as (urls, admin_url, disrupt), tempfile.TemporaryDirectory() as folder:
        url = urls[0]
        shown = ", ".join(u.render_as_string(hide_password=True) for u in urls)
        plain = [u.render_as_string(hide_password=False) for u in urls]
        SQLAlchemyTokenStorage(plain[0], namespace=NAMESPACES[0]).close()  # schema first
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(args.processes + 1)  # the workers, and this process
        outs = [f"{folder}/worker-{n}.jsonl" for n in range(args.processes)]
        patient = disrupt is not None
        procs = [
            context.Process(target=worker, args=(plain, n, args.seconds, barrier, outs[n], patient))
            for n in range(args.processes)
        ]
        for proc in procs:
            proc.start()
        # Kills start once every worker has opened its storages, so that all of the run
        # is the steady mixed workload the figures describe.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(120)
        stop = threading.Event()
        killed: list[int] = []
        server = url.get_backend_name() != "sqlite"
        if args.kill_every > 0 and server and admin_url is not None:
            killed = kill_loop(admin_url, url.database or "", args.kill_every, stop)
        elif args.kill_every > 0:
            print("kills: none (SQLite has no server sessions to kill)")
        if disrupt is not None:
            stop.wait(args.seconds / 3)
            disrupt()
        for proc in procs:
            proc.join(timeout=args.seconds + 300)
        stop.set()
        crashed = [p.exitcode for p in procs if p.exitcode != 0]
        records = [
            json.loads(line)
            for out in outs
            if Path(out).exists()
            for line in Path(out).read_text().splitlines()
        ]
        rows, lost, corrupted = verify(plain[0], records)
        agree = nodes_agree(urls) if len(urls) > 1 else True

    kinds = collections.Counter(r["kind"] for r in records)
    errors = collections.Counter(r["error"] for r in records if not r["ok"])
    bad_reads = sum(r.get("bad_reads", 0) for r in records)
    longest = max((r["end"] - r["start"] for r in records), default=0.0)
    print(f"database: {shown} ({args.processes} processes, {args.seconds:g} s)")
    print(f"operations: {len(records)} ({len(records) / args.seconds:.0f}/s) {dict(kinds)}")
    print(f"sessions killed: {sum(killed)} in {len(killed)} rounds")
    print(f"caller-visible errors: {sum(errors.values())} {dict(errors)}")
    print(f"longest call: {longest:.2f} s")
    print(f"crashed processes: {len(crashed)}")
    print(f"rows at the end: {rows}; lost: {lost}; corrupted: {corrupted + bad_reads}")
    if len(urls) > 1:
        print(f"nodes hold identical rows: {'yes' if agree else 'NO'}")
    return 1 if lost or corrupted or bad_reads or crashed or not agree else 0


if __name__ == "__main__":
    raise SystemExit(main())
