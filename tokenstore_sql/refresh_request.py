"""What a refresh is asked and what it answers: the request, the row as read, the answer.

Free of I/O, shared by the protocol (:mod:`tokenstore_sql.refresh_plan`) and by the
performers of both APIs (:mod:`tokenstore_sql.refresh_steps`). Times are the workers'
clocks: hosts must agree within a few seconds (NTP).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, TypedDict

from ._sdk import TokenStorageData
from .checks import checked_number
from .codec import check_key
from .errors import InvalidTokenDataError, MissingTokenDataError, StorageUnavailableError
from .retries import RetryPolicy

if TYPE_CHECKING:
    from globus_sdk import AuthLoginClient, OAuthRefreshTokenResponse

# As globus-sdk's RenewingAuthorizer: a token this close to its expiry counts as expired.
EXPIRY_MARGIN_SECONDS: Final = 60
# A lease lasts the Auth client's HTTP timeout plus this, for connecting and storing.
LEASE_MARGIN_SECONDS: Final = 10.0
# The HTTP timeout assumed for an Auth client that sets none.
DEFAULT_HTTP_TIMEOUT_SECONDS: Final = 60.0
# Waiters wait for the lease's length plus this before giving up.
WAIT_MARGIN_SECONDS: Final = 5.0

OnRefresh = Callable[["OAuthRefreshTokenResponse"], Any]
"""A callback given globus-sdk's response to each refresh this process makes."""


class RefreshOptions(TypedDict, total=False):
    """The options of :func:`~tokenstore_sql.refresh.refresh_once` and its async twin.

    :ivar rejected_access_token: a token a service refused (HTTP 401): refresh even if
        the stored token is this one and not yet expired
    :ivar on_refresh: called with Auth's response by the worker that refreshed (never by
        those that found a fresh token), after it is stored, or kept for storing later
    :ivar lock_timeout: seconds to wait for another worker's refresh (default: the
        lease's length and 5 s more)
    :ivar lease_seconds: how long a refresh lease lasts (default: the Auth client's HTTP
        timeout plus 10 s); a worker that dies holding one delays the others this long
    :ivar store_retry: how storing Auth's answer is retried (default:
        :func:`~tokenstore_sql.refresh.storing_policy` of the storage's policy)
    """

    rejected_access_token: str | None
    on_refresh: OnRefresh | None
    lock_timeout: float | None
    lease_seconds: float | None
    store_retry: RetryPolicy | None


def is_fresh(data: TokenStorageData, *, now: float | None = None) -> bool:
    """Tell whether an access token is good for at least another minute."""
    now = time.time() if now is None else now
    return now <= data.expires_at_seconds - EXPIRY_MARGIN_SECONDS


def is_usable(data: TokenStorageData, rejected_access_token: str | None) -> bool:
    """Tell whether token data can authorize a request: fresh, and not a refused token."""
    return is_fresh(data) and data.access_token != rejected_access_token


def lease_seconds_for(auth_client: AuthLoginClient) -> float:
    """Give the lease length for refreshes made with ``auth_client``.

    Its HTTP timeout (globus-sdk's ``transport.http_timeout``, 60 s by default) plus 10
    seconds: a holder still waiting for Auth when its lease ends has met its own
    timeout. (globus-sdk may retry a call that failed; see the README's limits.)
    """
    timeout = getattr(getattr(auth_client, "transport", None), "http_timeout", None)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        timeout = DEFAULT_HTTP_TIMEOUT_SECONDS
    return float(timeout) + LEASE_MARGIN_SECONDS


def is_invalid_grant(exc: BaseException) -> bool:
    """Tell whether an error is Auth refusing a refresh token (OAuth ``invalid_grant``)."""
    body = getattr(exc, "raw_json", None)
    return isinstance(body, dict) and body.get("error") == "invalid_grant"


def renewed_data(
    current: TokenStorageData, response: OAuthRefreshTokenResponse
) -> TokenStorageData:
    """Build the token data a refresh response gives, keeping what it does not carry.

    The identity and ``extra`` are kept, and the refresh token where Auth did not
    rotate it (refresh responses carry no id_token).

    :raises InvalidTokenDataError: the response holds no token for the resource server
    """
    tokens = response.by_resource_server.get(current.resource_server)
    if tokens is None:
        raise InvalidTokenDataError(
            f"the refresh response holds no token for resource server {current.resource_server!r}"
        )
    return TokenStorageData(
        resource_server=current.resource_server,
        identity_id=current.identity_id,
        scope=tokens.get("scope") or current.scope,
        access_token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token") or current.refresh_token,
        expires_at_seconds=tokens["expires_at_seconds"],
        token_type=tokens.get("token_type") or current.token_type,
        extra=current.extra,
    )


@dataclass(frozen=True)
class RowSnapshot:
    """A token row as read for a refresh.

    :ivar data: the token data, decrypted
    :ivar stored_refresh_token: the refresh token as stored (sealed, when encrypted): the
        witness of the compare-and-swap that stores a refresh's result
    :ivar lease_owner: who holds the refresh lease (None: nobody)
    :ivar lease_until: when that lease ends
    """

    data: TokenStorageData = field(repr=False)
    stored_refresh_token: str | None = field(repr=False)
    lease_owner: str | None
    lease_until: datetime | None

    def lease_is_free(self, now: datetime) -> bool:
        """Tell whether a worker may take the lease at ``now``."""
        return self.lease_owner is None or self.lease_until is None or self.lease_until < now


class StoreOutcome(Enum):
    """What became of a refresh's result."""

    STORED = "stored"  # written in place of the spent token; the lease is cleared
    SUPERSEDED = "superseded"  # the row no longer holds the spent token as it was read
    PARKED = "parked"  # the database stayed unreachable: kept in memory, stored later


@dataclass(frozen=True)
class Refreshed:
    """The answer of a refresh: usable token data, and Auth's response if this caller refreshed.

    ``response`` is None when another worker had refreshed already.
    """

    data: TokenStorageData = field(repr=False)
    response: OAuthRefreshTokenResponse | None = field(repr=False, default=None)


@dataclass(frozen=True)
class RefreshRequest:
    """One caller's need for a usable access token.

    :ivar namespace: the row's namespace
    :ivar resource_server: the row's resource server
    :ivar rejected_access_token: a token a service refused (HTTP 401); never the answer
    :ivar lease_seconds: how long a lease lasts (see :func:`lease_seconds_for`)
    :ivar wait_seconds: how long to wait for another worker's refresh
    :ivar database: the database, described without credentials, for error messages
    """

    namespace: str
    resource_server: str
    rejected_access_token: str | None = field(repr=False)
    lease_seconds: float
    wait_seconds: float
    database: str

    @classmethod
    def build(
        cls,
        namespace: str,
        resource_server: str,
        auth_client: AuthLoginClient,
        *,
        database: str,
        rejected_access_token: str | None,
        lock_timeout: float | None,
        lease_seconds: float | None,
    ) -> RefreshRequest:
        """Make a request from a refresh function's arguments, filling in the defaults.

        The lease lasts :func:`lease_seconds_for` the client unless ``lease_seconds`` is
        given; waiters wait ``lock_timeout``, else the lease and 5 s more.

        :raises InvalidTokenDataError: the resource server is not a usable key
        :raises ConfigurationError: ``lease_seconds`` is not more than 0, or
            ``lock_timeout`` is less than 0 (0: do not wait), or either is not a number
        """
        check_key("resource server", resource_server)
        if lease_seconds is None:
            lease = lease_seconds_for(auth_client)
        else:
            lease = checked_number("lease_seconds", lease_seconds, positive=True)
        if lock_timeout is None:
            wait = lease + WAIT_MARGIN_SECONDS
        else:
            wait = checked_number("lock_timeout", lock_timeout)
        return cls(namespace, resource_server, rejected_access_token, lease, wait, database)

    def missing(self, problem: str) -> MissingTokenDataError:
        """Make the error for a row that cannot be refreshed."""
        return MissingTokenDataError(self.namespace, self.resource_server, problem)

    def waited_too_long(self, holder: str) -> StorageUnavailableError:
        """Make the error for a caller that waited its whole time for another's refresh.

        :param holder: who was refreshing, as "another thread is refreshing it"
        """
        return StorageUnavailableError(
            f"get a refreshed token within {self.wait_seconds:g} s ({holder})", self.database
        )
