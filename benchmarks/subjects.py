"""What is measured: each storage (and the floor) with its operations as plain callables.

An operation may have an untimed ``setup`` (run before each timed call) and an untimed
``cleanup`` (run after each timed batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tokenstore_sql
from tokenstore_sql import SQLAlchemyTokenStorage, TokenStorageData
from tokenstore_sql._sdk import TokenStorage

from .data import (
    HIT,
    MISS,
    REMOVED,
    RESOURCE_SERVERS,
    STORE_ONE,
    STORE_THREE,
    by_resource_server,
)
from .databases import DRIVERS, Database, fill, fill_sdk_json, fill_sdk_sqlite
from .floor import Floor
from .sdk import JSONTokenStorage, MemoryTokenStorage, SQLiteTokenStorage, close_storage

OPERATIONS = ("get_hit", "get_miss", "get_all", "store_1", "store_3", "remove", "construct")
OPERATION_LABELS = {
    "get_hit": "get (hit)",
    "get_miss": "get (miss)",
    "get_all": "get all (5)",
    "store_1": "store 1",
    "store_3": "store 3",
    "remove": "remove",
    "construct": "construct",
}
SDK_SQLITE = "globus-sdk SQLiteTokenStorage"
SDK_JSON = "globus-sdk JSONTokenStorage"
# tokenstore-sql on PostgreSQL with psycopg preparing its statements (see tokenstore_prepared).
PREPARED = "tokenstore-sql (postgresql, prepared)"
PREPARED_KIND = "tokenstore-sql, prepared"
# psycopg's own default: a statement is prepared on a connection after its fifth use.
PSYCOPG_PREPARE_THRESHOLD = 5
# Engines of the benchmark hold a connection per thread of the 16-thread runs.
SERVER_POOL = {"pool_size": 16, "max_overflow": 4}


def tokenstore_label(backend: str) -> str:
    """Label tokenstore-sql's (sync) storage on ``backend``."""
    return f"tokenstore-sql ({backend})"


def pool_options(backend: str) -> dict[str, int]:
    """Give the pool of a benchmark engine on ``backend`` (SQLite keeps its default)."""
    return {} if backend == "sqlite" else SERVER_POOL


@dataclass
class Op:
    """One measured operation."""

    run: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    cleanup: Callable[[], Any] | None = None


@dataclass
class Subject:
    """A storage (or the floor) on one backend, ready to measure."""

    label: str
    kind: str  # "tokenstore-sql", "globus-sdk" or "floor"
    backend: str  # the database it uses; globus-sdk's storages count as sqlite
    ops: dict[str, Op]
    close: Callable[[], Any]
    grow: Callable[[int], None] | None = None  # fills its data to N namespaces
    extra: dict[str, Any] = field(default_factory=dict)
    scale: int = 1  # namespaces its database holds

    @property
    def floor_label(self) -> str:
        """The label of the floor this subject is compared with."""
        return f"floor: {DRIVERS[self.backend]}"


class Storage(Protocol):
    """What the operations call: a ``TokenStorage``, or the async storage.

    The async storage's calls give coroutines, which its cells await.
    """

    def get_token_data(self, resource_server: str, /) -> Any: ...

    def get_token_data_by_resource_server(self) -> Any: ...

    def store_token_data_by_resource_server(
        self, data: Mapping[str, TokenStorageData], /
    ) -> Any: ...

    def remove_token_data(self, resource_server: str, /) -> Any: ...


def storage_ops(read: Storage, write: Storage) -> dict[str, Op]:
    """Give the operations of a storage, sync or async; ``read`` holds five resource servers."""
    one, three = by_resource_server(STORE_ONE), by_resource_server(STORE_THREE)
    removed = by_resource_server((REMOVED,))
    return {
        "get_hit": Op(lambda: read.get_token_data(HIT)),
        "get_miss": Op(lambda: read.get_token_data(MISS)),
        "get_all": Op(read.get_token_data_by_resource_server),
        "store_1": Op(lambda: write.store_token_data_by_resource_server(one)),
        "store_3": Op(lambda: write.store_token_data_by_resource_server(three)),
        "remove": Op(
            lambda: write.remove_token_data(REMOVED),
            setup=lambda: write.store_token_data_by_resource_server(removed),
        ),
    }


def filled_ops(
    read: TokenStorage, write: TokenStorage, construct: Op | None = None
) -> dict[str, Op]:
    """Store five resource servers in ``read``; give the operations, and ``construct`` if any."""
    read.store_token_data_by_resource_server(by_resource_server())
    ops = storage_ops(read, write)
    if construct is not None:
        ops["construct"] = construct
    return ops


def tokenstore(database: Database, **engine_options: Any) -> Subject:
    """Measure tokenstore-sql over one shared engine, as a web backend uses it."""
    engine_options = {**pool_options(database.backend), **engine_options}
    engine = tokenstore_sql.create_engine(database.url, **engine_options)
    read = SQLAlchemyTokenStorage(engine, namespace="bench-ours-read")
    write = SQLAlchemyTokenStorage(engine, namespace="bench-ours-write")
    construct = Op(lambda: SQLAlchemyTokenStorage(engine, namespace="bench-request"))
    return Subject(
        tokenstore_label(database.backend),
        "tokenstore-sql",
        database.backend,
        filled_ops(read, write, construct),
        engine.dispose,
        grow=lambda target: fill(database, target),
        extra={"engine": engine, "url": database.url},
    )


def tokenstore_prepared(database: Database) -> Subject:
    """Measure tokenstore-sql on PostgreSQL with psycopg's server-side prepared statements.

    tokenstore-sql's engines turn them off (``prepare_threshold=None``): behind
    PgBouncer's transaction pooling a statement prepared on one server connection is
    run on another. This subject puts psycopg's default back (prepared after the fifth
    use), on the same database and in the same rounds as :func:`tokenstore`, to show
    what doing without them costs on a direct connection. It has no ``construct``
    (the same as the default subject's) and no ``grow``: its database is that subject's.
    """
    engine = tokenstore_sql.create_engine(
        database.url,
        **pool_options(database.backend),
        connect_args={"prepare_threshold": PSYCOPG_PREPARE_THRESHOLD},
    )
    read = SQLAlchemyTokenStorage(engine, namespace="bench-prepared-read")
    write = SQLAlchemyTokenStorage(engine, namespace="bench-prepared-write")
    return Subject(
        PREPARED,
        PREPARED_KIND,
        database.backend,
        filled_ops(read, write),
        engine.dispose,
        extra={"engine": engine, "url": database.url},
    )


def floor(database: Database) -> Subject:
    """Measure the bare driver on the same table (its data grows with tokenstore-sql's)."""
    bare = Floor(database, "bench-floor")
    bare.store(RESOURCE_SERVERS)
    ops = {
        "get_hit": Op(bare.get_hit),
        "get_miss": Op(bare.get_miss),
        "get_all": Op(bare.get_all),
        "store_1": Op(lambda: bare.store(STORE_ONE)),
        "store_3": Op(lambda: bare.store(STORE_THREE)),
        "remove": Op(bare.remove, setup=bare.put_removed),
    }
    return Subject(
        f"floor: {DRIVERS[database.backend]}", "floor", database.backend, ops, bare.close
    )


def _closing_constructor(make: Callable[[], TokenStorage]) -> Op:
    made: list[TokenStorage] = []

    def cleanup() -> None:
        for storage in made:
            close_storage(storage)
        made.clear()

    return Op(lambda: made.append(make()), cleanup=cleanup)


def _sdk_file(
    label: str,
    open_at: Callable[[str], TokenStorage],
    fill_file: Callable[[Path, int, int], None],
    path: Path,
) -> Subject:
    """Measure a globus-sdk storage kept in one file; ``open_at`` opens it at a namespace."""
    read, write = open_at("bench-read"), open_at("bench-write")
    held = [1]  # namespaces the file holds

    def grow(target: int) -> None:
        fill_file(path, held[0], target)
        held[0] = max(held[0], target)

    def close() -> None:
        close_storage(read)
        close_storage(write)

    construct = _closing_constructor(lambda: open_at("bench-request"))
    ops = filled_ops(read, write, construct)
    return Subject(label, "globus-sdk", "sqlite", ops, close, grow=grow, extra={"path": path})


def sdk_sqlite(path: Path) -> Subject:
    """Measure globus-sdk's ``SQLiteTokenStorage``: one file, one connection per storage."""
    return _sdk_file(
        SDK_SQLITE,
        lambda namespace: SQLiteTokenStorage(path, namespace=namespace),
        fill_sdk_sqlite,
        path,
    )


def sdk_json(path: Path) -> Subject:
    """Measure globus-sdk's ``JSONTokenStorage``: each call reads (a write rewrites) one file."""
    return _sdk_file(
        SDK_JSON,
        lambda namespace: JSONTokenStorage(path, namespace=namespace),
        fill_sdk_json,
        path,
    )


def sdk_memory() -> Subject:
    """Measure globus-sdk's ``MemoryTokenStorage`` (data lives in the instance: no construct)."""
    storage = MemoryTokenStorage(namespace="bench-read")
    ops = filled_ops(storage, storage)
    return Subject("globus-sdk MemoryTokenStorage", "globus-sdk", "sqlite", ops, lambda: None)
