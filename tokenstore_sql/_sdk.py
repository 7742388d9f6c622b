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

try:
    from globus_sdk.token_storage.base import _default_globus_app_filepath
except ImportError:  # globus-sdk 3.x
    from globus_sdk.tokenstorage.v2.base import (  # type: ignore[no-redef,import-not-found,unused-ignore]  # 3.x
        _default_globus_app_filepath,
    )

SDK_MAJOR: int = int(SDK_VERSION.split(".", 1)[0])


def default_app_path(client_id: object, app_name: str, environment: str) -> str:
    """Return where globus-sdk keeps a GlobusApp's token files, without a suffix.

    ``~/.globus/app/{client_id}/{app_name}/tokens`` (with an environment prefix outside
    production), as the SDK's own file storages use it.
    """
    return str(_default_globus_app_filepath(str(client_id), app_name, environment))


__all__ = [
    "SDK_MAJOR",
    "SDK_VERSION",
    "TokenStorage",
    "TokenStorageData",
    "default_app_path",
]
