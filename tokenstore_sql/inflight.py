"""What one process keeps about refreshes: flights shared by its threads, results not yet stored.

- :class:`Flights`: threads of one process that need the same row refreshed share one
  refresh (single flight) instead of each polling the database; :class:`TaskFlights`
  does the same for the tasks of an event loop, with asyncio futures.
- :class:`ParkedResults`: a refresh whose result could not be stored within its retry
  budget keeps it here; a background flusher stores it as soon as the database answers,
  and refreshes of that row in this process use it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from ._sdk import TokenStorageData
from .refresh_request import Refreshed, RefreshRequest, StoreOutcome, is_usable

logger = logging.getLogger("tokenstore_sql.refresh")

V = TypeVar("V")
Refresh = Callable[[], Refreshed]
AsyncRefresh = Callable[[], Awaitable[Refreshed]]

# A parked result is tried again after 1 s, backing off to 10 s between tries.
FIRST_FLUSH_DELAY_SECONDS = 1.0
MAX_FLUSH_DELAY_SECONDS = 10.0


class RowKey(NamedTuple):
    """A token row of one database, as this process's registries key it."""

    engine: object  # the Engine (or an AsyncEngine's sync engine): one database
    placement: object
    namespace: str
    resource_server: str

    def __str__(self) -> str:
        return (
            f"namespace {self.namespace!r}, resource server {self.resource_server!r} "
            f"in {self.placement}"
        )


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Refreshed | None = None
        self.error: BaseException | None = None


class _ByRow(Generic[V]):
    """Something this process keeps per row, behind a lock; a forked child starts with none.

    A child has none of its parent's threads or tasks (their flights would never end),
    and the parent keeps storing what it parked.
    """

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._by_row: dict[RowKey, V] = {}


class Flights(_ByRow[_Flight]):
    """One refresh per row at a time in this process; the other threads wait for it."""

    def share(self, request: RefreshRequest, key: RowKey, refresh: Refresh) -> Refreshed:
        """Run ``refresh`` for ``key``, or wait for the thread already running it.

        A waiter gets the leader's token data (never its Auth response: only the leader
        refreshed), or the leader's exception. A waiter whose refused token is the one
        the leader found still runs a refresh of its own.

        :raises StorageUnavailableError: the leader did not finish within the request's
            ``wait_seconds``
        """
        while True:
            with self._lock:
                flight = self._by_row.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._by_row[key] = _Flight()
            if leader:
                return self._lead(key, flight, refresh)
            if not flight.done.wait(request.wait_seconds):
                raise request.waited_too_long("another thread is refreshing it")
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            if is_usable(flight.result.data, request.rejected_access_token):
                return Refreshed(flight.result.data)

    def _lead(self, key: RowKey, flight: _Flight, refresh: Refresh) -> Refreshed:
        try:
            flight.result = refresh()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._by_row[key]
            flight.done.set()


class TaskFlights(_ByRow["asyncio.Future[Refreshed | Exception | None]"]):
    """One refresh per row at a time among the tasks of an event loop; the others await it.

    As :class:`Flights`, for tasks. A future's result is the leader's answer, its
    exception, or None when the leader was cancelled (a waiter then takes over).
    """

    async def share(self, request: RefreshRequest, key: RowKey, refresh: AsyncRefresh) -> Refreshed:
        """Await ``refresh()`` for ``key``, or the task already running it, as in threads."""
        while True:
            flight = self._by_row.get(key)
            if flight is None:
                return await self._lead(key, refresh)
            try:
                outcome = await asyncio.wait_for(asyncio.shield(flight), request.wait_seconds)
            except asyncio.TimeoutError:
                raise request.waited_too_long("another task is refreshing it") from None
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None and is_usable(outcome.data, request.rejected_access_token):
                return Refreshed(outcome.data)

    async def _lead(self, key: RowKey, refresh: AsyncRefresh) -> Refreshed:
        flight = self._by_row[key] = asyncio.get_running_loop().create_future()
        try:
            result = await refresh()
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
            del self._by_row[key]


@dataclass
class ParkedResult:
    """A refresh's result that the database did not take in time.

    :ivar data: the new token data (its refresh token is the only live one)
    :ivar store: one attempt at storing it; gives the outcome or raises
    """

    data: TokenStorageData = field(repr=False)
    store: Callable[[], Any] = field(repr=False)


class ParkedResults(_ByRow[ParkedResult]):
    """Refresh results waiting for the database, by row; stored by a flusher."""

    def park(self, key: RowKey, result: ParkedResult) -> bool:
        """Keep a result for ``key``; tell whether it is the only one parked (start a flusher)."""
        logger.warning(
            "could not store a refreshed token for %s: it is kept in this process and "
            "stored when the database answers again",
            key,
        )
        with self._lock:
            first = not self._by_row
            self._by_row[key] = result
        return first

    def get(self, key: RowKey) -> ParkedResult | None:
        """Give the result parked for ``key``, if any."""
        with self._lock:
            return self._by_row.get(key)

    def items(self) -> list[tuple[RowKey, ParkedResult]]:
        """Give every parked result (a copy, safe to iterate while others park)."""
        with self._lock:
            return list(self._by_row.items())

    def settle(self, key: RowKey, result: ParkedResult, outcome: StoreOutcome) -> bool:
        """Record one attempt's outcome; tell whether the result has left the parking."""
        if outcome is StoreOutcome.PARKED:
            return False
        with self._lock:
            if self._by_row.get(key) is result:
                del self._by_row[key]
        if outcome is StoreOutcome.STORED:
            logger.info("stored the refreshed token kept for %s", key)
        else:
            logger.warning(
                "dropped the refreshed token kept for %s: the row holds newer tokens",
                key,
            )
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_row)
