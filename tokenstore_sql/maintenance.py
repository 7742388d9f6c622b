"""Housekeeping across every namespace: prune rows that can never be used, count rows.

Both work on aggregate facts (namespace, resource server, expiry, whether a refresh
token is present) and never read a token, so they work the same on encrypted rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from .execution import run_transaction
from .schema import ensure_schema
from .settings import DEFAULT_SETTINGS, StoreSettings
from .statements import statements_for


@dataclass(frozen=True)
class RowCounts:
    """How many rows one namespace or resource server holds.

    :ivar name: the namespace or resource server
    :ivar rows: every row
    :ivar expired: rows whose access token has expired (refreshable or not)
    :ivar unusable: expired rows without a refresh token, which ``prune`` removes
    """

    name: str
    rows: int
    expired: int
    unusable: int


@dataclass(frozen=True)
class TokenStats:
    """Row counts by namespace and by resource server, at one moment."""

    by_namespace: list[RowCounts]
    by_resource_server: list[RowCounts]

    @property
    def total(self) -> RowCounts:
        """The counts over every row."""
        rows = self.by_namespace
        return RowCounts(
            "total",
            sum(c.rows for c in rows),
            sum(c.expired for c in rows),
            sum(c.unusable for c in rows),
        )


def prune(
    engine: Engine,
    settings: StoreSettings = DEFAULT_SETTINGS,
    *,
    dry_run: bool = False,
    now: int | None = None,
) -> int:
    """Remove every row that can never be used again, in one transaction.

    Such a row has an expired access token and no refresh token: nothing can renew it.

    :param dry_run: only count the rows that would be removed
    :param settings: where the tables are (``placement``) and the ``retry`` policy
    :param now: the time (POSIX seconds) to judge expiry at; default: now
    :returns: how many rows were removed (or would be, with ``dry_run``)
    :raises SchemaOutOfDateError: the database has no schema, or an older one
    """
    ensure_schema(engine, settings.placement, create=False)
    moment = int(time.time()) if now is None else now
    statements = statements_for(settings.placement)

    def prune_rows(connection: Connection) -> int:
        if dry_run:
            return int(connection.execute(statements.count_unusable(moment)).scalar_one())
        return int(connection.execute(statements.delete_unusable(moment)).rowcount)

    return run_transaction(
        engine, "prune token data", prune_rows, writes=not dry_run, retry=settings.retry
    )


def stats(
    engine: Engine, settings: StoreSettings = DEFAULT_SETTINGS, *, now: int | None = None
) -> TokenStats:
    """Count rows by namespace and by resource server, in one read transaction.

    :raises SchemaOutOfDateError: the database has no schema, or an older one
    """
    ensure_schema(engine, settings.placement, create=False)
    moment = int(time.time()) if now is None else now
    statements = statements_for(settings.placement)

    def counts(connection: Connection, group_by: str) -> list[RowCounts]:
        rows = connection.execute(statements.select_counts(group_by, moment)).all()
        return [RowCounts(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def count_rows(connection: Connection) -> TokenStats:
        return TokenStats(counts(connection, "namespace"), counts(connection, "resource_server"))

    return run_transaction(
        engine, "count token data", count_rows, writes=False, retry=settings.retry
    )
