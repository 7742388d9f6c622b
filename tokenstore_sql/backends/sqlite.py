"""SQLite: a file (or memory) database on Python's own ``sqlite3`` driver.

Engines we create set the pragmas and transaction hooks of
:func:`tokenstore_sql.transactions.configure_sqlite` (WAL, every commit synced, a busy
timeout, ``BEGIN IMMEDIATE`` for writes); a database file that does not exist yet is
created readable by its owner only, as globus-sdk's own file storages are. An in-memory
database lives in one connection, shared in turns (see :func:`pool_arguments`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import URL, DateTime, Engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from ..errors import ConfigurationError, DatabaseOperationError
from ..transactions import configure_sqlite
from . import (
    SINGLE_STATEMENT_OPTION,
    WRITE_TRANSACTION_OPTION,
    no_connect_args,
    no_lock,
    on_conflict_upsert,
    plain_key,
)

name: Final = "sqlite"
title: Final = "SQLite"
dialect_names: Final = ("sqlite",)
misspelled_schemes: Final[tuple[str, ...]] = ()

# Python's own sqlite3, which needs no extra; aiosqlite runs it on a thread per connection.
driver: Final = None
async_driver: Final = "aiosqlite"
network: Final = False  # no connect_timeout, nothing to reconnect to
connect_args: Final = no_connect_args

# Primary result codes (the low byte of an extended code).
CONDITIONS: Final = {
    1: "SQL logic error",
    5: "database is locked (busy)",
    6: "table is locked",
    8: "read-only database",
    10: "disk I/O error",
    11: "database file is corrupt",
    13: "disk full",
    14: "cannot open the database file",
    19: "constraint failed",
    26: "not a database file",
}
# Extended result codes that say more than their primary code.
EXTENDED_CONDITIONS: Final = {
    261: "database is locked (busy recovery)",
    517: "database is locked (busy snapshot)",
    1032: "read-only database (file moved)",
    1555: "constraint failed (primary key)",
    2067: "constraint failed (unique)",
}
# Primary result codes worth a retry: SQLITE_BUSY, SQLITE_LOCKED. SQLite has no
# network to lose.
RETRY_CODES: Final = frozenset({5, 6})
# The file's permissions refuse; SQLite has no accounts to lack a privilege.
privilege_codes: Final[frozenset[str]] = frozenset()


def condition_name(code: str) -> str | None:
    """Name a result code, extended where known, else by its primary code."""
    if not code.isdigit():
        return None
    return EXTENDED_CONDITIONS.get(int(code)) or CONDITIONS.get(int(code) & 0xFF)


def is_transient_code(code: str) -> bool:
    """Tell whether a result code is a busy or locked database (its primary code)."""
    return code.isdigit() and (int(code) & 0xFF) in RETRY_CODES


# Text compares exactly already; timestamps are stored as naive UTC text, microseconds kept.
key_type: Final = plain_key
upsert: Final = on_conflict_upsert(sqlite.insert)
# One prepared statement serves every row of an executemany: multi-row ones gain nothing.
rows_per_upsert: Final = 1
datetime_type: Final = DateTime(timezone=True)
aware_datetimes: Final = False
long_text: Final = None  # TEXT holds any token


def file_path(url: URL) -> Path | None:
    """Return the file behind a SQLite URL, or None for an in-memory database (or not SQLite)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def describe(url: URL) -> str:
    """Name the database file, or memory."""
    path = file_path(url)
    return f"sqlite:{path}" if path is not None else "sqlite::memory:"


def in_memory(url: URL) -> bool:
    """Tell whether the database lives in memory: in one connection, not in a file."""
    return file_path(url) is None


# One file: no schemas but "main" and attached files, no cluster of servers, no
# server-side prepared statements or pool recycling to configure.
schemas: Final = False
multi_primary: Final = False
engine_defaults: Final[dict[str, Any]] = {}


def prepare_url(url: URL) -> URL:
    """Create a URL's database file, if missing, readable by its owner only; give the URL."""
    path = file_path(url)
    if path is None or path.exists():
        return url
    if not path.parent.is_dir():  # a typo, most likely: never make directories for it
        raise ConfigurationError(
            f"the directory of the SQLite database, {path.parent}, does not exist"
        )
    try:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it first
            return url
    except OSError as exc:  # a read-only place, a file where a directory should be, ...
        code = errno.errorcode.get(exc.errno or 0)
        raise DatabaseOperationError(
            "create the database file",
            describe(url),
            code,
            os.strerror(exc.errno).lower() if exc.errno else None,
        ) from None
    os.close(fd)
    return url


# An in-memory SQLite database lives in one connection: SQLAlchemy's default pool for it
# gives each thread a connection, and so a database, of its own, where a storage made in
# one thread finds no tables in another. Engines we create keep one connection for every
# thread (or task) instead, in a pool of one: callers take turns with it, one checkout
# at a time, as SQLite runs one transaction per connection. A caller waits for its turn
# as long as a SQLite writer waits for a file's lock (the busy timeout).


def pool_arguments(
    url: URL, arguments: dict[str, Any], busy_timeout_ms: int, asynchronous: bool
) -> dict[str, Any]:
    """For memory: one connection shared in turns; a caller's ``poolclass`` wins."""
    if file_path(url) is not None or "poolclass" in arguments or "pool" in arguments:
        return arguments
    pool: dict[str, Any] = {
        "poolclass": AsyncAdaptedQueuePool if asynchronous else QueuePool,
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": busy_timeout_ms / 1000,
    }
    if not asynchronous:  # the connection moves between threads, one at a time
        pool["connect_args"] = {**arguments.get("connect_args", {}), "check_same_thread": False}
    return {**arguments, **pool}


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install the pragmas and ``BEGIN IMMEDIATE`` writes (no WAL in memory)."""
    configure_sqlite(engine, busy_timeout_ms, in_memory=file_path(engine.url) is None)


# Reads send no BEGIN; writes take the write lock up front. The driver's autocommit is
# not used: sqlite3 runs in-process, so BEGIN IMMEDIATE and COMMIT cost no round trip.
driver_autocommit: Final = False
single_statement: Final = {
    False: MappingProxyType({SINGLE_STATEMENT_OPTION: True}),
    True: MappingProxyType({WRITE_TRANSACTION_OPTION: True}),
}
# Named locks: the BEGIN IMMEDIATE that opened the transaction took the file's one write
# lock (take_lock takes nothing more), and it ends with the transaction.
take_lock: Final = no_lock
release_lock: Final = None
