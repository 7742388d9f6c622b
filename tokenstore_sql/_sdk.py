"""The one place that knows where globus-sdk keeps its token storage classes, and their shape.

globus-sdk 4.x has them in ``globus_sdk.token_storage``; 3.x (from 3.46) in
``globus_sdk.tokenstorage``.
"""

from __future__ import annotations

from typing import Any

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

_new_object = object.__new__
SDK_MAJOR: int = int(SDK_VERSION.split(".", 1)[0])


def _keeps_only_its_arguments() -> bool:
    """Tell whether ``TokenStorageData(**values)`` is an object whose attributes are ``values``.

    True of every release so far: the constructor checks each value's type and keeps it.
    """
    values: dict[str, Any] = {
        "resource_server": "rs",
        "identity_id": "id",
        "scope": "scope",
        "access_token": "at",
        "refresh_token": "rt",
        "expires_at_seconds": 1,
        "token_type": "Bearer",
        "extra": {"more": 1},
    }
    made = TokenStorageData(**values)
    kept = getattr(made, "__dict__", None)
    return (
        TokenStorageData.__new__ is object.__new__ and kept == values and list(kept) == list(values)
    )


if _keeps_only_its_arguments():

    def checked_token_data(values: dict[str, Any]) -> TokenStorageData:
        """Give ``TokenStorageData(**values)``, for values checked as its constructor would.

        ``values`` holds the eight fields in the constructor's order, already found to be
        of the types it accepts (tokenstore-sql's reads check them), and becomes the new
        object's attributes: about a fifth of an async SQLite get was the constructor's
        checks, run again. Should a globus-sdk release keep anything else, or keep the
        values another way, the constructor runs instead (the check above is made once).
        """
        made = _new_object(TokenStorageData)
        made.__dict__ = values
        return made

else:  # pragma: no cover - no globus-sdk release so far

    def checked_token_data(values: dict[str, Any]) -> TokenStorageData:
        """Give ``TokenStorageData(**values)``."""
        return TokenStorageData(**values)


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
    "checked_token_data",
    "default_app_path",
]
