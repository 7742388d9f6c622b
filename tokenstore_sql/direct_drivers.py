"""One storage call on each driver's connection: run the statement, end it, give it back.

:mod:`tokenstore_sql.direct` runs each storage statement on a connection the engine's
pool lends, in a transaction of its own. What that takes differs per driver, and is
kept here: how the statement is sent, how its transaction ends, and how the connection
goes back as it was lent (its autocommit mode unchanged, no transaction open). When the
connection is known to be back in that state without asking the server
(:meth:`Lent.finish`), the pool is told so and skips its reset-on-return ``ROLLBACK``.

The engine may be tokenstore-sql's or the caller's own (``sqlalchemy.create_engine``);
a call costs one round trip on either:

- psycopg: switched to autocommit for the call and back, both client-side, unless it
  was lent in autocommit mode; the statement commits itself.
- sqlite3: reads send nothing else; writes ``BEGIN IMMEDIATE`` and commit, all in-process.
- PyMySQL: see :mod:`tokenstore_sql.direct_pymysql`.

Any other driver runs the statement, commits a write, and leaves the rest to the pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection

from .named_reads import exchange_for
from .transactions import BUSY_TIMEOUT_INFO, begin_sqlite_write

Params = Any  # a tuple or a dict: the driver's parameter style


class Lent:
    """One call's use of a lent connection; this base serves any DBAPI driver."""

    def __init__(self, connection: PoolProxiedConnection, dialect: Dialect) -> None:
        self.connection = connection
        self.driver: Any = connection.driver_connection
        self.error: type[Exception] = dialect.loaded_dbapi.Error
        # False once the connection's protocol state is unknown: the pool must replace it.
        self.usable = True

    def fetch(self, sql: str, params: Params) -> list[Sequence[Any]]:
        """Run a query; give its rows."""
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def write(self, sql: str, batch: Sequence[Any]) -> int:
        """Run a write once per parameter set, all or nothing, and commit; give the rowcount."""
        count = self._write_uncommitted(sql, batch)
        self.commit()
        return count

    def _write_uncommitted(self, sql: str, batch: Sequence[Any]) -> int:
        with self._cursor() as cursor:
            self.begin_write(cursor)
            if len(batch) == 1:
                cursor.execute(sql, batch[0])
            else:
                cursor.executemany(sql, batch)
            return int(cursor.rowcount)

    def begin_write(self, cursor: DBAPICursor) -> None:
        """Start a write transaction, where the driver's implicit one will not do."""

    def commit(self) -> None:
        """End a write's transaction."""
        self.connection.commit()

    def finish(self) -> bool:
        """Put the connection back as lent after a call; tell whether no transaction is open.

        False where that is not known: the pool then resets the connection itself.
        """
        return False

    def restore(self) -> bool:
        """After a failed call, roll back and put the connection back as lent.

        :returns: False where that failed or the connection's state is unknown
        """
        if not self.usable:
            return False
        try:
            self.rollback()
            self.finish()
        except self.error:
            return False
        return True

    def rollback(self) -> None:
        """Roll back whatever the call left open."""
        self.connection.rollback()

    @contextmanager
    def _cursor(self) -> Iterator[DBAPICursor]:
        cursor = self.connection.cursor()
        try:
            yield cursor
        finally:
            with suppress(self.error):  # a lost connection's cursor
                cursor.close()


class Postgres(Lent):
    """One call in autocommit mode: switched client-side (psycopg, psycopg2, pg8000).

    A multi-row upsert is one pipelined batch in psycopg, one implicit transaction.
    """

    def __init__(self, connection: PoolProxiedConnection, dialect: Dialect) -> None:
        super().__init__(connection, dialect)
        # A caller's engine may lend connections in autocommit mode (isolation_level=
        # "AUTOCOMMIT"): they go back in it.
        self.switched = not self.driver.autocommit
        if self.switched:
            self.driver.autocommit = True

    def commit(self) -> None:
        """Nothing to do: the statement committed itself."""

    def finish(self) -> bool:
        """Switch autocommit off again if it was off when lent; tell whether psycopg is idle."""
        if self.switched:
            self.switched = False
            self.driver.autocommit = False
        info = getattr(self.driver, "info", None)  # psycopg's; 0 is IDLE
        return getattr(info, "transaction_status", None) == 0

    def rollback(self) -> None:
        """Switch autocommit back first, then roll back whatever is open."""
        if not self.finish():
            self.connection.rollback()


class Psycopg(Postgres):
    """psycopg: reads prepared by name (:mod:`tokenstore_sql.named_reads`)."""

    def fetch(self, sql: str, params: Params) -> list[Sequence[Any]]:
        """Run a query as a named read where it is one; give its rows."""
        exchange = exchange_for(sql, params, self.driver, self.connection.info)
        while exchange is not None and (message := exchange.message()) is not None:
            try:
                cursor = self.driver.execute(message, prepare=False)
            except self.error as exc:
                if exchange.answered(exc):
                    continue
                raise
            return list(exchange.received(cursor).fetchall())
        return super().fetch(sql, params)


class Sqlite3(Lent):
    """One call on sqlite3: reads alone, writes in ``BEGIN IMMEDIATE`` ... ``COMMIT``."""

    def begin_write(self, cursor: DBAPICursor) -> None:
        """Take the write lock up front, as our engines' own write transactions do."""
        busy_timeout_ms = self.connection.info.get(BUSY_TIMEOUT_INFO)
        if busy_timeout_ms is None:  # an engine not made by tokenstore-sql: the driver waits
            cursor.execute("BEGIN IMMEDIATE")
        else:
            begin_sqlite_write(cursor.execute, busy_timeout_ms)

    def finish(self) -> bool:
        """Tell whether sqlite3 has no transaction open."""
        return not self.driver.in_transaction

    def rollback(self) -> None:
        """Roll back the write transaction, if one is open."""
        if self.driver.in_transaction:
            self.connection.rollback()
