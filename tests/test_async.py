"""What only the async storage has to show: one loop, many tasks, no blocking, both APIs.

The behaviours both APIs share run on the async storage in the common suite (see
``make_api_storage`` in conftest.py); here are the guarantees specific to asyncio.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import stat
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import URL, Engine, event, make_url

from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    Placement,
    RetryPolicy,
    SchemaOutOfDateError,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
    async_storage,
    create_async_engine,
    create_engine,
    generate_key,
    schema,
)
from tokenstore_sql.async_engines import async_url

from .conftest import SERVER_PARAMS
from .faults import TcpProxy, kill_session, kill_sessions, session_id
from .sdk import make_token_data

KEY_A = generate_key()
TASKS = 300


@pytest.fixture
def url(database_url: URL) -> URL:
    return database_url


def test_each_api_reads_what_the_other_wrote(url: URL, namespace: str) -> None:
    placement = Placement("both_apis_")
    options: dict[str, Any] = {"encryption_keys": [KEY_A], "placement": placement}
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
    sent: list[str] = []

    async def main() -> None:
        engine = create_async_engine(url)
        await AsyncSQLAlchemyTokenStorage(engine, namespace="first").check_schema()
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
        for i in range(100):
            AsyncSQLAlchemyTokenStorage(engine, namespace=f"user-{i}")
        await engine.dispose()

    asyncio.run(main())
    assert sent == []


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
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        found = await asyncio.gather(*(storage.get_token_data("rs") for _ in range(30)))
        await engine.dispose()
        return found

    assert all(data is not None for data in asyncio.run(main()))


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


@pytest.mark.parametrize("backend", SERVER_PARAMS, indirect=True)
def test_a_session_killed_mid_write_is_retried_and_applied_whole(
    backend: str, server_url: str, empty_database_url: URL, namespace: str
) -> None:
    killed: list[int] = []

    def kill_under_the_insert(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not killed and statement.upper().startswith("INSERT"):
            driver_connection = connection.connection.dbapi_connection.driver_connection
            killed.append(session_id(driver_connection))
            kill_session(server_url, killed[0])

    async def main() -> dict[str, Any]:
        engine = create_async_engine(empty_database_url)
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
            event.listen(engine.sync_engine, "before_cursor_execute", kill_under_the_insert)
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
            assert url.database in str(caught.value)
            assert "SECRET" not in str(caught.value)

    try:
        asyncio.run(main())
    finally:
        proxy.stop()


def test_async_engines_have_the_sync_engines_defaults(url: URL, namespace: str) -> None:
    with pytest.raises(ValueError, match="fetched row"):
        create_async_engine(url, echo="debug")
    statements: list[str] = []
    connect_params: dict[str, Any] = {}

    async def main() -> tuple[list[str], dict[str, Any]]:
        engine = create_async_engine(url)
        sync_engine = engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        event.listen(sync_engine, "do_connect", lambda *a: connect_params.update(a[3]))
        async with AsyncSQLAlchemyTokenStorage(engine, namespace=namespace) as storage:
            await storage.check_schema()
            statements.clear()
            await storage.store_token_data_by_resource_server({"rs": make_token_data("rs")})
            await storage.get_token_data("rs")
            sent = list(statements)
        pragmas = {}
        if engine.dialect.name == "sqlite":
            async with engine.connect() as connection:
                for name in ("journal_mode", "synchronous", "busy_timeout"):
                    pragmas[name] = (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
        await engine.dispose()
        assert sync_engine.hide_parameters
        return sent, pragmas

    statements, pragmas = asyncio.run(main())
    # One statement per call; SQLite writes take the write lock up front.
    if url.get_backend_name() == "sqlite":
        assert statements[0] == "BEGIN IMMEDIATE"
        assert len(statements) == 3
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 30_000}
        assert stat.S_IMODE(os.stat(url.database or "").st_mode) == 0o600
    else:
        assert len(statements) == 2
        assert connect_params["connect_timeout"] == 10


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
