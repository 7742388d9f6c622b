"""globus-sdk pieces the tests use, wherever the installed version keeps them."""

from __future__ import annotations

from typing import Any

from tokenstore_sql._sdk import SDK_MAJOR, SDK_VERSION, TokenStorage, TokenStorageData
from tokenstore_sql.testing import data

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
    """The contract suite's plausible token data, with tokens a test can recognize.

    The tokens are ``access-<resource server>-SECRET`` and ``refresh-<...>-SECRET``, so a
    test can look for them in logs, reprs and messages; keyword arguments replace fields.
    """
    tokens = {
        "access_token": f"access-{resource_server}-SECRET",
        "refresh_token": f"refresh-{resource_server}-SECRET",
    }
    return data.token_data(resource_server, **{**tokens, **changes})
