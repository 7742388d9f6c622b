"""globus-sdk pieces the tests use, wherever the installed version keeps them."""

from __future__ import annotations

import time
from typing import Any

from tokenstore_sql._sdk import SDK_MAJOR, SDK_VERSION, TokenStorage, TokenStorageData

SDK_VERSION_INFO = tuple(int(part) for part in SDK_VERSION.split(".")[:2])

if SDK_MAJOR >= 4:
    from globus_sdk.testing import load_response
    from globus_sdk.token_storage import (
        MemoryTokenStorage,
        SQLiteTokenStorage,
        ValidatingTokenStorage,
    )
else:  # globus-sdk 3.x
    from globus_sdk._testing import load_response  # type: ignore[no-redef]
    from globus_sdk.tokenstorage import (  # type: ignore[no-redef]
        MemoryTokenStorage,
        SQLiteTokenStorage,
        ValidatingTokenStorage,
    )

__all__ = [
    "SDK_MAJOR",
    "SDK_VERSION_INFO",
    "MemoryTokenStorage",
    "SQLiteTokenStorage",
    "TokenStorage",
    "TokenStorageData",
    "ValidatingTokenStorage",
    "close_storage",
    "load_response",
    "make_token_data",
]


def close_storage(storage: object) -> None:
    """Close a storage; globus-sdk 3.x's JSON and memory storages have no close()."""
    close = getattr(storage, "close", None)
    if close is not None:
        close()


def make_token_data(
    resource_server: str = "transfer.api.globus.org", **changes: Any
) -> TokenStorageData:
    """Token data with plausible values; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "resource_server": resource_server,
        "identity_id": "c8a7f8a6-3f8e-4c4a-9d8a-1c1d2e3f4a5b",
        "scope": f"urn:globus:auth:scope:{resource_server}:all",
        "access_token": f"access-{resource_server}-SECRET",
        "refresh_token": f"refresh-{resource_server}-SECRET",
        "expires_at_seconds": int(time.time()) + 3600,
        "token_type": "Bearer",
    }
    fields.update(changes)
    return TokenStorageData(**fields)
