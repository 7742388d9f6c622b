"""The retry policy: which database errors are safe to repeat, and how often.

A storage call is one transaction. When it fails with an error that leaves nothing
applied (the connection was lost, a deadlock or serialization failure rolled the
transaction back, SQLite's lock stayed busy) the whole transaction is run again, with
exponential backoff and jitter, until the attempts or the time budget run out. Anything
else is not retried. Errors leave here without the driver's text, which can quote rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .engines import describe_database
from .errors import DatabaseOperationError, StorageUnavailableError

T = TypeVar("T")

# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected.
_POSTGRESQL_RETRY_STATES = frozenset({"40001", "40P01"})
# MySQL/MariaDB: lock wait timeout, deadlock, server gone away, lost connection,
# cannot connect, server shutting down, connection killed.
_MYSQL_RETRY_CODES = frozenset({1205, 1213, 2003, 2006, 2013, 1053, 1927})
# SQLite result codes (primary): SQLITE_BUSY, SQLITE_LOCKED.
_SQLITE_RETRY_CODES = frozenset({5, 6})


@dataclass(frozen=True)
class RetryPolicy:
    """How a storage repeats a transaction that failed in a way that is safe to repeat.

    :param attempts: the most times one call runs its transaction
    :param first_delay: seconds to wait after the first failure; doubles each time
    :param max_delay: the longest single wait
    :param deadline: seconds after which no new attempt starts
    """

    attempts: int = 6
    first_delay: float = 0.05
    max_delay: float = 2.0
    deadline: float = 15.0

    def run(self, operation: str, engine: Engine, transaction: Callable[[], T]) -> T:
        """Run ``transaction`` until it succeeds or the policy gives up.

        :raises StorageUnavailableError: transient failures outlasted the policy
        :raises DatabaseOperationError: the database refused for a lasting reason
        """
        started = time.monotonic()
        delay = self.first_delay
        attempt = 1
        while True:
            try:
                return transaction()
            except DBAPIError as exc:
                code = error_code(exc)
                database = describe_database(engine.url)
                if not is_transient(exc, engine.dialect.name):
                    raise DatabaseOperationError(operation, database, code) from None
                waited = time.monotonic() - started
                if attempt >= self.attempts or waited + delay > self.deadline:
                    raise StorageUnavailableError(operation, database, code) from None
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.max_delay)
            attempt += 1


def error_code(exc: DBAPIError) -> str | None:
    """Return the SQLSTATE or driver error number of a database error, if it has one."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return str(sqlite_code)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return str(args[0])
    return None


def is_transient(exc: DBAPIError, dialect: str) -> bool:
    """Tell whether a transaction that failed with ``exc`` on ``dialect`` may run again."""
    if exc.connection_invalidated:
        return True
    code = error_code(exc)
    if code is None:
        # Drivers give connection-level failures (refused, reset, timed out) no code.
        return isinstance(exc, OperationalError)
    if dialect == "postgresql":
        return code in _POSTGRESQL_RETRY_STATES or code.startswith("08")  # 08: connection
    if dialect in ("mysql", "mariadb"):
        return code.isdigit() and int(code) in _MYSQL_RETRY_CODES
    if dialect == "sqlite":
        return code.isdigit() and (int(code) & 0xFF) in _SQLITE_RETRY_CODES
    return False
