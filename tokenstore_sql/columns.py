"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB.

``ExactKey``: a string key compared byte for byte. SQLite and PostgreSQL (deterministic
collations) already compare text exactly. MySQL and MariaDB do not: their default
collations fold case, and even ``utf8mb4_bin`` is PAD SPACE, so ``'a'`` equals ``'a '``.
The key columns therefore use a binary NO PAD collation: ``utf8mb4_nopad_bin`` on MariaDB,
``utf8mb4_0900_bin`` on MySQL 8.

Key text is escaped on its way in and out, the same on every backend, because PostgreSQL
text cannot hold NUL: U+FFFF (a noncharacter, never used in interchange) is the escape
character, stored as U+FFFF U+FFFF, and NUL is stored as U+FFFF ``0``. Everything else is
stored as it is, so ordinary keys read the same in plain SQL. The escape is injective, so
keys that differ stay different rows.

``LongText``: token and scope text. MySQL's ``TEXT`` holds 64 KiB; ``MEDIUMTEXT`` (16 MiB)
leaves room for long scope strings and large tokens.

``UtcDateTime``: aware UTC datetimes in, aware UTC datetimes out, whatever the backend
keeps (PostgreSQL ``timestamptz``; naive UTC on SQLite and MySQL).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Dialect, String, Text
from sqlalchemy.types import TypeDecorator, TypeEngine

from .backends import all_backends, find_backend
from .errors import TokenStoreError, UnreadableTokenDataError

KEY_LENGTH = 255
KEY_ESCAPE = "\uffff"
_ESCAPED_NUL = "0"


class MalformedKeyError(UnreadableTokenDataError):
    """A stored key holds an escape that :func:`encode_key` never writes (say, hand-edited).

    The column type cannot tell a namespace from a resource server, so ``namespace`` and
    ``resource_server`` both hold the key as stored.

    :ivar stored: the key as stored
    :ivar position: where the bad escape starts
    """

    def __init__(self, stored: str, position: int) -> None:
        self.stored = stored
        self.position = position
        self.namespace = self.resource_server = stored
        follower = stored[position + 1 : position + 2]
        found = f"followed by {follower!r}" if follower else "at its end"
        self.problem = (
            f"the stored namespace or resource server {stored!r} holds U+FFFF {found} "
            f"at position {position}; only U+FFFF U+FFFF and U+FFFF '0' are valid "
            "(was the row edited by hand?)"
        )
        TokenStoreError.__init__(self, f"stored token data cannot be read: {self.problem}")


def encode_key(value: str) -> str:
    """Escape a key for storage: U+FFFF becomes U+FFFF U+FFFF, NUL becomes U+FFFF ``0``."""
    if KEY_ESCAPE in value:
        value = value.replace(KEY_ESCAPE, KEY_ESCAPE * 2)
    if "\x00" in value:
        value = value.replace("\x00", KEY_ESCAPE + _ESCAPED_NUL)
    return value


def decode_key(value: str) -> str:
    """Undo :func:`encode_key`.

    :raises MalformedKeyError: U+FFFF followed by anything but U+FFFF or ``0``, or last
    """
    if KEY_ESCAPE not in value:
        return value
    parts: list[str] = []
    start = 0
    while (escape := value.find(KEY_ESCAPE, start)) != -1:
        follower = value[escape + 1 : escape + 2]
        if follower == KEY_ESCAPE:
            parts.append(value[start : escape + 1])
        elif follower == _ESCAPED_NUL:
            parts.append(value[start:escape] + "\x00")
        else:
            raise MalformedKeyError(value, escape)
        start = escape + 2
    parts.append(value[start:])
    return "".join(parts)


class ExactKey(TypeDecorator[str]):
    """A ``VARCHAR`` key that compares exactly (case, trailing spaces, unicode) everywhere.

    Values are escaped with :func:`encode_key` when bound and unescaped with
    :func:`decode_key` when read, so NUL can be stored on every backend.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int = KEY_LENGTH) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Give the database's exact-comparing key type (on MySQL, a binary NO PAD one)."""
        backend = find_backend(dialect.name)
        if backend is None:
            return dialect.type_descriptor(String(self.length))
        return dialect.type_descriptor(backend.key_type(dialect, self.length))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Escape the key (see :func:`encode_key`)."""
        return None if value is None else encode_key(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        """Unescape the key (see :func:`decode_key`)."""
        return None if value is None else decode_key(value)

    # The processors of the two methods above, without SQLAlchemy's wrapper around each:
    # keys are bound and read on every call, and the wrapper cost two calls a value.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        """Give the function that escapes a key as it is bound."""
        then = self.impl_instance.bind_processor(dialect)
        return _bind_key if then is None else lambda value: then(_bind_key(value))

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        """Give the function that unescapes a key as it is read."""
        first = self.impl_instance.result_processor(dialect, coltype)
        return _read_key if first is None else lambda value: _read_key(first(value))


def _bind_key(value: str | None) -> str | None:
    if value is None or (KEY_ESCAPE not in value and "\x00" not in value):
        return value
    return encode_key(value)


def _read_key(value: str | None) -> str | None:
    return value if value is None or KEY_ESCAPE not in value else decode_key(value)


def _long_text() -> TypeEngine[str]:
    text: TypeEngine[str] = Text()
    for backend in all_backends():
        if backend.long_text is not None:
            text = text.with_variant(backend.long_text, *backend.dialect_names)
    return text


LongText: TypeEngine[str] = _long_text()


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Give the database's timestamp type (on MySQL, a ``DATETIME`` keeping microseconds)."""
        backend = find_backend(dialect.name)
        if backend is None:
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(backend.datetime_type)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; hand the backend UTC (naive where it has no zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        backend = find_backend(dialect.name)
        if backend is not None and backend.aware_datetimes:
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
