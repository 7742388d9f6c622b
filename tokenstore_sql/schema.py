"""The schema checks and migrations: where the migrations are, current and head, upgrade.

A storage checks its engine's schema once per engine (remembered for the process), so
that per-user storages over one shared engine cost no I/O to construct. An empty
database is brought to head by the real migrations under a database-level lock, so that
many processes starting at once create the schema exactly once:

- PostgreSQL: a transaction-scoped advisory lock, the DDL in the same transaction;
- MySQL/MariaDB: a ``GET_LOCK`` named lock held by the migrating connection;
- SQLite: the write lock of a ``BEGIN IMMEDIATE`` transaction.

(``locks.py`` takes them.)

What an application's own Alembic and a DBA use (running the migrations inside another
``env.py``, keeping autogenerate off our tables, writing the SQL) is in ``deploy.py``.

An account that may only read and write rows works once the schema exists; where it
would have to create or change tables, :class:`SchemaPrivilegeError` says so.

Alembic itself (where the migrations are, revisions, running a command) is reached
through :mod:`tokenstore_sql.revisions`, and changing the schema under its lock through
:mod:`tokenstore_sql.migrating`; their names are re-exported here, the one module the
rest of the package, the command line and the migrations import.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .backends import backend_of
from .engines import reset_pools_after_fork
from .errors import SchemaError, SchemaOutOfDateError, SchemaTooNewError
from .execution import transaction
from .locks import locked_transaction_on
from .migrating import (
    SCHEMA_LOCK_NAME,
    SCHEMA_LOCK_TIMEOUT_SECONDS,
    downgrade,
    forget_checked,
    is_checked,
    migrate,
    migrate_locked,
    remember_checked,
    require_head,
)
from .models import Placement
from .retries import error_code
from .revisions import (
    SchemaStatus,
    alembic_config,
    current_revision,
    head_revision,
    known_revisions,
    migration_placement,
    migrations_dir,
    status,
)
from .revisions import _script as _script  # for tests that walk the revisions
from .statements import check_dialect
from .transactions import is_galera_node

if TYPE_CHECKING:
    from .settings import StoreSettings

__all__ = [
    "SCHEMA_LOCK_NAME",
    "SCHEMA_LOCK_TIMEOUT_SECONDS",
    "SchemaStatus",
    "alembic_config",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "ensure_schema_on",
    "forget_checked",
    "head_revision",
    "is_checked",
    "known_revisions",
    "migrate",
    "migrate_locked",
    "migration_placement",
    "migrations_dir",
    "open_schema",
    "require_head",
    "status",
]

# What a Galera node's migration meets when another node runs the same one at the same
# moment (GET_LOCK is per node): table exists (1050), duplicate column (1060) or key
# (1061), table changed by a concurrent DDL (1684).
_CONCURRENT_DDL_CODES: Final = frozenset({"1050", "1060", "1061", "1684"})
# Waiting for another node's migration: give up once the revision stops moving this long.
_STALLED_MIGRATION_SECONDS: Final = 10.0


def ensure_schema(
    engine: Engine, placement: Placement, *, create: bool = True, upgrade: bool = False
) -> None:
    """Make sure the engine's database is at head, once per engine and placement per process.

    :param create: create the schema when the database has none
    :param upgrade: also upgrade a schema at an older revision
    :raises SchemaOutOfDateError: the schema is older (or absent) and may not be changed
    :raises SchemaTooNewError: the database is at a revision this package does not know
    :raises SchemaNotManagedError: token tables exist without a version record
    :raises PlacementError: a schema placement on a database other than PostgreSQL
    """
    if is_checked(engine, placement):
        return
    check_dialect(engine.dialect)
    placement.check_dialect(engine.dialect.name)
    with transaction(engine, writes=False) as connection:
        found = status(connection, placement)
    if not found.at_head:
        if found.current is None and not create:
            raise SchemaOutOfDateError(None, found.head)
        # Decide under the lock: on MySQL, whose DDL is not transactional, an older
        # revision may just be another process's migration half-way through.
        try:
            migrate(engine, "head", placement, create=create, upgrade=upgrade)
        except (SchemaError, DBAPIError) as exc:
            with engine.connect() as connection:
                if not _migrated_by_another_node(connection, placement, exc):
                    raise
    remember_checked(engine, placement)


def open_schema(engine: Engine, settings: StoreSettings) -> None:
    """Ready an engine for storages: dialect, placement and schema as the settings allow.

    Once per engine and placement in a process (no I/O after that); the schema check is
    retried by the settings' policy.
    """
    placement = settings.placement
    if is_checked(engine, placement):
        return
    check_dialect(engine.dialect)
    placement.check_dialect(engine.dialect.name)
    reset_pools_after_fork(engine)
    settings.retry.run(
        "open the database",
        engine,
        lambda: ensure_schema(
            engine, placement, create=settings.create_schema, upgrade=settings.upgrade_schema
        ),
    )


def _migrated_by_another_node(
    connection: Connection, placement: Placement, exc: SchemaError | DBAPIError
) -> bool:
    """On a Galera node, wait for another node's migration that explains ``exc``.

    ``GET_LOCK`` holds on one node only, so nodes starting at once each migrate; the
    first DDL to reach the cluster wins and the others fail, or find the schema
    half-way. Tell whether the schema then reaches head; False at once elsewhere.
    """
    if isinstance(exc, SchemaTooNewError) or not backend_of(connection.dialect).multi_primary:
        return False
    if isinstance(exc, DBAPIError) and error_code(exc) not in _CONCURRENT_DDL_CODES:
        return False
    if connection.invalidated or connection.in_transaction():
        return False
    if not is_galera_node(connection.connection.dbapi_connection):
        return False
    deadline = time.monotonic() + SCHEMA_LOCK_TIMEOUT_SECONDS
    last, moved_at = None, time.monotonic()
    while time.monotonic() < deadline:
        with transaction(connection, writes=False):
            found = status(connection, placement)
        if found.at_head:
            return True
        if found.current != last:
            last, moved_at = found.current, time.monotonic()
        elif time.monotonic() - moved_at > _STALLED_MIGRATION_SECONDS:
            return False
        time.sleep(0.2)
    return False


def ensure_schema_on(
    connection: Connection, placement: Placement, *, create: bool, upgrade: bool
) -> None:
    """Make sure the schema is at head, on a connection with no transaction open.

    As :func:`ensure_schema`, for a caller that holds a connection rather than an engine
    (the async storage runs it with ``run_sync``). Remembered for the connection's engine.
    """
    check_dialect(connection.dialect)
    placement.check_dialect(connection.dialect.name)
    with transaction(connection, writes=False):
        found = status(connection, placement)
    if not found.at_head:
        if found.current is None and not create:
            raise SchemaOutOfDateError(None, found.head)
        # As migrate(): the lock is released only once the migration has committed.
        try:
            with locked_transaction_on(
                connection, SCHEMA_LOCK_NAME, timeout=SCHEMA_LOCK_TIMEOUT_SECONDS
            ):
                migrate_locked(connection, "head", placement, create=create, upgrade=upgrade)
        except (SchemaError, DBAPIError) as exc:
            if not _migrated_by_another_node(connection, placement, exc):
                raise
    remember_checked(connection.engine, placement)
