"""Storage reads on the driver's own connection: the hot path of every token lookup.

A read is one ``SELECT`` by primary key (or by namespace). Run through SQLAlchemy's
execution layer (connection object, transaction, events, result objects), it costs
several times the statement itself: on SQLite about 14 times the bare driver. Here the
statement is still built and compiled by SQLAlchemy, once per engine, and its values
still go through the column types' own bind and result processors (keys escaped as
stored, JSON decoded as the dialect does); only the execution is the driver's, on a
connection from the engine's pool. A driver error is raised as SQLAlchemy raises it (a
``DBAPIError``, the connection invalidated when it was lost), so the retry policy and
the messages treat both paths alike.

One statement reads a consistent snapshot on its own, so no transaction is needed:
PostgreSQL connections are switched to autocommit for the read (client-side in
psycopg), SQLite connections of our engines run it without ``BEGIN``, and the MySQL
connections of our engines are in autocommit mode (see :mod:`tokenstore_sql.transactions`).
Engine events such as ``before_cursor_execute`` do not see these reads; pool events do.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class CompiledRead:
    """A ``SELECT`` compiled for one dialect, with the processors of its values."""

    sql: str
    positional_names: tuple[str, ...] | None  # bind order, for positional paramstyles
    bind_processors: Mapping[str, Processor]
    column_names: tuple[str, ...]
    result_processors: tuple[Processor | None, ...]

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> CompiledRead:
        """Compile ``statement`` for ``dialect`` as SQLAlchemy would execute it."""
        compiled = statement.compile(dialect=dialect)
        bind_processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind_processors[name] = processor
        columns = list(statement.selected_columns)
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

    def row(self, values: tuple[Any, ...]) -> dict[str, Any]:
        """Give a fetched row as a mapping of column name to processed value."""
        return {
            name: processor(value) if processor is not None else value
            for name, processor, value in zip(
                self.column_names, self.result_processors, values, strict=True
            )
        }


_compiled: weakref.WeakKeyDictionary[Dialect, dict[Select[Any], CompiledRead]] = (
    weakref.WeakKeyDictionary()
)


def compiled_read(statement: Select[Any], dialect: Dialect) -> CompiledRead:
    """Give ``statement`` compiled for ``dialect``, compiling it on first use."""
    by_statement = _compiled.setdefault(dialect, {})
    found = by_statement.get(statement)
    if found is None:
        found = by_statement[statement] = CompiledRead.compile(statement, dialect)
    return found


def fetch_rows(
    engine: Engine, read: CompiledRead, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run ``read`` with ``values`` on a pooled connection and return its rows.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    dialect = engine.dialect
    autocommit = dialect.name == "postgresql"
    connection = cursor = None
    try:
        connection = engine.raw_connection()
        if autocommit:
            connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        cursor = connection.cursor()
        cursor.execute(read.sql, read.parameters(values))
        fetched = cursor.fetchall()
        cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = connection is not None and dialect.is_disconnect(
            exc, connection.dbapi_connection, cursor
        )
        if lost and connection is not None:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            read.sql,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc
    finally:
        if connection is not None:
            _give_back(connection, dialect, autocommit)
    return [read.row(tuple(values)) for values in fetched]


def _give_back(connection: PoolProxiedConnection, dialect: Dialect, autocommit: bool) -> None:
    """Return a connection to the pool as it was taken: in transaction mode."""
    if autocommit and connection.is_valid:
        try:
            connection.driver_connection.autocommit = False  # type: ignore[union-attr]
        except dialect.loaded_dbapi.Error as exc:  # lost meanwhile: the pool replaces it
            connection.invalidate(exc)
    connection.close()
