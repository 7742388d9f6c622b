"""The async floor: the same work done with the bare asyncio driver, no storage layer.

The twin of :mod:`.floor`, for the async storage's rows: psycopg's ``AsyncConnection``
(with psycopg's default ``prepare_threshold``, so each statement is prepared on the
server after its fifth use), aiomysql and aiosqlite, on two connections of their own
(read and write) on the run's database and tokenstore-sql's table. The work is
:mod:`.floor`'s: reads are one ``SELECT`` on an autocommit connection; writes are the
upsert (or delete) and a commit, on SQLite inside ``BEGIN IMMEDIATE``. An aiosqlite read
is one call to its thread (``execute_fetchall``), the fewest it takes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from .data import (
    HIT,
    REMOVED,
    RESOURCE_SERVERS,
    STORE_ONE,
    STORE_THREE,
    by_resource_server,
    row_values,
)
from .databases import Database
from .floor import _statements
from .subjects import Op, Subject

DRIVERS: Final = {
    "sqlite": "aiosqlite",
    "postgresql": "psycopg AsyncConnection",
    "mysql": "aiomysql",
}
KIND: Final = "floor (async)"


def label(backend: str) -> str:
    """Label the async floor on ``backend``."""
    return f"async floor: {DRIVERS[backend]}"


async def _connect(database: Database, *, autocommit: bool) -> Any:
    url = database.url
    if database.backend == "sqlite":
        import aiosqlite

        connection = await aiosqlite.connect(url.database or "", isolation_level=None)
        await connection.execute("PRAGMA busy_timeout = 30000")
        await connection.execute("PRAGMA synchronous = FULL")
        return connection
    if database.backend == "postgresql":
        import psycopg

        return await psycopg.AsyncConnection.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=autocommit,
        )
    import aiomysql

    return await aiomysql.connect(
        host=url.host or "localhost",
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        db=url.database,
        charset="utf8mb4",
        autocommit=autocommit,
    )


class AsyncFloor:
    """Bare-driver coroutines for each operation, on two connections (read and write)."""

    def __init__(self, backend: str, reader: Any, writer: Any, namespace: str) -> None:
        self.backend, self.reader, self.writer = backend, reader, writer
        self.namespace = namespace
        self.sql = _statements(backend)
        self.tokens = by_resource_server((*RESOURCE_SERVERS, REMOVED))

    @classmethod
    async def open(cls, database: Database, namespace: str) -> AsyncFloor:
        """Connect its two connections and store five resource servers."""
        reader = await _connect(database, autocommit=True)
        writer = await _connect(database, autocommit=False)
        made = cls(database.backend, reader, writer, namespace)
        await made.store(RESOURCE_SERVERS)
        return made

    async def close(self) -> None:
        """Close both connections."""
        for connection in (self.reader, self.writer):
            closed = connection.close()
            if closed is not None:  # aiomysql closes at once; the others are awaited
                await closed

    async def _read(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        if self.backend == "sqlite":
            rows = list(await self.reader.execute_fetchall(sql, params))
            return rows if many else (rows[0] if rows else None)
        async with self.reader.cursor() as cursor:
            await cursor.execute(sql, params)
            return await (cursor.fetchall() if many else cursor.fetchone())

    async def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.backend == "sqlite":
            await self.writer.execute("BEGIN IMMEDIATE")
            await self.writer.executemany(sql, rows)
            await self.writer.commit()
            return
        async with self.writer.cursor() as cursor:
            if len(rows) == 1:
                await cursor.execute(sql, rows[0])
            else:
                await cursor.executemany(sql, rows)
        await self.writer.commit()

    def _rows(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        return [row_values(self.namespace, self.tokens[name], self.backend) for name in names]

    async def get_hit(self) -> Any:
        """Select one row by its primary key."""
        return await self._read(self.sql["one"], (self.namespace, HIT), many=False)

    async def get_all(self) -> Any:
        """Select the rows of one namespace."""
        return await self._read(self.sql["all"], (self.namespace,), many=True)

    async def store(self, names: tuple[str, ...]) -> None:
        """Upsert some resource servers' rows and commit."""
        await self._write(self.sql["upsert"], self._rows(names))

    async def put_removed(self) -> None:
        """Store the row that :meth:`remove` deletes."""
        await self.store((REMOVED,))

    async def remove(self) -> None:
        """Delete one row by its primary key and commit."""
        await self._write(self.sql["delete"], [(self.namespace, REMOVED)])


def ops(floor: AsyncFloor) -> dict[str, Op]:
    """Give the async storage's operations (:data:`.async_rows.OPERATIONS`), done bare."""
    return {
        "get_hit": Op(floor.get_hit),
        "get_all": Op(floor.get_all),
        "store_1": Op(lambda: floor.store(STORE_ONE)),
        "store_3": Op(lambda: floor.store(STORE_THREE)),
        "remove": Op(floor.remove, setup=floor.put_removed),
    }


def subject(database: Database, loop: asyncio.AbstractEventLoop) -> Subject:
    """Measure the async floor, its connections opened on ``loop`` (the run's one loop)."""
    floor = loop.run_until_complete(AsyncFloor.open(database, "bench-async-floor"))
    closed: list[bool] = []

    def close() -> None:  # once: when the latency table is done, and at the end
        if not closed:
            closed.append(True)
            loop.run_until_complete(floor.close())

    return Subject(
        label(database.backend), KIND, database.backend, ops(floor), close, extra={"loop": loop}
    )
