"""Storage statements on the driver's own connection: the hot path of every call.

Every storage call is one statement: a ``SELECT`` by primary key or namespace, a
multi-row upsert, a ``DELETE``. Run through SQLAlchemy's execution layer (connection
object, transaction, events, result objects), such a statement costs several times its
own time: a profile of a SQLite get put that layer at 78% and the sqlite3 call at 3%.
Here SQLAlchemy still builds and compiles each statement (once per engine), its column
types still bind and read the values (keys escaped as stored, JSON and timestamps as the
dialect does them), and the engine's pool still hands out the connections; only the
execution is the driver's cursor. A driver error is raised as SQLAlchemy raises it (a
``DBAPIError``, the connection invalidated when it was lost), so the retry policy and
the messages treat it as before.

One statement is atomic and reads a consistent snapshot on its own, so each runs with
no round trip it does not need: PostgreSQL connections are switched to autocommit for it
(client-side in psycopg; a multi-row upsert is one pipelined batch, one implicit
transaction); SQLite writes take the write lock up front with ``BEGIN IMMEDIATE`` (polled
for with the busy handler off: see :func:`tokenstore_sql.transactions.begin_sqlite_write`)
and commit, SQLite reads send nothing else; MySQL writes commit, which the MySQL connections
of tokenstore-sql's engines (in autocommit mode) skip without a round trip (see
:mod:`tokenstore_sql.transactions`).

SQLAlchemy's statement events and ``echo`` do not see these statements; pool events
see their connections.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine, Executable
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from .transactions import BUSY_TIMEOUT_INFO, begin_sqlite_write

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class CompiledStatement:
    """A statement compiled for one dialect, with the processors of its values."""

    sql: str
    positional_names: tuple[str, ...] | None  # bind order, for positional paramstyles
    bind_processors: Mapping[str, Processor]
    column_names: tuple[str, ...]  # of the rows a SELECT returns
    result_processors: tuple[Processor | None, ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> CompiledStatement:
        """Compile ``statement`` for ``dialect`` as SQLAlchemy would execute it."""
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        bind_processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind_processors[name] = processor
        columns = list(getattr(statement, "selected_columns", ()))
        return cls(
            sql=compiled.string,
            positional_names=tuple(compiled.positiontup or ()) if compiled.positional else None,
            bind_processors=bind_processors,
            column_names=tuple(str(column.key) for column in columns),
            result_processors=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            ),
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """Give the driver's parameters for ``values`` (by bind name)."""
        bound = {
            name: processor(value) if (processor := self.bind_processors.get(name)) else value
            for name, value in values.items()
        }
        if self.positional_names is None:
            return bound
        return tuple(bound[name] for name in self.positional_names)

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """Give a fetched row as a mapping of column name to processed value."""
        return {
            name: processor(value) if processor is not None else value
            for name, processor, value in zip(
                self.column_names, self.result_processors, values, strict=True
            )
        }


_compiled: weakref.WeakKeyDictionary[Dialect, dict[Executable, CompiledStatement]] = (
    weakref.WeakKeyDictionary()
)


def compiled_for(statement: Executable, dialect: Dialect) -> CompiledStatement:
    """Give ``statement`` compiled for ``dialect``, compiling it on first use.

    Meant for the storage's statements, which are built once per placement.
    """
    by_statement = _compiled.get(dialect)
    if by_statement is None:
        by_statement = _compiled.setdefault(dialect, {})
    found = by_statement.get(statement)
    if found is None:
        found = by_statement[statement] = CompiledStatement.compile(statement, dialect)
    return found


def fetch_rows(
    engine: Engine, statement: CompiledStatement, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run a ``SELECT`` with ``values`` and return its rows.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    with _one_statement(engine, statement, writes=False) as cursor:
        cursor.execute(statement.sql, statement.parameters(values))
        fetched = cursor.fetchall()
    return [statement.row(values) for values in fetched]


def execute_write(
    engine: Engine, statement: CompiledStatement, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Run a write statement once for each of ``rows``, all or nothing; give the rowcount.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    # Bound before the transaction begins: on SQLite every other writer waits meanwhile.
    batch: list[Any] = [statement.parameters(row) for row in rows]
    with _one_statement(engine, statement, writes=True) as cursor:
        if len(batch) == 1:
            cursor.execute(statement.sql, batch[0])
        else:
            cursor.executemany(statement.sql, batch)
        return int(cursor.rowcount)


@contextmanager
def _one_statement(
    engine: Engine, statement: CompiledStatement, *, writes: bool
) -> Iterator[DBAPICursor]:
    """Give a cursor on a pooled connection, for one statement in a transaction of its own."""
    dialect = engine.dialect
    autocommit = dialect.name == "postgresql"
    connection = cursor = None
    try:
        connection = engine.raw_connection()
        if autocommit:
            connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        cursor = connection.cursor()
        try:
            if writes and dialect.name == "sqlite":
                _begin_sqlite_write(connection, cursor)
            yield cursor
            if writes:
                connection.commit()
        except BaseException:
            if writes and connection.is_valid:
                with suppress(dialect.loaded_dbapi.Error):
                    connection.rollback()
            raise
        finally:
            with suppress(dialect.loaded_dbapi.Error):  # a lost connection's cursor
                cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = False
        if connection is not None and dialect.is_disconnect(
            exc, connection.dbapi_connection, cursor
        ):
            lost = True
            # As SQLAlchemy's own execution does on a disconnect: the whole pool is
            # stale (a restart drops every connection), so each older pooled connection
            # is replaced at its next checkout instead of failing one retry after another.
            engine.pool._invalidate(connection, exc)
        raise DBAPIError.instance(
            statement.sql,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc
    except BaseException as exc:
        if connection is not None and not isinstance(exc, Exception):
            # Interrupted mid-statement (KeyboardInterrupt, SystemExit): the connection's
            # protocol state is unknown, so the pool replaces it, as SQLAlchemy does.
            connection.invalidate(exc)
        raise
    finally:
        if connection is not None:
            _give_back(connection, dialect, autocommit)


def _begin_sqlite_write(connection: PoolProxiedConnection, cursor: DBAPICursor) -> None:
    busy_timeout_ms = connection.info.get(BUSY_TIMEOUT_INFO)
    if busy_timeout_ms is None:  # an engine not made by tokenstore-sql: the driver waits
        cursor.execute("BEGIN IMMEDIATE")
    else:
        begin_sqlite_write(cursor.execute, busy_timeout_ms)


def _give_back(connection: PoolProxiedConnection, dialect: Dialect, autocommit: bool) -> None:
    """Return a connection to the pool as it was taken: in transaction mode."""
    if autocommit and connection.is_valid:
        try:
            connection.driver_connection.autocommit = False  # type: ignore[union-attr]
        except dialect.loaded_dbapi.Error as exc:  # lost meanwhile: the pool replaces it
            connection.invalidate(exc)
    connection.close()
