"""Record which encryption key sealed each row's tokens.

Adds ``token_key_id`` (NULL: tokens stored in clear) and an index on it, so that key
rotation can find the rows not yet under the newest key. Existing rows keep their
tokens and read as unencrypted. The downgrade refuses to run while any row is
encrypted: without the column those tokens could not be told from plain text.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa

from tokenstore_sql.schema import migration_placement

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    placement = migration_placement()
    table, schema = placement.tokens_table, placement.schema
    op.add_column(table, sa.Column("token_key_id", sa.String(16), nullable=True), schema=schema)
    op.create_index(f"ix_{table}_token_key_id", table, ["token_key_id"], schema=schema)


def check_downgrade(connection: sa.Connection, table: str, schema: str | None) -> None:
    """Refuse to go below 0002 while any row is encrypted (run before any step goes down)."""
    tokens = sa.table(table, sa.column("token_key_id"), schema=schema)
    encrypted = connection.execute(
        sa.select(sa.func.count()).select_from(tokens).where(tokens.c.token_key_id.is_not(None))
    ).scalar()
    if encrypted:
        raise RuntimeError(
            f"{encrypted} row(s) hold encrypted tokens; decrypt them first with "
            "`tokenstore-sql rotate-keys --decrypt` before downgrading below revision 0002"
        )


def downgrade() -> None:
    placement = migration_placement()
    table, schema = placement.tokens_table, placement.schema
    check_downgrade(op.get_bind(), table, schema)
    op.drop_index(f"ix_{table}_token_key_id", table_name=table, schema=schema)
    with op.batch_alter_table(table, schema=schema) as batch:
        batch.drop_column("token_key_id")
