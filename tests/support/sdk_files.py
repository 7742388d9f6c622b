"""Token files written by globus-sdk's own storages, for the import and export tests.

Every fixture file is made by the SDK class that writes that format in the field, so
the tests read exactly what users have on disk.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import globus_sdk
import requests

from .sdk import SDK_MAJOR, TokenStorageData

if SDK_MAJOR >= 4:
    from globus_sdk.token_storage import JSONTokenStorage, SQLiteTokenStorage
    from globus_sdk.token_storage.legacy import SimpleJSONFileAdapter, SQLiteAdapter
else:  # globus-sdk 3.x
    from globus_sdk.tokenstorage import (  # type: ignore[no-redef]
        JSONTokenStorage,
        SimpleJSONFileAdapter,
        SQLiteAdapter,
        SQLiteTokenStorage,
    )

__all__ = [
    "JSONTokenStorage",
    "SQLiteAdapter",
    "SQLiteTokenStorage",
    "SimpleJSONFileAdapter",
    "token_response",
    "write_json",
    "write_sqlite",
    "write_sqlite_adapter",
]

ByNamespace = Mapping[str, Mapping[str, TokenStorageData]]


def token_response(*resource_servers: str, expires_in: int = 3600) -> globus_sdk.OAuthTokenResponse:
    """An OAuthTokenResponse as Globus Auth returns it, built offline.

    The first resource server is the top-level token, the rest are ``other_tokens``;
    the last one has no refresh token, as happens for some grants.
    """
    tokens = [
        {
            "resource_server": name,
            "scope": f"urn:globus:auth:scope:{name}:all",
            "access_token": f"access-{name}-{uuid.uuid4().hex}",
            "refresh_token": None if i == len(resource_servers) - 1 and i else f"refresh-{i}",
            "token_type": "Bearer",
            "expires_in": expires_in + i,
        }
        for i, name in enumerate(resource_servers)
    ]
    body: dict[str, Any] = {**tokens[0], "other_tokens": tokens[1:]}
    raw = requests.Response()
    raw.status_code = 200
    raw.headers["Content-Type"] = "application/json"
    raw._content = json.dumps(body).encode()
    client = globus_sdk.NativeAppAuthClient(str(uuid.uuid4()))
    return globus_sdk.OAuthTokenResponse(raw, client=client)


def write_json(path: Path, data: ByNamespace) -> Path:
    """Write a JSONTokenStorage file (format 2.0) holding these namespaces."""
    for namespace, by_resource_server in data.items():
        JSONTokenStorage(path, namespace=namespace).store_token_data_by_resource_server(
            by_resource_server
        )
    return path


def write_sqlite(path: Path, data: ByNamespace) -> Path:
    """Write a SQLiteTokenStorage database (schema 2) holding these namespaces."""
    for namespace, by_resource_server in data.items():
        storage = SQLiteTokenStorage(path, namespace=namespace)
        storage.store_token_data_by_resource_server(by_resource_server)
        storage.close()
    return path


def write_sqlite_adapter(
    path: Path,
    responses: Mapping[str, globus_sdk.OAuthTokenResponse],
    config: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> Path:
    """Write a SQLiteAdapter database (schema 1): tokens and config by namespace."""
    namespaces = set(responses) | set(config or {})
    for namespace in sorted(namespaces):
        adapter = SQLiteAdapter(path, namespace=namespace)
        if namespace in responses:
            adapter.store(responses[namespace])
        for name, value in (config or {}).get(namespace, {}).items():
            adapter.store_config(name, value)
        adapter.close()
    return path
