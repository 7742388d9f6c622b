"""What a database driver sends, whichever path sent it, and a hook before each statement.

SQLAlchemy's ``before_cursor_execute`` event sees the statements SQLAlchemy executes,
not the storage's statements on the driver's connection, nor what a driver sends on
its own (``COMMIT``, ``ROLLBACK``). These hooks sit in the driver: sqlite3's trace
callback (after the fact: it records, it cannot interrupt), a cursor class for psycopg
(an ``executemany`` counts once), and PyMySQL's command method, installed on each
connection as it leaves the pool and removed as it returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

# hook(driver connection, SQL text): runs before the driver sends the statement
Hook = Callable[[Any, str], None]


@dataclass(frozen=True)
class Sent:
    """One statement as the driver sent it, and whether its connection was in autocommit."""

    sql: str
    autocommit: bool | None  # None where the driver does not say (sqlite3)

    @property
    def verb(self) -> str:
        return self.sql.split(None, 1)[0].upper() if self.sql.strip() else ""


@contextmanager
def sent_statements(engine: Engine) -> Iterator[list[Sent]]:
    """Collect every statement the engine's connections send while the block runs."""
    sent: list[Sent] = []

    def record(connection: Any, sql: str) -> None:
        autocommit = None if isinstance(connection, sqlite3.Connection) else _autocommit(connection)
        sent.append(Sent(sql, autocommit))

    with before_statements(engine, record):
        yield sent


@contextmanager
def before_statements(engine: Engine, hook: Hook) -> Iterator[None]:
    """Call ``hook`` for each statement the engine's connections send while the block runs.

    On PostgreSQL and MySQL the hook runs before the statement and may raise (as the
    driver would) or act on the session; on SQLite it runs as the statement executes.
    """
    undo: dict[int, Callable[[], None]] = {}

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        undo[id(dbapi_connection)] = _hook_into(dbapi_connection, hook)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        restore = undo.pop(id(dbapi_connection), None)
        if restore is not None:
            restore()

    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield
    finally:
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine.pool, "checkin", on_checkin)
        for restore in undo.values():
            restore()


def _autocommit(connection: Any) -> bool:
    if type(connection).__module__.startswith("psycopg"):
        return bool(connection.autocommit)
    return bool(connection.get_autocommit())


def _hook_into(connection: Any, hook: Hook) -> Callable[[], None]:
    if isinstance(connection, sqlite3.Connection):
        connection.set_trace_callback(lambda sql: hook(connection, sql))
        return lambda: connection.set_trace_callback(None)
    if type(connection).__module__.startswith("psycopg"):
        original_factory = connection.cursor_factory

        class HookedCursor(original_factory):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, str(query))
                return super().execute(query, *args, **kwargs)

            def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, str(query))
                return super().executemany(query, *args, **kwargs)

        connection.cursor_factory = HookedCursor
        return lambda: setattr(connection, "cursor_factory", original_factory)
    import pymysql

    if isinstance(connection, pymysql.connections.Connection):
        original_command = connection._execute_command

        def execute_command(command: int, sql: Any) -> Any:
            hook(connection, sql.decode() if isinstance(sql, (bytes, bytearray)) else str(sql))
            return original_command(command, sql)

        connection._execute_command = execute_command
        return lambda: delattr(connection, "_execute_command")
    raise TypeError(f"no statement hook for {type(connection).__name__}")
