"""What an asyncio driver sends, whichever path sent it, and a hook before each statement.

The async twin of tests/tracing.py. SQLAlchemy's ``before_cursor_execute`` event does
not see the async storage's statements on the driver's own connection, nor what a driver
sends on its own (``COMMIT``, ``ROLLBACK``). These hooks sit in the driver: a cursor class
for psycopg's ``AsyncConnection`` (an ``executemany`` counts once), aiomysql's command
method, and sqlite3's trace callback through aiosqlite (after the fact, on aiosqlite's
thread: it records, it cannot interrupt). Each is installed on a connection as it
leaves the pool and removed as it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

from .tracing import Hook, Sent


@contextmanager
def sent_statements(engine: AsyncEngine) -> Iterator[list[Sent]]:
    """Collect every statement the engine's connections send while the block runs."""
    sent: list[Sent] = []

    def record(connection: Any, sql: str) -> None:
        sent.append(Sent(sql, _autocommit(connection)))

    with before_statements(engine, record):
        yield sent


@contextmanager
def before_statements(engine: AsyncEngine, hook: Hook) -> Iterator[None]:
    """Call ``hook(driver connection, sql)`` for each statement sent while the block runs.

    On PostgreSQL and MySQL the hook runs before the statement and may raise (as the
    driver would) or act on the session; on SQLite it runs as the statement executes.
    """
    undo: dict[int, Callable[[], None]] = {}

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        undo[id(dbapi_connection)] = _hook_into(dbapi_connection.driver_connection, hook)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        restore = undo.pop(id(dbapi_connection), None)
        if restore is not None:
            restore()

    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    try:
        yield
    finally:
        event.remove(pool, "checkout", on_checkout)
        event.remove(pool, "checkin", on_checkin)
        for restore in undo.values():
            restore()


def _autocommit(connection: Any) -> bool | None:
    module = type(connection).__module__
    if module.startswith("psycopg"):
        return bool(connection.autocommit)
    if module.startswith("aiomysql"):
        return bool(connection.get_autocommit())
    return None  # aiosqlite: sqlite3 does not say


def _hook_into(connection: Any, hook: Hook) -> Callable[[], None]:
    module = type(connection).__module__
    if module.startswith("psycopg"):
        original_factory = connection.cursor_factory

        class HookedCursor(original_factory):  # type: ignore[misc, valid-type]
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, str(query))
                return await super().execute(query, *args, **kwargs)

            async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                hook(connection, str(query))
                return await super().executemany(query, *args, **kwargs)

        connection.cursor_factory = HookedCursor
        return lambda: setattr(connection, "cursor_factory", original_factory)
    if module.startswith("aiomysql"):
        original_command = connection._execute_command

        async def execute_command(command: int, sql: Any) -> Any:
            hook(connection, sql.decode() if isinstance(sql, (bytes, bytearray)) else str(sql))
            return await original_command(command, sql)

        connection._execute_command = execute_command
        return lambda: delattr(connection, "_execute_command")
    if module.startswith("aiosqlite"):
        # Pool events run in SQLAlchemy's greenlet, where a coroutine can be awaited.
        await_only(connection.set_trace_callback(lambda sql: hook(connection, sql)))

        def restore() -> None:
            if in_greenlet():  # else a connection the garbage collector returns
                with suppress(ValueError):  # closed meanwhile (invalidated)
                    await_only(connection.set_trace_callback(None))

        return restore
    raise TypeError(f"no statement hook for {type(connection).__name__}")
