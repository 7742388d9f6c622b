"""The retry policy: which database errors are safe to repeat, and how often.

A storage call is one transaction. When it fails with an error that leaves nothing
applied (the connection was lost, a deadlock or serialization failure rolled the
transaction back, SQLite's lock stayed busy) the whole transaction is run again, with
exponential backoff and jitter, until the attempts or the time budget run out. Anything
else is not retried. Errors leave here without the driver's text, which can quote rows.

A retried write may have been applied once already, when the connection was lost
during its commit. Every write a storage makes is safe to repeat: an upsert of the same
values, or a delete of the same keys.

How long a call can take when the database is down: attempts stop starting after
``deadline`` seconds, and one attempt is bounded by the engine's ``connect_timeout``
(see :mod:`tokenstore_sql.engines`), so a call gives up after about
``deadline + connect_timeout`` seconds at most; on a multi-host PostgreSQL URL libpq
tries each host in turn, so ``deadline + connect_timeout`` times the number of hosts.

MySQL errors are classified by the server's or client's error number, not by SQLSTATE:
PyMySQL reports a deadlock (1213) with SQLSTATE 40001 and a lock wait timeout (1205)
with HY000, so the number is the one reliable handle.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .backends import find_backend
from .checks import checked_number
from .conditions import condition_of
from .engines import describe_database
from .errors import DatabaseOperationError, StorageUnavailableError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a storage repeats a transaction that failed in a way that is safe to repeat.

    :param attempts: the most times one call runs its transaction
    :param first_delay: seconds to wait after the first failure; doubles each time
    :param max_delay: the longest single wait
    :param deadline: seconds after which no new attempt starts
    :raises ConfigurationError: a field is not a number, or out of range (``attempts``
        at least 1, the delays at least 0, ``deadline`` more than 0)
    """

    attempts: int = 6
    first_delay: float = 0.05
    max_delay: float = 2.0
    deadline: float = 15.0

    def __post_init__(self) -> None:
        checked_number("attempts", self.attempts, minimum=1, whole=True, unit="")
        checked_number("first_delay", self.first_delay)
        checked_number("max_delay", self.max_delay)
        checked_number("deadline", self.deadline, positive=True)

    def run(self, operation: str, engine: Engine, transaction: Callable[..., T], *args: Any) -> T:
        """Run ``transaction(*args)`` until it succeeds or the policy gives up.

        :raises StorageUnavailableError: transient failures outlasted the policy
        :raises DatabaseOperationError: the database refused for a lasting reason
        """
        started, attempts = time.monotonic(), None
        while True:
            try:
                return transaction(*args)
            except (PoolTimeoutError, DBAPIError) as exc:
                failure = exc
            # Outside the except block: an error raised here carries no __context__,
            # so the driver's text (which can quote rows) is not reachable from it.
            attempts = attempts or _Attempts(self, operation, engine, started)
            time.sleep(attempts.wait_after(failure))
            del failure

    async def run_async(
        self,
        operation: str,
        engine: AsyncEngine,
        transaction: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """Await ``transaction(*args)`` until it succeeds or the policy gives up, as :meth:`run`."""
        started, attempts = time.monotonic(), None
        while True:
            try:
                return await transaction(*args)
            except (PoolTimeoutError, DBAPIError) as exc:
                failure = exc
            attempts = attempts or _Attempts(self, operation, engine, started)
            await asyncio.sleep(attempts.wait_after(failure))  # as in run(): no __context__
            del failure


class _Attempts:
    """The state of one call under a policy: when to try again, and when to give up."""

    def __init__(
        self, policy: RetryPolicy, operation: str, engine: Engine | AsyncEngine, started: float
    ) -> None:
        """Begin after the first attempt failed; ``started`` is when that attempt began."""
        self.policy, self.operation, self.engine = policy, operation, engine
        self.started = started
        self.delay = policy.first_delay
        self.attempt = 1

    def wait_after(self, exc: PoolTimeoutError | DBAPIError) -> float:
        """Give the seconds to wait before the next attempt, or raise to give up."""
        database = describe_database(self.engine.url)
        if isinstance(exc, PoolTimeoutError):
            # Every pooled connection stayed busy for the pool's whole timeout: waiting
            # longer here would only stack up more callers.
            raise StorageUnavailableError(self.operation, database) from None
        code = error_code(exc)
        dialect = self.engine.dialect.name
        condition = condition_of(exc, dialect, code)
        if not is_transient(exc, dialect):
            raise DatabaseOperationError(self.operation, database, code, condition)
        waited = time.monotonic() - self.started
        if self.attempt >= self.policy.attempts or waited + self.delay > self.policy.deadline:
            raise StorageUnavailableError(self.operation, database, code, condition)
        wait = self.delay * (0.5 + random.random() / 2)
        self.delay = min(self.delay * 2, self.policy.max_delay)
        self.attempt += 1
        return wait


def error_code(exc: DBAPIError) -> str | None:
    """Return the driver's error number, else the SQLSTATE, of a database error, if any.

    SQLite's result code and MySQL's error number come first: they are more specific
    than the SQLSTATE that PyMySQL also reports (40001 for a deadlock, HY000 for many).
    """
    orig = exc.orig
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return str(sqlite_code)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL and mysqlclient: (errno, message)
        return str(args[0])
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate
    return None


def is_transient(exc: DBAPIError, dialect: str) -> bool:
    """Tell whether a transaction that failed with ``exc`` on ``dialect`` may run again."""
    if exc.connection_invalidated:
        return True
    code = error_code(exc)
    if code is None:
        # Drivers give connection-level failures (refused, reset, timed out) no code.
        # psycopg gives none to a missing database or role either; those stay retried,
        # as a database just created on a primary may not have reached a standby yet.
        return isinstance(exc, OperationalError)
    backend = find_backend(dialect)  # each backend names its retryable codes
    return backend is not None and backend.is_transient_code(code)
