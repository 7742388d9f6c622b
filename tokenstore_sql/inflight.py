"""What one process keeps about refreshes: flights shared by its threads, results not yet stored.

- :class:`Flights`: threads of one process that need the same row refreshed share one
  refresh (single flight) instead of each polling the database. The async twin keys
  asyncio futures the same way (see :mod:`tokenstore_sql.async_refresh`).
- :class:`ParkedResults`: a refresh whose result could not be stored within its retry
  budget keeps it here; a background flusher stores it as soon as the database answers,
  and refreshes of that row in this process use it meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._sdk import TokenStorageData
from .errors import StorageUnavailableError
from .refresh_plan import Refreshed, StoreOutcome, is_usable

logger = logging.getLogger("tokenstore_sql.refresh")

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


class Flights:
    """One refresh per row at a time in this process; the other threads wait for it."""

    def __init__(self) -> None:
        self._forget()
        # A forked child has none of its parent's threads: their flights would never end.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[RowKey, _Flight] = {}

    def share(
        self,
        key: RowKey,
        rejected_access_token: str | None,
        wait_seconds: float,
        database: str,
        refresh: Callable[[], Refreshed],
    ) -> Refreshed:
        """Run ``refresh`` for ``key``, or wait for the thread already running it.

        A waiter gets the leader's token data (never its Auth response: only the leader
        refreshed), or the leader's exception. A waiter whose refused token is the one
        the leader found still runs a refresh of its own.

        :raises StorageUnavailableError: the leader did not finish within ``wait_seconds``
        """
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                return self._lead(key, flight, refresh)
            if not flight.done.wait(wait_seconds):
                raise StorageUnavailableError(
                    f"get a refreshed token within {wait_seconds:g} s "
                    "(another thread is refreshing it)",
                    database,
                )
            if flight.error is not None:
                raise flight.error
            assert flight.result is not None
            if is_usable(flight.result.data, rejected_access_token):
                return Refreshed(flight.result.data)

    def _lead(self, key: RowKey, flight: _Flight, refresh: Callable[[], Refreshed]) -> Refreshed:
        try:
            flight.result = refresh()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


@dataclass
class ParkedResult:
    """A refresh's result that the database did not take in time.

    :ivar data: the new token data (its refresh token is the only live one)
    :ivar store: one attempt at storing it; gives the outcome or raises
    """

    data: TokenStorageData = field(repr=False)
    store: Callable[[], Any] = field(repr=False)


class ParkedResults:
    """Refresh results waiting for the database, by row; stored by a flusher."""

    def __init__(self) -> None:
        self._forget()
        # The parent keeps storing what it parked; a forked child has no flusher for it.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._parked: dict[RowKey, ParkedResult] = {}

    def park(self, key: RowKey, result: ParkedResult) -> bool:
        """Keep a result for ``key``; tell whether it is the only one parked (start a flusher)."""
        logger.warning(
            "could not store a refreshed token for %s: it is kept in this process and "
            "stored when the database answers again",
            key,
        )
        with self._lock:
            first = not self._parked
            self._parked[key] = result
        return first

    def get(self, key: RowKey) -> ParkedResult | None:
        """Give the result parked for ``key``, if any."""
        with self._lock:
            return self._parked.get(key)

    def items(self) -> list[tuple[RowKey, ParkedResult]]:
        """Give every parked result (a copy, safe to iterate while others park)."""
        with self._lock:
            return list(self._parked.items())

    def settle(self, key: RowKey, result: ParkedResult, outcome: StoreOutcome) -> bool:
        """Record one attempt's outcome; tell whether the result has left the parking."""
        if outcome is StoreOutcome.PARKED:
            return False
        with self._lock:
            if self._parked.get(key) is result:
                del self._parked[key]
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
            return len(self._parked)
