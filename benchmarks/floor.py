"""The floor: the same work done with the bare driver, no storage layer at all.

Reads are one primary-key (or namespace) ``SELECT`` on an autocommit connection, so a
single round trip; writes are the upsert (or delete) and a commit. The statements use
tokenstore-sql's own table, in the run's database.
"""

from __future__ import annotations

from typing import Any

from tokenstore_sql.models import TOKENS_TABLE

from .data import COLUMNS, HIT, MISS, REMOVED, RESOURCE_SERVERS, by_resource_server, row_values
from .databases import Database

_SELECTED = ", ".join(COLUMNS[1:10])
_UPDATED = COLUMNS[2:]


def _statements(backend: str) -> dict[str, str]:
    mark = "?" if backend == "sqlite" else "%s"
    key = f"namespace = {mark} AND resource_server = {mark}"
    insert = (
        f"INSERT INTO {TOKENS_TABLE} ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(COLUMNS))}) "
    )
    if backend == "mysql":
        upsert = (
            insert
            + "ON DUPLICATE KEY UPDATE "
            + ", ".join(f"{name} = VALUES({name})" for name in _UPDATED if name != "created_at")
        )
    else:
        upsert = (
            insert
            + "ON CONFLICT (namespace, resource_server) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in _UPDATED if name != "created_at")
        )
    return {
        "one": f"SELECT {_SELECTED} FROM {TOKENS_TABLE} WHERE {key}",
        "all": f"SELECT {_SELECTED} FROM {TOKENS_TABLE} WHERE namespace = {mark}",
        "upsert": upsert,
        "delete": f"DELETE FROM {TOKENS_TABLE} WHERE {key}",
    }


class Floor:
    """Bare-driver versions of each operation, on two connections (read and write)."""

    def __init__(self, database: Database, namespace: str) -> None:
        self.backend = database.backend
        self.namespace = namespace
        self.sql = _statements(self.backend)
        self.reader = database.raw_connection(autocommit=True)
        self.writer = database.raw_connection(autocommit=False)
        self.tokens = by_resource_server((*RESOURCE_SERVERS, REMOVED))

    def close(self) -> None:
        """Close both connections."""
        self.reader.close()
        self.writer.close()

    def _read(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        if self.backend == "sqlite":
            cursor = self.reader.execute(sql, params)
            return cursor.fetchall() if many else cursor.fetchone()
        with self.reader.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if many else cursor.fetchone()

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.backend == "sqlite":
            self.writer.execute("BEGIN IMMEDIATE")
            self.writer.executemany(sql, rows)
            self.writer.execute("COMMIT")
            return
        with self.writer.cursor() as cursor:
            if len(rows) == 1:
                cursor.execute(sql, rows[0])
            else:
                cursor.executemany(sql, rows)
        self.writer.commit()

    def get_hit(self) -> Any:
        """Select one row by its primary key."""
        return self._read(self.sql["one"], (self.namespace, HIT), many=False)

    def get_miss(self) -> Any:
        """Select a primary key that is not there."""
        return self._read(self.sql["one"], (self.namespace, MISS), many=False)

    def get_all(self) -> Any:
        """Select the rows of one namespace."""
        return self._read(self.sql["all"], (self.namespace,), many=True)

    def _rows(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        # A new updated_at each time, as the storage writes: an upsert that changes
        # nothing is a no-op that MySQL commits without touching its log.
        return [row_values(self.namespace, self.tokens[name], self.backend) for name in names]

    def store(self, names: tuple[str, ...]) -> None:
        """Upsert some resource servers' rows and commit."""
        self._write(self.sql["upsert"], self._rows(names))

    def put_removed(self) -> None:
        """Store the row that :meth:`remove` deletes."""
        self._write(self.sql["upsert"], self._rows((REMOVED,)))

    def remove(self) -> None:
        """Delete one row by its primary key and commit."""
        self._write(self.sql["delete"], [(self.namespace, REMOVED)])
