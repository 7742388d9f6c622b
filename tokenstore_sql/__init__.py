"""tokenstore-sql: a globus-sdk ``TokenStorage`` on SQLite, PostgreSQL and MySQL.

The top level holds what an application uses: the storages and stores, engines, the
settings they share (:class:`StoreSettings`) and the errors a caller catches. The rest
lives in named modules:

- :mod:`tokenstore_sql.errors`: every error class;
- :mod:`tokenstore_sql.crypto`: ``KeyRing``, the keys of :attr:`StoreSettings.keys`;
- :mod:`tokenstore_sql.models`: the tables (``TokenRow``, ``metadata``, table names);
- :mod:`tokenstore_sql.deploy`: hooks for an application's own Alembic environment;
- :mod:`tokenstore_sql.maintenance`, :mod:`~tokenstore_sql.rotation`,
  :mod:`~tokenstore_sql.transfer`: pruning and statistics, key rotation, import and
  export (the admin operations of :class:`TokenStore`, with its settings);
- :mod:`tokenstore_sql.refresh` (:mod:`~tokenstore_sql.async_refresh`): refreshing a
  token once across workers;
- :mod:`tokenstore_sql.locks`: named locks in the database;
- :mod:`tokenstore_sql.testing`: the ``TokenStorage`` contract as a pytest plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# globus-sdk's TokenStorageData, whichever of its 3.x or 4.x modules holds it.
from ._sdk import TokenStorageData
from .crypto import generate_key
from .engines import create_engine
from .errors import (
    DatabaseError,
    InvalidTokenDataError,
    MissingTokenDataError,
    SchemaError,
    SchemaOutOfDateError,
    StorageUnavailableError,
    TokenStoreError,
    UnreadableTokenDataError,
)
from .models import Placement
from .namespaces import globus_app_namespace, user_namespace
from .retries import RetryPolicy
from .settings import StoreSettings
from .storage import SQLAlchemyTokenStorage
from .store import TokenStore

if TYPE_CHECKING:
    from .async_engines import create_async_engine
    from .async_storage import AsyncSQLAlchemyTokenStorage
    from .async_store import AsyncTokenStore

__version__ = "0.1.0"

# The async API needs SQLAlchemy's asyncio extension (the "async" extra): loaded on first
# use, so that the sync API works without it.
_ASYNC_NAMES = {
    "AsyncSQLAlchemyTokenStorage": "async_storage",
    "AsyncTokenStore": "async_store",
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


def __dir__() -> list[str]:
    # The lazily loaded async names are listed too, though not yet imported.
    return sorted({*globals(), *_ASYNC_NAMES})


__all__ = [
    "AsyncSQLAlchemyTokenStorage",
    "AsyncTokenStore",
    "DatabaseError",
    "InvalidTokenDataError",
    "MissingTokenDataError",
    "Placement",
    "RetryPolicy",
    "SQLAlchemyTokenStorage",
    "SchemaError",
    "SchemaOutOfDateError",
    "StorageUnavailableError",
    "StoreSettings",
    "TokenStorageData",
    "TokenStore",
    "TokenStoreError",
    "UnreadableTokenDataError",
    "__version__",
    "create_async_engine",
    "create_engine",
    "generate_key",
    "globus_app_namespace",
    "user_namespace",
]
