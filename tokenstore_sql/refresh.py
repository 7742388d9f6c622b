"""Refreshing a stored access token once, however many workers find it expired at once.

:func:`refresh_once` performs the lease protocol of ``tokenstore_sql.refresh_plan``
on a sync storage: threads of one process share one refresh, processes (and hosts)
agree through a lease on the row, and no connection is held while Globus Auth answers.
Once Auth has answered, storing the result gets a retry budget of its own; if the
database stays away even so, the caller still gets the new token, the process keeps it
and a background thread stores it as soon as the database answers (see
``tokenstore_sql.inflight``).

This module does the I/O alone, through :mod:`tokenstore_sql.execution`; what each step
means is shared with the async API in :mod:`tokenstore_sql.refresh_steps`.

:class:`LockingRefreshTokenAuthorizer` packages that as a globus-sdk authorizer; any
SDK client takes it (``TransferClient(authorizer=...)``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from globus_sdk import AuthLoginClient, RefreshTokenAuthorizer

from ._sdk import TokenStorageData
from .errors import MissingTokenDataError, TokenStoreError
from .execution import Execution
from .inflight import (
    FIRST_FLUSH_DELAY_SECONDS,
    MAX_FLUSH_DELAY_SECONDS,
    Flights,
    ParkedResult,
    ParkedResults,
)
from .refresh_plan import CallAuth, Pause, Step, StoreRenewed, refresh_plan, run_plan
from .refresh_request import (
    EXPIRY_MARGIN_SECONDS,
    OnRefresh,
    Refreshed,
    RefreshOptions,
    is_fresh,
)
from .refresh_steps import RefreshSteps, storing_policy
from .retries import RetryPolicy
from .storage import SQLAlchemyTokenStorage

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "EXPIRY_MARGIN_SECONDS",
    "LockingRefreshTokenAuthorizer",
    "OnRefresh",
    "is_fresh",
    "refresh_once",
    "storing_policy",
]

_flights = Flights()
_parked = ParkedResults()


def refresh_once(
    storage: SQLAlchemyTokenStorage,
    resource_server: str,
    auth_client: AuthLoginClient,
    **options: Unpack[RefreshOptions],
) -> TokenStorageData:
    """Return a fresh access token for one resource server, refreshing it only if needed.

    Reads the stored row; a fresh access token (that is not ``rejected_access_token``)
    is returned as it is. Otherwise one worker among all that share the database takes
    the row's refresh lease, spends the refresh token with ``auth_client`` and stores
    the result; the others wait for it and return what it stored. The identity,
    ``extra`` and, where Auth does not rotate it, the refresh token are kept.

    :param options: ``rejected_access_token``, ``on_refresh``, ``lock_timeout``,
        ``lease_seconds``, ``store_retry``, as described in
        :class:`~tokenstore_sql.refresh_request.RefreshOptions`
    :raises MissingTokenDataError: nothing is stored, or there is no refresh token
    :raises StorageUnavailableError: the database, or another worker's refresh, did not
        answer in time (Auth was not called, or its answer is kept as said above)
    :raises globus_sdk.AuthAPIError: Auth refused the refresh token, and no other worker
        had stored a newer one (the stored row is left as it was)
    """
    steps = _SyncSteps(storage, resource_server, auth_client, options, _parked)
    refreshed = _flights.share(steps.request, steps.key, steps.refresh)
    on_refresh = options.get("on_refresh")
    if refreshed.response is not None and on_refresh is not None:
        on_refresh(refreshed.response)
    return refreshed.data


class _SyncSteps(RefreshSteps):
    """Performs a refresh plan's steps on a sync storage's engine: the I/O alone."""

    def refresh(self) -> Refreshed:
        """Refresh (or find refreshed) the row, using a result this process still keeps."""
        parked = self.parked.get(self.key)
        kept = None if parked is None else self.parked_answer(parked, parked.store())
        return kept or run_plan(refresh_plan(self.request), self.perform)

    def perform(self, step: Step, retry: RetryPolicy | None = None) -> Any:
        """Perform one step of the plan and give its reply."""
        if isinstance(step, Pause):
            return time.sleep(step.seconds)
        if isinstance(step, CallAuth):
            return self.auth_client.oauth2_refresh_token(step.refresh_token)
        statement = self.statement_for(step, retry)
        try:
            result = statement.run(Execution, self.storage.engine)
        except TokenStoreError as exc:
            return self.absorb(step, exc, flushing=retry is not None)
        return self.reply(step, result)

    def _park(self, step: StoreRenewed) -> None:
        parked = ParkedResult(step.data, lambda: self.perform(step, RetryPolicy(attempts=1)))
        if self.parked.park(self.key, parked):
            threading.Thread(
                target=_flush_parked, name="tokenstore-sql-refresh-flusher", daemon=True
            ).start()


def _flush_parked() -> None:
    """Store parked results until none is left, backing off between rounds."""
    delay = FIRST_FLUSH_DELAY_SECONDS
    while len(_parked):
        time.sleep(delay)
        for key, parked in _parked.items():
            _parked.settle(key, parked, parked.store())
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
