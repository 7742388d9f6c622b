"""A worker process that needs a user's access token refreshed, for tests/test_refresh.py.

It lives in a module of its own so that spawned processes import only what they need.
"""

from __future__ import annotations

import os
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any


def need_fresh_token(
    url: str,
    namespace: str,
    resource_server: str,
    client_id: str,
    auth_url: str,
    barrier: Barrier,
    results: Queue[Any],
    locking: bool,
) -> None:
    """Read the stored (expired) token, wait for the others, then authorize a request."""
    os.environ["GLOBUS_SDK_SERVICE_URL_AUTH"] = auth_url
    import globus_sdk

    from tokenstore_sql import LockingRefreshTokenAuthorizer, SQLAlchemyTokenStorage

    client = globus_sdk.ConfidentialAppAuthClient(client_id, "client-secret")
    with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
        authorizer: globus_sdk.RefreshTokenAuthorizer
        if locking:
            authorizer = LockingRefreshTokenAuthorizer(storage, resource_server, client)
        else:  # the SDK's own pattern, for the control test
            data = storage.get_token_data(resource_server)
            assert data is not None
            assert data.refresh_token is not None
            authorizer = globus_sdk.RefreshTokenAuthorizer(
                data.refresh_token,
                client,
                access_token=data.access_token,
                expires_at=data.expires_at_seconds,
                on_refresh=storage.store_token_response,
            )
        barrier.wait(timeout=15)
        try:
            header = authorizer.get_authorization_header()
        except Exception as exc:
            results.put(("error", type(exc).__name__))
        else:
            results.put(("ok", header))
