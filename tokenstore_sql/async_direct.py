"""Async storage statements on the asyncio driver's own connection: the async hot path.

The async twin of :mod:`tokenstore_sql.direct`, with its rules: SQLAlchemy compiles
each statement once per dialect and its column types bind and read the values
(:class:`~tokenstore_sql.compiled.CompiledStatement`), the engine's pool lends the
connection, and a driver error is raised as SQLAlchemy raises it (a ``DBAPIError``, the
connection invalidated when it was lost), so the retry policy and the messages treat
it as before. Only the execution is the driver's own: psycopg's ``AsyncConnection``,
aiomysql's or aiosqlite's ``Connection``, awaited directly. Through SQLAlchemy's
``AsyncConnection`` the same statement also cost a connection object, a transaction,
events, result objects and a greenlet switch for each driver call: a PostgreSQL get
took 2.4 times the sync storage's. Per driver (autocommit, ``BEGIN IMMEDIATE``,
commits): :mod:`tokenstore_sql.async_direct_drivers`.

Only the pool's side runs in SQLAlchemy's greenlet, and only when a call takes its
connection from the pool or gives it back (the pool may await a free connection, or
open one): a call that is done hands its connection straight to the next call in line,
or keeps it for the next call a moment (:mod:`tokenstore_sql.async_calls`,
:mod:`tokenstore_sql.async_handoff`). A connection goes back as it was lent, and the
pool skips its reset ``ROLLBACK``. A task cancelled mid-call (a client that hung up)
leaves its connection in an unknown state: it is invalidated and the pool opens another
in its place, as SQLAlchemy's own execution does.

SQLAlchemy's statement events and ``echo`` do not see these statements; pool events
see their connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from operator import methodcaller
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from .async_calls import Call
from .async_direct_drivers import AsyncLent
from .async_handoff import Handoff
from .async_pools import handoff_for
from .compiled import CompiledStatement

T = TypeVar("T")


async def fetch_rows(
    engine: AsyncEngine,
    statement: CompiledStatement,
    values: Mapping[str, Any],
    handoff: Handoff | None,
) -> list[dict[str, Any]]:
    """Run a ``SELECT`` with ``values`` and return its rows.

    :param handoff: the engine's pool's handoff on this loop (see :func:`handoff_for`)
    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    sql = statement.sql
    fetch = methodcaller("fetch", sql, statement.parameters(values))
    fetched = await one_statement(engine, sql, fetch, handoff)
    return [statement.row(values) for values in fetched]


async def execute_write(
    engine: AsyncEngine, statement: CompiledStatement, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Run a write statement once for each of ``rows``, all or nothing; give the rowcount.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    # Bound before the transaction begins: on SQLite every other writer waits meanwhile.
    batch: list[Any] = [statement.parameters(row) for row in rows]
    write = methodcaller("write", statement.sql, batch)
    return await one_statement(engine, statement.sql, write, handoff_for(engine.sync_engine))


def one_statement(
    engine: AsyncEngine,
    sql: str,
    work: Callable[[AsyncLent], Awaitable[T]],
    handoff: Handoff | None,
) -> Awaitable[T]:
    """Await ``work`` on a pooled connection: one statement in a transaction of its own.

    A function that gives the call's coroutine, not a coroutine of its own: one frame
    fewer on every call.

    :param sql: the statement, as a failure names it
    :param handoff: the engine's pool's handoff on this loop (see :func:`handoff_for`)
    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    return Call(engine, sql, work, handoff).run()
