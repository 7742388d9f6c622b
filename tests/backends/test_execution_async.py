"""The async execution seam: write transactions, whole-transaction retry, translated errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    URL,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.fake_auth import TRANSFER, FakeAuth, mocked
from tests.support.refreshing import client_of, seed
from tests.support.sdk import make_token_data
from tests.support.tracing import sent_statements
from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    RetryPolicy,
    SQLAlchemyTokenStorage,
    create_async_engine,
    execution_async,
)
from tokenstore_sql.async_refresh import async_refresh_once
from tokenstore_sql.errors import DatabaseOperationError

SECRET = "SECRET-value-never-in-a-message"
FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02, deadline=5)


@pytest.fixture
def probe(database_url: URL) -> Iterator[Table]:
    """A table of this test's own on the test's database, dropped afterwards."""
    table = Table(
        f"execution_probe_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("key", String(64), primary_key=True),
        Column("attempt", Integer),
    )
    engine = create_engine(database_url)
    table.create(engine)
    try:
        yield table
    finally:
        table.drop(engine)
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_async_write_transaction_on_sqlite_begins_immediate(
    database_url: URL, probe: Table
) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        engine = create_async_engine(database_url)
        try:
            with sent_statements(engine) as writes:
                await execution_async.run_transaction(
                    engine, "probe", _insert(probe, "a", 1), writes=True
                )
            with sent_statements(engine) as reads:
                await execution_async.run_transaction(engine, "probe", _count(probe), writes=False)
        finally:
            await engine.dispose()
        return [s.sql for s in writes], [s.sql for s in reads]

    writes, reads = asyncio.run(scenario())
    assert writes[0] == "BEGIN IMMEDIATE"
    assert reads[0] == "BEGIN"


def test_a_transient_failure_reruns_the_whole_transaction(database_url: URL, probe: Table) -> None:
    attempts: list[int] = []

    async def work(connection: AsyncConnection) -> int:
        attempts.append(len(attempts) + 1)
        seen = await _count(probe)(connection)
        await _insert(probe, f"attempt-{len(attempts)}", len(attempts))(connection)
        if len(attempts) == 1:  # after a write: it must not survive the retry
            raise OperationalError("INSERT", None, ConnectionResetError())
        return seen

    async def scenario() -> tuple[int, list[Any]]:
        engine = create_async_engine(database_url)
        try:
            seen = await execution_async.run_transaction(
                engine, "probe", work, writes=True, retry=FAST
            )
            async with execution_async.transaction(engine, writes=False) as connection:
                rows = (await connection.execute(select(probe.c.key))).scalars().all()
        finally:
            await engine.dispose()
        return seen, list(rows)

    seen, rows = asyncio.run(scenario())
    assert attempts == [1, 2]
    assert seen == 0  # the second attempt started from nothing
    assert rows == ["attempt-2"]


def test_a_lasting_failure_comes_out_translated_without_driver_text(
    database_url: URL, probe: Table
) -> None:
    async def scenario() -> BaseException:
        engine = create_async_engine(database_url)
        try:
            await execution_async.run_transaction(
                engine, "probe", _insert(probe, SECRET, 1), writes=True
            )
            with pytest.raises(DatabaseOperationError) as raised:
                await execution_async.run_transaction(
                    engine, "store the probe", _insert(probe, SECRET, 2), writes=True, retry=FAST
                )
        finally:
            await engine.dispose()
        return raised.value

    error = asyncio.run(scenario())
    assert "store the probe" in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.__cause__ is None
    assert error.__context__ is None


def test_the_sqlalchemy_path_serves_drivers_without_a_direct_one(
    database_url: URL, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution_async, "supports", lambda dialect: False)
    data = make_token_data("rs.example.org", access_token=SECRET)

    async def scenario() -> tuple[Any, bool, Any, int]:
        engine = create_async_engine(database_url)
        statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", _record(statements))
        try:
            storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
            await storage.store_token_data_by_resource_server({"rs.example.org": data})
            read = await storage.get_token_data("rs.example.org")
            removed = await storage.remove_token_data("rs.example.org")
            after = await storage.get_token_data("rs.example.org")
        finally:
            await engine.dispose()
        return read, removed, after, len(statements)

    read, removed, after, seen_by_sqlalchemy = asyncio.run(scenario())
    assert read is not None
    assert read.access_token == SECRET
    assert read.to_dict() == data.to_dict()  # every field in its place
    assert removed is True
    assert after is None
    assert seen_by_sqlalchemy >= 4  # the statements took SQLAlchemy's own execution


def test_async_refresh_statements_take_the_storages_driver_path(
    database_url: URL, namespace: str
) -> None:
    auth = FakeAuth()
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seeded = seed(storage, auth)

    async def scenario() -> tuple[str, list[str]]:
        engine = create_async_engine(database_url)
        statements: list[str] = []
        try:
            storage = AsyncSQLAlchemyTokenStorage(engine, namespace=namespace)
            await storage.check_schema()
            event.listen(engine.sync_engine, "before_cursor_execute", _record(statements))
            data = await async_refresh_once(storage, TRANSFER, client_of(auth))
        finally:
            await engine.dispose()
        return data.access_token, statements

    with mocked(auth):
        token, through_sqlalchemy = asyncio.run(scenario())
    assert auth.refresh_calls == 1
    assert token != seeded.access_token
    assert through_sqlalchemy == []  # on the driver's connection, as the storage's own


def _insert(table: Table, key: str, attempt: int) -> Any:
    async def work(connection: AsyncConnection) -> None:
        await connection.execute(insert(table).values(key=key, attempt=attempt))

    return work


def _count(table: Table) -> Any:
    async def work(connection: AsyncConnection) -> int:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar())

    return work


def _record(statements: list[str]) -> Any:
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    return before


def test_async_refresh_works_on_the_sqlalchemy_path_too(
    database_url: URL, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution_async, "supports", lambda dialect: False)
    auth = FakeAuth()
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seeded = seed(storage, auth)

    async def scenario() -> tuple[str, str | None]:
        async with AsyncSQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
            data = await async_refresh_once(storage, TRANSFER, client_of(auth))
            stored = await storage.get_token_data(TRANSFER)
        return data.access_token, None if stored is None else stored.access_token

    with mocked(auth):
        token, stored = asyncio.run(scenario())
    assert auth.refresh_calls == 1
    assert token != seeded.access_token
    assert stored == token
