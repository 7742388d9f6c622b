"""Core statements on the token table; each database's upsert comes from its backend.

:func:`statements_for` gives the statements for a :class:`~tokenstore_sql.models.Placement`,
built once per placement and process.

Writes are single ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL) or
``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL, MariaDB) statements: atomic in the
database, so concurrent writers of one key never race between a read and an insert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

from sqlalchemy import (
    Dialect,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    null,
    or_,
    select,
    update,
)

from .backends import Backend, backend_of
from .codec import READ_COLUMNS
from .models import DEFAULT_PLACEMENT, Placement, tokens_table
from .statements_admin import AdminStatements

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


def numbered(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Give several rows' values as one upsert of as many rows takes them: ``<column>_<i>``."""
    return {f"{name}_{i}": value for i, row in enumerate(rows) for name, value in row.items()}


def key_params(namespace: str, resource_server: str | None = None) -> dict[str, str]:
    """Bind values for the key-bound statements of :class:`TokenStatements`."""
    if resource_server is None:
        return {"namespace": namespace}
    return {"namespace": namespace, "resource_server": resource_server}


def check_dialect(dialect: Dialect) -> None:
    """Refuse a database that tokenstore-sql does not support.

    :raises UnsupportedDatabaseError: naming the dialect
    """
    backend_of(dialect)


@cache
def statements_for(placement: Placement = DEFAULT_PLACEMENT) -> TokenStatements:
    """Give the statements on the token table at ``placement`` (one set per placement)."""
    return TokenStatements(tokens_table(placement))


class TokenStatements(AdminStatements):
    """Every statement tokenstore-sql runs on one token table.

    Those of administrative operations come from :class:`AdminStatements`.

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
        # In the order codec.token_data_from_values takes a read's values.
        self.token_columns: tuple[Any, ...] = tuple(columns[name] for name in READ_COLUMNS)
        in_namespace = columns.namespace == bindparam("namespace")
        by_key = (in_namespace, columns.resource_server == bindparam("resource_server"))
        self.select_namespace: Final = select(*self.token_columns).where(in_namespace)
        self.select_one: Final = select(*self.token_columns).where(*by_key)
        self.delete_one: Final = delete(table).where(*by_key)
        self.delete_namespace: Final = delete(table).where(in_namespace)
        self._upserts: dict[tuple[str, int], Insert] = {}
        self._by_keys: dict[int, Select[Any]] = {}
        self._build_lease_statements()

    def select_keys(self, count: int) -> Select[Any]:
        """Select the rows of ``count`` keys in one statement, with their namespaces.

        Bind ``namespace_<i>`` and ``resource_server_<i>`` for ``i`` below ``count``; built
        once per count.
        """
        found = self._by_keys.get(count)
        if found is None:
            columns = self.table.c
            keys = (
                (columns.namespace == bindparam(f"namespace_{i}"))
                & (columns.resource_server == bindparam(f"resource_server_{i}"))
                for i in range(count)
            )
            found = self._by_keys[count] = select(columns.namespace, *self.token_columns).where(
                or_(*keys)
            )
        return found

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

    def upsert_of(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[Insert, list[Mapping[str, Any]]]:
        """Give one upsert that writes ``rows`` (every column each), with its parameter sets.

        All the rows in one statement where the backend gains by it, for as many as it
        takes (``rows_per_upsert``: PostgreSQL plans each statement it is sent); else the
        one-row statement, once per row (an ``executemany``).
        """
        backend, count = backend_of(dialect), len(rows)
        if 1 < count <= backend.rows_per_upsert:
            return self._upsert(backend, count), [numbered(rows)]
        return self._upsert(backend, 1), list(rows)

    def upsert(self, dialect: Dialect, rows: int = 1) -> Insert:
        """Give the insert-or-replace statement for ``rows`` token rows on this dialect.

        Execute it with row dicts holding every column (``created_at`` and ``updated_at``
        included): for one row, by column name; for more, as :func:`numbered` names them.

        :raises UnsupportedDatabaseError: naming the dialect
        """
        return self._upsert(backend_of(dialect), rows)

    def _upsert(self, backend: Backend, rows: int) -> Insert:
        found = self._upserts.get((backend.name, rows))
        if found is None:
            found = backend.upsert(self.table, KEY_COLUMNS, UPDATED_COLUMNS)
            if rows > 1:
                columns = self.table.columns
                found = found.values(
                    [
                        {
                            column.name: bindparam(f"{column.name}_{i}", type_=column.type)
                            for column in columns
                        }
                        for i in range(rows)
                    ]
                )
            self._upserts[backend.name, rows] = found
        return found
