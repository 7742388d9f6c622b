"""The schema as it is now: the token table and the names of our tables.

The migrations in ``migrations/versions`` are the history that builds this schema; a test
checks that the two agree on every backend. Data access lives in ``statements.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .columns import ExactKey, LongText, UtcDateTime, utc_now

TOKENS_TABLE: Final = "tokenstore_sql_tokens"
VERSION_TABLE: Final = "tokenstore_sql_version"
KEY_ID_LENGTH: Final = 16

# Constraint names fixed here are the same on every backend and in every migration.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base over tokenstore-sql's own ``MetaData``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TokenRow(Base):
    """One resource server's token data in one namespace."""

    __tablename__ = TOKENS_TABLE

    namespace: Mapped[str] = mapped_column(ExactKey(), primary_key=True)
    resource_server: Mapped[str] = mapped_column(ExactKey(), primary_key=True)
    identity_id: Mapped[str | None] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(LongText)
    access_token: Mapped[str] = mapped_column(LongText)
    refresh_token: Mapped[str | None] = mapped_column(LongText)
    expires_at_seconds: Mapped[int] = mapped_column(BigInteger)
    token_type: Mapped[str | None] = mapped_column(String(255))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Id of the key that encrypted access_token and refresh_token; None: stored in clear.
    token_key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


metadata: Final = Base.metadata
