"""What a database driver actually sent, whichever path sent it.

SQLAlchemy's ``before_cursor_execute`` event sees the statements SQLAlchemy executes,
not the storage's reads on the driver's connection, nor what a driver sends on its own
(``COMMIT``, ``ROLLBACK``). These recorders sit in the driver: sqlite3's trace callback,
a recording cursor class for psycopg (an ``executemany`` counts once), and PyMySQL's
command method, installed on each connection as it leaves the pool and removed as it
returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event


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
    undo: dict[int, Callable[[], None]] = {}

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        undo[id(dbapi_connection)] = _record_on(dbapi_connection, sent)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        restore = undo.pop(id(dbapi_connection), None)
        if restore is not None:
            restore()

    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield sent
    finally:
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine.pool, "checkin", on_checkin)
        for restore in undo.values():
            restore()


def _record_on(connection: Any, sent: list[Sent]) -> Callable[[], None]:
    if isinstance(connection, sqlite3.Connection):
        connection.set_trace_callback(lambda sql: sent.append(Sent(sql, None)))
        return lambda: connection.set_trace_callback(None)
    module = type(connection).__module__
    if module.startswith("psycopg"):
        original_factory = connection.cursor_factory

        class RecordingCursor(original_factory):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                sent.append(Sent(str(query), bool(self.connection.autocommit)))
                return super().execute(query, *args, **kwargs)

            def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                sent.append(Sent(str(query), bool(self.connection.autocommit)))
                return super().executemany(query, *args, **kwargs)

        connection.cursor_factory = RecordingCursor
        return lambda: setattr(connection, "cursor_factory", original_factory)
    if module.startswith("pymysql") or module.startswith("tokenstore_sql"):
        original_command = connection._execute_command

        def execute_command(command: int, sql: Any) -> Any:
            text = sql.decode() if isinstance(sql, (bytes, bytearray)) else str(sql)
            sent.append(Sent(text, bool(connection.get_autocommit())))
            return original_command(command, sql)

        connection._execute_command = execute_command
        return lambda: delattr(connection, "_execute_command")
    raise TypeError(f"no statement recorder for {type(connection).__name__}")
