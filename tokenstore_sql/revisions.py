"""The one place that talks to Alembic: where the migrations are, their revisions, a run.

The migrations ship inside the wheel as ``tokenstore_sql/migrations`` (from the
checkout's top-level ``migrations/``); the Alembic configuration is built in code from
their absolute path, so nothing depends on the working directory or a packaged ini.
Reading a database's revision always names tokenstore-sql's own version table, which
Alembic would otherwise take for an empty database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import alembic.context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from .backends import backend_of
from .conditions import condition_name
from .engines import describe_database
from .errors import SchemaError, SchemaPrivilegeError
from .models import DEFAULT_PLACEMENT, Placement
from .retries import error_code

_alembic_lock = threading.RLock()


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


def run_alembic(
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
        if code not in backend_of(connection.dialect).privilege_codes:
            raise
        url = connection.engine.url
        revision = head_revision() if target == "head" else target
        name = condition_name(connection.dialect.name, code)
        raise SchemaPrivilegeError(
            url.username, describe_database(url), revision, code, name
        ) from None
