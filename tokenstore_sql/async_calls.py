"""One async call's connection: from the pool or from the call before, and back again.

:func:`tokenstore_sql.async_direct.one_statement` runs a :class:`Call` for each
statement. It takes a connection the call before kept for it, or one from the pool (in
SQLAlchemy's greenlet: the pool's code may await), or waits in the handoff's line
(:mod:`tokenstore_sql.async_handoff`); when done it hands the connection to the next call
in line, keeps it for the next call, or gives it back. A connection that failed is
rolled back and reused where it can be, else replaced, and the driver's error is raised
as SQLAlchemy raises it.

A call awaits as few coroutines as it can: this is the path of every async storage call,
and on SQLite each coroutine it enters costs as much as a tenth of the driver's own hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only, greenlet_spawn

from .async_direct_drivers import AsyncLent, lend
from .async_handoff import Handed, Handoff
from .async_pools import check_in
from .direct import driver_error

T = TypeVar("T")


class Call(Generic[T]):
    """One call: its connection and its place in the pool's :class:`Handoff`.

    A connection taken from the pool is used and given back in one greenlet (the pool's
    code may await); one handed on by another call needs none, unless it goes back. A
    connection handed on stays as the call left it (on PostgreSQL, in autocommit mode):
    whichever call gives it back to the pool switches it back.

    :param sql: the statement, as a failure names it
    :param work: what the call does with the connection (the driver's statement)
    :param handoff: the engine's pool's handoff on this loop (see
        :func:`~tokenstore_sql.async_pools.handoff_for`)
    """

    __slots__ = ("connection", "engine", "handoff", "lent", "pool", "since", "slot", "sql", "work")

    def __init__(
        self,
        engine: AsyncEngine,
        sql: str,
        work: Callable[[AsyncLent], Awaitable[T]],
        handoff: Handoff | None,
    ) -> None:
        self.engine, self.sql, self.work, self.handoff = engine, sql, work, handoff
        self.pool = engine.sync_engine.pool  # the engine's pool when the call began
        self.slot = False  # holds one of the handoff's slots
        # Set while the connection is out: a failure leaves them here, for the caller.
        self.connection: PoolProxiedConnection | None = None
        self.lent: AsyncLent | None = None
        self.since = 0.0  # when the connection left the pool

    async def run(self) -> T:
        """Get a connection, run the work on it, and pass the connection on; give the result.

        :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
        """
        try:
            handoff, handed = self.handoff, None
            if handoff is not None:
                handed = handoff.take_kept()  # left by the call before, as it left it
                if handed is None and not handoff.take():
                    handed = await self._wait_in_line(handoff)
                self.slot = True
            if handed is None:
                return await greenlet_spawn(self._from_pool)
            self.connection, self.lent, self.since = handed
            result = await self._use(handed[1])
            if self.connection is not None:  # not handed on: back to the pool
                self.connection = None
                await self._check_in(handed[0])
            return result
        except BaseException as exc:
            lost = await self._give_back_after(exc)
            dialect = self.engine.dialect
            if not isinstance(exc, dialect.loaded_dbapi.Error):
                raise
            raise driver_error(self.sql, exc, dialect, lost=lost) from exc

    async def _wait_in_line(self, handoff: Handoff) -> Handed | None:
        """Wait for a connection handed on, or for a slot to fill from the pool (None)."""
        waiter = handoff.join()
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._hold(waiter.result())  # cancelled just as it came
            raise

    async def _give_back_after(self, exc: BaseException) -> bool:
        """Return the connection of a call that raised ``exc``; tell whether it was lost."""
        connection = self.connection
        if connection is None:  # none taken, or already given back
            self.release()
            return False
        dialect = self.engine.dialect
        lost = isinstance(exc, dialect.loaded_dbapi.Error) and bool(
            dialect.is_disconnect(exc, connection.dbapi_connection, None)
        )
        await self.give_back_failed(connection, exc, lost=lost)
        return lost

    def _hold(self, handed: Handed | None) -> None:
        self.slot = True
        if handed is not None:
            self.connection, self.lent, self.since = handed

    def _from_pool(self) -> T:
        self.connection = connection = self.engine.sync_engine.raw_connection()
        self.since = time.monotonic()
        self.lent = lent = lend(connection, self.engine.dialect)
        result = await_only(self._use(lent))
        if self.connection is not None:  # not handed on: back to the pool
            self.connection = None
            try:
                check_in(connection)
            finally:
                self.release()
        return result

    async def _use(self, lent: AsyncLent) -> T:
        """Run the statement; then hand the connection on, or ready it for the pool.

        One coroutine, so that a call from the pool switches greenlets once for it.
        """
        if lent.starts:
            await lent.start()
        result = await self.work(lent)
        if not self._hand_off():
            await lent.finish()
        return result

    def _hand_off(self) -> bool:
        """Hand the connection to the next call in line, or keep it for the next call."""
        handoff, connection = self.handoff, self.connection
        if handoff is None or connection is None:
            return False
        if handoff.pass_on((connection, self.lent, self.since), self._give_back_kept):
            self.connection, self.slot = None, False  # both go to the next call
            return True
        return False

    async def _give_back_kept(self, handed: Handed) -> None:
        """Give a connection no call took while it was kept back to the pool, as lent.

        If the engine was disposed of meanwhile (its pool replaced), it is closed instead:
        on psycopg at once; on aiomysql and aiosqlite, whose close is a round trip, once
        the loop runs again (an engine disposed of right after a call, at the very end of
        ``asyncio.run()``, may leave it to the garbage collector; ours give it back first).
        """
        connection, lent, _ = handed
        self.slot = True  # the kept connection's, given back with it
        try:
            if self.engine.sync_engine.pool is not self.pool:
                raise ConnectionAbortedError("the engine was disposed of")
            await lent.finish()
        except BaseException as exc:  # lost while kept, or the pool is gone
            # Unshielded: a give-back is a task of its own, or runs before any task.
            await self._replace(connection, exc, stale_pool=False, shield=False)
            if not isinstance(exc, Exception):
                raise
            return
        await self._check_in(connection)

    async def _check_in(self, connection: PoolProxiedConnection) -> None:
        try:
            await greenlet_spawn(check_in, connection)
        finally:
            self.release()

    def release(self) -> None:
        """Give up the call's slot in the handoff, if it holds one."""
        if self.slot and self.handoff is not None:
            self.slot = False
            self.handoff.release()

    async def give_back_failed(
        self, connection: PoolProxiedConnection, exc: BaseException, *, lost: bool
    ) -> None:
        """Return the connection of a failed call: restored if it can be, else replaced."""
        self.connection, lent = None, self.lent
        if lent is not None and not lost and isinstance(exc, Exception):
            # A statement that failed on a live connection (a deadlock, a busy lock):
            # rolled back, the connection serves the retry.
            try:
                restored = await lent.restore()
            except BaseException as again:  # cancelled meanwhile
                await self._replace(connection, again, stale_pool=False)
                raise
            if restored:
                self.connection = connection
                if not self._hand_off():
                    self.connection = None
                    await self._check_in(connection)
                return
        # Lost, cancelled mid-statement (or interrupted), or not restored: replaced.
        await self._replace(connection, exc, stale_pool=lost)

    async def _replace(
        self,
        connection: PoolProxiedConnection,
        exc: BaseException,
        *,
        stale_pool: bool,
        shield: bool = True,
    ) -> None:
        """Invalidate the connection and return it, even if the task is cancelled (again)."""
        pool = self.engine.sync_engine.pool

        def invalidate() -> None:
            if stale_pool:
                # As SQLAlchemy's own execution does on a disconnect: the whole pool is
                # stale (a restart drops every connection), so each older one is replaced
                # at its next checkout instead of failing one retry after another.
                pool._invalidate(connection, exc)
            else:
                connection.invalidate(exc)
            connection.close()

        try:
            # Shielded: closing a connection may await (aiomysql says goodbye).
            closing = greenlet_spawn(invalidate)
            await (asyncio.shield(closing) if shield else closing)
        finally:
            self.release()
