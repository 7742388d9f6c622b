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
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Final

import alembic.context
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, MetaData, Table, inspect
from sqlalchemy.exc import DBAPIError

from .columns import is_mysql_family
from .conditions import condition_name
from .engines import describe_database, reset_pools_after_fork
from .errors import (
    SchemaError,
    SchemaNotManagedError,
    SchemaOutOfDateError,
    SchemaPrivilegeError,
    SchemaTooNewError,
)
from .execution import transaction
from .locks import locked_transaction, locked_transaction_on
from .models import DEFAULT_PLACEMENT, Placement
from .retries import error_code
from .statements import check_dialect
from .transactions import is_galera_node

if TYPE_CHECKING:
    from .settings import StoreSettings

SCHEMA_LOCK_NAME: Final = "tokenstore_sql:schema"
# Long enough for another process to run every migration of a large database.
SCHEMA_LOCK_TIMEOUT_SECONDS: Final = 120

# Refusals for want of a privilege: PostgreSQL's insufficient_privilege; MySQL/MariaDB's
# "command denied" on a table (1142) and "access denied" to a database (1044).
_PRIVILEGE_CODES: Final = frozenset({"42501", "1142", "1044"})
_alembic_lock = threading.RLock()
# What a Galera node's migration meets when another node runs the same one at the same
# moment (GET_LOCK is per node): table exists (1050), duplicate column (1060) or key
# (1061), table changed by a concurrent DDL (1684).
_CONCURRENT_DDL_CODES: Final = frozenset({"1050", "1060", "1061", "1684"})
# Waiting for another node's migration: give up once the revision stops moving this long.
_STALLED_MIGRATION_SECONDS: Final = 10.0
# The placements each engine has been checked at, for this process.
_checked: weakref.WeakKeyDictionary[Engine, set[Placement]] = weakref.WeakKeyDictionary()
_checked_lock = threading.Lock()


def migrations_dir() -> Path:
    """Find the migrations: inside the installed package, else beside it in a checkout."""
    packaged = files("tokenstore_sql") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(
    connection: Connection | None = None, placement: Placement = DEFAULT_PLACEMENT
) -> Config:
    """Build the Alembic configuration in code, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["placement"] = placement
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migration_placement() -> Placement:
    """Give the placement the running migration applies to (for the revisions)."""
    placement: Placement = alembic.context.config.attributes["placement"]
    return placement


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Return the newest revision this package knows.

    :raises SchemaError: if the migrations have more than one head (a packaging bug)
    """
    heads = _script().get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the packaged migrations have {len(heads)} heads; expected one")
    return heads[0]


def known_revisions() -> frozenset[str]:
    """Return every revision id in the packaged migrations."""
    return frozenset(rev.revision for rev in _script().walk_revisions())


def current_revision(
    connection: Connection, placement: Placement = DEFAULT_PLACEMENT
) -> str | None:
    """Read the database's revision from tokenstore-sql's version table (None: no schema)."""
    context = MigrationContext.configure(
        connection,
        opts={"version_table": placement.version_table, "version_table_schema": placement.schema},
    )
    heads = context.get_current_heads()
    if len(heads) > 1:
        raise SchemaError(f"the database records {len(heads)} revisions; expected one")
    return heads[0] if heads else None


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this package."""

    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        """Tell whether the database is at the revision this package needs."""
        return self.current == self.head


def status(connection: Connection, placement: Placement = DEFAULT_PLACEMENT) -> SchemaStatus:
    """Compare the database's revision with this package's head."""
    return SchemaStatus(current_revision(connection, placement), head_revision())


def ensure_schema(
    engine: Engine,
    placement: Placement = DEFAULT_PLACEMENT,
    *,
    create: bool = True,
    upgrade: bool = False,
) -> None:
    """Make sure the engine's database is at head, once per engine and placement per process.

    :param create: create the schema when the database has none
    :param upgrade: also upgrade a schema at an older revision
    :raises SchemaOutOfDateError: the schema is older (or absent) and may not be changed
    :raises SchemaTooNewError: the database is at a revision this package does not know
    :raises SchemaNotManagedError: token tables exist without a version record
    :raises PlacementError: a schema placement on a database other than PostgreSQL
    """
    with _checked_lock:
        if placement in _checked.get(engine, ()):
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
    with _checked_lock:
        _checked.setdefault(engine, set()).add(placement)


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
    if isinstance(exc, SchemaTooNewError) or not is_mysql_family(connection.dialect):
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


def is_checked(engine: Engine, placement: Placement) -> bool:
    """Tell whether this process has found the engine's schema at head already."""
    with _checked_lock:
        return placement in _checked.get(engine, ())


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
    with _checked_lock:
        _checked.setdefault(connection.engine, set()).add(placement)


def migrate(
    engine: Engine,
    target: str = "head",
    placement: Placement = DEFAULT_PLACEMENT,
    *,
    create: bool = True,
    upgrade: bool = True,
) -> None:
    """Upgrade the engine's database to ``target`` under the schema lock.

    The revision is read again once the lock is held, so that of several processes
    racing here exactly one runs the migrations.
    """
    placement.check_dialect(engine.dialect.name)
    with _locked_transaction(engine) as connection:
        migrate_locked(connection, target, placement, create=create, upgrade=upgrade)


def require_head(connection: Connection, placement: Placement = DEFAULT_PLACEMENT) -> SchemaStatus:
    """Check, without changing anything, that the database is at this package's head.

    :raises SchemaOutOfDateError: the schema is older, or absent
    :raises SchemaTooNewError: the database is at a revision this package does not know
    :raises SchemaNotManagedError: token tables exist without a version record
    """
    placement.check_dialect(connection.dialect.name)
    found = status(connection, placement)
    _raise_unless_changeable(
        found, placement, has_tokens=_has_tokens(connection, found, placement), create=False
    )
    return found


def downgrade(engine: Engine, target: str, placement: Placement = DEFAULT_PLACEMENT) -> None:
    """Downgrade the engine's database to ``target`` (a revision, ``-1`` or ``base``)."""
    placement.check_dialect(engine.dialect.name)
    with _locked_transaction(engine) as connection:
        _check_downgrade_path(connection, target, placement)
        _run_alembic(command.downgrade, connection, target, placement)
        if target == "base":  # Alembic leaves its version table behind, empty
            version = Table(placement.version_table, MetaData(), schema=placement.schema)
            version.drop(connection, checkfirst=True)
    with _checked_lock:
        _checked.get(engine, set()).discard(placement)


def _check_downgrade_path(connection: Connection, target: str, placement: Placement) -> None:
    """Run the ``check_downgrade(connection, tokens_table, schema)`` of every revision to undo.

    Before any of them runs: MySQL cannot roll DDL back, so a revision that refused
    half-way down would leave the schema at a revision in between.
    """
    current = current_revision(connection, placement)
    if current is None:
        return
    try:
        revisions = list(_script().iterate_revisions(current, target))
    except (CommandError, RevisionError):
        return  # an unknown target: the downgrade itself refuses it, by name
    for revision in revisions:
        check = getattr(revision.module, "check_downgrade", None)
        if check is None:
            continue
        try:
            check(connection, placement.tokens_table, placement.schema)
        except RuntimeError as exc:
            raise SchemaError(f"cannot migrate to {target!r}: {exc}") from None


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """Yield a connection in a write transaction that holds the schema lock."""
    with locked_transaction(engine, SCHEMA_LOCK_NAME, timeout=SCHEMA_LOCK_TIMEOUT_SECONDS) as c:
        yield c


def migrate_locked(
    connection: Connection, target: str, placement: Placement, *, create: bool, upgrade: bool
) -> None:
    """Upgrade to ``target`` on a connection that holds the schema lock, if still needed.

    The revision is read again here, under the lock, so that of several processes racing
    to migrate exactly one runs the migrations.
    """
    found = status(connection, placement)
    if target == "head" and found.at_head:
        return
    has_tokens = _has_tokens(connection, found, placement)
    _raise_unless_changeable(
        found, placement, has_tokens=has_tokens, create=create, upgrade=upgrade
    )
    _run_alembic(command.upgrade, connection, target, placement)


def _has_tokens(connection: Connection, found: SchemaStatus, placement: Placement) -> bool:
    """Tell whether a token table exists although no revision is recorded."""
    return found.current is None and inspect(connection).has_table(
        placement.tokens_table, schema=placement.schema
    )


def _run_alembic(
    step: Callable[[Config, str], None], connection: Connection, target: str, placement: Placement
) -> None:
    """Run an Alembic command, turning its refusals into one-line schema errors.

    Refusals (an unknown revision, a migration's own check) name revisions and counts,
    never row values; a refusal for want of a privilege becomes
    :class:`SchemaPrivilegeError`, without the driver's text.
    """
    try:
        # Alembic keeps a running command's state in module globals (alembic.context,
        # alembic.op): two engines migrating at once in one process (databases that no
        # one lock puts in line) would run each other's DDL.
        with _alembic_lock:
            step(alembic_config(connection, placement), target)
    except (CommandError, RuntimeError) as exc:
        raise SchemaError(f"cannot migrate to {target!r}: {exc}") from None
    except DBAPIError as exc:
        code = error_code(exc)
        if code not in _PRIVILEGE_CODES:
            raise
        url = connection.engine.url
        revision = head_revision() if target == "head" else target
        name = condition_name(connection.dialect.name, code)
        raise SchemaPrivilegeError(
            url.username, describe_database(url), revision, code, name
        ) from None


def _raise_unless_changeable(
    found: SchemaStatus,
    placement: Placement,
    *,
    has_tokens: bool,
    create: bool,
    upgrade: bool = False,
) -> None:
    if found.current is None:
        if has_tokens:
            raise SchemaNotManagedError(placement.qualified(placement.tokens_table))
        if not create:
            raise SchemaOutOfDateError(None, found.head)
    elif found.current not in known_revisions():
        raise SchemaTooNewError(found.current, found.head)
    elif not upgrade and not found.at_head:
        raise SchemaOutOfDateError(found.current, found.head)
