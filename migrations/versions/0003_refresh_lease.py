"""Add the refresh lease: which worker is refreshing a row's tokens, and until when.

``refresh_lease_owner`` (a random id per refresh) and ``refresh_lease_until`` (UTC) are
set by one conditional UPDATE when a worker starts refreshing a row and cleared when it
stores the result or gives up; both NULL when nobody is refreshing. Existing rows start
with no lease. The downgrade drops both columns: a refresh in flight then simply finds
no lease to clear.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tokenstore_sql.schema import migration_placement

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp() -> sa.types.TypeEngine[object]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    placement = migration_placement()
    table, schema = placement.tokens_table, placement.schema
    op.add_column(
        table, sa.Column("refresh_lease_owner", sa.String(32), nullable=True), schema=schema
    )
    op.add_column(
        table, sa.Column("refresh_lease_until", _timestamp(), nullable=True), schema=schema
    )


def downgrade() -> None:
    placement = migration_placement()
    table, schema = placement.tokens_table, placement.schema
    with op.batch_alter_table(table, schema=schema) as batch:
        batch.drop_column("refresh_lease_until")
        batch.drop_column("refresh_lease_owner")
