"""Named database locks: the one place that knows how each dialect takes one.

A named lock serializes a critical section across every process that shares a
database, not only the threads of one process:

- PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit key hashed from the name; it is
  released when the transaction ends, however it ends. ``lock_timeout`` bounds the wait.
- MySQL/MariaDB: ``GET_LOCK`` on the name (hashed, as names are limited to 64
  characters); it belongs to the session, so it is released explicitly afterwards.
- SQLite: the write lock of a ``BEGIN IMMEDIATE`` transaction. There is one such lock
  per database file, so the "name" only documents intent: while it is held, every
  other writer of the file waits (up to the engine's busy timeout).

The lock is held by the connection :func:`locked_transaction` yields, in a write
transaction; work that must happen under the lock runs on that same connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from .columns import is_mysql_family
from .engines import describe_database
from .errors import StorageUnavailableError, checked_number
from .execution import transaction
from .statements import check_dialect

DEFAULT_LOCK_TIMEOUT_SECONDS: Final = 30
"""How long a named lock is waited for by default, in seconds."""
MYSQL_LOCK_NAME_LENGTH: Final = 64
"""The longest name MySQL's ``GET_LOCK`` takes; longer names are hashed to fit."""
_MYSQL_PREFIX: Final = "tokenstore_sql:"
# PostgreSQL's SQLSTATE for a lock wait that ran out of lock_timeout.
_POSTGRESQL_LOCK_NOT_AVAILABLE: Final = "55P03"


def lock_name(*parts: str) -> str:
    """Join the parts of a lock's identity into one unambiguous name."""
    # lengths first, so ("a:b", "c") and ("a", "b:c") never give the same name
    return "|".join(f"{len(part)}:{part}" for part in parts)


def postgresql_lock_key(name: str) -> int:
    """Hash a lock name to a signed 64-bit advisory-lock key (SHA-256's first 8 bytes)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_lock_name(name: str) -> str:
    """Hash a lock name to a ``GET_LOCK`` name: a fixed prefix and a hash, at most 64 long."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return (_MYSQL_PREFIX + digest)[:MYSQL_LOCK_NAME_LENGTH]


@contextmanager
def locked_transaction(
    engine: Engine, name: str, *, timeout: int = DEFAULT_LOCK_TIMEOUT_SECONDS
) -> Iterator[Connection]:
    """Yield a connection in a write transaction that holds the named lock.

    The transaction commits when the block ends normally and rolls back when it raises;
    the lock is released either way.

    :param name: what the lock protects, e.g. from :func:`lock_name`
    :param timeout: seconds to wait for the lock (on SQLite, the engine's busy timeout
        applies instead)
    :raises StorageUnavailableError: the lock could not be had within ``timeout``
    :raises ConfigurationError: ``timeout`` is less than 1 (PostgreSQL would wait forever)
    """
    checked_number("timeout", timeout, minimum=1)
    check_dialect(engine.dialect)
    with engine.connect() as connection, locked_transaction_on(connection, name, timeout=timeout):
        yield connection


@contextmanager
def locked_transaction_on(
    connection: Connection, name: str, *, timeout: int = DEFAULT_LOCK_TIMEOUT_SECONDS
) -> Iterator[Connection]:
    """As :func:`locked_transaction`, on a caller's connection that has no transaction open.

    For a caller that holds a connection rather than an engine (the async storage's
    schema check, run with ``run_sync``). The connection is left asking for write
    transactions.
    """
    taken = False
    try:
        with transaction(connection, writes=True):
            _take(connection, name, timeout)
            taken = True
            yield connection
    finally:
        if taken:
            _release(connection, name)


@contextmanager
def lock_on(connection: Connection, name: str, *, timeout: int) -> Iterator[None]:
    """Hold the named lock on a caller's connection, inside the caller's transaction.

    For work that must join a transaction someone else owns (an application's Alembic
    ``env.py``, say). On PostgreSQL the lock is transaction-scoped and lasts until the
    caller's transaction ends; on MySQL/MariaDB it is released when the block ends; on
    SQLite nothing is taken, as the file's write lock serializes the writers.

    :raises StorageUnavailableError: the lock could not be had within ``timeout``
    """
    # No lock_timeout on PostgreSQL here: SET LOCAL would outlive the block in the
    # caller's transaction. The wait is behind another process's schema change only.
    _take(connection, name, timeout, bound_postgresql_wait=False)
    try:
        yield
    finally:
        # If the session broke, its end releases the lock; the first error stands.
        with suppress(DBAPIError):
            _release_mysql_lock(connection, name)


def _take(
    connection: Connection, name: str, timeout: int, *, bound_postgresql_wait: bool = True
) -> None:
    dialect = connection.dialect
    if dialect.name == "postgresql":
        if bound_postgresql_wait:
            # SET LOCAL ends with the transaction: the pooled connection keeps its settings.
            connection.execute(text(f"SET LOCAL lock_timeout = '{int(timeout)}s'"))
        try:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": postgresql_lock_key(name)}
            )
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _POSTGRESQL_LOCK_NOT_AVAILABLE:
                raise _timed_out(connection, timeout) from None
            raise
    elif is_mysql_family(dialect):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": mysql_lock_name(name), "timeout": timeout},
        ).scalar()
        if got != 1:
            raise _timed_out(connection, timeout)
    # SQLite: the BEGIN IMMEDIATE that opened the transaction took the write lock.


def _release_mysql_lock(connection: Connection, name: str) -> None:
    if is_mysql_family(connection.dialect):
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": mysql_lock_name(name)})


def _release(connection: Connection, name: str) -> None:
    if not is_mysql_family(connection.dialect) or connection.closed:
        return
    try:
        _release_mysql_lock(connection, name)
        connection.rollback()  # ends the transaction that statement began
    except DBAPIError:
        # The session is unusable; closing it for good is what releases its locks.
        connection.invalidate()


def _timed_out(connection: Connection, timeout: int) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"take a lock within {timeout} s", describe_database(connection.engine.url)
    )
