"""globus-sdk's own storages, wherever the installed version keeps them."""

from __future__ import annotations

from tokenstore_sql._sdk import SDK_MAJOR

if SDK_MAJOR >= 4:
    from globus_sdk.token_storage import JSONTokenStorage, MemoryTokenStorage, SQLiteTokenStorage
else:  # globus-sdk 3.x
    from globus_sdk.tokenstorage import (  # type: ignore[no-redef]
        JSONTokenStorage,
        MemoryTokenStorage,
        SQLiteTokenStorage,
    )

__all__ = ["JSONTokenStorage", "MemoryTokenStorage", "SQLiteTokenStorage", "close_storage"]


def close_storage(storage: object) -> None:
    """Close a storage; globus-sdk 3.x's JSON and memory storages have no close()."""
    close = getattr(storage, "close", None)
    if close is not None:
        close()
