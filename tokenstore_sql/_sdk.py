"""The one place that knows where globus-sdk keeps its token storage classes.

globus-sdk 4.x has them in ``globus_sdk.token_storage``; 3.x (from 3.46) in
``globus_sdk.tokenstorage``.
"""

from __future__ import annotations

try:
    from globus_sdk.token_storage import TokenStorage, TokenStorageData
except ImportError:  # globus-sdk 3.x
    from globus_sdk.tokenstorage import (  # type: ignore[no-redef,import-not-found,unused-ignore]  # 3.x
        TokenStorage,
        TokenStorageData,
    )

from globus_sdk import __version__ as SDK_VERSION

SDK_MAJOR: int = int(SDK_VERSION.split(".", 1)[0])

__all__ = ["SDK_MAJOR", "SDK_VERSION", "TokenStorage", "TokenStorageData"]
