"""Statements of the administrative operations: listing, key rotation, export, pruning, stats.

:class:`AdminStatements` is a part of :class:`tokenstore_sql.statements.TokenStatements`,
kept apart from the hot path and refresh coordination: these run once per command, over
many rows, and are built on each call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
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


class AdminStatements:
    """The statements on one token table that administrative operations run."""

    table: Table
    token_columns: tuple[Any, ...]

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
