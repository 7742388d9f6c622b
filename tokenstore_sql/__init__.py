"""tokenstore-sql: a globus-sdk ``TokenStorage`` on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# globus-sdk's TokenStorageData, whichever of its 3.x or 4.x modules holds it.
from ._sdk import TokenStorageData
from .crypto import KeyRing, generate_key
from .deploy import alembic_include_name, alembic_include_name_for, upgrade_connection
from .engines import create_engine
from .errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseOperationError,
    EncryptionKeyError,
    ImportFormatError,
    InvalidTokenDataError,
    MissingDriverError,
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
from .namespaces import globus_app_namespace, user_namespace
from .refresh import LockingRefreshTokenAuthorizer, refresh_once
from .retries import RetryPolicy
from .rotation import RotationReport, rotate_keys
from .storage import SQLAlchemyTokenStorage
from .store import TokenStore
from .transfer import ImportCount, ImportReport, export_token_file, import_token_files

if TYPE_CHECKING:
    from .async_engines import create_async_engine
    from .async_refresh import async_refresh_once
    from .async_storage import AsyncSQLAlchemyTokenStorage
    from .async_store import AsyncTokenStore

__version__ = "0.1.0"

# The async API needs SQLAlchemy's asyncio extension (the "async" extra): loaded on first
# use, so that the sync API works without it.
_ASYNC_NAMES = {
    "AsyncSQLAlchemyTokenStorage": "async_storage",
    "AsyncTokenStore": "async_store",
    "async_refresh_once": "async_refresh",
    "create_async_engine": "async_engines",
}


def __getattr__(name: str) -> object:
    module = _ASYNC_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        loaded = importlib.import_module(f".{module}", __name__)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the async extra: pip install 'tokenstore-sql[async]' ({exc})"
        ) from None
    return getattr(loaded, name)


__all__ = [
    "TOKENS_TABLE",
    "VERSION_TABLE",
    "AsyncSQLAlchemyTokenStorage",
    "AsyncTokenStore",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseOperationError",
    "EncryptionKeyError",
    "ImportCount",
    "ImportFormatError",
    "ImportReport",
    "InvalidTokenDataError",
    "KeyRing",
    "LockingRefreshTokenAuthorizer",
    "MissingDriverError",
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
    "async_refresh_once",
    "create_async_engine",
    "create_engine",
    "export_token_file",
    "generate_key",
    "globus_app_namespace",
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
