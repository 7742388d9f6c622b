"""tokenstore-sql: a globus-sdk ``TokenStorage`` on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

from .crypto import KeyRing, generate_key
from .engines import create_engine
from .errors import (
    DatabaseOperationError,
    EncryptionKeyError,
    ImportFormatError,
    InvalidTokenDataError,
    SchemaError,
    SchemaNotManagedError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StorageUnavailableError,
    TokenFileError,
    TokenStoreError,
    UnreadableTokenDataError,
    UnsupportedDatabaseError,
)
from .models import TOKENS_TABLE, VERSION_TABLE, TokenRow, metadata
from .retries import RetryPolicy
from .rotation import RotationReport, rotate_keys
from .storage import SQLAlchemyTokenStorage
from .transfer import ImportCount, ImportReport, export_token_file, import_token_files

__version__ = "0.1.0"

__all__ = [
    "TOKENS_TABLE",
    "VERSION_TABLE",
    "DatabaseOperationError",
    "EncryptionKeyError",
    "ImportCount",
    "ImportFormatError",
    "ImportReport",
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
    "TokenFileError",
    "TokenRow",
    "TokenStoreError",
    "UnreadableTokenDataError",
    "UnsupportedDatabaseError",
    "__version__",
    "create_engine",
    "export_token_file",
    "generate_key",
    "import_token_files",
    "metadata",
    "rotate_keys",
]
