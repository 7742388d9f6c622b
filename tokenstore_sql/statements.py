"""Core statements on ``TokenRow``, and the one place that knows each dialect's upsert.

Writes are single ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL) or
``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL, MariaDB) statements: atomic in the
database, so concurrent writers of one key never race between a read and an insert.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Final

from sqlalchemy import Delete, Dialect, Insert, Select, delete, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .columns import is_mysql_family
from .errors import UnsupportedDatabaseError
from .models import TokenRow

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
    "updated_at",
)
TOKEN_COLUMNS: Final = (
    TokenRow.resource_server,
    *(getattr(TokenRow, name) for name in UPDATED_COLUMNS[:-1]),
)


def check_dialect(dialect: Dialect) -> None:
    """Refuse a database that tokenstore-sql does not support.

    :raises UnsupportedDatabaseError: naming the dialect
    """
    if dialect.name not in SUPPORTED_DIALECTS:
        raise UnsupportedDatabaseError(dialect.name)


def _sqlite_upsert() -> Insert:
    stmt = sqlite.insert(TokenRow)
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in UPDATED_COLUMNS},
    )


def _postgresql_upsert() -> Insert:
    stmt = postgresql.insert(TokenRow)
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in UPDATED_COLUMNS},
    )


def _mysql_upsert() -> Insert:
    stmt = mysql.insert(TokenRow)
    return stmt.on_duplicate_key_update({name: stmt.inserted[name] for name in UPDATED_COLUMNS})


_UPSERTS: dict[str, Callable[[], Insert]] = {
    "sqlite": _sqlite_upsert,
    "postgresql": _postgresql_upsert,
    "mysql": _mysql_upsert,
}


def upsert(dialect: Dialect) -> Insert:
    """Give the insert-or-replace statement for token rows on this dialect.

    Execute it with a list of row dicts holding every column (``created_at`` and
    ``updated_at`` included). Statements are immutable, so one per dialect is built once.
    """
    check_dialect(dialect)
    return _upsert_for("mysql" if is_mysql_family(dialect) else dialect.name)


@cache
def _upsert_for(name: str) -> Insert:
    return _UPSERTS[name]()


def select_namespace(namespace: str) -> Select[Any]:
    """Select the token columns of every row in a namespace."""
    return select(*TOKEN_COLUMNS).where(TokenRow.namespace == namespace)


def select_one(namespace: str, resource_server: str) -> Select[Any]:
    """Select the token columns of one row by its primary key."""
    return select(*TOKEN_COLUMNS).where(
        TokenRow.namespace == namespace, TokenRow.resource_server == resource_server
    )


def delete_one(namespace: str, resource_server: str) -> Delete:
    """Delete one row by its primary key."""
    return delete(TokenRow).where(
        TokenRow.namespace == namespace, TokenRow.resource_server == resource_server
    )


def select_namespaces() -> Select[Any]:
    """Select each distinct namespace, in order."""
    return select(TokenRow.namespace).distinct().order_by(TokenRow.namespace)
