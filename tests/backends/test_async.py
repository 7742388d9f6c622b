"""What only the async storage has to show: one loop, many tasks, no blocking, both APIs.

The behaviours both APIs share run on the async storage in the common suite (see
``make_api_storage`` in conftest.py); here are the guarantees specific to asyncio.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import random
import stat
import subprocess
import sys
import time
import weakref
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.ext.asyncio import create_async_engine as sqlalchemy_async_engine

from tests.support.databases import SERVER_PARAMS
from tests.support.faults import TcpProxy, kill_session, kill_sessions, session_id
from tests.support.sdk import make_token_data
from tests.support.tracing import Sent, before_statements, sent_statements
from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    Placement,
    RetryPolicy,
    SchemaOutOfDateError,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    async_handoff,
    async_storage,
    create_async_engine,
    create_engine,
    generate_key,
    schema,
)
from tokenstore_sql.async_engines import async_url
from tokenstore_sql.async_handoff import KEEP_SECONDS
from tokenstore_sql.async_pools import handoff_for, settle

KEY_A = generate_key()
TASKS = 300


@pytest.fixture
def url(database_url: URL) -> URL:
    return database_url


def test_each_api_reads_what_the_other_wrote(url: URL, namespace: str) -> None:
    placement = Placement("both_apis_")
    options: dict[str, Any] = {"keys": [KEY_A], "placement": placement}
    written_sync = make_token_data("sync.example.org", access_token="from-sync")
    written_async = make_token_data("async.example.org", access_token="from-async")

    with SQLAlchemyTokenStorage(url, namespace=namespace, **options) as sync:
        sync.store_token_data_by_resource_server({"sync.example.org": written_sync})

    async def main() -> dict[str, Any]:
        async with AsyncSQLAlchemyTokenStorage(url, namespace=namespace, **options) as storage:
            await storage.store_token_data_by_resource_server({"async.example.org": written_async})
            return await storage.get_token_data_by_resource_server()

    read_by_async = asyncio.run(main())
    with SQLAlchemyTokenStorage(url, namespace=namespace, **options) as sync:
        read_by_sync = sync.get_token_data_by_resource_server()

    expected = {d.resource_server: d.to_dict() for d in (written_sync, written_async)}
    assert {rs: d.to_dict() for rs, d in read_by_async.items()} == expected
    assert {rs: d.to_dict() for rs, d in read_by_sync.items()} == expected


def test_hundreds_of_tasks_on_one_engine_make_no_errors(url: URL, namespace: str) -> None:
    resource_servers = [f"rs{i}.example.org" for i in range(8)]
    rng = random.Random(7)
    plan = [(i, rng.choice(resource_servers)) for i in range(TASKS)]  # every 10th writes
    written: dict[str, set[str]] = {rs: set() for rs in resource_servers}
    for i, rs in plan[::10]:
        written[rs].add(f"task-{i}")

    async def main() -> tuple[list[Any], dict[str, Any], int]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.check_schema()

        async def task(i: int, rs: str) -> Any:
            if i % 10 == 0:
                data = make_token_data(rs, access_token=f"task-{i}")
                await storage.store_token_data_by_resource_server({rs: data})
                return None
            return await storage.get_token_data(rs)

        await storage.store_token_data_by_resource_server(
            {rs: make_token_data(rs) for rs in resource_servers}
        )
        results = await asyncio.gather(*(task(i, rs) for i, rs in plan), return_exceptions=True)
        final = await storage.get_token_data_by_resource_server()
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return results, final, checked_out

    results, final, checked_out = asyncio.run(main())
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert checked_out == 0
    for (i, rs), read in zip(plan, results, strict=True):
        if i % 10:  # a whole row of this resource server: the first value or a task's
            assert read.resource_server == rs
            assert read.access_token in {f"access-{rs}-SECRET", *written[rs]}
    assert sorted(final) == resource_servers
    for rs, data in final.items():
        assert data.access_token in (written[rs] or {f"access-{rs}-SECRET"})


def test_concurrent_upserts_of_one_key_leave_one_whole_value(url: URL, namespace: str) -> None:
    async def main() -> Any:
        async with AsyncSQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            await storage.check_schema()
            writes = [
                storage.store_token_data_by_resource_server(
                    {
                        "rs": make_token_data(
                            "rs", access_token=f"token-{i}", refresh_token=f"refresh-{i}"
                        )
                    }
                )
                for i in range(100)
            ]
            await asyncio.gather(*writes)
            return await storage.get_token_data("rs")

    final = asyncio.run(main())
    assert final is not None
    suffix = final.access_token.removeprefix("token-")
    assert final.refresh_token == f"refresh-{suffix}"  # one write's values, never a mix


@pytest.mark.sqlite
def test_tasks_sharing_an_in_memory_storage_take_turns() -> None:
    async def work(storage: AsyncSQLAlchemyTokenStorage, task: int) -> None:
        for i in range(10):
            token = f"task-{task}-{i}"
            await storage.store_token_data_by_resource_server(
                {f"rs-{task}": make_token_data(f"rs-{task}", access_token=token)}
            )
            stored = await storage.get_token_data(f"rs-{task}")
            assert stored is not None
            assert stored.access_token == token

    async def main() -> Any:
        async with AsyncSQLAlchemyTokenStorage("sqlite://", namespace="memory") as storage:
            await asyncio.gather(*(work(storage, task) for task in range(8)))
            return await storage.get_token_data_by_resource_server()

    assert sorted(asyncio.run(main())) == sorted(f"rs-{task}" for task in range(8))


def test_constructing_a_storage_does_no_io(url: URL) -> None:
    checkouts: list[object] = []

    async def main() -> list[Sent]:
        engine = create_async_engine(url)
        await AsyncSQLAlchemyTokenStorage(engine, namespace="first").check_schema()
        event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
        with sent_statements(engine) as sent:
            for i in range(100):
                AsyncSQLAlchemyTokenStorage(engine, namespace=f"user-{i}")
        await engine.dispose()
        return sent

    assert asyncio.run(main()) == []
    assert checkouts == []  # not even a connection taken


def test_an_empty_database_gets_the_schema_at_head_without_blocking_the_loop(
    empty_database_url: URL,
) -> None:
    ticks = 0
    ticks_at_statements: list[int] = []  # the ticker's count as each statement is sent

    def record(*args: Any) -> None:
        ticks_at_statements.append(ticks)

    async def main() -> None:
        nonlocal ticks
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        running = asyncio.create_task(ticker())
        async with AsyncSQLAlchemyTokenStorage(empty_database_url) as storage:
            await storage.check_schema()
        done.set()
        await running

    # Every engine's statements, whichever engine the check might use.
    event.listen(Engine, "before_cursor_execute", record)
    try:
        asyncio.run(main())
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    # The migrations sent many statements, and the loop ran other work while they ran:
    # the ticker moved on between most of them (blocking calls would freeze its count).
    assert len(ticks_at_statements) > 5
    pairs = list(itertools.pairwise(ticks_at_statements))
    assert sum(after > before for before, after in pairs) > len(pairs) / 2
    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()
    engine.dispose()


def test_concurrent_first_calls_check_the_schema_once(
    empty_database_url: URL, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> None:
        checks.append(args[1])
        schema.ensure_schema_on(*args, **kwargs)

    monkeypatch.setattr(async_storage, "ensure_schema_on", counted)

    async def main() -> list[Any]:
        engine = create_async_engine(empty_database_url)
        storages = [AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) for _ in range(50)]
        found = await asyncio.gather(*(s.get_token_data("rs") for s in storages))
        await engine.dispose()
        return found

    assert asyncio.run(main()) == [None] * 50
    assert checks == [Placement()]


def test_engines_opening_an_empty_database_at_once_all_succeed(empty_database_url: URL) -> None:
    # Separate engines, as separate processes would have: the database lock decides.
    async def open_and_store(n: int) -> None:
        async with AsyncSQLAlchemyTokenStorage(empty_database_url, namespace=f"n{n}") as storage:
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})

    async def main() -> None:
        await asyncio.gather(*(open_and_store(n) for n in range(6)))

    asyncio.run(main())
    with SQLAlchemyTokenStorage(empty_database_url) as storage:
        assert [f"n{n}" for n in range(6)] == [n for n in storage.iter_namespaces()]


def test_tasks_cancelled_mid_call_leave_the_engine_clean(url: URL, namespace: str) -> None:
    # Request handlers are cancelled when their client hangs up, at any await.
    async def main() -> list[Any]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        for delay in (0.0, 0.002, 0.01, 0.05):
            calls = [
                storage.get_token_data("rs")
                if i % 3
                else storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
                for i in range(60)
            ]
            tasks = [asyncio.create_task(call) for call in calls]
            await asyncio.sleep(delay)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        handoff = handoff_for(engine.sync_engine)
        assert handoff is not None
        assert handoff.held == 0  # every slot given up, none lost to a cancellation
        found = await asyncio.gather(*(storage.get_token_data("rs") for _ in range(30)))
        await engine.dispose()
        return found

    assert all(data is not None for data in asyncio.run(main()))


def test_calls_waiting_for_a_connection_get_it_straight_from_the_call_before(
    url: URL, namespace: str
) -> None:
    # 40 stores at once on a pool of 2: a call that is done hands its connection to the
    # next in line instead of giving it back to the pool, and the pool gets all back.
    async def main() -> tuple[list[Sent], int, int]:
        engine = create_async_engine(url, pool_size=2, max_overflow=0)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        pool = engine.sync_engine.pool
        await settle(pool)  # the connection kept for a next call, before the hooks come
        checkouts: list[object] = []
        event.listen(pool, "checkout", lambda *args: checkouts.append(args))
        with sent_statements(engine) as sent:
            await asyncio.gather(
                *(
                    storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
                    for _ in range(40)
                )
            )
            await settle(pool)  # the connection kept for a next call, before the hooks go
        checked_out = pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return sent, len(checkouts), checked_out

    sent, checkouts, checked_out = asyncio.run(main())
    assert [s.verb for s in sent if s.verb not in ("BEGIN", "COMMIT")] == ["INSERT"] * 40
    assert checkouts <= 4
    assert checked_out == 0


def test_gets_that_wait_for_a_connection_go_together_in_one_statement(
    url: URL, namespace: str
) -> None:
    # 60 gets at once on a pool of 2, over four namespaces, a key asked for many times and
    # a key that is absent: fewer statements than gets, and each get its own row.
    spaces = [f"{namespace}-{n}" for n in range(4)]

    async def main() -> tuple[list[Any], list[Sent], int]:
        engine = create_async_engine(url, pool_size=2, max_overflow=0)
        storages = [AsyncSQLAlchemyTokenStorage(engine, namespace=name) for name in spaces]
        for storage in storages:
            await storage.store_token_data_by_resource_server(
                {rs: make_token_data(rs, access_token=f"{storage.namespace}/{rs}") for rs in "ab"}
            )
        with sent_statements(engine) as sent:
            found = await asyncio.gather(
                *(storages[i % 4].get_token_data("ab?"[i % 3]) for i in range(60))
            )
            await settle(engine.sync_engine.pool)
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return found, sent, checked_out

    found, sent, checked_out = asyncio.run(main())
    for i, data in enumerate(found):
        rs = "ab?"[i % 3]
        if rs == "?":
            assert data is None
        else:
            assert data is not None
            assert (data.resource_server, data.access_token) == (rs, f"{spaces[i % 4]}/{rs}")
    assert {s.verb for s in sent} == {"SELECT"}
    assert len(sent) < 30  # 60 gets
    assert checked_out == 0


def test_a_get_cancelled_in_a_batch_leaves_the_others_their_rows(url: URL, namespace: str) -> None:
    # The leader of each batch, and some of the gets that wait with it, are cancelled
    # while they wait: the other gets still get their rows, and no slot is lost.
    async def main() -> tuple[list[Any], int]:
        engine = create_async_engine(url, pool_size=1, max_overflow=0)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        results: list[Any] = []
        for _ in range(5):
            blocker = asyncio.create_task(
                storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            )
            await asyncio.sleep(0)  # the store holds the one connection
            tasks = [asyncio.create_task(storage.get_token_data("rs")) for _ in range(12)]
            await asyncio.sleep(0)  # every get has joined the batch
            for task in tasks[::3]:  # the leader among them
                task.cancel()
            await blocker
            results += await asyncio.gather(*tasks, return_exceptions=True)
        handoff = handoff_for(engine.sync_engine)
        await settle(engine.sync_engine.pool)
        held = handoff.held if handoff is not None else -1
        await engine.dispose()
        return results, held

    results, held = asyncio.run(main())
    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    served = [r for r in results if not isinstance(r, BaseException)]
    assert len(cancelled) == 20
    assert len(served) == 40
    assert all(data.access_token == "access-rs-SECRET" for data in served)
    assert held == 0


def test_a_connection_handed_on_goes_back_to_the_pool_within_the_handoff_time(
    url: URL, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # So the pool still recycles its connections and replaces stale ones, however busy.
    monkeypatch.setattr(async_handoff, "HANDOFF_SECONDS", 0.0)

    async def main() -> tuple[int, int]:
        engine = create_async_engine(url, pool_size=2, max_overflow=0)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        checkouts: list[object] = []
        event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
        await asyncio.gather(
            *(
                storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
                for _ in range(20)
            )
        )
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return len(checkouts), checked_out

    assert asyncio.run(main()) == (20, 0)


_LOCK_THE_ROW = {
    "sqlite": ["BEGIN IMMEDIATE"],
    "postgresql": ["SELECT 1 FROM tokenstore_sql_tokens WHERE namespace = '{ns}' FOR UPDATE"],
    "mysql": ["BEGIN", "SELECT 1 FROM tokenstore_sql_tokens WHERE namespace = '{ns}' FOR UPDATE"],
}


def test_a_call_waiting_in_line_gives_up_after_the_pools_timeout(url: URL, namespace: str) -> None:
    # A pool of one, its connection held by a store that waits for a lock: the get behind
    # it waits no longer than the pool's timeout, as it would inside the pool.
    blocker_engine = create_engine(url)
    blocker = blocker_engine.raw_connection()

    async def main() -> tuple[float, Any, int]:
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.5)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        cursor = blocker.cursor()
        for sql in _LOCK_THE_ROW[url.get_backend_name()]:
            cursor.execute(sql.format(ns=namespace))
        cursor.close()
        store = asyncio.create_task(
            storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        )
        await asyncio.sleep(0.2)  # the store holds the one connection, waiting for the lock
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            await storage.get_token_data("rs")
        waited = time.monotonic() - started
        await asyncio.to_thread(blocker.commit)
        await store
        found = await storage.get_token_data("rs")
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return waited, found, checked_out

    try:
        waited, found, checked_out = asyncio.run(main())
    finally:
        blocker.close()
        blocker_engine.dispose()
    assert 0.4 < waited < 5.0
    assert found is not None
    assert checked_out == 0


def test_an_outdated_schema_is_a_clear_error(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url)
    schema.migrate(engine, "0001")
    engine.dispose()

    async def main() -> None:
        async with AsyncSQLAlchemyTokenStorage(empty_database_url) as storage:
            await storage.get_token_data("rs")

    with pytest.raises(SchemaOutOfDateError, match="0001"):
        asyncio.run(main())


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_killed_sessions_are_retried(
    backend: str, server_url: str, url: URL, namespace: str
) -> None:
    async def main() -> Any:
        async with AsyncSQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            # Fill the pool, then end every session on the server.
            await asyncio.gather(*(storage.get_token_data("rs") for _ in range(5)))
            assert await asyncio.to_thread(kill_sessions, server_url, url.database or "") >= 1
            results = await asyncio.gather(*(storage.get_token_data("rs") for _ in range(20)))
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            return results

    assert all(r is not None for r in asyncio.run(main()))


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_connection_killed_while_kept_for_the_next_call_is_replaced_by_a_retry(
    backend: str, server_url: str, url: URL, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kept connection waits for its task's next call (here as long as the task goes on):
    # the server ending its session meanwhile costs that call a retry, not an error.
    monkeypatch.setattr(async_handoff, "KEEP_SECONDS", 60.0)

    async def main() -> tuple[Any, int, int, int]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        pool = engine.sync_engine.pool
        checkouts: list[object] = []
        event.listen(pool, "checkout", lambda *args: checkouts.append(args))
        invalidated: list[object] = []
        event.listen(pool, "invalidate", lambda *args: invalidated.append(args))
        try:
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            assert await storage.get_token_data("rs") is not None  # its connection kept
            assert pool.checkedout() == 1  # type: ignore[attr-defined]
            before = len(checkouts)
            killed = await asyncio.to_thread(kill_sessions, server_url, url.database or "")
            read = await storage.get_token_data("rs")  # on the kept one first: lost, retried
            await settle(pool)
            assert len(invalidated) == 1  # the kept one, found lost by the call that took it
            return read, killed, len(checkouts) - before, pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    read, killed, checkouts_after_the_kill, checked_out = asyncio.run(main())
    assert killed >= 1
    assert read is not None
    assert read.resource_server == "rs"
    assert checkouts_after_the_kill == 1  # its replacement, for the retry
    assert checked_out == 0


@pytest.mark.parametrize("backend", SERVER_PARAMS, indirect=True)
def test_a_session_killed_mid_write_is_retried_and_applied_whole(
    backend: str, server_url: str, empty_database_url: URL, namespace: str
) -> None:
    killed: list[int] = []

    def kill_under_the_insert(driver_connection: Any, statement: str) -> None:
        if not killed and statement.lstrip().upper().startswith("INSERT"):
            killed.append(session_id(driver_connection))
            kill_session(server_url, killed[0])

    async def main() -> dict[str, Any]:
        engine = create_async_engine(empty_database_url)
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
            with before_statements(engine, kill_under_the_insert):
                await storage.store_token_data_by_resource_server(
                    {rs: make_token_data(rs, access_token=f"new-{rs}") for rs in ("a", "b", "c")}
                )
            stored = await storage.get_token_data_by_resource_server()
        await engine.dispose()
        return stored

    stored = asyncio.run(main())
    assert len(killed) == 1
    assert {rs: data.access_token for rs, data in stored.items()} == {
        rs: f"new-{rs}" for rs in ("a", "b", "c")
    }


@pytest.mark.parametrize("backend", SERVER_PARAMS, indirect=True)
def test_a_short_outage_is_ridden_out_and_a_lasting_one_reported(
    backend: str, database_url: URL, namespace: str
) -> None:
    default_port = 5432 if backend == "postgresql" else 3306
    proxy = TcpProxy(database_url.host or "127.0.0.1", database_url.port or default_port)
    url = proxy.url_for(database_url)

    async def main() -> None:
        retry = RetryPolicy(attempts=50, deadline=3.0)
        async with AsyncSQLAlchemyTokenStorage(url, namespace=namespace, retry=retry) as storage:
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            proxy.stop()  # every connection cut, new ones refused, for a second
            asyncio.get_running_loop().call_later(1.0, proxy.start)
            started = time.monotonic()
            assert await storage.get_token_data("rs") is not None
            assert time.monotonic() - started > 0.5
            proxy.stop()  # and now for good
            with pytest.raises(StorageUnavailableError) as caught:
                await storage.get_token_data("rs")
            assert time.monotonic() - started < 8.0
            assert str(url.database) in str(caught.value)
            assert "SECRET" not in str(caught.value)

    try:
        asyncio.run(main())
    finally:
        proxy.stop()


def test_async_engines_have_the_sync_engines_defaults(url: URL, namespace: str) -> None:
    with pytest.raises(ValueError, match="fetched row"):
        create_async_engine(url, echo="debug")
    connect_params: dict[str, Any] = {}

    async def main() -> dict[str, Any]:
        engine = create_async_engine(url)
        sync_engine = engine.sync_engine
        event.listen(sync_engine, "do_connect", lambda *a: connect_params.update(a[3]))
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
        pragmas = {}
        if engine.dialect.name == "sqlite":
            async with engine.connect() as connection:
                for name in ("journal_mode", "synchronous", "busy_timeout"):
                    pragmas[name] = (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
        await engine.dispose()
        assert sync_engine.hide_parameters
        return pragmas

    pragmas = asyncio.run(main())
    if url.get_backend_name() == "sqlite":
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 30_000}
        assert stat.S_IMODE(os.stat(url.database or "").st_mode) == 0o600
    else:
        assert connect_params["connect_timeout"] == 10


# What the driver sends for a store of three resource servers, a get, a get-all and a
# remove: one statement per call, as from the sync storage (see tests/backends/test_storage.py).
# SQLite writes add BEGIN IMMEDIATE and COMMIT (a busy lock is waited for in SQLite's
# busy handler, on aiosqlite's thread, not polled for), reads nothing; on PostgreSQL every
# call runs in autocommit mode (psycopg pipelines a store's rows as one implicit
# transaction); MySQL connections are in autocommit mode (aiomysql makes a store's rows
# one statement) and no COMMIT or ROLLBACK is sent.
_SENT_PER_CALL = {
    "sqlite": [
        *["BEGIN", *["INSERT"] * 3, "COMMIT"],
        *["SELECT", "SELECT"],
        *["BEGIN", "DELETE", "COMMIT"],
    ],
    "postgresql": ["INSERT", "SELECT", "SELECT", "DELETE"],
    "mysql": ["INSERT", "SELECT", "SELECT", "DELETE"],
}


def test_each_call_sends_one_statement(url: URL, namespace: str) -> None:
    data = {rs: make_token_data(rs) for rs in ("a", "b", "c")}

    async def main() -> tuple[list[Sent], list[Sent], int]:
        engine = create_async_engine(url)
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
            with sent_statements(engine) as calls:
                await storage.store_token_data_by_resource_server(data)
                await storage.get_token_data("a")
                await storage.get_token_data_by_resource_server()
                await storage.remove_token_data("a")
            # The engine's other transactions are still real ones, on the same connection.
            with sent_statements(engine) as other:
                async with engine.begin() as connection:
                    await connection.exec_driver_sql("SELECT 1")
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return calls, other, checked_out

    calls, other, checked_out = asyncio.run(main())
    backend = url.get_backend_name()
    assert [s.verb for s in calls] == _SENT_PER_CALL[backend]
    work = [s for s in calls if s.verb not in ("BEGIN", "COMMIT")]
    assert all("tokenstore_sql_tokens" in s.sql for s in work)
    assert calls[0].sql == ("BEGIN IMMEDIATE" if backend == "sqlite" else calls[0].sql)
    if backend != "sqlite":
        assert all(s.autocommit for s in calls)
    if backend == "postgresql":  # psycopg sends BEGIN itself, not by a cursor
        assert [(s.verb, s.autocommit) for s in other] == [("SELECT", False)]
    elif backend == "mysql":  # and the pool's reset, which aiomysql always sends
        assert [s.verb for s in other] == ["BEGIN", "SELECT", "COMMIT", "ROLLBACK"]
    else:
        assert [s.verb for s in other] == ["BEGIN", "SELECT", "COMMIT"]
    assert checked_out == 0


# On an engine the caller made (``sqlalchemy.ext.asyncio.create_async_engine``), lending
# connections in transaction mode: MySQL ends each call's transaction itself (a read's
# too: it would pin the snapshot the next read sees).
_SENT_ON_A_CALLERS_ENGINE = {
    **_SENT_PER_CALL,
    "mysql": ["INSERT", "COMMIT", "SELECT", "ROLLBACK", "SELECT", "ROLLBACK", "DELETE", "COMMIT"],
}


def test_a_callers_own_async_engine_gets_its_connections_back_as_lent(
    url: URL, namespace: str
) -> None:
    data = {rs: make_token_data(rs) for rs in ("a", "b", "c")}

    async def main() -> tuple[list[Sent], Any, Any, Any]:
        engine = sqlalchemy_async_engine(async_url(url))
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
            with sent_statements(engine) as sent:
                await storage.store_token_data_by_resource_server(data)
                one = await storage.get_token_data("a")
                every = await storage.get_token_data_by_resource_server()
                await storage.remove_token_data("a")
            async with engine.connect() as connection:  # the connection the calls used
                level = await connection.get_isolation_level()
        await settle(engine.sync_engine.pool)  # the connection kept for a next call
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return sent, (one, sorted(every)), level, checked_out

    sent, found, level, checked_out = asyncio.run(main())
    assert found[0] is not None
    assert found[1] == ["a", "b", "c"]
    assert [s.verb for s in sent] == _SENT_ON_A_CALLERS_ENGINE[url.get_backend_name()]
    assert level != "AUTOCOMMIT"
    assert checked_out == 0


def test_repr_hides_the_password_and_names_the_table() -> None:
    url = make_url("postgresql+psycopg://app:hunter2@db.example.org/tokens")
    storage = AsyncSQLAlchemyTokenStorage(url, namespace="user-1")
    shown = repr(storage)
    assert "hunter2" not in shown
    assert "'user-1'" in shown
    assert "tokenstore_sql_tokens" in shown


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///tokens.db", "sqlite+aiosqlite"),
        ("sqlite+pysqlite:///tokens.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///tokens.db", "sqlite+aiosqlite"),
        ("postgresql://h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg"),
        ("mysql://h/db", "mysql+aiomysql"),
        ("mysql+pymysql://h/db", "mysql+aiomysql"),
        ("mariadb+pymysql://h/db", "mariadb+aiomysql"),
    ],
)
def test_sync_urls_map_to_async_drivers(given: str, expected: str) -> None:
    assert async_url(given).drivername == expected


def test_the_sync_api_works_without_the_asyncio_extension(tmp_path: Any) -> None:
    # greenlet missing, as without the async extra: the sync storage must not need it.
    script = (
        "import sys; sys.modules['greenlet'] = None\n"
        "import tokenstore_sql\n"
        f"s = tokenstore_sql.SQLAlchemyTokenStorage('sqlite:///{tmp_path / 't.db'}')\n"
        "print(s.get_token_data('rs'))\n"
        "try:\n"
        "    tokenstore_sql.AsyncSQLAlchemyTokenStorage\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "None"
    assert "pip install 'tokenstore-sql[async]'" in lines[1]


def test_disposing_of_an_engine_right_after_a_call_closes_the_connection_kept_for_the_next(
    url: URL, namespace: str
) -> None:
    # A caller's engine, disposed of in the same step as its last call (no loop turn in
    # between): the connection kept for a next call is closed by the dispose itself.
    async def main() -> tuple[int, list[object], list[object]]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        pool = engine.sync_engine.pool
        opened: list[object] = []
        closed: list[object] = []
        event.listen(pool, "connect", lambda *args: opened.append(args[0]))
        event.listen(pool, "close", lambda *args: closed.append(args[0]))
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        await storage.get_token_data("rs")
        kept = pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return kept, opened, list(closed)  # before the loop turns again

    kept, opened, closed = asyncio.run(main())
    assert kept == 1
    assert opened
    assert sorted(map(id, closed)) == sorted(map(id, opened))


def test_calls_one_after_another_share_one_connection_that_goes_back_when_none_follows(
    url: URL, namespace: str
) -> None:
    async def main() -> tuple[int, int, int]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        pool = engine.sync_engine.pool
        await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        await settle(pool)
        checkouts: list[object] = []
        event.listen(pool, "checkout", lambda *args: checkouts.append(args))
        for _ in range(10):  # the loop turns during each; the kept timer may fire then
            assert await storage.get_token_data("rs") is not None
        kept = pool.checkedout()  # type: ignore[attr-defined]
        await asyncio.sleep(KEEP_SECONDS * 20)  # no call follows; this task goes on
        after = pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        return len(checkouts), kept, after

    checkouts, kept, after = asyncio.run(main())
    assert checkouts == 1  # from the pool once, then kept from each call for the next
    assert kept == 1
    assert after == 0


def test_an_engine_serves_one_event_loop_after_another_from_a_one_connection_pool(
    url: URL, namespace: str
) -> None:
    if url.get_backend_name() == "mysql":
        pytest.skip("aiomysql's connections belong to the event loop that opened them")
    # asyncio.run() per call, on one engine (a sync wrapper's way): the connection kept
    # after each loop's last call is back in the pool before the next loop needs it, and
    # the loops that ended are not kept alive by the engine.
    engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=2)
    storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def call(i: int) -> object:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        if i == 0:
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
        return await storage.get_token_data("rs")

    try:
        found = [asyncio.run(call(i)) for i in range(4)]
        checked_out = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        gc.collect()
        # The last may live on in its driver (aiosqlite's thread keeps its last future).
        alive = [i for i, loop in enumerate(loops[:-1]) if loop() is not None]
    finally:
        asyncio.run(engine.dispose())
    assert all(data is not None for data in found)
    assert checked_out == 0
    assert alive == []


def test_a_give_back_runs_at_once_until_it_waits_then_in_a_task_that_can_be_cancelled() -> None:
    # A give-back runs in the loop's callback as far as it can without waiting; from its
    # first wait a task finishes it, and cancelling that task reaches the coroutine, at
    # its first wait as at any later one.
    async def give_back(steps: list[str], first: asyncio.Future[None]) -> None:
        steps.append("started")
        try:
            await first
            steps.append("resumed")
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            steps.append("cancelled")
            await asyncio.sleep(0)  # it may still wait while it cleans up
            steps.append("cleaned up")
            raise

    async def main(open_first: bool) -> list[str]:
        steps: list[str] = []
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = async_handoff._run_now_or_soon(give_back(steps, first))
        assert steps == ["started"]  # no loop turn needed for that
        assert task is not None
        if open_first:
            first.set_result(None)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def quick() -> None:
            steps.append("quick")

        assert async_handoff._run_now_or_soon(quick()) is None  # done at once, no task
        return steps

    assert asyncio.run(main(open_first=False)) == ["started", "cancelled", "cleaned up", "quick"]
    assert asyncio.run(main(open_first=True)) == [
        "started",
        "resumed",
        "cancelled",
        "cleaned up",
        "quick",
    ]
