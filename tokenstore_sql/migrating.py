"""Changing the schema under the schema lock: upgrade, downgrade, and the refusals.

Every change runs in one write transaction that holds a database-level lock (see
:mod:`tokenstore_sql.locks`), and reads the revision again once it holds it, so that of
several processes racing here exactly one migrates. What may change is decided in one
place, :func:`require_head`'s and :func:`migrate_locked`'s refusals: no schema where
none may be created, a revision this package does not know, token tables that
tokenstore-sql does not manage. The process remembers the engines it found at head.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from alembic import command
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, MetaData, Table, inspect

from .errors import SchemaError, SchemaNotManagedError, SchemaOutOfDateError, SchemaTooNewError
from .locks import locked_transaction
from .models import DEFAULT_PLACEMENT, Placement
from .revisions import (
    SchemaStatus,
    _script,
    current_revision,
    known_revisions,
    run_alembic,
    status,
)

SCHEMA_LOCK_NAME: Final = "tokenstore_sql:schema"
# Long enough for another process to run every migration of a large database.
SCHEMA_LOCK_TIMEOUT_SECONDS: Final = 120
# The placements each engine has been checked at, for this process.
_checked: weakref.WeakKeyDictionary[Engine, set[Placement]] = weakref.WeakKeyDictionary()
_checked_lock = threading.Lock()


def is_checked(engine: Engine, placement: Placement) -> bool:
    """Tell whether this process has found the engine's schema at head already."""
    # No lock: every call of every storage asks, and a set's membership test sees it
    # either before or after another thread's add or discard, never half-way.
    return placement in _checked.get(engine, ())


def remember_checked(engine: Engine, placement: Placement) -> None:
    """Remember that the engine's schema is at head, so no storage checks it again."""
    with _checked_lock:
        _checked.setdefault(engine, set()).add(placement)


def forget_checked(engine: Engine, placement: Placement) -> None:
    """Forget that the engine's schema was at head (it has just been downgraded)."""
    with _checked_lock:
        _checked.get(engine, set()).discard(placement)


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
        run_alembic(command.downgrade, connection, target, placement)
        if target == "base":  # Alembic leaves its version table behind, empty
            version = Table(placement.version_table, MetaData(), schema=placement.schema)
            version.drop(connection, checkfirst=True)
    forget_checked(engine, placement)


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
    run_alembic(command.upgrade, connection, target, placement)


def _has_tokens(connection: Connection, found: SchemaStatus, placement: Placement) -> bool:
    """Tell whether a token table exists although no revision is recorded."""
    return found.current is None and inspect(connection).has_table(
        placement.tokens_table, schema=placement.schema
    )


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
