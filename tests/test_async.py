"""What only the async storage has to show: one loop, many tasks, no blocking, both APIs.

The behaviours both APIs share run on the async storage in the common suite (see
``make_api_storage`` in conftest.py); here are the guarantees specific to asyncio.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import URL, event, make_url

from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    Placement,
    SchemaOutOfDateError,
    SQLAlchemyTokenStorage,
    create_async_engine,
    create_engine,
    generate_key,
    schema,
)
from tokenstore_sql.async_engines import async_url

from .faults import kill_sessions
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

    async def main() -> tuple[list[Any], dict[str, Any]]:
        engine = create_async_engine(url)
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
        await storage.check_schema()
        rng = random.Random(7)

        async def task(i: int) -> Any:
            rs = rng.choice(resource_servers)
            if i % 10 == 0:
                data = make_token_data(rs, access_token=f"task-{i}")
                await storage.store_token_data_by_resource_server({rs: data})
                return None
            return await storage.get_token_data(rs)

        await storage.store_token_data_by_resource_server(
            {rs: make_token_data(rs) for rs in resource_servers}
        )
        results = await asyncio.gather(*(task(i) for i in range(TASKS)), return_exceptions=True)
        final = await storage.get_token_data_by_resource_server()
        await engine.dispose()
        return results, final

    results, final = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert sorted(final) == resource_servers
    reads = [r for i, r in enumerate(results) if i % 10]
    assert all(r is not None for r in reads)


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
    async def main() -> int:
        ticks = 0
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
        return ticks

    ticks = asyncio.run(main())
    assert ticks > 1  # the loop ran other work while the migrations ran
    engine = create_engine(empty_database_url)
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()
    engine.dispose()


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
        ("postgresql://h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg"),
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
