"""Storage statements on the driver's own connection: the hot path of every call.

Every storage call is one statement: a ``SELECT`` by primary key or namespace, a
multi-row upsert, a ``DELETE``. Run through SQLAlchemy's execution layer (connection
object, transaction, events, result objects), such a statement costs several times its
own time: a profile of a SQLite get put that layer at 78% and the sqlite3 call at 3%.
Here SQLAlchemy still builds and compiles each statement (once per dialect), its column
types still bind and read the values (:mod:`tokenstore_sql.compiled`), and the engine's
pool still hands out the connections; only the execution is the driver's cursor. A
driver error is raised as SQLAlchemy raises it (a ``DBAPIError``, the connection
invalidated when it was lost), so the retry policy and the messages treat it as before.

One statement is atomic and reads a consistent snapshot on its own, so each runs with
no round trip it does not need, on tokenstore-sql's engines and on a caller's own
(``sqlalchemy.create_engine``) alike: PostgreSQL connections are switched to autocommit
for it (client-side in psycopg); SQLite writes take the write lock up front with ``BEGIN
IMMEDIATE`` (on our engines polled for with the busy handler off: see
:func:`tokenstore_sql.transactions.begin_sqlite_write`) and commit, SQLite reads send
nothing else; on MySQL a statement commits itself on our engines' connections (autocommit
mode), and on a caller's its ``COMMIT`` or ``ROLLBACK`` travels with it. Each connection
goes back to the pool as it was lent, and the pool is spared its reset ``ROLLBACK`` when
no transaction is open. Per driver: :mod:`tokenstore_sql.direct_drivers`,
:mod:`tokenstore_sql.direct_pymysql`.

SQLAlchemy's statement events and ``echo`` do not see these statements; pool events
see their connections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Dialect, Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import PoolProxiedConnection

from .backends import backend_of
from .compiled import CompiledStatement
from .direct_drivers import Lent, Postgres, Psycopg, Sqlite3
from .direct_pymysql import PyMySQL

T = TypeVar("T")


def fetch_rows(
    engine: Engine, statement: CompiledStatement, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run a ``SELECT`` with ``values`` and return its rows.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    params = statement.parameters(values)
    fetched = _one_statement(engine, statement.sql, lambda lent: lent.fetch(statement.sql, params))
    return [statement.row(values) for values in fetched]


def fetch_first(
    engine: Engine, statement: CompiledStatement, values: Mapping[str, Any]
) -> list[Any] | None:
    """Run a ``SELECT`` with ``values``; give its first row's values, in column order.

    :returns: None when it finds no row
    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    params = statement.parameters(values)
    fetched = _one_statement(engine, statement.sql, lambda lent: lent.fetch(statement.sql, params))
    return statement.values(fetched[0]) if fetched else None


def execute_write(
    engine: Engine, statement: CompiledStatement, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Run a write statement once for each of ``rows``, all or nothing; give the rowcount.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    # Bound before the transaction begins: on SQLite every other writer waits meanwhile.
    batch: list[Any] = [statement.parameters(row) for row in rows]
    return _one_statement(engine, statement.sql, lambda lent: lent.write(statement.sql, batch))


def driver_error(sql: str, exc: Exception, dialect: Dialect, *, lost: bool) -> StatementError:
    """Wrap a driver's error as SQLAlchemy's execution would: parameters hidden.

    :param lost: the connection was lost (``connection_invalidated``: a retry reconnects)
    """
    return DBAPIError.instance(
        sql,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )


def _lend(connection: PoolProxiedConnection, dialect: Dialect) -> Lent:
    """Prepare a connection the pool just lent for one storage statement (no I/O)."""
    lent = _BY_DRIVER.get(dialect.driver)
    if lent is None:
        lent = Postgres if backend_of(dialect).driver_autocommit else Lent
    return lent(connection, dialect)


_BY_DRIVER: dict[str, type[Lent]] = {"pysqlite": Sqlite3, "pymysql": PyMySQL, "psycopg": Psycopg}


def _one_statement(engine: Engine, sql: str, work: Callable[[Lent], T]) -> T:
    """Run ``work`` on a pooled connection: one statement in a transaction of its own."""
    dialect = engine.dialect
    error = dialect.loaded_dbapi.Error
    connection: PoolProxiedConnection | None = None
    lost = False
    try:
        connection = engine.raw_connection()
        lent = _lend(connection, dialect)
        try:
            result = work(lent)
        except BaseException as exc:
            lost = isinstance(exc, error) and bool(
                dialect.is_disconnect(exc, connection.dbapi_connection, None)
            )
            _give_back_failed(engine, connection, lent, exc, lost=lost)
            connection = None
            raise
        try:
            clean = lent.finish()
        except error as exc:  # lost meanwhile: the pool replaces it
            connection.invalidate(exc)
            clean = False
        _check_in(connection, clean=clean)
        connection = None
        return result
    except error as exc:
        raise driver_error(sql, exc, dialect, lost=lost) from exc
    finally:
        if connection is not None:  # lend() failed: the pool resets it
            connection.close()


def _give_back_failed(
    engine: Engine, connection: PoolProxiedConnection, lent: Lent, exc: BaseException, *, lost: bool
) -> None:
    """Return the connection of a failed call: restored if it can be, else replaced."""
    if lost:
        # As SQLAlchemy's own execution does on a disconnect: the whole pool is
        # stale (a restart drops every connection), so each older pooled connection
        # is replaced at its next checkout instead of failing one retry after another.
        engine.pool._invalidate(connection, exc)
    elif isinstance(exc, Exception) and lent.restore():
        # A statement that failed on a live connection (a deadlock, a busy lock): rolled
        # back, the connection serves the retry.
        _check_in(connection, clean=True)
        return
    else:
        # Interrupted mid-statement (KeyboardInterrupt, SystemExit), or not restored: the
        # connection's state is unknown, so the pool replaces it, as SQLAlchemy does.
        connection.invalidate(exc)
    connection.close()


def _check_in(connection: PoolProxiedConnection, *, clean: bool) -> None:
    """Return a connection to the pool; a clean one (no transaction open) skips its reset.

    The pool rolls back every connection it gets back, and PyMySQL sends that ROLLBACK
    whether or not a transaction is open: a round trip. Only a private method tells the
    pool the transaction was already reset: the one SQLAlchemy's own ``Connection.close``
    uses after ending its transaction. Without it (another SQLAlchemy release) the pool
    rolls back as before; a test in tests/backends/test_storage.py fails then.
    """
    close_special = getattr(connection, "_close_special", None) if clean else None
    if close_special is None:
        connection.close()
    else:
        close_special(transaction_reset=True)
