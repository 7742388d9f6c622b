"""Refreshing a stored access token once, for asyncio code: the sync protocol, awaited.

:func:`async_refresh_once` performs the lease protocol of
``tokenstore_sql.refresh_plan`` on an :class:`~tokenstore_sql.AsyncSQLAlchemyTokenStorage`,
with the same guarantees as :func:`~tokenstore_sql.refresh.refresh_once`: tasks of one event loop
share one refresh, processes agree through the row's lease, no connection is held while
Globus Auth answers (globus-sdk's HTTP call runs in a worker thread), and a result the
database does not take in time is kept and stored by a background task. This module does
the I/O alone, through :mod:`tokenstore_sql.execution_async`; what each step means is
shared with the sync API in :mod:`tokenstore_sql.refresh_steps`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from globus_sdk import AuthLoginClient

from ._sdk import TokenStorageData
from .async_pools import settle
from .async_storage import AsyncSQLAlchemyTokenStorage
from .errors import TokenStoreError
from .execution_async import AsyncExecution
from .inflight import (
    FIRST_FLUSH_DELAY_SECONDS,
    MAX_FLUSH_DELAY_SECONDS,
    ParkedResult,
    ParkedResults,
    RowKey,
    TaskFlights,
)
from .refresh_plan import CallAuth, Pause, Plan, PlanRun, Step, StoreRenewed, refresh_plan
from .refresh_request import Refreshed, RefreshOptions
from .refresh_steps import RefreshSteps
from .retries import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

_flights = TaskFlights()
_parked = ParkedResults()
_flushers: set[asyncio.Task[None]] = set()


async def async_refresh_once(
    storage: AsyncSQLAlchemyTokenStorage,
    resource_server: str,
    auth_client: AuthLoginClient,
    **options: Unpack[RefreshOptions],
) -> TokenStorageData:
    """Return a fresh access token for one resource server, refreshing it only if needed.

    The async twin of :func:`~tokenstore_sql.refresh.refresh_once`, with the same options,
    guarantees and errors. ``on_refresh`` is called in the event loop's thread.
    """
    steps = _AsyncSteps(storage, resource_server, auth_client, options, _parked)
    refreshed = await _flights.share(steps.request, steps.key, steps.refresh)
    on_refresh = options.get("on_refresh")
    if refreshed.response is not None and on_refresh is not None:
        on_refresh(refreshed.response)
    return refreshed.data


class _AsyncSteps(RefreshSteps):
    """Performs a refresh plan's steps on an async storage's engine: the I/O alone."""

    storage: AsyncSQLAlchemyTokenStorage

    async def refresh(self) -> Refreshed:
        """Refresh (or find refreshed) the row, using a result this process still keeps."""
        await self.storage.check_schema()
        parked = self.parked.get(self.key)
        kept = None if parked is None else self.parked_answer(parked, await parked.store())
        return kept or await _run_plan(refresh_plan(self.request), self.perform)

    async def perform(self, step: Step, retry: RetryPolicy | None = None) -> Any:
        """Perform one step of the plan and give its reply."""
        if isinstance(step, Pause):
            return await asyncio.sleep(step.seconds)
        if isinstance(step, CallAuth):
            # No pooled connection held across Auth's call: not even one kept for a next call.
            await settle(self.storage.engine.sync_engine.pool)
            return await asyncio.to_thread(
                self.auth_client.oauth2_refresh_token, step.refresh_token
            )
        statement = self.statement_for(step, retry)
        try:
            result = await statement.run(AsyncExecution, self.storage.engine)
        except TokenStoreError as exc:
            return self.absorb(step, exc, flushing=retry is not None)
        return self.reply(step, result)

    def _park(self, step: StoreRenewed) -> None:
        parked = ParkedResult(step.data, lambda: self.perform(step, RetryPolicy(attempts=1)))
        self.parked.park(self.key, parked)
        # A flusher per result, in this engine's loop (engines belong to one loop).
        task = asyncio.get_running_loop().create_task(_flush_parked(self.key, parked))
        _flushers.add(task)
        task.add_done_callback(_flushers.discard)


async def _run_plan(plan: Plan, perform: Callable[[Step], Awaitable[Any]]) -> Refreshed:
    """Drive a plan as :func:`~tokenstore_sql.refresh_plan.run_plan` does, awaiting each step."""
    run = PlanRun(plan)
    while run.step is not None:
        try:
            run.reply = await perform(run.step)
        except Exception as exc:
            run.error = exc
        run.advance()
    assert run.answer is not None
    return run.answer


async def _flush_parked(key: RowKey, parked: ParkedResult) -> None:
    """Store one parked result once the database answers, backing off between tries."""
    delay = FIRST_FLUSH_DELAY_SECONDS
    while _parked.get(key) is parked:  # else stored by a refresh, or replaced
        await asyncio.sleep(delay)
        if _parked.settle(key, parked, await parked.store()):
            return
        delay = min(delay * 2, MAX_FLUSH_DELAY_SECONDS)
