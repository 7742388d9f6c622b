"""What each database contributes, one module per database: the only place that knows them.

The rest of the package never compares dialect names: it asks :func:`backend_for` (or
:func:`find_backend`, where a database may be unsupported) for a dialect's :class:`Backend`
and reads what it needs; ``tests/unit/test_backends.py`` scans the package to keep it so.

A backend module holds its database's facts as data and small functions: one module
attribute for each field of :class:`Backend`, by the field's name, placed beside the code
it concerns (:func:`backend_from` gathers them). A fourth database is a fourth file,
named in :data:`BACKEND_MODULES`; its shape::

    # tokenstore_sql/backends/newdb.py
    from sqlalchemy.dialects import newdb

    from . import SINGLE_STATEMENT_OPTION
    from . import plain_key as key_type          # shared defaults, where they fit

    name = "newdb"                               # who it is
    title = "NewDB"
    dialect_names = ("newdb",)
    misspelled_schemes = ()

    driver = ("newdb_driver", "newdb")           # engines: driver and its pip extra
    async_driver = "newdb_async"
    network = True                               # connect_timeout applies
    engine_defaults = {"pool_recycle": 3600}
    def connect_args(url): ...
    def prepare_url(url): ...
    def pool_arguments(url, arguments, busy_timeout_ms, asynchronous): ...
    def configure_engine(engine, busy_timeout_ms): ...
    def describe(url): ...                       # or None
    def in_memory(url): return False             # or see sqlite.py

    CONDITIONS = {"40001": "serialization_failure", "42501": "insufficient_privilege"}
    condition_name = CONDITIONS.get              # errors: names, retries, privileges
    privilege_codes = frozenset({"42501"})
    def is_transient_code(code): return code == "40001"

    schemas = False                              # schema: tables, columns, statements
    multi_primary = False
    aware_datetimes = False
    datetime_type = DateTime(timezone=True)
    long_text = None
    def upsert(table, keys, updated): return newdb.insert(table).on_conflict_do_update(...)
    rows_per_upsert = 1                          # rows one bulk upsert statement carries

    driver_autocommit = False                    # transactions of one statement
    single_statement = {False: {SINGLE_STATEMENT_OPTION: True}, True: {...}}
    def take_lock(connection, name, timeout, bound_wait): ...   # named locks
    release_lock = None

The fields of :class:`Backend` say what each part is for; ``sqlite.py``,
``postgresql.py`` and ``mysql.py`` are the worked examples.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from types import MappingProxyType, ModuleType
from typing import Any, Final

from sqlalchemy import URL, Connection, Dialect, Engine, Insert, String, Table
from sqlalchemy.types import TypeEngine

from ..errors import UnsupportedDatabaseError

# Execution option that asks for a write transaction (BEGIN IMMEDIATE on SQLite).
WRITE_TRANSACTION_OPTION: Final = "tokenstore_sql_write"
# Execution option for a transaction that is one statement: no BEGIN is sent for it on
# our SQLite (reads) and MySQL engines.
SINGLE_STATEMENT_OPTION: Final = "tokenstore_sql_single_statement"

BACKEND_MODULES: Final = ("sqlite", "postgresql", "mysql")
"""The backend modules, by name, in the order messages list them."""

Options = Mapping[str, Any]


@dataclass(frozen=True, eq=False)  # one of each: compared and hashed by identity
class Backend:
    """Everything one database contributes to tokenstore-sql.

    :ivar name: the backend's own name (its module's, and its URL scheme)
    :ivar title: its name in prose
    :ivar misspelled_schemes: URL schemes people write for it that SQLAlchemy refuses
    :ivar dialect_names: the SQLAlchemy dialect (and URL scheme) names it serves
    :ivar driver: the sync driver tokenstore-sql is tested with and the pip extra that
        brings it; None for a driver built into Python
    :ivar async_driver: the asyncio driver a sync URL is mapped to
    :ivar network: a server reached over the network: ``connect_timeout`` applies
    :ivar multi_primary: a server may be a node of a multi-primary cluster (Galera), where
        a session's lock holds on its own node only
    :ivar schemas: tables may be placed in a schema (``Placement.schema``)
    :ivar aware_datetimes: the driver takes timezone-aware datetimes as they are
    :ivar driver_autocommit: one statement runs on the driver's connection with its
        autocommit switched on (client-side), rather than in a transaction
    :ivar single_statement: the execution options of a transaction that is one
        statement, for reads (False) and writes (True)
    :ivar condition_name: the name of an error code (SQLSTATE, error number, result code)
    :ivar privilege_codes: the codes of a refusal for want of a privilege
    :ivar is_transient_code: whether a transaction failing with the code may run again
    :ivar key_type: (dialect, length) to the column type of a key that compares exactly
        (case, trailing spaces, unicode): the collation it needs, where it needs one
    :ivar datetime_type: the column type of a UTC timestamp with microseconds
    :ivar long_text: the column type of a token (up to many KiB); None: ``TEXT`` is enough
    :ivar upsert: an insert-or-replace statement on (table, key columns, updated columns)
    :ivar rows_per_upsert: the most rows one upsert statement writes (a store, an import)
    :ivar prepare_url: check a URL, and give it with the parameters it needs added
    :ivar connect_args: driver connect arguments by default, for a URL
    :ivar engine_defaults: ``create_engine`` arguments by default
    :ivar pool_arguments: (url, arguments, busy timeout ms, asynchronous) to arguments
        with the pool this database needs, where it needs one
    :ivar configure_engine: install connection and transaction hooks on an engine we
        created (the sync side of an async one too), given the busy timeout in ms
    :ivar describe: name a URL's database for messages; None: ``name://host:port/db``
    :ivar in_memory: whether a URL names a database that lives in its one connection,
        which another engine on the same URL would not reach
    :ivar take_lock: (connection, lock name, timeout s, bound the wait) take a named
        lock in the connection's write transaction; False: not had within the timeout
    :ivar release_lock: release a lock that outlives its transaction; None: the lock
        ends with the transaction
    """

    name: str
    title: str
    misspelled_schemes: tuple[str, ...]
    dialect_names: tuple[str, ...]
    driver: tuple[str, str] | None
    async_driver: str
    network: bool
    multi_primary: bool
    schemas: bool
    aware_datetimes: bool
    driver_autocommit: bool
    single_statement: Mapping[bool, Options]
    condition_name: Callable[[str], str | None]
    privilege_codes: frozenset[str]
    is_transient_code: Callable[[str], bool]
    key_type: Callable[[Dialect, int], TypeEngine[Any]]
    datetime_type: TypeEngine[Any]
    long_text: TypeEngine[Any] | None
    upsert: Callable[[Table, Sequence[str], Sequence[str]], Insert]
    rows_per_upsert: int
    prepare_url: Callable[[URL], URL]
    connect_args: Callable[[URL], Options]
    engine_defaults: Options
    pool_arguments: Callable[[URL, dict[str, Any], int, bool], dict[str, Any]]
    configure_engine: Callable[[Engine, int], None]
    describe: Callable[[URL], str] | None
    in_memory: Callable[[URL], bool]
    take_lock: Callable[[Connection, str, int, bool], bool]
    release_lock: Callable[[Connection, str], None] | None


def backend_from(module: ModuleType) -> Backend:
    """Gather a backend module's fields, one module attribute per field of :class:`Backend`.

    :raises TypeError: naming the fields the module lacks
    """
    names = [field.name for field in fields(Backend)]
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise TypeError(f"the backend module {module.__name__} lacks {', '.join(missing)}")
    return Backend(**{name: getattr(module, name) for name in names})


@cache
def _registry() -> Mapping[str, Backend]:
    found: dict[str, Backend] = {}
    for module_name in BACKEND_MODULES:
        backend = backend_from(importlib.import_module(f"{__name__}.{module_name}"))
        found.update(dict.fromkeys(backend.dialect_names, backend))
    return MappingProxyType(found)


def all_backends() -> tuple[Backend, ...]:
    """Give every backend, once each, in the order of :data:`BACKEND_MODULES`."""
    return tuple(dict.fromkeys(_registry().values()))


def find_backend(dialect_name: str) -> Backend | None:
    """Give the backend for a dialect (or URL scheme) name; None for one we do not support."""
    return _registry().get(dialect_name)


def backend_for(dialect_name: str) -> Backend:
    """Give the backend for a dialect (or URL scheme) name.

    :raises UnsupportedDatabaseError: naming the dialect, for a database we do not support
    """
    backend = find_backend(dialect_name)
    if backend is None:
        raise UnsupportedDatabaseError(dialect_name)
    return backend


def backend_of(dialect: Dialect) -> Backend:
    """Give the backend of a SQLAlchemy dialect (see :func:`backend_for`)."""
    return backend_for(dialect.name)


# Small parts several backends share.


def unchanged_url(url: URL) -> URL:
    """Give the URL as it is (``prepare_url`` of a database whose URLs need nothing)."""
    return url


def on_a_server(url: URL) -> bool:
    """Give False (``in_memory`` of a database on a server: every engine reaches it)."""
    return False


def no_connect_args(url: URL) -> Options:
    """Give no connect arguments (``connect_args`` of a database that needs none)."""
    return {}


def usual_pool(url: URL, arguments: dict[str, Any], busy_ms: int, asynchronous: bool) -> Any:
    """Give the arguments as they are (``pool_arguments``: SQLAlchemy's usual pool)."""
    return arguments


def on_conflict_upsert(insert: Callable[[Table], Any]) -> Callable[..., Insert]:
    """Give an ``upsert`` for a dialect with ``INSERT ... ON CONFLICT (keys) DO UPDATE``.

    :param insert: the dialect's ``insert`` construct (SQLite's, PostgreSQL's)
    """

    def upsert(table: Table, keys: Sequence[str], updated: Sequence[str]) -> Insert:
        statement = insert(table)
        excluded = statement.excluded
        set_ = {name: excluded[name] for name in updated}
        return statement.on_conflict_do_update(index_elements=list(keys), set_=set_)  # type: ignore[no-any-return]

    return upsert


def plain_key(dialect: Dialect, length: int) -> TypeEngine[Any]:
    """Give a plain ``VARCHAR`` (``key_type`` where text already compares exactly)."""
    return String(length)


def no_lock(connection: Connection, name: str, timeout: int, bound_wait: bool) -> bool:
    """Take nothing (``take_lock`` where the write transaction is the lock: SQLite)."""
    return True
