"""Async gets that would wait for a connection, served together: one statement for many.

With many tasks on one event loop, most calls wait in the handoff's line
(:mod:`tokenstore_sql.async_handoff`) for a connection, and each then costs a round
trip of its own, with asyncio's work around it (a future, a reader added to the loop
and taken off again): on PostgreSQL, most of a call's time in the client. So a get that
would wait joins the batch that gathers meanwhile. The first get of a batch leads it: it
waits in line as any call does, and when its connection comes it takes every key
gathered so far, sends one ``SELECT`` for all of them, and gives each get its row. Keys
asked for twice are fetched once. A get that need not wait runs alone, as before.

Each get still reads its own row into token data (with its storage's keys) and keeps
its own retry policy: a failed batch fails each of its gets, and each is tried again
alone or in a later batch. A get cancelled while it waits leaves the batch; a leader
cancelled before its connection came sends the others back to start again. One
statement is atomic and reads one snapshot, so a batch's rows are as consistent as
one get's.
"""

from __future__ import annotations

import asyncio
import weakref
from operator import methodcaller
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from .async_direct import one_statement
from .async_direct_drivers import AsyncLent
from .async_handoff import Handoff
from .async_pools import handoff_for
from .compiled import compiled_for
from .statements import TokenStatements

Key = tuple[str, str]  # namespace, resource server
Values = list[Any]  # a row's values, in codec.READ_COLUMNS order
# What a get is told when its batch's leader was cancelled before it could send it.
_AGAIN: Final = object()


class _Batch:
    """The keys of gets waiting together, each get with the future of its row."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Key, asyncio.Future[Any]]] = []

    def join(self, key: Key) -> asyncio.Future[Any]:
        # A future per get, even for a key asked for twice: a get cancelled while it
        # waits cancels its own future, and no other get's.
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((key, future))
        return future

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        for _, future in self.waiting:
            if future.done():  # its get was cancelled
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


# The batch gathering on each handoff (pool and loop), for each table's statements.
_gathering: weakref.WeakKeyDictionary[Handoff, dict[TokenStatements, _Batch]] = (
    weakref.WeakKeyDictionary()
)


async def fetch_one(
    engine: AsyncEngine, statements: TokenStatements, namespace: str, resource_server: str
) -> Values | None:
    """Give the values of one key's row (None if absent): alone, or in a batch if it would wait.

    :raises sqlalchemy.exc.DBAPIError: as SQLAlchemy would raise it, parameters hidden
    """
    while True:
        handoff = handoff_for(engine.sync_engine)
        if handoff is None or not handoff.would_wait():
            one = compiled_for(statements.select_one, engine.sync_engine.dialect)
            params = one.parameters({"namespace": namespace, "resource_server": resource_server})
            rows = await one_statement(
                engine, one.sql, methodcaller("fetch", one.sql, params), handoff
            )
            return one.values(rows[0]) if rows else None
        open_batches = _gathering.setdefault(handoff, {})
        batch = open_batches.get(statements)
        key = (namespace, resource_server)
        if batch is None:
            batch = open_batches[statements] = _Batch()
            row = await _lead(engine, handoff, statements, batch, key, open_batches)
        else:
            row = await batch.join(key)
        if row is not _AGAIN:
            return row  # type: ignore[no-any-return]


async def _lead(
    engine: AsyncEngine,
    handoff: Handoff,
    statements: TokenStatements,
    batch: _Batch,
    key: Key,
    open_batches: dict[TokenStatements, _Batch],
) -> Any:
    """Wait in line for a connection, then fetch the whole batch's rows on it."""
    own = batch.join(key)

    def close() -> None:  # the batch takes no more keys
        if open_batches.get(statements) is batch:
            del open_batches[statements]

    async def serve(lent: AsyncLent) -> None:
        close()
        await _fetch_batch(lent, engine, statements, batch)

    one = compiled_for(statements.select_one, engine.dialect)
    try:
        await one_statement(engine, one.sql, serve, handoff)
    except BaseException as exc:
        close()
        own.cancel()  # the leader raises: its own row is not awaited
        if isinstance(exc, asyncio.CancelledError):
            batch.settle(_AGAIN)  # unless already served: the others start again
        else:
            batch.settle(error=exc)
        raise
    return own.result()


async def _fetch_batch(
    lent: AsyncLent, engine: AsyncEngine, statements: TokenStatements, batch: _Batch
) -> None:
    keys = list(dict.fromkeys(key for key, future in batch.waiting if not future.done()))
    statement = compiled_for(statements.select_keys(len(keys)), engine.dialect)
    values: dict[str, str] = {}
    for i, (namespace, resource_server) in enumerate(keys):
        values[f"namespace_{i}"] = namespace
        values[f"resource_server_{i}"] = resource_server
    fetched = await lent.fetch(statement.sql, statement.parameters(values))
    # The namespace first, then the values of a get's row.
    found = {(row[0], row[1]): row for row in map(statement.values, fetched)}
    for key, future in batch.waiting:
        if not future.done():
            # A list each: two gets of one key must not share a mutable one.
            row = found.get(key)
            future.set_result(None if row is None else row[1:])
