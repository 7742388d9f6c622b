"""A worker process that needs a user's access token refreshed, for the refresh tests.

It lives in a module of its own so that spawned processes import only what they need.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any


def refresh_worker(config: dict[str, Any], barrier: Barrier, results: Queue[Any]) -> None:
    """Refresh one expired token from several callers of this process at once.

    ``config``: ``url``, ``namespace``, ``resource_server``, ``client_id``, ``auth_url``,
    ``callers`` (threads, or asyncio tasks when ``tasks`` is true), ``via`` (how each
    caller gets its token: ``refresh_once`` by default, ``authorizer`` for
    ``LockingRefreshTokenAuthorizer``, ``sdk`` for globus-sdk's own
    ``RefreshTokenAuthorizer``) and the options of ``refresh_once`` (``lease_seconds``,
    ``lock_timeout``). Puts one report: each caller's outcome, and how many of this
    process's pooled connections were checked out whenever Auth was called.
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
    if config.get("tasks"):
        outcomes = asyncio.run(_refresh_in_tasks(config, client, barrier, engines))
    else:
        outcomes = _refresh_in_threads(config, client, barrier, engines)
    results.put({"pid": os.getpid(), "outcomes": outcomes, "checked_out": checked_out})


def _options(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config[key] for key in ("lease_seconds", "lock_timeout") if key in config}


def _outcome(call: Callable[[], str]) -> tuple[str, str]:
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc).__name__)


def _token_getter(config: dict[str, Any], storage: Any, client: Any) -> Callable[[], str]:
    """What one caller does to get an access token, as ``config["via"]`` says."""
    import globus_sdk

    from tokenstore_sql.refresh import LockingRefreshTokenAuthorizer, refresh_once

    resource_server = config["resource_server"]
    via = config.get("via", "refresh_once")
    if via == "refresh_once":
        return lambda: (
            refresh_once(storage, resource_server, client, **_options(config)).access_token
        )
    authorizer: globus_sdk.RefreshTokenAuthorizer
    if via == "authorizer":
        authorizer = LockingRefreshTokenAuthorizer(
            storage, resource_server, client, **_options(config)
        )
    else:  # the SDK's own pattern, for the control test
        data = storage.get_token_data(resource_server)
        authorizer = globus_sdk.RefreshTokenAuthorizer(
            data.refresh_token,
            client,
            access_token=data.access_token,
            expires_at=data.expires_at_seconds,
            on_refresh=storage.store_token_response,
        )
    return lambda: str(authorizer.get_authorization_header()).removeprefix("Bearer ")


def _refresh_in_threads(
    config: dict[str, Any], client: Any, barrier: Barrier, engines: list[Any]
) -> list[tuple[str, str]]:
    from tokenstore_sql import SQLAlchemyTokenStorage

    with SQLAlchemyTokenStorage(config["url"], namespace=config["namespace"]) as storage:
        engines.append(storage.engine)
        # Each caller's authorizer reads the stored (expired) token before the race.
        getters = [_token_getter(config, storage, client) for _ in range(config["callers"])]
        outcomes: list[tuple[str, str]] = []
        threads = [
            threading.Thread(target=lambda get=get: outcomes.append(_outcome(get)))
            for get in getters
        ]
        barrier.wait(timeout=30)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return outcomes


async def _refresh_in_tasks(
    config: dict[str, Any], client: Any, barrier: Barrier, engines: list[Any]
) -> list[tuple[str, str]]:
    from tokenstore_sql import AsyncSQLAlchemyTokenStorage
    from tokenstore_sql.async_refresh import async_refresh_once

    async with AsyncSQLAlchemyTokenStorage(config["url"], namespace=config["namespace"]) as storage:
        engines.append(storage.engine.sync_engine)
        await storage.check_schema()
        await asyncio.to_thread(barrier.wait, 30)

        async def call() -> tuple[str, str]:
            try:
                data = await async_refresh_once(
                    storage, config["resource_server"], client, **_options(config)
                )
            except Exception as exc:
                return ("error", type(exc).__name__)
            return ("ok", data.access_token)

        return list(await asyncio.gather(*(call() for _ in range(config["callers"]))))
