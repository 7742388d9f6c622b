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

MySQL and MariaDB connections (PyMySQL) run in autocommit mode, and every transaction
but a single statement starts with an explicit ``BEGIN``. PyMySQL would otherwise send a
``COMMIT`` or ``ROLLBACK`` at the end of every call and another ``ROLLBACK`` when the
connection returns to the pool, whether or not a transaction is open; here, as psycopg
does on PostgreSQL, they are sent only while the server reports one open. A storage read
is then one round trip and a write one, as with the bare driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, Final

import sqlalchemy
from sqlalchemy import Dialect, Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

# Execution option that asks for a write transaction (BEGIN IMMEDIATE on SQLite).
WRITE_TRANSACTION_OPTION: Final = "tokenstore_sql_write"
# Execution option for a transaction that is one statement: no BEGIN is sent for it on
# our SQLite (reads) and MySQL engines.
SINGLE_STATEMENT_OPTION: Final = "tokenstore_sql_single_statement"


def single_statement_options(dialect: Dialect, *, writes: bool) -> Mapping[str, Any]:
    """Give the execution options for a transaction that is one statement.

    One statement is atomic and reads a consistent snapshot by itself; a multi-row
    upsert stores all its rows or none. On PostgreSQL the connection is put in
    autocommit mode, which psycopg switches client-side. On our SQLite engines a read
    sends no ``BEGIN`` and a write ``BEGIN IMMEDIATE``; on our MySQL engines neither
    sends one. Other engines ignore the options and run the usual transaction.
    """
    return _single_statement_options(dialect.name, writes)


@cache
def _single_statement_options(dialect_name: str, writes: bool) -> Mapping[str, Any]:
    if dialect_name == "postgresql":
        return MappingProxyType({"isolation_level": "AUTOCOMMIT"})
    if dialect_name == "sqlite" and writes:
        return MappingProxyType({WRITE_TRANSACTION_OPTION: True})
    return MappingProxyType({SINGLE_STATEMENT_OPTION: True})


def configure_sqlite(engine: Engine, busy_timeout_ms: int, *, in_memory: bool) -> None:
    """Install the SQLite settings above on an engine (the sync side of an async one too)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        # Off with pysqlite's implicit BEGIN; the "begin" hook below issues our own.
        dbapi_connection.isolation_level = None  # sqlite3's switch for driver-level BEGINs
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        options = connection.get_execution_options()
        if options.get(WRITE_TRANSACTION_OPTION, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(SINGLE_STATEMENT_OPTION, False):
            connection.exec_driver_sql("BEGIN")


def configure_mysql(engine: Engine) -> None:
    """Install the MySQL settings above on an engine that uses PyMySQL."""
    connection_class = _autocommit_connection_class()

    @event.listens_for(engine, "do_connect")
    def _connect(
        dialect: Dialect, record: ConnectionPoolEntry, cargs: Any, cparams: dict[str, Any]
    ) -> Any:
        return connection_class(*cargs, **{**cparams, "autocommit": True})

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
