"""Named database locks; each backend says how its database takes one.

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

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .backends import backend_of
from .backends.mysql import lock_name as mysql_lock_name
from .backends.postgresql import lock_key as postgresql_lock_key
from .checks import checked_number
from .engines import describe_database
from .errors import StorageUnavailableError
from .execution import transaction
from .statements import check_dialect

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_SECONDS",
    "lock_name",
    "lock_on",
    "locked_transaction",
    "locked_transaction_on",
    "mysql_lock_name",
    "postgresql_lock_key",
]

DEFAULT_LOCK_TIMEOUT_SECONDS: Final = 30
"""How long a named lock is waited for by default, in seconds."""


def lock_name(*parts: str) -> str:
    """Join the parts of a lock's identity into one unambiguous name."""
    # lengths first, so ("a:b", "c") and ("a", "b:c") never give the same name
    return "|".join(f"{len(part)}:{part}" for part in parts)


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
            _release_session_lock(connection, name)


def _take(
    connection: Connection, name: str, timeout: int, *, bound_postgresql_wait: bool = True
) -> None:
    if not backend_of(connection.dialect).take_lock(
        connection, name, timeout, bound_postgresql_wait
    ):
        raise _timed_out(connection, timeout)


def _release_session_lock(connection: Connection, name: str) -> None:
    release = backend_of(connection.dialect).release_lock
    if release is not None:
        release(connection, name)


def _release(connection: Connection, name: str) -> None:
    if backend_of(connection.dialect).release_lock is None or connection.closed:
        return
    try:
        _release_session_lock(connection, name)
        connection.rollback()  # ends the transaction that statement began
    except DBAPIError:
        # The session is unusable; closing it for good is what releases its locks.
        connection.invalidate()


def _timed_out(connection: Connection, timeout: int) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"take a lock within {timeout} s", describe_database(connection.engine.url)
    )
