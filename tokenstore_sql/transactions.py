"""How the engines tokenstore-sql creates begin and end transactions, per database.

Every storage call is one statement, atomic and consistent on its own, so wherever a
database allows it the call runs without ``BEGIN`` and ``COMMIT`` round trips: on the
driver's connection for the sync storage (:mod:`tokenstore_sql.direct`), through
SQLAlchemy with :func:`single_statement_options` for the async one. Every other
transaction on these engines (schema migrations, key rotation, imports, your own code)
is a real transaction as usual.

SQLite files are set up for several processes writing at once, without trading
durability for speed:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks
  readers; the mode is stored in the file, so every process agrees.
- ``synchronous=FULL``: every commit is synced to disk before it returns.
- ``busy_timeout``: a writer waits for the lock (30 s by default) instead of failing
  with "database is locked" at once.
- Write transactions start with ``BEGIN IMMEDIATE``: the write lock is taken up front,
  while the busy timeout applies, rather than on upgrade from a read lock, where SQLite
  reports a conflict without waiting. This needs the driver's own transaction handling
  switched off, which is done per connection.
- Our own write transactions on sync engines wait for that lock in
  :func:`begin_sqlite_write`, polling every millisecond or two, not in SQLite's busy
  handler (see there why); the total wait is still bounded by the busy timeout.

MySQL and MariaDB connections (PyMySQL) run in autocommit mode, and every transaction
but a single statement starts with an explicit ``BEGIN``. PyMySQL would otherwise send a
``COMMIT`` or ``ROLLBACK`` at the end of every call and another ``ROLLBACK`` when the
connection returns to the pool, whether or not a transaction is open; here, as psycopg
does on PostgreSQL, they are sent only while the server reports one open. A storage read
is then one round trip and a write one, as with the bare driver.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from functools import cache
from types import MappingProxyType
from typing import Any, Final

import sqlalchemy
from sqlalchemy import Dialect, Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from .backends import SINGLE_STATEMENT_OPTION as SINGLE_STATEMENT_OPTION
from .backends import WRITE_TRANSACTION_OPTION as WRITE_TRANSACTION_OPTION
from .backends import find_backend

# Where a SQLite connection's pool record keeps the busy timeout it was opened with.
BUSY_TIMEOUT_INFO: Final = "tokenstore_sql_busy_timeout_ms"


def single_statement_options(dialect: Dialect, *, writes: bool) -> Mapping[str, Any]:
    """Give the execution options for a transaction that is one statement.

    One statement is atomic and reads a consistent snapshot by itself; a multi-row
    upsert stores all its rows or none. On PostgreSQL the connection is put in
    autocommit mode, which psycopg switches client-side. On our SQLite engines a read
    sends no ``BEGIN`` and a write ``BEGIN IMMEDIATE``; on our MySQL engines neither
    sends one. Other engines ignore the options and run the usual transaction.
    """
    backend = find_backend(dialect.name)
    if backend is None:
        return _NO_BEGIN
    return backend.single_statement[writes]


_NO_BEGIN: Final = MappingProxyType({SINGLE_STATEMENT_OPTION: True})


def configure_sqlite(engine: Engine, busy_timeout_ms: int, *, in_memory: bool) -> None:
    """Install the SQLite settings above on an engine (the sync side of an async one too)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        # Off with pysqlite's implicit BEGIN; the "begin" hook below issues our own.
        dbapi_connection.isolation_level = None  # sqlite3's switch for driver-level BEGINs
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
        record.info[BUSY_TIMEOUT_INFO] = busy_timeout_ms
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        options = connection.get_execution_options()
        if options.get(WRITE_TRANSACTION_OPTION, False):
            if connection.dialect.is_async:
                # Sleeping here would stall the event loop: aiosqlite waits in SQLite's
                # busy handler, on its own thread, instead.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                begin_sqlite_write(connection.exec_driver_sql, busy_timeout_ms)
        elif not options.get(SINGLE_STATEMENT_OPTION, False):
            connection.exec_driver_sql("BEGIN")


# SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms
# between tries, and the lock goes to whoever asks while it is free, with no queue. A
# writer that has waited a while then tries ten times a second, while writers that never
# slept take the lock one after another in between its tries: with 4 processes writing
# and the CPUs busy, one waited over 2 s (measurements: stress/sqlite_writers.py). Short
# polls give every waiter its chance each time the lock comes free.
_BUSY_FIRST_SLEEP: Final = 0.000_5
_BUSY_LONGEST_SLEEP: Final = 0.002
_SQLITE_BUSY: Final = 5
# sqlite3 gives its errors their result code from Python 3.11 on. Before, a busy lock
# cannot be told reliably from other failures, and writers wait in SQLite's handler.
_RESULT_CODES: Final = sys.version_info >= (3, 11)


def begin_sqlite_write(execute: Callable[[str], object], busy_timeout_ms: int) -> None:
    """Start a SQLite write transaction, waiting up to ``busy_timeout_ms`` for the lock.

    ``BEGIN IMMEDIATE`` is tried with the connection's busy handler off and retried after
    jittered sleeps of 0.25-2 ms while the lock is busy; the handler is restored for the
    transaction's other statements (and for the connection's later users) either way.
    On Python 3.10 the wait is SQLite's busy handler's, as for every other statement.

    :param execute: runs one SQL statement on the connection (a cursor's ``execute``, or
        ``Connection.exec_driver_sql``)
    :raises: the driver's error for a busy lock once ``busy_timeout_ms`` has passed, or
        for any other failure at once
    """
    if not _RESULT_CODES:
        execute("BEGIN IMMEDIATE")
        return
    execute("PRAGMA busy_timeout = 0")
    try:
        _poll_for_write_lock(execute, busy_timeout_ms / 1000)
    except BaseException:
        with suppress(Exception):  # a connection that failed may fail this too; the
            execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")  # first error stands
        raise
    execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")


def _poll_for_write_lock(execute: Callable[[str], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = _BUSY_FIRST_SLEEP
    while True:
        try:
            execute("BEGIN IMMEDIATE")
            return
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if not _is_busy(exc) or remaining <= 0:
                raise
        time.sleep(min(random.uniform(delay / 2, delay), remaining))
        delay = min(delay * 2, _BUSY_LONGEST_SLEEP)


def _is_busy(exc: BaseException) -> bool:
    # sqlite3's own error, or SQLAlchemy's wrapper of it (exec_driver_sql).
    code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == _SQLITE_BUSY


def configure_mysql(engine: Engine) -> None:
    """Install the MySQL settings above on an engine that uses PyMySQL."""
    connection_class = _autocommit_connection_class()

    @event.listens_for(engine, "do_connect")
    def _connect(
        dialect: Dialect, record: ConnectionPoolEntry, cargs: Any, cparams: dict[str, Any]
    ) -> Any:
        return connection_class(*cargs, **{**cparams, "autocommit": True})

    begin_explicitly(engine)


def begin_explicitly(engine: Engine) -> None:
    """Begin each transaction on autocommit connections, but a single statement's.

    A storage call's one statement then commits itself, with no COMMIT round trip, on
    the sync engines and the async (aiomysql) ones alike.
    """

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        if not connection.get_execution_options().get(SINGLE_STATEMENT_OPTION, False):
            connection.exec_driver_sql("BEGIN")


def configure_galera(engine: Engine) -> None:
    """Make every read see the writes acknowledged on any node of a Galera cluster.

    Galera replicates a commit to every node before acknowledging it, but applies it on
    the others a moment later: a read on another node may still see the old row.
    ``wsrep_sync_wait = 1`` makes a node catch up before each read. It is set per new
    connection where the server says ``wsrep_on``; a server outside a cluster (or MySQL,
    which has no such variable) is left alone. One query per new pooled connection.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        if is_galera_node(dbapi_connection):
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SET SESSION wsrep_sync_wait = 1")
            finally:
                cursor.close()


def is_galera_node(dbapi_connection: Any) -> bool:
    """Tell whether a MySQL-family driver connection is to a node of a Galera cluster."""
    cursor = dbapi_connection.cursor()
    try:
        try:
            cursor.execute("SELECT @@wsrep_on")
        except Exception:  # MySQL: no such variable (error 1193)
            return False
        row = cursor.fetchone()
        return row is not None and row[0] in (1, "1", "ON")
    finally:
        cursor.close()


@cache
def _autocommit_connection_class() -> type[Any]:
    # PyMySQL is imported only here, for MySQL engines: it is an optional dependency.
    from pymysql.connections import Connection  # type: ignore[import-untyped]
    from pymysql.constants.SERVER_STATUS import SERVER_STATUS_IN_TRANS  # type: ignore[import-untyped]

    class AutocommitConnection(Connection):  # type: ignore[misc]
        """A PyMySQL connection that ends a transaction only when the server has one open."""

        def commit(self) -> None:
            if self.server_status & SERVER_STATUS_IN_TRANS:
                super().commit()

        def rollback(self) -> None:
            if self.server_status & SERVER_STATUS_IN_TRANS:
                super().rollback()

    return AutocommitConnection
