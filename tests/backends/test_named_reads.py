"""Reads prepared by name on PostgreSQL, with both APIs: what the server session holds.

Each test has a table of its own (a placement) and an engine of one connection, so what
``pg_prepared_statements`` lists on that connection is what the storage left there.
Through PgBouncer: tests/topology/test_topology_pgbouncer.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import URL, text
from sqlalchemy.dialects.postgresql import psycopg

from tests.support.databases import reachable_admin_url, temporary_engine
from tests.support.sdk import make_token_data
from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    Placement,
    SQLAlchemyTokenStorage,
    TokenStorageData,
    create_async_engine,
)
from tokenstore_sql.async_pools import settle
from tokenstore_sql.compiled import CompiledStatement
from tokenstore_sql.models import tokens_table
from tokenstore_sql.named_reads import MOST_NAMES, PREPARED_INFO, named_read
from tokenstore_sql.statements import TokenStatements

pytestmark = pytest.mark.postgresql

ONE_CONNECTION: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
KEY = "transfer.example.org"

# What each test does to the session between two gets, on the storage's own connection.
MEDDLING = {
    # The session lost its statements (PgBouncer moved the client, DISCARD ALL): 26000.
    "deallocated": "DEALLOCATE ALL",
    # The session has the statement, the connection does not know it (another client
    # prepared it there): 42P05.
    "forgotten": None,
}


@pytest.fixture
def url(servers: Any) -> URL:
    reachable_admin_url(servers, "postgresql")
    return servers.scratch_url("postgresql")  # type: ignore[no-any-return]


@pytest.fixture
def placement() -> Placement:
    return Placement(f"nr_{uuid.uuid4().hex[:12]}_")


def _names_of(rows: Any) -> dict[str, str]:
    return {name: statement for name, statement in rows if name.startswith("tokenstore_sql_")}


def _expected_names(placement: Placement) -> set[str]:
    statements = TokenStatements(tokens_table(placement))
    names = set()
    for statement in (statements.select_one, statements.select_namespace):
        read = named_read(CompiledStatement.compile(statement, psycopg.dialect()).sql)
        assert read is not None
        names.add(read.name.decode())
    return names


Reads = tuple[list[dict[str, Any] | None], dict[str, str]]  # what was read, names prepared


def _sync_gets(
    url: URL, placement: Placement, meddling: str | None, written: TokenStorageData
) -> Reads:
    """Store, get, meddle, get and list on one connection; give the reads and the names."""
    with temporary_engine(url, **ONE_CONNECTION) as engine:
        storage = SQLAlchemyTokenStorage(engine, namespace="user", placement=placement)
        storage.store_token_data_by_resource_server({KEY: written})
        first = storage.get_token_data(KEY)
        if meddling is not None:
            with engine.connect() as connection:
                if MEDDLING[meddling] is None:
                    connection.connection.info[PREPARED_INFO].clear()
                else:
                    connection.exec_driver_sql(MEDDLING[meddling])  # type: ignore[arg-type]
                connection.rollback()
        second = storage.get_token_data(KEY)
        listed = storage.get_token_data_by_resource_server()
        missing = storage.get_token_data("absent.example.org")
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT name, statement FROM pg_prepared_statements")
            names = _names_of(rows.all())
    reads = (first, second, listed[KEY], missing)
    return [None if r is None else r.to_dict() for r in reads], names


async def _async_gets(
    url: URL, placement: Placement, meddling: str | None, written: TokenStorageData
) -> Reads:
    engine = create_async_engine(url, **ONE_CONNECTION)
    try:
        storage = AsyncSQLAlchemyTokenStorage(engine, namespace="user", placement=placement)
        await storage.store_token_data_by_resource_server({KEY: written})
        first = await storage.get_token_data(KEY)
        if meddling is not None:
            await settle(engine.sync_engine.pool)
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                if MEDDLING[meddling] is None:
                    raw.info[PREPARED_INFO].clear()
                else:
                    await connection.exec_driver_sql(MEDDLING[meddling])  # type: ignore[arg-type]
                await connection.rollback()
        second = await storage.get_token_data(KEY)
        listed = await storage.get_token_data_by_resource_server()
        missing = await storage.get_token_data("absent.example.org")
        await settle(engine.sync_engine.pool)
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql(
                "SELECT name, statement FROM pg_prepared_statements"
            )
            names = _names_of(rows.all())
    finally:
        await engine.dispose()
    reads = (first, second, listed[KEY], missing)
    return [None if r is None else r.to_dict() for r in reads], names


def _gets(
    api: str, url: URL, placement: Placement, meddling: str | None, written: TokenStorageData
) -> Reads:
    if api == "sync":
        return _sync_gets(url, placement, meddling, written)
    return asyncio.run(_async_gets(url, placement, meddling, written))


@pytest.mark.parametrize("meddling", [None, *MEDDLING])
def test_reads_run_by_name_and_mend_a_session_that_lost_or_already_had_them(
    api: str, url: URL, placement: Placement, meddling: str | None
) -> None:
    written = make_token_data(KEY)
    reads, found = _gets(api, url, placement, meddling, written)
    assert reads == [written.to_dict()] * 3 + [None]
    # The get and the listing, each prepared under its own name; nothing else, and no
    # token in any prepared statement (only keys go into the EXECUTE's text).
    assert set(found) == _expected_names(placement)
    for name, statement in found.items():
        assert statement.startswith(f"PREPARE {name} AS SELECT ")
        assert placement.tokens_table in statement
        assert written.access_token not in statement


def test_a_read_whose_columns_changed_type_is_prepared_again(
    url: URL, placement: Placement
) -> None:
    # A migration that alters a column's type makes the prepared plan's result type
    # stale (0A000): the statement is deallocated and prepared again, in one message.
    written = make_token_data(KEY, token_type="Bearer")
    with temporary_engine(url, **ONE_CONNECTION) as engine:
        storage = SQLAlchemyTokenStorage(engine, namespace="user", placement=placement)
        storage.store_token_data_by_resource_server({KEY: written})
        assert storage.get_token_data(KEY) is not None
        with engine.begin() as connection:
            connection.execute(
                text(f"ALTER TABLE {placement.tokens_table} ALTER COLUMN token_type TYPE text")
            )
        again = storage.get_token_data(KEY)
    assert again is not None
    assert again.to_dict() == written.to_dict()


def test_two_tables_read_on_one_session_give_their_own_rows(url: URL) -> None:
    placements = [Placement(f"nr_{uuid.uuid4().hex[:12]}_") for _ in range(2)]
    with temporary_engine(url, **ONE_CONNECTION) as engine:
        storages = [
            SQLAlchemyTokenStorage(engine, namespace="user", placement=placement)
            for placement in placements
        ]
        for number, storage in enumerate(storages):
            storage.store_token_data_by_resource_server(
                {KEY: make_token_data(KEY, access_token=f"table-{number}")}
            )
        for _ in range(3):
            seen = [storage.get_token_data(KEY) for storage in storages]
            assert [data.access_token for data in seen if data] == ["table-0", "table-1"]


def test_a_connection_holding_its_most_names_reads_the_rest_unprepared(
    url: URL, placement: Placement
) -> None:
    written = make_token_data(KEY)
    with temporary_engine(url, **ONE_CONNECTION) as engine:
        storage = SQLAlchemyTokenStorage(engine, namespace="user", placement=placement)
        storage.store_token_data_by_resource_server({KEY: written})
        with engine.connect() as connection:
            others = {f"other_{n}".encode() for n in range(MOST_NAMES)}
            connection.connection.info[PREPARED_INFO] = set(others)
        got = storage.get_token_data(KEY)
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT name, statement FROM pg_prepared_statements")
            names = _names_of(rows.all())
            remembered = connection.connection.info[PREPARED_INFO]
    assert got is not None
    assert got.to_dict() == written.to_dict()
    assert names == {}
    assert remembered == others
