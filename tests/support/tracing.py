"""What a database driver sends, whichever path sent it, and a hook before each statement.

SQLAlchemy's ``before_cursor_execute`` event sees the statements SQLAlchemy executes,
not the storages' statements on the driver's connection, nor what a driver sends on
its own (``COMMIT``, ``ROLLBACK``). These hooks sit in the driver, sync or asyncio: a
cursor class for psycopg's ``Connection`` and ``AsyncConnection`` (an ``executemany``
counts once), the command method of PyMySQL and aiomysql, and sqlite3's trace callback,
directly or through aiosqlite (after the fact: it records, it cannot interrupt). Each is
installed on a connection as it leaves the pool and removed as it returns.

A PostgreSQL read prepared by name (:mod:`tokenstore_sql.named_reads`) reaches a hook as
the ``SELECT`` it runs: the text of a ``PREPARE`` seen once stands for its later ``EXECUTE``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

# hook(driver connection, SQL text): runs before the driver sends the statement
Hook = Callable[[Any, str], None]

# Named reads' statements, by name, from the PREPAREs seen (names come from the text).
_NAMED: dict[str, str] = {}
_PREPARE = re.compile(r"(?:DEALLOCATE \w+; )?PREPARE (\w+) AS (.*); EXECUTE \1\(", re.DOTALL)
_EXECUTE = re.compile(r"EXECUTE (tokenstore_sql_\w+)\(")


def statement_of(message: str) -> str:
    """Give the statement a message runs: a named read's ``SELECT``, else the message."""
    prepare = _PREPARE.match(message)
    if prepare is not None:
        _NAMED[prepare[1]] = prepare[2]
        return prepare[2]
    execute = _EXECUTE.match(message)
    if execute is not None and execute[1] in _NAMED:
        return _NAMED[execute[1]]
    return message


@dataclass(frozen=True)
class Sent:
    """One statement as the driver sent it, and whether its connection was in autocommit."""

    sql: str
    autocommit: bool | None  # None where the driver does not say (sqlite3, aiosqlite)

    @property
    def verb(self) -> str:
        return self.sql.split(None, 1)[0].upper() if self.sql.strip() else ""


@contextmanager
def sent_statements(engine: Engine | AsyncEngine) -> Iterator[list[Sent]]:
    """Collect every statement the engine's connections send while the block runs."""
    sent: list[Sent] = []

    def record(connection: Any, sql: str) -> None:
        sent.append(Sent(sql, _autocommit(connection)))

    with before_statements(engine, record):
        yield sent


@contextmanager
def before_statements(engine: Engine | AsyncEngine, hook: Hook) -> Iterator[None]:
    """Call ``hook(driver connection, sql)`` for each statement sent while the block runs.

    On PostgreSQL and MySQL the hook runs before the statement and may raise (as the
    driver would) or act on the session; on SQLite it runs as the statement executes.
    """
    undo: dict[int, Callable[[], None]] = {}

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # an async engine's pool holds adapters; the driver's connection is behind them
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        undo[id(dbapi_connection)] = _hook_into(driver, hook)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        restore = undo.pop(id(dbapi_connection), None)
        if restore is not None:
            restore()

    pool = engine.sync_engine.pool if isinstance(engine, AsyncEngine) else engine.pool
    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    try:
        yield
    finally:
        event.remove(pool, "checkout", on_checkout)
        event.remove(pool, "checkin", on_checkin)
        for restore in undo.values():
            restore()


def _is_mysql(connection: Any) -> bool:
    # by class, not module: the package's own connection classes subclass PyMySQL's
    import pymysql

    return isinstance(connection, pymysql.connections.Connection) or type(
        connection
    ).__module__.startswith("aiomysql")


def _autocommit(connection: Any) -> bool | None:
    if type(connection).__module__.startswith("psycopg"):
        return bool(connection.autocommit)
    if _is_mysql(connection):
        return bool(connection.get_autocommit())
    return None  # sqlite3 and aiosqlite do not say


def _hook_into(connection: Any, hook: Hook) -> Callable[[], None]:
    if isinstance(connection, sqlite3.Connection):
        connection.set_trace_callback(lambda sql: hook(connection, sql))
        return lambda: connection.set_trace_callback(None)
    module = type(connection).__module__
    if module.startswith("psycopg"):
        return _hook_psycopg(connection, hook)
    if _is_mysql(connection):
        return _hook_mysql(connection, hook, asynchronous=module.startswith("aiomysql"))
    if module.startswith("aiosqlite"):
        # Pool events run in SQLAlchemy's greenlet, where a coroutine can be awaited.
        await_only(connection.set_trace_callback(lambda sql: hook(connection, sql)))

        def restore() -> None:
            if in_greenlet():  # else a connection the garbage collector returns
                with suppress(ValueError):  # closed meanwhile (invalidated)
                    await_only(connection.set_trace_callback(None))

        return restore
    raise TypeError(f"no statement hook for {type(connection).__name__}")


def _hook_psycopg(connection: Any, hook: Hook) -> Callable[[], None]:
    original_factory = connection.cursor_factory
    hooked: type[Any]
    if type(connection).__name__.startswith("Async"):

        class HookedAsyncCursor(original_factory):  # type: ignore[misc, valid-type]
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, statement_of(_text(query)))
                return await super().execute(query, *args, **kwargs)

            async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, statement_of(_text(query)))
                return await super().executemany(query, *args, **kwargs)

        hooked = HookedAsyncCursor
    else:

        class HookedCursor(original_factory):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, statement_of(_text(query)))
                return super().execute(query, *args, **kwargs)

            def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, statement_of(_text(query)))
                return super().executemany(query, *args, **kwargs)

        hooked = HookedCursor
    connection.cursor_factory = hooked
    return lambda: setattr(connection, "cursor_factory", original_factory)


def _text(query: Any) -> str:
    return query.decode() if isinstance(query, bytes) else str(query)


def _hook_mysql(connection: Any, hook: Hook, *, asynchronous: bool) -> Callable[[], None]:
    original_command = connection._execute_command

    def announce(sql: Any) -> None:
        hook(connection, sql.decode() if isinstance(sql, (bytes, bytearray)) else str(sql))

    def execute_command(command: int, sql: Any) -> Any:
        announce(sql)
        return original_command(command, sql)

    async def execute_command_async(command: int, sql: Any) -> Any:
        announce(sql)
        return await original_command(command, sql)

    connection._execute_command = execute_command_async if asynchronous else execute_command
    return lambda: delattr(connection, "_execute_command")
