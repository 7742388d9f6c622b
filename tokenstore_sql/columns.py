"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB.

``ExactKey``: a string key compared byte for byte. SQLite and PostgreSQL (deterministic
collations) already compare text exactly. MySQL and MariaDB do not: their default
collations fold case, and even ``utf8mb4_bin`` is PAD SPACE, so ``'a'`` equals ``'a '``.
The key columns therefore use a binary NO PAD collation: ``utf8mb4_nopad_bin`` on MariaDB,
``utf8mb4_0900_bin`` on MySQL 8.

``LongText``: token and scope text. MySQL's ``TEXT`` holds 64 KiB; ``MEDIUMTEXT`` (16 MiB)
leaves room for long scope strings and large tokens.

``UtcDateTime``: aware UTC datetimes in, aware UTC datetimes out, whatever the backend
keeps (PostgreSQL ``timestamptz``; naive UTC on SQLite and MySQL).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Dialect, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

KEY_LENGTH = 255
MYSQL_NOPAD_BINARY_COLLATION = "utf8mb4_0900_bin"
MARIADB_NOPAD_BINARY_COLLATION = "utf8mb4_nopad_bin"


def is_mysql_family(dialect: Dialect) -> bool:
    """Tell whether a dialect talks to MySQL or MariaDB."""
    return dialect.name in ("mysql", "mariadb")


def exact_key_collation(dialect: Dialect) -> str | None:
    """Name the binary NO PAD collation for key columns on this dialect (None: not needed)."""
    if not is_mysql_family(dialect):
        return None
    if getattr(dialect, "is_mariadb", False):
        return MARIADB_NOPAD_BINARY_COLLATION
    return MYSQL_NOPAD_BINARY_COLLATION


class ExactKey(TypeDecorator[str]):
    """A ``VARCHAR`` key that compares exactly (case, trailing spaces, unicode) everywhere."""

    impl = String
    cache_ok = True

    def __init__(self, length: int = KEY_LENGTH) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Give MySQL and MariaDB a utf8mb4 binary NO PAD column."""
        collation = exact_key_collation(dialect)
        if collation is None:
            return dialect.type_descriptor(String(self.length))
        return dialect.type_descriptor(
            mysql.VARCHAR(self.length, charset="utf8mb4", collation=collation)
        )


LongText: TypeEngine[str] = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Keep microseconds on MySQL, whose ``DATETIME`` drops them by default."""
        if is_mysql_family(dialect):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; hand the backend UTC (naive where it has no zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what came back naive."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)
