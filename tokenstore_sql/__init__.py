"""tokenstore-sql: a globus-sdk ``TokenStorage`` on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

# globus-sdk's TokenStorageData, whichever of its 3.x or 4.x modules holds it.
from ._sdk import TokenStorageData
from .async_engines import create_async_engine
from .async_storage import AsyncSQLAlchemyTokenStorage
from .crypto import KeyRing, generate_key
from .deploy import alembic_include_name, alembic_include_name_for, upgrade_connection
from .engines import create_engine
from .errors import (
    DatabaseOperationError,
    EncryptionKeyError,
    ImportFormatError,
    InvalidTokenDataError,
    MissingTokenDataError,
    PlacementError,
    SchemaError,
    SchemaNotManagedError,
    SchemaOutOfDateError,
    SchemaPrivilegeError,
    SchemaTooNewError,
    StorageUnavailableError,
    TokenFileError,
    TokenStoreError,
    UnreadableTokenDataError,
    UnsupportedDatabaseError,
)
from .locks import locked_transaction
from .maintenance import RowCounts, TokenStats, prune, stats
from .models import TOKENS_TABLE, VERSION_TABLE, Placement, TokenRow, metadata
from .refresh import LockingRefreshTokenAuthorizer, refresh_once
from .retries import RetryPolicy
from .rotation import RotationReport, rotate_keys
from .storage import SQLAlchemyTokenStorage
from .store import TokenStore, user_namespace
from .transfer import ImportCount, ImportReport, export_token_file, import_token_files

__version__ = "0.1.0"

__all__ = [
    "TOKENS_TABLE",
    "VERSION_TABLE",
    "AsyncSQLAlchemyTokenStorage",
    "DatabaseOperationError",
    "EncryptionKeyError",
    "ImportCount",
    "ImportFormatError",
    "ImportReport",
    "InvalidTokenDataError",
    "KeyRing",
    "LockingRefreshTokenAuthorizer",
    "MissingTokenDataError",
    "Placement",
    "PlacementError",
    "RetryPolicy",
    "RotationReport",
    "RowCounts",
    "SQLAlchemyTokenStorage",
    "SchemaError",
    "SchemaNotManagedError",
    "SchemaOutOfDateError",
    "SchemaPrivilegeError",
    "SchemaTooNewError",
    "StorageUnavailableError",
    "TokenFileError",
    "TokenRow",
    "TokenStats",
    "TokenStorageData",
    "TokenStore",
    "TokenStoreError",
    "UnreadableTokenDataError",
    "UnsupportedDatabaseError",
    "__version__",
    "alembic_include_name",
    "alembic_include_name_for",
    "create_async_engine",
    "create_engine",
    "export_token_file",
    "generate_key",
    "import_token_files",
    "locked_transaction",
    "metadata",
    "prune",
    "refresh_once",
    "rotate_keys",
    "stats",
    "upgrade_connection",
    "user_namespace",
]
