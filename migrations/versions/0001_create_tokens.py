"""Create the token table.

One row per (namespace, resource_server), each TokenStorageData field in its own column.
Key columns compare exactly on every backend: on MySQL and MariaDB they use a binary
NO PAD collation, because even utf8mb4_bin ignores trailing spaces.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tokenstore_sql.schema import migration_placement

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _key() -> sa.types.TypeEngine[str]:
    dialect = op.get_context().dialect
    if dialect.name not in ("mysql", "mariadb"):
        return sa.String(255)
    collation = "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
    return mysql.VARCHAR(255, charset="utf8mb4", collation=collation)


def _long_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _timestamp() -> sa.types.TypeEngine[object]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    placement = migration_placement()
    table = placement.tokens_table
    op.create_table(
        table,
        sa.Column("namespace", _key(), nullable=False),
        sa.Column("resource_server", _key(), nullable=False),
        sa.Column("identity_id", sa.String(255), nullable=True),
        sa.Column("scope", _long_text(), nullable=False),
        sa.Column("access_token", _long_text(), nullable=False),
        sa.Column("refresh_token", _long_text(), nullable=True),
        sa.Column("expires_at_seconds", sa.BigInteger(), nullable=False),
        sa.Column("token_type", sa.String(255), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "resource_server", name=f"pk_{table}"),
        schema=placement.schema,
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    placement = migration_placement()
    op.drop_table(placement.tokens_table, schema=placement.schema)
