"""Running tokenstore-sql's migrations from an application's own Alembic, or by hand.

An application with an Alembic history of its own runs these migrations from its
``env.py`` with :func:`upgrade_connection`, and keeps our tables out of its autogenerate
with :func:`alembic_include_name`. :func:`offline_sql` writes the migrations as SQL for a
DBA to apply (Alembic's offline mode), from a dialect name alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Final

import alembic.context
import alembic.op
from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy import Connection

from .errors import SchemaError
from .locks import lock_on
from .models import DEFAULT_PLACEMENT, Placement
from .schema import SCHEMA_LOCK_NAME, SCHEMA_LOCK_TIMEOUT_SECONDS, alembic_config, migrate_locked
from .statements import check_dialect

OFFLINE_DIALECTS: Final = ("sqlite", "postgresql", "mysql", "mariadb")
"""The dialects :func:`offline_sql` writes for; ``mariadb`` differs from ``mysql`` in the key
collation."""


def upgrade_connection(
    connection: Connection, target: str = "head", placement: Placement = DEFAULT_PLACEMENT
) -> None:
    """Create or upgrade tokenstore-sql's schema on the caller's connection.

    For an application's own Alembic ``env.py``: call it with the connection that
    ``env.py`` migrates. It records its revision in tokenstore-sql's version table and
    never reads or writes the application's. It joins the connection's transaction when
    one is open (the caller commits it), else runs in a transaction of its own,
    committed on return. On PostgreSQL and MySQL it takes the schema lock that storages
    take, so concurrent callers and storages change the schema once.

    :param target: the revision to upgrade to
    :param placement: where tokenstore-sql's tables are (default: ``tokenstore_sql_*``)
    :raises SchemaTooNewError: the database is at a revision this package does not know
    :raises SchemaNotManagedError: token tables exist without a version record
    :raises SchemaPrivilegeError: the account may not create or change tables
    """
    check_dialect(connection.dialect)
    placement.check_dialect(connection.dialect.name)
    transaction: AbstractContextManager[object] = (
        nullcontext() if connection.in_transaction() else connection.begin()
    )
    with (
        transaction,
        lock_on(connection, SCHEMA_LOCK_NAME, timeout=SCHEMA_LOCK_TIMEOUT_SECONDS),
        _enclosing_alembic_kept(),
    ):
        migrate_locked(connection, target, placement, create=True, upgrade=True)


IncludeName = Callable[[str | None, str, Mapping[str, object]], bool]
"""The signature of Alembic's ``include_name`` hook: name, type of object, parent names."""


def alembic_include_name_for(*placements: Placement) -> IncludeName:
    """Build an ``include_name`` hook that leaves the tables of ``placements`` out.

    For an application that keeps tokenstore-sql's tables at other placements than the
    default (see :func:`alembic_include_name`).
    """
    ours = frozenset(
        (placement.schema, table)
        for placement in placements
        for table in (placement.tokens_table, placement.version_table)
    )

    def include_name(name: str | None, type_: str, parent_names: Mapping[str, object]) -> bool:
        return not (type_ == "table" and (parent_names.get("schema_name"), name) in ours)

    return include_name


alembic_include_name: Final = alembic_include_name_for(DEFAULT_PLACEMENT)
"""The ``include_name`` hook that leaves the default placement's tables out of autogenerate."""
"""Leave tokenstore-sql's tables out of an application's Alembic autogenerate.

Pass it as ``include_name=`` to ``context.configure`` in the application's ``env.py``:
autogenerate then proposes neither to drop nor to create our tables.
"""


def offline_sql(
    dialect_name: str,
    target: str = "head",
    start: str | None = None,
    placement: Placement = DEFAULT_PLACEMENT,
) -> str:
    """Write the upgrade from ``start`` (default: an empty database) to ``target`` as SQL.

    Alembic's offline mode: nothing connects to a database. The script includes the
    version table's creation and rows, and on PostgreSQL a ``BEGIN``/``COMMIT``.

    :param dialect_name: one of :data:`~tokenstore_sql.deploy.OFFLINE_DIALECTS`
    :param placement: where the tables go
    :raises SchemaError: an unknown dialect or revision
    :raises PlacementError: a schema placement for a dialect other than PostgreSQL
    """
    if dialect_name not in OFFLINE_DIALECTS:
        raise SchemaError(
            f"cannot write SQL for {dialect_name!r}; choose one of {', '.join(OFFLINE_DIALECTS)}"
        )
    placement.check_dialect(dialect_name)
    buffer = io.StringIO()
    config = alembic_config(placement=placement)
    config.output_buffer = buffer
    # MariaDB as SQLAlchemy's mysql dialect sees it once connected to one: the name stays
    # "mysql", so mysql_* table options apply, and is_mariadb picks the key collation.
    mariadb = dialect_name == "mariadb"
    config.attributes["dialect_name"] = "mysql" if mariadb else dialect_name
    config.attributes["dialect_opts"] = {"is_mariadb": True} if mariadb else {}
    revisions = f"{start}:{target}" if start else target
    try:
        command.upgrade(config, revisions, sql=True)
    except (CommandError, RuntimeError) as exc:
        raise SchemaError(f"cannot write SQL for {revisions!r}: {exc}") from None
    return buffer.getvalue()


@contextmanager
def _enclosing_alembic_kept() -> Iterator[None]:
    """Reinstate the ``alembic.context``/``alembic.op`` an enclosing ``env.py`` runs in.

    Alembic points those module proxies at the running environment and clears them when
    it ends, so our nested run would otherwise leave the application's ``env.py``
    without its ``context``.
    """
    saved = [getattr(module, "_proxy", None) for module in (alembic.context, alembic.op)]
    try:
        yield
    finally:
        for proxy in saved:
            if proxy is not None:
                proxy._install_proxy()
