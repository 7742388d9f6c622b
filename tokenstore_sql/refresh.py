"""Refreshing a stored access token once, however many workers find it expired at once.

:func:`refresh_once` performs the lease protocol of ``tokenstore_sql.refresh_plan``
on a sync storage: threads of one process share one refresh, processes (and hosts)
agree through a lease on the row, and no connection is held while Globus Auth answers.
Once Auth has answered, storing the result gets a retry budget of its own; if the
database stays away even so, the caller still gets the new token, the process keeps it
and a background thread stores it as soon as the database answers (see
``tokenstore_sql.inflight``).

:class:`LockingRefreshTokenAuthorizer` packages that as a globus-sdk authorizer; any
SDK client takes it (``TransferClient(authorizer=...)``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from globus_sdk import AuthLoginClient, OAuthRefreshTokenResponse, RefreshTokenAuthorizer

from ._sdk import TokenStorageData
from .engines import describe_database
from .errors import (
    DatabaseOperationError,
    MissingTokenDataError,
    StorageUnavailableError,
    TokenStoreError,
)
from .execution import read_rows, write_rows
from .inflight import (
    FIRST_FLUSH_DELAY_SECONDS,
    MAX_FLUSH_DELAY_SECONDS,
    Flights,
    ParkedResult,
    ParkedResults,
    RowKey,
    logger,
)
from .refresh_plan import (
    EXPIRY_MARGIN_SECONDS,
    CallAuth,
    Pause,
    ReadRow,
    Refreshed,
    RefreshRequest,
    ReleaseLease,
    RowSnapshot,
    Step,
    StoreOutcome,
    StoreRenewed,
    TakeLease,
    is_fresh,
    is_usable,
    refresh_plan,
    run_plan,
    snapshot_from_row,
    step_parameters,
)
from .retries import RetryPolicy
from .statements import key_params, statements_for
from .storage import SQLAlchemyTokenStorage

__all__ = [
    "EXPIRY_MARGIN_SECONDS",
    "LockingRefreshTokenAuthorizer",
    "OnRefresh",
    "is_fresh",
    "refresh_once",
    "storing_policy",
]

OnRefresh = Callable[[OAuthRefreshTokenResponse], Any]
"""A callback given globus-sdk's response to each refresh this process makes."""


def storing_policy(retry: RetryPolicy) -> RetryPolicy:
    """Give the retry budget for storing Auth's answer: four times a call's, at least 60 s.

    Auth has already spent the old refresh token by then: giving up loses the new one.
    """
    return RetryPolicy(
        attempts=max(retry.attempts * 4, 30),
        first_delay=retry.first_delay,
        max_delay=max(retry.max_delay, 5.0),
        deadline=max(retry.deadline * 4, 60.0),
    )


_flights = Flights()
_parked = ParkedResults()


def refresh_once(
    storage: SQLAlchemyTokenStorage,
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

    Reads the stored row; a fresh access token (that is not ``rejected_access_token``)
    is returned as it is. Otherwise one worker among all that share the database takes
    the row's refresh lease, spends the refresh token with ``auth_client`` and stores
    the result; the others wait for it and return what it stored. The identity,
    ``extra`` and, where Auth does not rotate it, the refresh token are kept.

    :param rejected_access_token: a token a service refused (HTTP 401): refresh even if
        the stored token is this one and not yet expired
    :param on_refresh: called with Auth's response by the worker that refreshed (never by
        those that found a fresh token), after it is stored, or kept for storing later
    :param lock_timeout: seconds to wait for another worker's refresh (default: the
        lease's length and 5 s more)
    :param lease_seconds: how long a refresh lease lasts (default: the Auth client's HTTP
        timeout plus 10 s); a worker that dies holding one delays the others this long
    :param store_retry: how storing Auth's answer is retried (default:
        :func:`storing_policy` of the storage's policy)
    :raises MissingTokenDataError: nothing is stored, or there is no refresh token
    :raises StorageUnavailableError: the database, or another worker's refresh, did not
        answer in time (Auth was not called, or its answer is kept as said above)
    :raises globus_sdk.AuthAPIError: Auth refused the refresh token, and no other worker
        had stored a newer one (the stored row is left as it was)
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
    steps = _SyncSteps(storage, request, auth_client, store_retry)
    refreshed = _flights.share(
        steps.key,
        rejected_access_token,
        request.wait_seconds,
        request.database,
        steps.refresh,
    )
    if refreshed.response is not None and on_refresh is not None:
        on_refresh(refreshed.response)
    return refreshed.data


class _SyncSteps:
    """Performs a refresh plan's steps on a sync storage's engine."""

    def __init__(
        self,
        storage: SQLAlchemyTokenStorage,
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

    def refresh(self) -> Refreshed:
        """Refresh (or find refreshed) the row, using a result this process still keeps."""
        parked = _parked.get(self.key)
        if (
            parked is not None
            and not _parked.settle(self.key, parked, _try_store(parked))
            and is_usable(parked.data, self.request.rejected_access_token)
        ):
            return Refreshed(parked.data)
        return run_plan(refresh_plan(self.request), self.perform)

    def perform(self, step: Step) -> Any:
        """Perform one step of the plan and give its reply."""
        if isinstance(step, ReadRow):
            return self._read()
        if isinstance(step, TakeLease):
            return self._write("take the refresh lease", self.statements.take_lease, step) > 0
        if isinstance(step, ReleaseLease):
            return self._release(step)
        if isinstance(step, Pause):
            return time.sleep(step.seconds)
        if isinstance(step, CallAuth):
            return self.auth_client.oauth2_refresh_token(step.refresh_token)
        return self._store(step)

    def _read(self) -> RowSnapshot | None:
        statement = self.statements.select_for_refresh
        params = key_params(self.request.namespace, self.request.resource_server)
        storage = self.storage
        rows = read_rows(storage.engine, "read token data", statement, params, storage.retry)
        return snapshot_from_row(self.request, rows[0], self.storage.keys) if rows else None

    def _write(
        self,
        operation: str,
        statement: Any,
        step: TakeLease | ReleaseLease | StoreRenewed,
        retry: RetryPolicy | None = None,
    ) -> int:
        # Built before the first attempt: a result Auth got wrong fails here, unparked.
        params = step_parameters(self.request, step, self.storage.keys)
        policy = retry or self.storage.retry
        return write_rows(self.storage.engine, operation, statement, [params], policy)

    def _release(self, step: ReleaseLease) -> None:
        try:
            self._write("release the refresh lease", self.statements.release_lease, step)
        except TokenStoreError:
            # The lease expires by itself; the next worker waits until then.
            logger.warning(
                "could not release the refresh lease of %s; it expires within %g s",
                self.key,
                self.request.lease_seconds,
            )

    def _store(self, step: StoreRenewed, retry: RetryPolicy | None = None) -> StoreOutcome:
        step_parameters(self.request, step, self.storage.keys)  # bad data raises, unparked
        try:
            written = self._write(
                "store a refreshed token",
                self.statements.store_refreshed,
                step,
                retry or self.store_retry,
            )
        except (StorageUnavailableError, DatabaseOperationError):
            if retry is not None:  # a flusher's single attempt: stay parked
                return StoreOutcome.PARKED
            parked = ParkedResult(step.data, lambda: self._store(step, RetryPolicy(attempts=1)))
            if _parked.park(self.key, parked):
                threading.Thread(
                    target=_flush_parked, name="tokenstore-sql-refresh-flusher", daemon=True
                ).start()
            return StoreOutcome.PARKED
        return StoreOutcome.STORED if written else StoreOutcome.SUPERSEDED


def _try_store(parked: ParkedResult) -> StoreOutcome:
    outcome: StoreOutcome = parked.store()
    return outcome


def _flush_parked() -> None:
    """Store parked results until none is left, backing off between rounds."""
    delay = FIRST_FLUSH_DELAY_SECONDS
    while len(_parked):
        time.sleep(delay)
        for key, parked in _parked.items():
            _parked.settle(key, parked, _try_store(parked))
        delay = min(delay * 2, MAX_FLUSH_DELAY_SECONDS)


class LockingRefreshTokenAuthorizer(RefreshTokenAuthorizer):
    """A ``RefreshTokenAuthorizer`` over a storage row that workers refresh only once.

    It starts from the stored token data. When the access token has expired (or a
    service answered 401), it calls :func:`refresh_once`: of several workers doing so at
    once, one refreshes and stores, the others read what it stored. Use one per request
    or per worker; it is as thread-safe as globus-sdk's own authorizers (not at all).

    :param storage: the user's storage (its namespace is the lease's scope)
    :param resource_server: the resource server whose token this authorizes
    :param auth_client: the confidential or native client that owns the refresh token
    :param on_refresh: called with Auth's response after a refresh this worker made
    :param lock_timeout: seconds to wait for another worker's refresh
    :param lease_seconds: how long a refresh lease lasts (see :func:`refresh_once`)
    :raises MissingTokenDataError: no token data, or no refresh token, is stored
    """

    def __init__(
        self,
        storage: SQLAlchemyTokenStorage,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        on_refresh: OnRefresh | None = None,
        lock_timeout: float | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        data = storage.get_token_data(resource_server)
        if data is None:
            raise MissingTokenDataError(storage.namespace, resource_server, "no token data")
        if data.refresh_token is None:
            raise MissingTokenDataError(
                storage.namespace, resource_server, "the stored token data has no refresh token"
            )
        self.storage = storage
        self.resource_server = resource_server
        self.lock_timeout = lock_timeout
        self.lease_seconds = lease_seconds
        super().__init__(
            data.refresh_token,
            auth_client,
            access_token=data.access_token,
            expires_at=data.expires_at_seconds,
            on_refresh=on_refresh,
        )

    def ensure_valid_token(self) -> None:
        """Refresh through :func:`refresh_once` when the token is expired or was refused."""
        expires_at = self.expires_at
        fresh = expires_at is not None and time.time() <= expires_at - EXPIRY_MARGIN_SECONDS
        if self.access_token is not None and fresh:
            return
        # handle_missing_authorization() (a 401) clears expires_at: that token was refused
        rejected = self.access_token if expires_at is None else None
        data = refresh_once(
            self.storage,
            self.resource_server,
            self.auth_client,
            rejected_access_token=rejected,
            on_refresh=self.on_refresh,
            lock_timeout=self.lock_timeout,
            lease_seconds=self.lease_seconds,
        )
        self.access_token = data.access_token
        self.expires_at = data.expires_at_seconds
        if data.refresh_token is not None:
            self.refresh_token = data.refresh_token
