"""The one way tokenstore-sql runs statements on its tables (async API).

The async twin of :mod:`tokenstore_sql.execution`, with the same decisions:

- :func:`transaction` opens a real transaction on an async engine or connection; with
  ``writes=True`` it is a write transaction (``BEGIN IMMEDIATE`` on SQLite, so the
  write lock is awaited up front, within the busy timeout).
- :func:`run_transaction` awaits a function in such a transaction and, when it fails in
  a way that leaves nothing applied, awaits it again as a whole under a
  :class:`~tokenstore_sql.RetryPolicy`, which also turns database errors into
  tokenstore-sql's own.
- :class:`AsyncExecution` runs the storages' single statements (``read_rows``,
  ``read_row``, ``write_rows``), each in a transaction of its own, retried the same
  way: on the asyncio driver's connection where :mod:`tokenstore_sql.async_direct`
  knows the driver (the storages' hot path), else
  through SQLAlchemy's ``AsyncConnection`` with the single-statement options of
  :func:`~tokenstore_sql.transactions.single_statement_options` (asyncpg, asyncmy).
  Gets of one row each that would wait for a connection go together in one statement
  (:mod:`tokenstore_sql.async_gets`).

The async storage and the async refresh use nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import async_direct, async_gets
from .async_direct_drivers import supports
from .async_pools import handoff_for
from .compiled import CompiledStatement, compiled_for
from .retries import RetryPolicy
from .statements import TokenStatements, key_params
from .transactions import WRITE_TRANSACTION_OPTION, single_statement_options

T = TypeVar("T")


@asynccontextmanager
async def transaction(
    bind: AsyncEngine | AsyncConnection, *, writes: bool, single_statement: bool = False
) -> AsyncIterator[AsyncConnection]:
    """Yield a connection in a transaction that commits at the end of the block.

    :param bind: an async engine (a pooled connection is taken for the block) or an
        async connection with no transaction open
    :param writes: the transaction will write: take SQLite's write lock up front
    :param single_statement: the block runs one statement: spare the ``BEGIN`` and
        ``COMMIT`` round trips where the database allows it
    """
    if isinstance(bind, AsyncEngine):
        async with (
            bind.connect() as connection,
            transaction(connection, writes=writes, single_statement=single_statement) as inner,
        ):
            yield inner
        return
    if single_statement:
        await bind.execution_options(**single_statement_options(bind.dialect, writes=writes))
    elif writes:
        await bind.execution_options(**{WRITE_TRANSACTION_OPTION: True})
    async with bind.begin():
        yield bind


async def run_transaction(
    engine: AsyncEngine,
    operation: str,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    writes: bool,
    single_statement: bool = False,
    retry: RetryPolicy | None = None,
) -> T:
    """Await ``work(connection)`` in one transaction, retried as a whole when that is safe.

    :param operation: what the transaction does, for messages ("store token data")
    :raises StorageUnavailableError: transient failures outlasted the policy
    :raises DatabaseOperationError: the database refused for a lasting reason
    """

    async def attempt() -> T:
        async with transaction(
            engine, writes=writes, single_statement=single_statement
        ) as connection:
            return await work(connection)

    return await (retry or RetryPolicy()).run_async(operation, engine, attempt)


class AsyncExecution:
    """The async storages' single statements on one engine, each retried under one policy.

    Each runs in a transaction of its own, on the asyncio driver's connection where
    :mod:`tokenstore_sql.async_direct` knows the driver, else through SQLAlchemy.
    """

    __slots__ = ("dialect", "direct", "engine", "retry")

    def __init__(self, engine: AsyncEngine, retry: RetryPolicy) -> None:
        self.engine, self.retry = engine, retry
        self.dialect = engine.sync_engine.dialect
        self.direct = supports(self.dialect)  # on the asyncio driver's own connection

    async def read_rows(
        self, operation: str, statement: Executable, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Fetch the rows of one ``SELECT``.

        :param operation: what the statement does, for messages ("read token data")
        """
        engine = self.engine
        if self.direct:
            compiled = compiled_for(statement, self.dialect)
            return await self.retry.run_async(
                operation, engine, _fetch_rows_on_this_loop, engine, compiled, params
            )

        async def read(connection: AsyncConnection) -> list[dict[str, Any]]:
            result = await connection.execute(statement, params)
            return [dict(row) for row in result.mappings()]

        return await run_transaction(
            engine, operation, read, writes=False, single_statement=True, retry=self.retry
        )

    def read_row(
        self, operation: str, statements: TokenStatements, namespace: str, resource_server: str
    ) -> Awaitable[list[Any] | None]:
        """Fetch the values of one key's row, in ``codec.READ_COLUMNS`` order (None if absent).

        Gets that would wait go together in one statement. Gives what to await rather
        than being a coroutine itself: every get comes this way.
        """
        engine = self.engine
        if self.direct:
            fetch_one = async_gets.fetch_one
            return self.retry.run_async(
                operation, engine, fetch_one, engine, statements, namespace, resource_server
            )
        return self._first_row(
            operation, statements.select_one, key_params(namespace, resource_server)
        )

    async def _first_row(
        self, operation: str, statement: Executable, params: Mapping[str, Any]
    ) -> list[Any] | None:
        rows = await self.read_rows(operation, statement, params)
        return list(rows[0].values()) if rows else None  # in the statement's column order

    async def write_rows(
        self, operation: str, statement: Executable, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Run one write statement for ``rows``, all or nothing; give the rowcount."""
        engine = self.engine
        if self.direct:
            compiled = compiled_for(statement, self.dialect)
            return await self.retry.run_async(
                operation, engine, async_direct.execute_write, engine, compiled, rows
            )

        async def write(connection: AsyncConnection) -> int:
            return int((await connection.execute(statement, list(rows))).rowcount)

        return await run_transaction(
            engine, operation, write, writes=True, single_statement=True, retry=self.retry
        )


def _fetch_rows_on_this_loop(
    engine: AsyncEngine, statement: CompiledStatement, params: Mapping[str, Any]
) -> Awaitable[list[dict[str, Any]]]:
    # The handoff belongs to the loop of the attempt: looked up for each.
    return async_direct.fetch_rows(engine, statement, params, handoff_for(engine.sync_engine))
