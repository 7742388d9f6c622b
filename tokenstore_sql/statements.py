"""Core statements on ``TokenRow``, and the one place that knows each dialect's upsert.

Writes are single ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL) or
``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL, MariaDB) statements: atomic in the
database, so concurrent writers of one key never race between a read and an insert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
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
    select,
    tuple_,
    update,
)
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
    "token_key_id",
    "updated_at",
)
_tokens: Table = TokenRow.__table__  # type: ignore[assignment]  # declared as FromClause
# Read through the table's columns, not the ORM attributes: Core statements on plain
# columns skip the ORM's compile step on every execution.
TOKEN_COLUMNS: Final[tuple[Any, ...]] = tuple(
    _tokens.c[name] for name in ("resource_server", *UPDATED_COLUMNS[:-1])
)
_IN_NAMESPACE = _tokens.c.namespace == bindparam("namespace")
_BY_KEY = (_IN_NAMESPACE, _tokens.c.resource_server == bindparam("resource_server"))

# The hot-path statements, built once: execute them with key_params(...). SQLAlchemy
# caches a statement's compiled form, and reusing the very object also skips rebuilding
# and re-keying it on every call.
SELECT_NAMESPACE: Final = select(*TOKEN_COLUMNS).where(_IN_NAMESPACE)
SELECT_ONE: Final = select(*TOKEN_COLUMNS).where(*_BY_KEY)
DELETE_ONE: Final = delete(_tokens).where(*_BY_KEY)
DELETE_NAMESPACE: Final = delete(_tokens).where(_IN_NAMESPACE)


def key_params(namespace: str, resource_server: str | None = None) -> dict[str, str]:
    """Bind values for the statements above."""
    if resource_server is None:
        return {"namespace": namespace}
    return {"namespace": namespace, "resource_server": resource_server}


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


def select_namespaces() -> Select[Any]:
    """Select each distinct namespace, in order."""
    return select(TokenRow.namespace).distinct().order_by(TokenRow.namespace)


def select_rows_to_rekey(
    target_key_id: str | None, after: tuple[str, str] | None, limit: int
) -> Select[Any]:
    """Select, in key order, up to ``limit`` rows whose tokens are not under the target key.

    ``target_key_id`` None selects the encrypted rows (for decrypting them all); ``after``
    continues from a row's (namespace, resource_server), so each batch starts where the
    previous one stopped.
    """
    needs_work: ColumnElement[bool]
    if target_key_id is None:
        needs_work = TokenRow.token_key_id.is_not(None)
    else:
        needs_work = TokenRow.token_key_id.is_(None) | (TokenRow.token_key_id != target_key_id)
    rekey_columns: tuple[Any, ...] = (
        TokenRow.namespace,
        TokenRow.resource_server,
        TokenRow.access_token,
        TokenRow.refresh_token,
        TokenRow.token_key_id,
    )
    statement = (
        select(*rekey_columns)
        .where(needs_work)
        .order_by(TokenRow.namespace, TokenRow.resource_server)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(
            tuple_(TokenRow.namespace, TokenRow.resource_server) > tuple_(*after)
        )
    return statement


def update_row_tokens(namespace: str, resource_server: str, seen_key_id: str | None) -> Update:
    """Rewrite one row's tokens and key id, only if its key id is still ``seen_key_id``.

    A writer that stored new tokens in between wins: the row is left as that writer left
    it. Execute with ``access_token``, ``refresh_token`` and ``token_key_id`` values.
    """
    return update(TokenRow).where(
        TokenRow.namespace == namespace,
        TokenRow.resource_server == resource_server,
        TokenRow.token_key_id.is_not_distinct_from(seen_key_id),
    )


def select_tokens(namespaces: Sequence[str] | None = None) -> Select[Any]:
    """Select the namespace and token columns of every row, or of the rows in some namespaces.

    Rows come ordered by namespace and resource server.
    """
    statement = select(TokenRow.namespace, *TOKEN_COLUMNS).order_by(
        TokenRow.namespace, TokenRow.resource_server
    )
    if namespaces is not None:
        statement = statement.where(TokenRow.namespace.in_(namespaces))
    return statement


def unusable(now_seconds: int) -> ColumnElement[bool]:
    """Rows that can never be used again: access token expired, and no refresh token."""
    return (TokenRow.expires_at_seconds <= now_seconds) & TokenRow.refresh_token.is_(None)


def count_unusable(now_seconds: int) -> Select[Any]:
    """Count the rows :func:`delete_unusable` would delete."""
    return select(func.count()).select_from(TokenRow).where(unusable(now_seconds))


def delete_unusable(now_seconds: int) -> Delete:
    """Delete every row that can never be used again (see :func:`unusable`)."""
    return delete(TokenRow).where(unusable(now_seconds))


def select_counts(group_by: str, now_seconds: int) -> Select[Any]:
    """Count rows, expired rows and unusable rows per namespace or per resource server.

    :param group_by: ``"namespace"`` or ``"resource_server"``
    """
    key = getattr(TokenRow, group_by)
    expired = TokenRow.expires_at_seconds <= now_seconds
    return (
        select(
            key,
            func.count(),
            func.coalesce(func.sum(case((expired, 1), else_=0)), 0),
            func.coalesce(func.sum(case((unusable(now_seconds), 1), else_=0)), 0),
        )
        .group_by(key)
        .order_by(key)
    )
