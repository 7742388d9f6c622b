"""A worker process that needs a user's access token refreshed, for tests/test_refresh.py.

It lives in a module of its own so that spawned processes import only what they need.
"""

from __future__ import annotations

import asyncio
import os
import threading
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


def refresh_worker(config: dict[str, Any], barrier: Barrier, results: Queue[Any]) -> None:
    """Refresh one expired token from several callers of this process at once.

    ``config``: ``url``, ``namespace``, ``resource_server``, ``client_id``, ``auth_url``,
    ``callers`` (threads, or asyncio tasks when ``tasks`` is true) and the options of
    ``refresh_once`` (``lease_seconds``, ``lock_timeout``). Puts one report: each
    caller's outcome, and how many of this process's pooled connections were checked
    out whenever Auth was called.
    """
    os.environ["GLOBUS_SDK_SERVICE_URL_AUTH"] = config["auth_url"]
    import globus_sdk

    checked_out: list[int] = []
    engines: list[Any] = []

    class MeasuringClient(globus_sdk.ConfidentialAppAuthClient):
        def oauth2_refresh_token(self, *args: Any, **kwargs: Any) -> Any:
            checked_out.append(sum(engine.pool.checkedout() for engine in engines))
            return super().oauth2_refresh_token(*args, **kwargs)

    client = MeasuringClient(config["client_id"], "client-secret")
    options = {key: config[key] for key in ("lease_seconds", "lock_timeout") if key in config}
    if config.get("tasks"):
        outcomes = asyncio.run(_refresh_in_tasks(config, client, options, barrier, engines))
    else:
        outcomes = _refresh_in_threads(config, client, options, barrier, engines)
    results.put({"pid": os.getpid(), "outcomes": outcomes, "checked_out": checked_out})


def _outcome(call: Any) -> tuple[str, str]:
    try:
        return ("ok", call().access_token)
    except Exception as exc:
        return ("error", type(exc).__name__)


def _refresh_in_threads(
    config: dict[str, Any], client: Any, options: dict[str, Any], barrier: Barrier, engines: Any
) -> list[tuple[str, str]]:
    from tokenstore_sql import SQLAlchemyTokenStorage, refresh_once

    with SQLAlchemyTokenStorage(config["url"], namespace=config["namespace"]) as storage:
        engines.append(storage.engine)
        outcomes: list[tuple[str, str]] = []

        def call() -> None:
            outcomes.append(
                _outcome(
                    lambda: refresh_once(storage, config["resource_server"], client, **options)
                )
            )

        threads = [threading.Thread(target=call) for _ in range(config["callers"])]
        barrier.wait(timeout=30)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return outcomes


async def _refresh_in_tasks(
    config: dict[str, Any], client: Any, options: dict[str, Any], barrier: Barrier, engines: Any
) -> list[tuple[str, str]]:
    from tokenstore_sql import AsyncSQLAlchemyTokenStorage, async_refresh_once

    async with AsyncSQLAlchemyTokenStorage(config["url"], namespace=config["namespace"]) as storage:
        engines.append(storage.engine.sync_engine)
        await storage.check_schema()
        await asyncio.to_thread(barrier.wait, 30)

        async def call() -> tuple[str, str]:
            try:
                data = await async_refresh_once(
                    storage, config["resource_server"], client, **options
                )
            except Exception as exc:
                return ("error", type(exc).__name__)
            return ("ok", data.access_token)

        return list(await asyncio.gather(*(call() for _ in range(config["callers"]))))
