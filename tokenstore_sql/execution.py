"""The one way tokenstore-sql runs statements on its tables (sync API).

Every statement on the token tables goes through here: the storages' single
statements, and the transactions of refresh, rotation, maintenance, import, export,
locks and schema checks. What a transaction is, per database, is decided once:

- :func:`transaction` opens a real transaction on an engine or a connection. With
  ``writes=True`` it asks for a write transaction, which on SQLite begins with ``BEGIN
  IMMEDIATE`` and waits for the write lock up front (within the busy timeout), instead
  of a deferred ``BEGIN`` whose first write then fails at once when another process
  holds the lock (codes 5 and 517). See :mod:`tokenstore_sql.transactions`.
- :func:`run_transaction` runs a function in such a transaction and, when it fails in a
  way that leaves nothing applied, runs it again as a whole under a
  :class:`~tokenstore_sql.RetryPolicy`, which also turns database errors into
  tokenstore-sql's own (:mod:`tokenstore_sql.retries`).
- :class:`Execution` runs the storages' single statements (``read_rows``,
  ``read_row``, ``write_rows``) on the driver's connection, their hot path
  (:mod:`tokenstore_sql.direct`), retried the same way.

The async API has the same seam in :mod:`tokenstore_sql.execution_async`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, Insert

from .backends import backend_of
from .compiled import compiled_for
from .direct import execute_write, fetch_first, fetch_rows
from .retries import RetryPolicy
from .statements import TokenStatements, key_params
from .transactions import WRITE_TRANSACTION_OPTION

T = TypeVar("T")


@contextmanager
def transaction(bind: Engine | Connection, *, writes: bool) -> Iterator[Connection]:
    """Yield a connection in a transaction that commits at the end of the block.

    :param bind: an engine (a pooled connection is taken for the block) or a connection
        with no transaction open
    :param writes: the transaction will write: take SQLite's write lock up front
    """
    if isinstance(bind, Engine):
        with bind.connect() as connection, transaction(connection, writes=writes) as inner:
            yield inner
        return
    if writes:
        bind.execution_options(**{WRITE_TRANSACTION_OPTION: True})
    with bind.begin():
        yield bind


def run_transaction(
    engine: Engine,
    operation: str,
    work: Callable[[Connection], T],
    *,
    writes: bool,
    retry: RetryPolicy | None = None,
) -> T:
    """Run ``work(connection)`` in one transaction, retried as a whole when that is safe.

    :param operation: what the transaction does, for messages ("rotate encryption keys")
    :raises StorageUnavailableError: transient failures outlasted the policy
    :raises DatabaseOperationError: the database refused for a lasting reason
    """

    def attempt() -> T:
        with transaction(engine, writes=writes) as connection:
            return work(connection)

    return (retry or RetryPolicy()).run(operation, engine, attempt)


def upsert_in(
    connection: Connection, statements: TokenStatements, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert or replace token rows in the connection's transaction, in few statements.

    As many rows to a statement as the database's backend gains by (see
    :meth:`~tokenstore_sql.statements.TokenStatements.upsert_of`), each statement
    compiled once per dialect, its values bound by the column types as the storages' own
    writes bind them, and each sent with all its parameter sets as one ``executemany``.
    """
    dialect = connection.dialect
    per_statement = backend_of(dialect).rows_per_upsert
    # Where a statement writes one row, every row goes to that one statement at once.
    chunk = per_statement if per_statement > 1 else max(len(rows), 1)
    batches: dict[Insert, list[Mapping[str, Any]]] = {}
    for start in range(0, len(rows), chunk):
        statement, batch = statements.upsert_of(dialect, rows[start : start + chunk])
        batches.setdefault(statement, []).extend(batch)
    for statement, batch in batches.items():
        _write_in(connection, statement, batch)


def _write_in(
    connection: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    compiled = compiled_for(statement, connection.dialect)
    connection.exec_driver_sql(compiled.sql, [compiled.parameters(row) for row in rows])


class Execution:
    """The storages' single statements on one engine, each retried under one policy.

    Each runs on the driver's connection (:mod:`tokenstore_sql.direct`), a transaction
    of its own.
    """

    __slots__ = ("engine", "retry")

    def __init__(self, engine: Engine, retry: RetryPolicy) -> None:
        self.engine, self.retry = engine, retry

    def read_rows(
        self, operation: str, statement: Executable, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Fetch the rows of one ``SELECT``.

        :param operation: what the statement does, for messages ("read token data")
        """
        engine = self.engine
        compiled = compiled_for(statement, engine.dialect)
        return self.retry.run(operation, engine, lambda: fetch_rows(engine, compiled, params))

    def read_row(
        self, operation: str, statements: TokenStatements, namespace: str, resource_server: str
    ) -> list[Any] | None:
        """Fetch the values of one key's row, in ``codec.READ_COLUMNS`` order (None if absent)."""
        engine = self.engine
        compiled = compiled_for(statements.select_one, engine.dialect)
        params = key_params(namespace, resource_server)
        return self.retry.run(operation, engine, lambda: fetch_first(engine, compiled, params))

    def write_rows(
        self, operation: str, statement: Executable, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Run one write statement for ``rows``, all or nothing; give the rowcount."""
        engine = self.engine
        compiled = compiled_for(statement, engine.dialect)
        return self.retry.run(operation, engine, lambda: execute_write(engine, compiled, rows))
