"""Engines that tokenstore-sql creates, and the safe way to name a database in messages.

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

SQLite files get the settings described in :mod:`tokenstore_sql.transactions` (WAL,
every commit synced, a busy timeout, ``BEGIN IMMEDIATE`` for writes), and a database file
that does not exist yet is created readable by its owner only, as globus-sdk's own file
storages are. MySQL engines that use PyMySQL run single statements without ``BEGIN``
and send no ``COMMIT`` or ``ROLLBACK`` when no transaction is open (same module).

After ``os.fork()`` (a pre-loading web server), a child must not use the connections it
inherited: they are the parent's sockets. Engines used by storages are tracked, and in a
forked child their pools are replaced without closing the parent's connections
(``dispose(close=False)``), as SQLAlchemy advises for multiprocessing.

:class:`EngineOwner` is the one rule for who disposes of an engine: whoever created it.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import sqlalchemy
from sqlalchemy import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from .errors import ConfigurationError, DatabaseOperationError, MissingDriverError, checked_number
from .transactions import configure_galera, configure_mysql, configure_sqlite

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
# MySQL closes connections idle for longer than wait_timeout (8 hours by default).
MYSQL_POOL_RECYCLE_SECONDS: Final = 3600
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
    url, arguments, busy_timeout_ms = engine_arguments(url, options)
    in_memory = url.get_backend_name() == "sqlite" and sqlite_file_path(url) is None
    if in_memory:
        arguments = memory_pool_arguments(arguments, busy_timeout_ms, asynchronous=False)
    try:
        engine = sqlalchemy.create_engine(url, **arguments)
    except (NoSuchModuleError, ImportError):
        raise MissingDriverError(missing_driver_hint(url)) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        configure_sqlite(engine, busy_timeout_ms, in_memory=in_memory)
    elif backend in ("mysql", "mariadb"):
        if engine.dialect.driver == "pymysql":
            configure_mysql(engine)
        configure_galera(engine)
    return engine


# An in-memory SQLite database lives in one connection: SQLAlchemy's default pool for it
# gives each thread a connection, and so a database, of its own, where a storage made in
# one thread finds no tables in another. Engines we create keep one connection for every
# thread (or task) instead, in a pool of one: callers take turns with it, one checkout
# at a time, as SQLite runs one transaction per connection. A caller waits for its turn
# as long as a SQLite writer waits for a file's lock (the busy timeout).


def memory_pool_arguments(
    arguments: dict[str, Any], busy_timeout_ms: int, *, asynchronous: bool
) -> dict[str, Any]:
    """Arguments for one in-memory SQLite connection shared in turns; ``poolclass`` wins."""
    if "poolclass" in arguments or "pool" in arguments:
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


# The driver tokenstore-sql is tested with for each backend, and the extra that brings it.
PREFERRED_DRIVERS: Final = {
    "postgresql": ("psycopg", "postgresql"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
}


def missing_driver_hint(url: URL) -> str:
    """Say why a URL's driver could not be loaded and what would work instead."""
    backend, _, driver = url.drivername.partition("+")  # without loading the dialect
    if backend == "postgres":
        return "the URL scheme for PostgreSQL is postgresql, not postgres: postgresql+psycopg://..."
    if backend not in PREFERRED_DRIVERS:
        return (
            f"no SQLAlchemy dialect or driver is installed for {url.drivername!r}; "
            "tokenstore-sql supports sqlite, postgresql+psycopg and mysql+pymysql URLs"
        )
    preferred, extra = PREFERRED_DRIVERS[backend]
    named = f"the {driver} driver" if driver else "the default driver"
    if driver != preferred and importlib.util.find_spec(preferred) is not None:
        return (
            f"{named} for {backend} is not installed, but {preferred} is: "
            f"use a {backend}+{preferred}:// URL"
        )
    return (
        f"{named} for {backend} is not installed: pip install 'tokenstore-sql[{extra}]' "
        f"and use a {backend}+{preferred}:// URL"
    )


def engine_arguments(url: str | URL, options: Mapping[str, Any]) -> tuple[URL, dict[str, Any], int]:
    """Work out an engine's URL and arguments: tokenstore-sql's defaults, then ``options``.

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
    backend = url.get_backend_name()
    if backend == "sqlite":
        _create_private_sqlite_file(url)
    else:
        connect_args = dict(options.pop("connect_args", None) or {})
        if connect_timeout is not None and "connect_timeout" not in url.query:
            connect_args.setdefault("connect_timeout", int(connect_timeout))
        if backend == "postgresql" and url.get_driver_name() == "psycopg":
            # No server-side prepared statements: behind PgBouncer's transaction pooling
            # they land on other server connections (errors, and rows of another client's
            # statement). psycopg would prepare a statement after its fifth use.
            connect_args.setdefault("prepare_threshold", None)
        defaults["connect_args"] = connect_args
    if backend in ("mysql", "mariadb"):
        _check_mysql_query(url)
        defaults["pool_recycle"] = MYSQL_POOL_RECYCLE_SECONDS
        if "charset" not in url.query:
            # utf8mb4 carries all of Unicode; MySQL's older "utf8" stops at three bytes.
            url = url.update_query_dict({"charset": "utf8mb4"})
    return url, {**defaults, **options}, busy_timeout_ms


# Query parameters that name files the MySQL driver reads when it connects.
_MYSQL_FILE_PARAMETERS: Final = ("ssl_ca", "ssl_cert", "ssl_key")


def _check_mysql_query(url: URL) -> None:
    """Refuse a MySQL URL whose files or charset the driver would fail on at connect time.

    PyMySQL reports these with an ``OSError`` or ``AttributeError`` deep in its connect,
    not as a database error, so they would surface as a traceback on the first call.

    :raises ConfigurationError: naming the parameter (and the file, never a password)
    """
    for name in _MYSQL_FILE_PARAMETERS:
        value = url.query.get(name)
        if isinstance(value, str) and not os.access(value, os.R_OK):
            raise ConfigurationError(f"the URL's {name} file {value!r} cannot be read")
    charset = url.query.get("charset")
    if isinstance(charset, str) and url.drivername.endswith("+pymysql"):
        from pymysql.charset import charset_by_name  # type: ignore[import-untyped]

        try:
            known = charset_by_name(charset) is not None
        except KeyError:  # older PyMySQL releases raise instead
            known = False
        if not known:
            raise ConfigurationError(
                f"the URL's charset {charset!r} is not one MySQL knows; use utf8mb4"
            )


def sqlite_file_path(url: URL) -> Path | None:
    """Return the file behind a SQLite URL, or None for an in-memory database."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def _create_private_sqlite_file(url: URL) -> None:
    path = sqlite_file_path(url)
    if path is None or path.exists():
        return
    if not path.parent.is_dir():  # a typo, most likely: never make directories for it
        raise ConfigurationError(
            f"the directory of the SQLite database, {path.parent}, does not exist"
        )
    try:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it first
            return
    except OSError as exc:  # a read-only place, a file where a directory should be, ...
        code = errno.errorcode.get(exc.errno or 0)
        raise DatabaseOperationError(
            "create the database file",
            describe_database(url),
            code,
            os.strerror(exc.errno).lower() if exc.errno else None,
        ) from None
    os.close(fd)


def parse_url(url: str | URL) -> URL:
    """Parse a database URL; the error never quotes it (it may hold a password)."""
    # ValueError: a port that is not a number. Raised after the block, so that the
    # parser's error (which can quote the URL) is not this one's __context__.
    with suppress(ArgumentError, ValueError):
        return make_url(url)
    raise ConfigurationError("the database URL is not a valid SQLAlchemy URL")


def describe_database(url: URL) -> str:
    """Name a database for messages: backend, host and database name, never credentials."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file_path(url)
        return f"sqlite:{path}" if path is not None else "sqlite::memory:"
    port = f":{url.port}" if url.port else ""
    if url.host is None and url.query.get("host"):
        host, port = _query_hosts(url), ""
    else:
        host = url.host or "localhost"
    return f"{backend}://{host}{port}/{url.database or ''}"


def _query_hosts(url: URL) -> str:
    """Give a multi-host URL's hosts, as ``host=a:5432&host=b:5432`` or ``host=a,b&port=1,2``."""

    def listed(name: str) -> list[str]:
        value = url.query.get(name, ())
        items = [value] if isinstance(value, str) else list(value)
        return [part for item in items for part in item.split(",")]

    hosts, ports = listed("host"), listed("port")
    if len(ports) == len(hosts):
        hosts = [f"{host}:{port}" for host, port in zip(hosts, ports, strict=True)]
    return ",".join(hosts)


# Query parameters that drivers read as passwords (libpq, PyMySQL, mysqlclient).
_PASSWORD_PARAMETERS: Final = ("password", "sslpassword", "passwd")


def masked_url(url: URL) -> str:
    """Render a URL with its password, in the user part or the query, replaced by ``***``."""
    hidden = {name: "***" for name in _PASSWORD_PARAMETERS if name in url.query}
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True)


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


Owner = TypeVar("Owner", bound="EngineOwner")


class EngineOwner:
    """Holds an engine that was either given (left alone) or created here (disposed).

    The one rule for engine ownership, shared by storages and stores: :meth:`close`
    disposes of the engine only if it was created from a URL, is safe to repeat, and
    runs at the end of a ``with`` block.
    """

    engine: Engine
    owns_engine: bool
    _closed: bool

    def _hold_engine(
        self, url_or_engine: str | URL | Engine, engine_options: Mapping[str, Any] | None
    ) -> Engine:
        if isinstance(url_or_engine, Engine):
            self.engine, self.owns_engine = url_or_engine, False
        else:
            options = dict(engine_options or {})
            self.engine, self.owns_engine = create_engine(parse_url(url_or_engine), **options), True
        self._closed = False
        return self.engine

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
        if self._closed:
            return
        self._closed = True
        if self.owns_engine:
            self.engine.dispose()
