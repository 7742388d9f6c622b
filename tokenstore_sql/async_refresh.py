"""Refreshing a stored access token once, for asyncio code: the sync protocol, awaited.

:func:`async_refresh_once` performs the lease protocol of
:mod:`tokenstore_sql.refresh_plan` on an :class:`~tokenstore_sql.AsyncSQLAlchemyTokenStorage`,
with the same guarantees as :func:`~tokenstore_sql.refresh.refresh_once`: tasks of one event loop
share one refresh, processes agree through the row's lease, no connection is held while
Globus Auth answers (globus-sdk's HTTP call runs in a worker thread), and a result the
database does not take in time is kept and stored by a background task.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from globus_sdk import AuthLoginClient
from sqlalchemy import Executable

from ._sdk import TokenStorageData
from .async_storage import AsyncSQLAlchemyTokenStorage
from .engines import describe_database
from .errors import DatabaseOperationError, StorageUnavailableError, TokenStoreError
from .execution_async import read_rows, write_rows
from .inflight import (
    FIRST_FLUSH_DELAY_SECONDS,
    MAX_FLUSH_DELAY_SECONDS,
    ParkedResult,
    ParkedResults,
    RowKey,
    logger,
)
from .refresh import OnRefresh, storing_policy
from .refresh_plan import (
    CallAuth,
    Pause,
    Plan,
    ReadRow,
    Refreshed,
    RefreshRequest,
    ReleaseLease,
    RowSnapshot,
    Step,
    StoreOutcome,
    StoreRenewed,
    TakeLease,
    is_usable,
    refresh_plan,
    snapshot_from_row,
    step_parameters,
)
from .retries import RetryPolicy
from .statements import key_params, statements_for

# One refresh per row at a time among the tasks of an engine's event loop. A future's
# result is the leader's answer, its exception, or None when the leader was cancelled.
_flights: dict[RowKey, asyncio.Future[Refreshed | Exception | None]] = {}
os.register_at_fork(after_in_child=_flights.clear)
_parked = ParkedResults()
_flushers: set[asyncio.Task[None]] = set()


async def async_refresh_once(
    storage: AsyncSQLAlchemyTokenStorage,
    resource_server: str,
    auth_client: AuthLoginClient,
    *,
    rejected_access_token: str | None = None,
    on_refresh: OnRefresh | None = None,
    lock_timeout: float | None = None,
    lease_seconds: float | None = None,
    store_retry: RetryPolicy | None = None,
) -> TokenStorageData:
    """Return a fresh access token for one resource server, refreshing it only if needed.

    The async twin of :func:`~tokenstore_sql.refresh.refresh_once`, with the same parameters,
    guarantees and errors. ``on_refresh`` is called in the event loop's thread.
    """
    request = RefreshRequest.build(
        storage.namespace,
        resource_server,
        auth_client,
        database=describe_database(storage.engine.url),
        rejected_access_token=rejected_access_token,
        lock_timeout=lock_timeout,
        lease_seconds=lease_seconds,
    )
    steps = _AsyncSteps(storage, request, auth_client, store_retry)
    refreshed = await _share(steps)
    if refreshed.response is not None and on_refresh is not None:
        on_refresh(refreshed.response)
    return refreshed.data


async def _share(steps: _AsyncSteps) -> Refreshed:
    """Run the refresh, or wait for the task already running it for the same row."""
    request = steps.request
    while True:
        flight = _flights.get(steps.key)
        if flight is None:
            return await _lead(steps)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(flight), request.wait_seconds)
        except asyncio.TimeoutError:
            raise StorageUnavailableError(
                f"get a refreshed token within {request.wait_seconds:g} s "
                "(another task is refreshing it)",
                request.database,
            ) from None
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None and is_usable(outcome.data, request.rejected_access_token):
            return Refreshed(outcome.data)


async def _lead(steps: _AsyncSteps) -> Refreshed:
    flight: asyncio.Future[Refreshed | Exception | None]
    flight = _flights[steps.key] = asyncio.get_running_loop().create_future()
    try:
        result = await steps.refresh()
    except Exception as exc:
        flight.set_result(exc)
        raise
    except BaseException:
        flight.set_result(None)  # cancelled: a waiter takes over
        raise
    else:
        flight.set_result(result)
        return result
    finally:
        del _flights[steps.key]


async def _run_plan(plan: Plan, perform: Callable[[Step], Awaitable[Any]]) -> Refreshed:
    """Drive a plan as :func:`~tokenstore_sql.refresh_plan.run_plan` does, awaiting each step."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = plan.send(reply) if error is None else plan.throw(error)
        except StopIteration as done:
            result: Refreshed = done.value
            return result
        try:
            reply, error = await perform(step), None
        except Exception as exc:
            reply, error = None, exc


class _AsyncSteps:
    """Performs a refresh plan's steps on an async storage's engine."""

    def __init__(
        self,
        storage: AsyncSQLAlchemyTokenStorage,
        request: RefreshRequest,
        auth_client: AuthLoginClient,
        store_retry: RetryPolicy | None,
    ) -> None:
        self.storage, self.request, self.auth_client = storage, request, auth_client
        self.store_retry = store_retry or storing_policy(storage.retry)
        self.key = RowKey(
            storage.engine, storage.placement, request.namespace, request.resource_server
        )
        self.statements = statements_for(storage.placement)

    async def refresh(self) -> Refreshed:
        """Refresh (or find refreshed) the row, using a result this process still keeps."""
        parked = _parked.get(self.key)
        if (
            parked is not None
            and not _parked.settle(self.key, parked, await parked.store())
            and is_usable(parked.data, self.request.rejected_access_token)
        ):
            return Refreshed(parked.data)
        return await _run_plan(refresh_plan(self.request), self.perform)

    async def perform(self, step: Step) -> Any:
        """Perform one step of the plan and give its reply."""
        if isinstance(step, ReadRow):
            return await self._read()
        if isinstance(step, TakeLease):
            taken = await self._write("take the refresh lease", self.statements.take_lease, step)
            return taken > 0
        if isinstance(step, ReleaseLease):
            return await self._release(step)
        if isinstance(step, Pause):
            return await asyncio.sleep(step.seconds)
        if isinstance(step, CallAuth):
            return await asyncio.to_thread(
                self.auth_client.oauth2_refresh_token, step.refresh_token
            )
        return await self._store(step)

    async def _read(self) -> RowSnapshot | None:
        statement = self.statements.select_for_refresh
        params = key_params(self.request.namespace, self.request.resource_server)
        storage = self.storage
        await storage.check_schema()
        rows = await read_rows(storage.engine, "read token data", statement, params, storage.retry)
        return snapshot_from_row(self.request, rows[0], storage.keys) if rows else None

    async def _write(
        self,
        operation: str,
        statement: Executable,
        step: TakeLease | ReleaseLease | StoreRenewed,
        retry: RetryPolicy | None = None,
    ) -> int:
        # Built before the first attempt: a result Auth got wrong fails here, unparked.
        params = step_parameters(self.request, step, self.storage.keys)
        storage = self.storage
        await storage.check_schema()
        policy = retry or storage.retry
        return await write_rows(storage.engine, operation, statement, [params], policy)

    async def _release(self, step: ReleaseLease) -> None:
        try:
            await self._write("release the refresh lease", self.statements.release_lease, step)
        except TokenStoreError:
            logger.warning(
                "could not release the refresh lease of %s; it expires within %g s",
                self.key,
                self.request.lease_seconds,
            )

    async def _store(self, step: StoreRenewed, retry: RetryPolicy | None = None) -> StoreOutcome:
        step_parameters(self.request, step, self.storage.keys)  # bad data raises, unparked
        try:
            written = await self._write(
                "store a refreshed token",
                self.statements.store_refreshed,
                step,
                retry or self.store_retry,
            )
        except (StorageUnavailableError, DatabaseOperationError):
            if retry is not None:  # a flusher's single attempt: stay parked
                return StoreOutcome.PARKED
            parked = ParkedResult(step.data, lambda: self._store(step, RetryPolicy(attempts=1)))
            _parked.park(self.key, parked)
            # A flusher per result, in this engine's loop (engines belong to one loop).
            task = asyncio.get_running_loop().create_task(_flush_parked(self.key, parked))
            _flushers.add(task)
            task.add_done_callback(_flushers.discard)
            return StoreOutcome.PARKED
        return StoreOutcome.STORED if written else StoreOutcome.SUPERSEDED


async def _flush_parked(key: RowKey, parked: ParkedResult) -> None:
    """Store one parked result once the database answers, backing off between tries."""
    delay = FIRST_FLUSH_DELAY_SECONDS
    while _parked.get(key) is parked:  # else stored by a refresh, or replaced
        await asyncio.sleep(delay)
        if _parked.settle(key, parked, await parked.store()):
            return
        delay = min(delay * 2, MAX_FLUSH_DELAY_SECONDS)
