"""tokenstore-sql: a globus-sdk ``TokenStorage`` on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

from .crypto import KeyRing, generate_key
from .engines import create_engine
from .errors import (
    DatabaseOperationError,
    EncryptionKeyError,
    InvalidTokenDataError,
    SchemaError,
    SchemaNotManagedError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StorageUnavailableError,
    TokenStoreError,
    UnreadableTokenDataError,
    UnsupportedDatabaseError,
)
from .models import TOKENS_TABLE, VERSION_TABLE, TokenRow, metadata
from .retries import RetryPolicy
from .rotation import RotationReport, rotate_keys
from .storage import SQLAlchemyTokenStorage

__version__ = "0.1.0"

__all__ = [
    "TOKENS_TABLE",
    "VERSION_TABLE",
    "DatabaseOperationError",
    "EncryptionKeyError",
    "InvalidTokenDataError",
    "KeyRing",
    "RetryPolicy",
    "RotationReport",
    "SQLAlchemyTokenStorage",
    "SchemaError",
    "SchemaNotManagedError",
    "SchemaOutOfDateError",
    "SchemaTooNewError",
    "StorageUnavailableError",
    "TokenRow",
    "TokenStoreError",
    "UnreadableTokenDataError",
    "UnsupportedDatabaseError",
    "__version__",
    "create_engine",
    "generate_key",
    "metadata",
    "rotate_keys",
]
