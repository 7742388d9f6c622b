"""One async storage call on each asyncio driver's connection: run it, end it, give it back.

The async twin of :mod:`tokenstore_sql.direct_drivers`, for the drivers tokenstore-sql's
async engines use; :mod:`tokenstore_sql.async_direct` calls them. Each call is one
statement in a transaction of its own, with no round trip it does not need, and the
connection goes back to the pool as it was lent (its autocommit mode unchanged, no
transaction open), so the pool can skip its reset-on-return ``ROLLBACK``. Between calls
that hand it on to each other (:mod:`tokenstore_sql.async_handoff`) it stays as a call
leaves it, its :class:`AsyncLent` with it:

- psycopg's ``AsyncConnection``: switched to autocommit when lent and back before it
  returns, both client-side, unless it was lent in autocommit mode; the statement
  commits itself (a multi-row upsert is one pipelined batch, one implicit transaction).
- aiomysql: tokenstore-sql's async engines lend connections in autocommit mode, where a
  statement commits itself. On a caller's engine, in transaction mode, a write is
  committed and a read's transaction rolled back (a read left open would pin the
  REPEATABLE READ snapshot the next read sees, and MariaDB does not flag a transaction
  that has only read): a second round trip there.
- aiosqlite: runs each call on the connection's thread, one hop per call, so a read is
  one call (execute and fetch together) and sends nothing else. A write sends ``BEGIN
  IMMEDIATE``, its statement and ``COMMIT``; a busy write lock is waited for in SQLite's
  busy handler, on aiosqlite's thread, where the sync storage polls for it: the event
  loop must never sleep.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Dialect
from sqlalchemy.pool import PoolProxiedConnection

from .named_reads import exchange_for

Params = Any  # a tuple or a dict: the driver's parameter style
Rows = list[Sequence[Any]]


class AsyncLent:
    """A lent asyncio driver connection as the storage uses it; a subclass per driver.

    It goes with the connection from call to call while calls hand it on.
    """

    starts = False  # :meth:`start` does something: a call awaits it (else it need not)

    def __init__(self, connection: PoolProxiedConnection, dialect: Dialect) -> None:
        self.driver: Any = connection.driver_connection
        self.info = connection.info  # kept with the connection, cleared when it reconnects
        self.dialect = dialect
        self.error: type[Exception] = dialect.loaded_dbapi.Error

    async def start(self) -> None:
        """Ready the connection for a statement that is a transaction of its own.

        Called by every call: a no-op where an earlier call readied it.
        """

    async def fetch(self, sql: str, params: Params) -> Rows:
        """Run a query; give its rows."""
        raise NotImplementedError

    async def write(self, sql: str, batch: Sequence[Params]) -> int:
        """Run a write once per parameter set, all or nothing, and commit; give the rowcount."""
        raise NotImplementedError

    async def finish(self) -> None:
        """Put the connection back as it was lent, before it goes back to the pool."""

    async def restore(self) -> bool:
        """After a failed call, roll back and put the connection back as lent.

        :returns: False where that failed
        """
        try:
            await self.rollback()
            await self.finish()
        except self.error:
            return False
        return True

    async def rollback(self) -> None:
        """Roll back whatever the call left open."""
        await self.driver.rollback()


class _Psycopg(AsyncLent):
    starts = True
    switched = False

    async def start(self) -> None:
        # A caller's engine may lend connections in autocommit mode (isolation_level=
        # "AUTOCOMMIT"): they go back in it.
        if not self.driver.autocommit:
            await self.driver.set_autocommit(True)
            self.switched = True

    # The cursors are left to the garbage collector: closing one only drops its result.

    async def fetch(self, sql: str, params: Params) -> Rows:
        # A read prepared by name where it is one (tokenstore_sql.named_reads).
        exchange = exchange_for(sql, params, self.driver, self.info)
        while exchange is not None and (message := exchange.message()) is not None:
            try:
                cursor = await self.driver.execute(message, prepare=False)
            except self.error as exc:
                if exchange.answered(exc):
                    continue
                raise
            return list(await exchange.received(cursor).fetchall())
        cursor = await self.driver.execute(sql, params)
        return list(await cursor.fetchall())

    async def write(self, sql: str, batch: Sequence[Params]) -> int:
        if len(batch) == 1:
            return int((await self.driver.execute(sql, batch[0])).rowcount)
        cursor = self.driver.cursor()
        await cursor.executemany(sql, batch)
        return int(cursor.rowcount)

    async def finish(self) -> None:
        if self.switched:
            await self.driver.set_autocommit(False)
            self.switched = False

    async def rollback(self) -> None:
        if self.driver.info.transaction_status:  # 0 is IDLE
            await self.driver.rollback()


class _Aiomysql(AsyncLent):
    starts = True

    async def start(self) -> None:
        self.autocommit = bool(self.driver.get_autocommit())  # the last server status: no I/O

    async def fetch(self, sql: str, params: Params) -> Rows:
        # SQLAlchemy's cursor class: aiomysql's own asks SHOW WARNINGS after a statement
        # that left any.
        async with self.driver.cursor(self.dialect.loaded_dbapi.Cursor) as cursor:
            await cursor.execute(sql, params)
            rows = list(await cursor.fetchall())
        if not self.autocommit:
            await self.driver.rollback()
        return rows

    async def write(self, sql: str, batch: Sequence[Params]) -> int:
        async with self.driver.cursor(self.dialect.loaded_dbapi.Cursor) as cursor:
            if len(batch) == 1:
                await cursor.execute(sql, batch[0])
            else:  # aiomysql rewrites an INSERT ... VALUES for many rows as one statement
                await cursor.executemany(sql, batch)
            count = int(cursor.rowcount)
        if not self.autocommit:
            await self.driver.commit()
        return count

    async def rollback(self) -> None:
        if not self.autocommit or self.driver.get_transaction_status():
            await self.driver.rollback()


class _Aiosqlite(AsyncLent):
    # aiosqlite raises ValueError once its connection is closed; SQLAlchemy's adapter
    # turns that into the OperationalError its dialect recognizes as a disconnect.
    # Caught in each method, not in a wrapper coroutine: a read is one await deep.

    async def fetch(self, sql: str, params: Params) -> Rows:
        try:
            return list(await self.driver.execute_fetchall(sql, params))
        except ValueError as exc:
            _raise_if_closed(exc)
            raise

    async def write(self, sql: str, batch: Sequence[Params]) -> int:
        driver = self.driver
        try:
            await driver.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                cursor = await driver.execute(sql, batch[0])
            else:
                cursor = await driver.executemany(sql, batch)
            await driver.commit()
        except ValueError as exc:
            _raise_if_closed(exc)
            raise
        return int(cursor.rowcount)

    async def rollback(self) -> None:
        if self.driver.in_transaction:
            try:
                await self.driver.rollback()
            except ValueError as exc:
                _raise_if_closed(exc)
                raise


_CLOSED: Final = ("no active connection", "connection closed")


def _raise_if_closed(exc: ValueError) -> None:
    """Raise aiosqlite's closed-connection ``ValueError`` as sqlite3's error; else return."""
    if str(exc).lower() in _CLOSED:
        raise sqlite3.OperationalError(str(exc)) from exc


_BY_DRIVER: Final[dict[str, type[AsyncLent]]] = {
    "psycopg": _Psycopg,
    "aiomysql": _Aiomysql,
    "aiosqlite": _Aiosqlite,
}


def supports(dialect: Dialect) -> bool:
    """Tell whether ``dialect``'s driver is one whose connections :func:`lend` handles."""
    return dialect.driver in _BY_DRIVER


def lend(connection: PoolProxiedConnection, dialect: Dialect) -> AsyncLent:
    """Give the call's handle on a connection the pool lent (no I/O)."""
    return _BY_DRIVER[dialect.driver](connection, dialect)
