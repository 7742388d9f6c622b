"""The schema as it is now: the token table, and where our two tables are placed.

The migrations in ``migrations/versions`` are the history that builds this schema; a test
checks that the two agree on every backend. Data access lives in ``statements.py``.

A :class:`Placement` names the tables: a prefix (default ``tokenstore_sql_``, giving
``tokenstore_sql_tokens`` and ``tokenstore_sql_version``) and, on PostgreSQL, a schema.
Two placements in one database share nothing, so two deployments can live side by side.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.naming import conv
from sqlalchemy.sql.schema import RETAIN_SCHEMA

from .backends import find_backend
from .columns import ExactKey, LongText, UtcDateTime, utc_now
from .errors import PlacementError

DEFAULT_TABLE_PREFIX: Final = "tokenstore_sql_"
"""The table-name prefix of the default :class:`~tokenstore_sql.Placement`."""
TABLE_PREFIX_VARIABLE: Final = "TOKENSTORE_SQL_TABLE_PREFIX"
"""Where :meth:`~tokenstore_sql.Placement.from_environment` reads the prefix from."""
SCHEMA_VARIABLE: Final = "TOKENSTORE_SQL_SCHEMA"
"""Where :meth:`~tokenstore_sql.Placement.from_environment` reads the schema from."""
TOKENS_TABLE: Final = f"{DEFAULT_TABLE_PREFIX}tokens"
"""The token table's name with the default placement."""
VERSION_TABLE: Final = f"{DEFAULT_TABLE_PREFIX}version"
"""The version table's name with the default placement (Alembic's ``version_table``)."""
KEY_ID_LENGTH: Final = 16
"""Length of ``token_key_id``: the id of the key that encrypted a row's tokens."""
LEASE_OWNER_LENGTH: Final = 32
"""Length of ``refresh_lease_owner``: the random id of a refresh lease's holder."""

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint and index names, the same on every backend and in every migration."""


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
    # The refresh lease (see refresh.py): who is refreshing this row's tokens, until when.
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(LEASE_OWNER_LENGTH))
    refresh_lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


metadata: Final = Base.metadata
"""The ``MetaData`` of the default placement (for an application's Alembic autogenerate)."""

# Lower-case names need no quoting and mean the same table on every backend and file
# system. The longest derived name, "ix_{prefix}tokens_token_key_id", must fit the
# 63-character limit of PostgreSQL (MySQL allows 64).
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
MAX_PREFIX_LENGTH: Final = 40
"""The longest table prefix, so that every derived name fits PostgreSQL's 63 characters."""
MAX_SCHEMA_LENGTH: Final = 63
"""The longest PostgreSQL schema name."""


@dataclass(frozen=True)
class Placement:
    """Where tokenstore-sql's tables live: a table-name prefix and a PostgreSQL schema.

    :param table_prefix: prefix of both table names: ``{prefix}tokens`` holds the tokens
        and ``{prefix}version`` the schema revision. Lower-case letters, digits and
        underscores, at most 40 characters; it may be empty.
    :param schema: the PostgreSQL schema holding both tables (None: the connection's
        ``search_path``, normally ``public``). Created by the first migration if missing.
    :raises PlacementError: a prefix or schema that is not such a name
    """

    table_prefix: str = DEFAULT_TABLE_PREFIX
    schema: str | None = None

    def __post_init__(self) -> None:
        prefix, schema = self.table_prefix, self.schema
        if not isinstance(prefix, str) or (prefix and not _NAME.fullmatch(prefix)):
            raise PlacementError(
                f"table prefix {prefix!r} must be lower-case letters, digits and underscores"
            )
        if len(prefix) > MAX_PREFIX_LENGTH:
            raise PlacementError(
                f"table prefix {prefix!r} is longer than {MAX_PREFIX_LENGTH} characters"
            )
        if schema is not None and (
            not isinstance(schema, str)
            or not _NAME.fullmatch(schema)
            or len(schema) > MAX_SCHEMA_LENGTH
        ):
            raise PlacementError(
                f"schema {schema!r} must be lower-case letters, digits and underscores, "
                f"at most {MAX_SCHEMA_LENGTH} characters"
            )

    @classmethod
    def from_environment(
        cls, table_prefix: str | None = None, schema: str | None = None
    ) -> Placement:
        """Build a placement from the arguments, else from the environment.

        Unset arguments come from ``TOKENSTORE_SQL_TABLE_PREFIX`` and
        ``TOKENSTORE_SQL_SCHEMA``, else the defaults; an empty schema means none.
        """
        if table_prefix is None:
            table_prefix = os.environ.get(TABLE_PREFIX_VARIABLE, DEFAULT_TABLE_PREFIX)
        if schema is None:
            schema = os.environ.get(SCHEMA_VARIABLE)
        return cls(table_prefix, schema or None)

    @property
    def tokens_table(self) -> str:
        """The token table's name, without the schema."""
        return f"{self.table_prefix}tokens"

    @property
    def version_table(self) -> str:
        """The version table's name, without the schema."""
        return f"{self.table_prefix}version"

    def qualified(self, table_name: str) -> str:
        """Give a table name with its schema, as plain SQL would write it."""
        return table_name if self.schema is None else f"{self.schema}.{table_name}"

    def check_dialect(self, dialect_name: str) -> None:
        """Refuse a schema on a database without schemas (all but PostgreSQL).

        :raises PlacementError: naming the database
        """
        backend = find_backend(dialect_name)
        if self.schema is not None and (backend is None or not backend.schemas):
            raise PlacementError(
                f"a schema ({self.schema!r}) can be given on PostgreSQL only, "
                f"not on {dialect_name}; use a table prefix instead"
            )

    def __str__(self) -> str:
        return self.qualified(self.tokens_table)


DEFAULT_PLACEMENT: Final = Placement()
"""The placement used when none is given: tables ``tokenstore_sql_tokens`` and
``tokenstore_sql_version``."""


@cache
def metadata_for(placement: Placement) -> MetaData:
    """Give the ``MetaData`` holding the token table at this placement."""
    if placement == DEFAULT_PLACEMENT:
        return metadata
    placed = MetaData(naming_convention=NAMING_CONVENTION)
    tokens: Table = TokenRow.__table__  # type: ignore[assignment]  # declared as FromClause
    table = tokens.to_metadata(
        placed, schema=placement.schema or RETAIN_SCHEMA, name=placement.tokens_table
    )
    # The copy keeps the original's primary key name; the index names follow the table.
    table.primary_key.name = conv(f"pk_{placement.tokens_table}")
    return placed


def tokens_table(placement: Placement = DEFAULT_PLACEMENT) -> Table:
    """Give the token ``Table`` at this placement (``TokenRow``'s own for the default)."""
    return metadata_for(placement).tables[placement.qualified(placement.tokens_table)]
