"""Core statements on the token table, and the one place that knows each dialect's upsert.

:func:`statements_for` gives the statements for a :class:`~tokenstore_sql.models.Placement`,
built once per placement and process.

Writes are single ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL) or
``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL, MariaDB) statements: atomic in the
database, so concurrent writers of one key never race between a read and an insert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, cached_property
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Delete,
    Dialect,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    case,
    delete,
    func,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .columns import is_mysql_family
from .errors import UnsupportedDatabaseError
from .models import DEFAULT_PLACEMENT, Placement, tokens_table

SUPPORTED_DIALECTS: Final = ("sqlite", "postgresql", "mysql", "mariadb")

KEY_COLUMNS: Final = ("namespace", "resource_server")
# Everything an upsert rewrites on conflict; created_at keeps its first value.
UPDATED_COLUMNS: Final = (
    "identity_id",
    "scope",
    "access_token",
    "refresh_token",
    "expires_at_seconds",
    "token_type",
    "extra",
    "token_key_id",
    "updated_at",
)
# What storing a refresh's result rewrites: the identity and extra stay as they were.
REFRESHED_COLUMNS: Final = (
    "scope",
    "access_token",
    "refresh_token",
    "expires_at_seconds",
    "token_type",
    "token_key_id",
    "updated_at",
)


def key_params(namespace: str, resource_server: str | None = None) -> dict[str, str]:
    """Bind values for the key-bound statements of :class:`TokenStatements`."""
    if resource_server is None:
        return {"namespace": namespace}
    return {"namespace": namespace, "resource_server": resource_server}


def check_dialect(dialect: Dialect) -> None:
    """Refuse a database that tokenstore-sql does not support.

    :raises UnsupportedDatabaseError: naming the dialect
    """
    if dialect.name not in SUPPORTED_DIALECTS:
        raise UnsupportedDatabaseError(dialect.name)


@cache
def statements_for(placement: Placement = DEFAULT_PLACEMENT) -> TokenStatements:
    """Give the statements on the token table at ``placement`` (one set per placement)."""
    return TokenStatements(tokens_table(placement))


class TokenStatements:
    """Every statement tokenstore-sql runs on one token table.

    The hot-path statements (``select_one``, ``select_namespace``, ``delete_one``,
    ``delete_namespace``) are built once: execute them with :func:`key_params`.
    SQLAlchemy caches a statement's compiled form, and reusing the very object also
    skips rebuilding and re-keying it on every call.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        columns = table.c
        # Read through the table's columns, not ORM attributes: Core statements on plain
        # columns skip the ORM's compile step on every execution.
        self.token_columns: tuple[Any, ...] = tuple(
            columns[name] for name in ("resource_server", *UPDATED_COLUMNS[:-1])
        )
        in_namespace = columns.namespace == bindparam("namespace")
        by_key = (in_namespace, columns.resource_server == bindparam("resource_server"))
        self.select_namespace: Final = select(*self.token_columns).where(in_namespace)
        self.select_one: Final = select(*self.token_columns).where(*by_key)
        self.delete_one: Final = delete(table).where(*by_key)
        self.delete_namespace: Final = delete(table).where(in_namespace)
        self._build_lease_statements()

    def _build_lease_statements(self) -> None:
        """Build the statements of refresh coordination (see :mod:`tokenstore_sql.refresh_plan`).

        Each is one statement on one row, so none needs a transaction, a lock or a
        session of its own: they work through PgBouncer and across Galera nodes.
        """
        c = self.table.c
        owner, until = c.refresh_lease_owner, c.refresh_lease_until
        # An UPDATE may not bind a column's own name: the row's key binds as row_*.
        by_key = (
            c.namespace == bindparam("row_namespace"),
            c.resource_server == bindparam("row_resource_server"),
        )
        # Literal NULLs, and updated_at kept: a lease is not a change of the token data.
        no_lease = {"refresh_lease_owner": null(), "refresh_lease_until": null()}
        unchanged = {"updated_at": c.updated_at}
        self.select_for_refresh: Select[Any] = select(*self.token_columns, owner, until).where(
            c.namespace == bindparam("namespace"),
            c.resource_server == bindparam("resource_server"),
        )
        # Taken when free, expired, or already ours (a retried statement that was applied).
        self.take_lease: Update = (
            update(self.table)
            .where(
                *by_key,
                or_(
                    owner.is_(None),
                    until < bindparam("now", type_=until.type),
                    owner == bindparam("owner"),
                ),
            )
            .values(
                refresh_lease_owner=bindparam("owner", type_=owner.type),
                refresh_lease_until=bindparam("until", type_=until.type),
                **unchanged,
            )
        )
        self.release_lease: Update = (
            update(self.table)
            .where(*by_key, owner == bindparam("owner"))
            .values(**no_lease, **unchanged)
        )
        # A compare-and-swap on the refresh token that was spent, as stored: the result of
        # a refresh replaces exactly the token it came from, whoever holds the lease now.
        self.store_refreshed: Update = (
            update(self.table)
            .where(*by_key, c.refresh_token == bindparam("spent_refresh_token"))
            .values(
                **{
                    name: bindparam(f"new_{name}", type_=c[name].type) for name in REFRESHED_COLUMNS
                },
                **no_lease,
            )
        )

    def upsert(self, dialect: Dialect) -> Insert:
        """Give the insert-or-replace statement for token rows on this dialect.

        Execute it with a list of row dicts holding every column (``created_at`` and
        ``updated_at`` included).
        """
        check_dialect(dialect)
        return self._upserts["mysql" if is_mysql_family(dialect) else dialect.name]

    @cached_property
    def _upserts(self) -> dict[str, Insert]:
        return {name: build(self.table) for name, build in _UPSERT_BUILDERS.items()}

    def select_namespaces(self) -> Select[Any]:
        """Select each distinct namespace, in order."""
        return self._select_namespaces

    @cached_property
    def _select_namespaces(self) -> Select[Any]:
        namespace = self.table.c.namespace
        return select(namespace).distinct().order_by(namespace)

    def select_rows_to_rekey(
        self, target_key_id: str | None, after: tuple[str, str] | None, limit: int
    ) -> Select[Any]:
        """Select, in key order, up to ``limit`` rows whose tokens are not under the target key.

        ``target_key_id`` None selects the encrypted rows (for decrypting them all);
        ``after`` continues from a row's (namespace, resource_server), so each batch starts
        where the previous one stopped.
        """
        c = self.table.c
        needs_work: ColumnElement[bool]
        if target_key_id is None:
            needs_work = c.token_key_id.is_not(None)
        else:
            needs_work = c.token_key_id.is_(None) | (c.token_key_id != target_key_id)
        statement = (
            select(c.namespace, c.resource_server, c.access_token, c.refresh_token, c.token_key_id)
            .where(needs_work)
            .order_by(c.namespace, c.resource_server)
            .limit(limit)
        )
        if after is not None:
            # Bound with the key columns' type, so the cursor is escaped as stored keys are.
            cursor = tuple_(*(bindparam(None, value, type_=c.namespace.type) for value in after))
            statement = statement.where(tuple_(c.namespace, c.resource_server) > cursor)
        return statement

    def update_row_tokens(
        self, namespace: str, resource_server: str, seen_key_id: str | None
    ) -> Update:
        """Rewrite one row's tokens and key id, only if its key id is still ``seen_key_id``.

        A writer that stored new tokens in between wins: the row is left as that writer
        left it. Execute with ``access_token``, ``refresh_token`` and ``token_key_id``.
        """
        c = self.table.c
        return update(self.table).where(
            c.namespace == namespace,
            c.resource_server == resource_server,
            c.token_key_id.is_not_distinct_from(seen_key_id),
        )

    def select_tokens(self, namespaces: Sequence[str] | None = None) -> Select[Any]:
        """Select the namespace and token columns of every row, or of some namespaces' rows.

        Rows come ordered by namespace and resource server.
        """
        c = self.table.c
        statement = select(c.namespace, *self.token_columns).order_by(
            c.namespace, c.resource_server
        )
        if namespaces is not None:
            statement = statement.where(c.namespace.in_(namespaces))
        return statement

    def unusable(self, now_seconds: int) -> ColumnElement[bool]:
        """Rows that can never be used again: access token expired, no refresh token."""
        c = self.table.c
        return (c.expires_at_seconds <= now_seconds) & c.refresh_token.is_(None)

    def count_unusable(self, now_seconds: int) -> Select[Any]:
        """Count the rows :meth:`delete_unusable` would delete."""
        return select(func.count()).select_from(self.table).where(self.unusable(now_seconds))

    def delete_unusable(self, now_seconds: int) -> Delete:
        """Delete every row that can never be used again (see :meth:`unusable`)."""
        return delete(self.table).where(self.unusable(now_seconds))

    def select_counts(self, group_by: str, now_seconds: int) -> Select[Any]:
        """Count rows, expired rows and unusable rows per namespace or resource server.

        :param group_by: ``"namespace"`` or ``"resource_server"``
        """
        c = self.table.c
        key = c[group_by]
        expired = c.expires_at_seconds <= now_seconds
        unusable = self.unusable(now_seconds)
        return (
            select(
                key,
                func.count(),
                func.coalesce(func.sum(case((expired, 1), else_=0)), 0),
                func.coalesce(func.sum(case((unusable, 1), else_=0)), 0),
            )
            .group_by(key)
            .order_by(key)
        )


def _sqlite_upsert(table: Table) -> Insert:
    stmt = sqlite.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in UPDATED_COLUMNS},
    )


def _postgresql_upsert(table: Table) -> Insert:
    stmt = postgresql.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in UPDATED_COLUMNS},
    )


def _mysql_upsert(table: Table) -> Insert:
    stmt = mysql.insert(table)
    return stmt.on_duplicate_key_update({name: stmt.inserted[name] for name in UPDATED_COLUMNS})


_UPSERT_BUILDERS: Final[dict[str, Callable[[Table], Insert]]] = {
    "sqlite": _sqlite_upsert,
    "postgresql": _postgresql_upsert,
    "mysql": _mysql_upsert,
}
