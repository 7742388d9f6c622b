"""Engines that tokenstore-sql creates, and who disposes of them.

Every engine made here hides bound parameters from SQLAlchemy's errors and logs
(``hide_parameters=True``) and never logs fetched rows, so a token cannot leak through a
statement echo or a driver error. Network databases get no ``pool_pre_ping``: a ping
costs a round trip on every checkout, doubling a lookup's time, and the storages do not
need it. Every call of theirs is retried (see :mod:`tokenstore_sql.retries`), and a
connection the server dropped while idle in the pool (restart, idle timeout, killed
session) fails its first statement before anything is applied, so the call reconnects
and runs again. Code of your own on such an engine can pass ``pool_pre_ping=True``.
Network engines get a ``connect_timeout`` (10 s by default): without one, psycopg waits for an
unreachable host as long as the operating system does (minutes), and a storage call
could not give up within its retry policy's deadline.

Each database adds its own defaults, from its module in :mod:`tokenstore_sql.backends`:
SQLite files get the settings described in :mod:`tokenstore_sql.transactions` (WAL,
every commit synced, a busy timeout, ``BEGIN IMMEDIATE`` for writes), and a database file
that does not exist yet is created readable by its owner only, as globus-sdk's own file
storages are. MySQL engines that use PyMySQL run single statements without ``BEGIN``
and send no ``COMMIT`` or ``ROLLBACK`` when no transaction is open (same module).
Naming a database safely in messages, and what to install for a URL whose driver is
missing: :mod:`tokenstore_sql.urls`.

After ``os.fork()`` (a pre-loading web server), a child must not use the connections it
inherited: they are the parent's sockets. Engines used by storages are tracked, and in a
forked child their pools are replaced without closing the parent's connections
(``dispose(close=False)``), as SQLAlchemy advises for multiprocessing.

:class:`EngineOwner` is the one rule for who disposes of an engine: whoever created it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import sqlalchemy
from sqlalchemy import URL, Engine
from sqlalchemy.exc import NoSuchModuleError

from .backends import find_backend
from .checks import checked_number
from .errors import ConfigurationError, MissingDriverError
from .urls import describe_database as describe_database
from .urls import masked_url as masked_url
from .urls import missing_driver_hint, parse_url
from .urls import sqlite_file_path as sqlite_file_path

# Engines made here log as "sqlalchemy.engine.Engine.tokenstore_sql". SQLAlchemy logs
# fetched rows (tokens included) at DEBUG; a filter on that logger drops every record
# below INFO, so statements may be logged but rows never, even when the host application
# logs everything at DEBUG. A filter rather than a level: setting the logger to INFO
# would make SQLAlchemy format a log record for every statement, logged or not.
ENGINE_LOGGING_NAME: Final = "tokenstore_sql"


class _NoRowLogging(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


logging.getLogger(f"sqlalchemy.engine.Engine.{ENGINE_LOGGING_NAME}").addFilter(_NoRowLogging())

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
# How long a network engine waits to establish a connection. libpq counts the whole
# handshake (and treats values below 2 as 2). PyMySQL counts the TCP connect only: a
# host that accepts but never answers is bounded by its read_timeout, which is left
# unset because a legitimate GET_LOCK or row-lock wait can last longer than any default.
CONNECT_TIMEOUT_SECONDS: Final = 10


def create_engine(url: str | URL, **options: Any) -> Engine:
    """Create an engine with tokenstore-sql's defaults; keyword options override them.

    Share one such engine between many storages (one per user namespace) in a web
    backend. ``sqlite_busy_timeout_ms`` sets how long a SQLite writer waits for the lock;
    ``connect_timeout`` (seconds, ``None`` for the driver's default) how long a
    PostgreSQL or MySQL connection attempt may take. A ``connect_timeout`` in the URL's
    query or in ``connect_args`` wins.

    :param url: a SQLAlchemy database URL
    :param options: passed to :func:`sqlalchemy.create_engine`
    """
    url, arguments, busy_timeout_ms = engine_arguments(url, options, asynchronous=False)
    try:
        engine = sqlalchemy.create_engine(url, **arguments)
    except (NoSuchModuleError, ImportError):
        raise MissingDriverError(missing_driver_hint(url)) from None
    configure_engine(engine, busy_timeout_ms)
    return engine


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install the backend's hooks on an engine we created (the sync side of an async one)."""
    backend = find_backend(engine.url.get_backend_name())
    if backend is not None:
        backend.configure_engine(engine, busy_timeout_ms)


def engine_arguments(
    url: str | URL, options: Mapping[str, Any], *, asynchronous: bool
) -> tuple[URL, dict[str, Any], int]:
    """Work out an engine's URL and arguments: tokenstore-sql's defaults, then ``options``.

    Each database's own defaults come from its backend (:mod:`tokenstore_sql.backends`).

    :returns: the URL, the keyword arguments for SQLAlchemy, and the SQLite busy timeout
    """
    url = parse_url(url)
    options = dict(options)
    if options.get("echo") == "debug":
        raise ConfigurationError(
            "echo='debug' logs every fetched row, tokens included; use echo=True"
        )
    busy_timeout_ms = int(
        checked_number(
            "sqlite_busy_timeout_ms",
            options.pop("sqlite_busy_timeout_ms", SQLITE_BUSY_TIMEOUT_MS),
            unit="milliseconds",
        )
    )
    connect_timeout = options.pop("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    if connect_timeout is not None:  # libpq waits forever for 0 (and int(0.5) is 0)
        checked_number("connect_timeout", connect_timeout, minimum=1)
    defaults: dict[str, Any] = {"hide_parameters": True, "logging_name": ENGINE_LOGGING_NAME}
    backend = find_backend(url.get_backend_name())
    if backend is not None:
        url = backend.prepare_url(url)
        defaults.update(backend.engine_defaults)
    if backend is None or backend.network:
        connect_args = dict(options.pop("connect_args", None) or {})
        if connect_timeout is not None and "connect_timeout" not in url.query:
            connect_args.setdefault("connect_timeout", int(connect_timeout))
        for name, value in (backend.connect_args(url) if backend else {}).items():
            connect_args.setdefault(name, value)
        defaults["connect_args"] = connect_args
    arguments = {**defaults, **options}
    if backend is not None:
        arguments = backend.pool_arguments(url, arguments, busy_timeout_ms, asynchronous)
    return url, arguments, busy_timeout_ms


_engines_to_reset_after_fork: weakref.WeakSet[Engine] = weakref.WeakSet()
_fork_lock = threading.Lock()


def reset_pools_after_fork(engine: Engine) -> None:
    """Have a forked child start ``engine`` with a fresh pool of its own."""
    with _fork_lock:
        _engines_to_reset_after_fork.add(engine)


def _reset_pools_in_child() -> None:
    # the child has a copy of a lock that another thread may have held at fork time
    global _fork_lock
    _fork_lock = threading.Lock()
    for engine in list(_engines_to_reset_after_fork):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_in_child)


EngineT = TypeVar("EngineT")
Owner = TypeVar("Owner", bound="EngineOwner")


class EngineOwnership(Generic[EngineT]):
    """The engine a storage or store holds, whether it was created here, and whether closed.

    What :class:`EngineOwner` and its async twin share: each takes an engine or creates
    one from a URL, and disposes of it on closing only if it created it.
    """

    engine: EngineT
    owns_engine: bool
    _closed: bool

    if TYPE_CHECKING:  # in EngineOwner and AsyncEngineOwner, for storages and stores

        def _hold_engine(
            self, url_or_engine: str | URL | EngineT, engine_options: Mapping[str, Any] | None
        ) -> EngineT: ...

    def _keep_engine(self, engine: EngineT, *, created: bool) -> EngineT:
        self.engine, self.owns_engine, self._closed = engine, created, False
        return engine

    def _close_once(self) -> bool:
        """Mark it closed; tell whether the engine is to be disposed of now (once, if ours)."""
        dispose = self.owns_engine and not self._closed
        self._closed = True
        return dispose


class EngineOwner(EngineOwnership[Engine]):
    """Holds an engine that was either given (left alone) or created here (disposed).

    The one rule for engine ownership, shared by storages and stores: :meth:`close`
    disposes of the engine only if it was created from a URL, is safe to repeat, and
    runs at the end of a ``with`` block.
    """

    def _hold_engine(
        self, url_or_engine: str | URL | Engine, engine_options: Mapping[str, Any] | None
    ) -> Engine:
        if isinstance(url_or_engine, Engine):
            return self._keep_engine(url_or_engine, created=False)
        return self._keep_engine(
            create_engine(url_or_engine, **(engine_options or {})), created=True
        )

    def __enter__(self: Owner) -> Owner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Dispose of the engine if it was created here. Safe to repeat."""
        if self._close_once():
            self.engine.dispose()
