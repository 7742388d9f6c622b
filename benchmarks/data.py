"""The token data every benchmark stores and reads, and the rows that fill a database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Final

from tokenstore_sql import TokenStorageData
from tokenstore_sql.models import TokenRow

RESOURCE_SERVERS: Final = (
    "auth.globus.org",
    "transfer.api.globus.org",
    "groups.api.globus.org",
    "search.api.globus.org",
    "compute.api.globus.org",
)
HIT: Final = RESOURCE_SERVERS[1]
MISS: Final = "absent.example.org"
REMOVED: Final = "removed.example.org"
# What the operations "store 1" and "store 3" write; the concurrency mix stores STORE_ONE.
STORE_ONE: Final = (HIT,)
STORE_THREE: Final = RESOURCE_SERVERS[:3]
# The columns of tokenstore-sql's table, in the order the fill and floor statements use.
COLUMNS: Final = tuple(column.name for column in TokenRow.__table__.columns)
# Plausible sizes: Globus access and refresh tokens are about 70 characters.
_TOKEN = "A" * 71
_IDENTITY = "c8a7f8a6-3f8e-4c4a-9d8a-1c1d2e3f4a5b"


def token_data(resource_server: str) -> TokenStorageData:
    """Token data for one resource server, the same shape Globus Auth returns."""
    return TokenStorageData(
        resource_server=resource_server,
        identity_id=_IDENTITY,
        scope=f"urn:globus:auth:scope:{resource_server}:all",
        access_token=_TOKEN,
        refresh_token=_TOKEN.lower(),
        expires_at_seconds=int(time.time()) + 48 * 3600,
        token_type="Bearer",
    )


def by_resource_server(names: tuple[str, ...] = RESOURCE_SERVERS) -> dict[str, TokenStorageData]:
    """Token data for several resource servers, keyed as ``store_token_data_by...`` wants."""
    return {name: token_data(name) for name in names}


def filler_namespace(index: int) -> str:
    """Name the ``index``-th namespace that only fills the database."""
    return f"fill-{index:07d}"


def row_values(namespace: str, data: TokenStorageData, backend: str) -> tuple[Any, ...]:
    """One row of tokenstore-sql's table as the bare driver of ``backend`` takes it."""
    now = datetime.now(timezone.utc)
    stamp: Any = now
    if backend == "sqlite":  # SQLAlchemy keeps SQLite datetimes as ISO text
        stamp = now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    elif backend == "mysql":
        stamp = now.replace(tzinfo=None)
    values = {
        "namespace": namespace,
        "resource_server": data.resource_server,
        "identity_id": data.identity_id,
        "scope": data.scope,
        "access_token": data.access_token,
        "refresh_token": data.refresh_token,
        "expires_at_seconds": data.expires_at_seconds,
        "token_type": data.token_type,
        "extra": "{}",
        "token_key_id": None,
        "refresh_lease_owner": None,
        "refresh_lease_until": None,
        "created_at": stamp,
        "updated_at": stamp,
    }
    return tuple(values[name] for name in COLUMNS)


def filler_rows(start: int, stop: int, backend: str) -> Iterator[tuple[Any, ...]]:
    """Rows for filler namespaces ``start`` to ``stop - 1``, five resource servers each."""
    template = by_resource_server()
    for index in range(start, stop):
        namespace = filler_namespace(index)
        for data in template.values():
            yield row_values(namespace, data, backend)


def sdk_json_document(by_namespace: dict[str, dict[str, TokenStorageData]]) -> str:
    """Render a globus-sdk JSON token file (format 2.0) holding these namespaces."""
    document = {
        "data": {
            namespace: {rs: data.to_dict() for rs, data in tokens.items()}
            for namespace, tokens in by_namespace.items()
        },
        "format_version": "2.0",
        "globus-sdk.version": "3.46.0",
    }
    return json.dumps(document)
