"""How a stored token is refreshed once across every worker, as steps free of I/O.

A refresh spends a refresh token: where Globus Auth rotates them, a second worker that
spends the same one gets ``invalid_grant`` and its user is logged out. Workers agree on
who refreshes through a **lease** on the token's row, and no transaction, lock or
pooled connection is held while Auth answers:

1. Read the row. A fresh access token (not the one a service just refused) is the
   answer; nothing else happens.
2. Take the lease with one conditional ``UPDATE``: set the row's lease owner (a random
   id) and expiry where there is no lease, the lease has expired, or it is already ours.
   Workers that find a live lease pause with bounded, jittered backoff and go to 1.
3. With the lease, read the row again: another worker may have refreshed it between
   1 and 2.
4. Call Auth, outside any transaction.
5. Store the result with a compare-and-swap: ``UPDATE ... WHERE refresh_token = <the
   token spent>``, which also clears the lease. The result replaces exactly the token it
   came from, whoever holds the lease by then.

Every step is one statement, so this works through PgBouncer's transaction pooling and
across the nodes of a Galera cluster, where advisory locks, ``GET_LOCK`` and prepared
statements do not. A worker killed during the Auth call leaves a lease that expires;
one waiter then takes over. When Auth refuses the token (``invalid_grant``) the row is
read once more, and a token that another worker stored meanwhile is used instead.

:func:`refresh_plan` yields the steps; :func:`run_plan` (and its async twin in
:mod:`tokenstore_sql.async_refresh`) performs them, so the sync and async APIs share one
protocol. Times are the workers' clocks: hosts must agree within a few seconds (NTP).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from ._sdk import TokenStorageData
from .checks import checked_number
from .codec import check_key, rows_for_storage, token_data_from_row
from .columns import utc_now
from .crypto import KeyRing
from .errors import InvalidTokenDataError, MissingTokenDataError, StorageUnavailableError
from .statements import REFRESHED_COLUMNS

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
# A waiter re-reads the row after 20 ms, then backs off up to half a second.
FIRST_PAUSE_SECONDS: Final = 0.02
MAX_PAUSE_SECONDS: Final = 0.5


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
class ReadRow:
    """Read the row; the reply is a :class:`RowSnapshot`, or None when there is none."""


@dataclass(frozen=True)
class TakeLease:
    """Take the lease if it is free, expired or ours; the reply tells whether it was taken."""

    owner: str
    now: datetime
    until: datetime


@dataclass(frozen=True)
class ReleaseLease:
    """Clear the lease if ``owner`` still holds it; failures are only logged."""

    owner: str


@dataclass(frozen=True)
class Pause:
    """Wait before reading the row again."""

    seconds: float


@dataclass(frozen=True)
class CallAuth:
    """Spend a refresh token with Globus Auth; the reply is its response."""

    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class StoreRenewed:
    """Store a refresh's result where the row still holds ``witness``; reply: a StoreOutcome."""

    data: TokenStorageData = field(repr=False)
    witness: str = field(repr=False)


Step = ReadRow | TakeLease | ReleaseLease | Pause | CallAuth | StoreRenewed


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
        return cls(
            namespace=namespace,
            resource_server=resource_server,
            rejected_access_token=rejected_access_token,
            lease_seconds=lease,
            wait_seconds=wait,
            database=database,
        )

    def missing(self, problem: str) -> MissingTokenDataError:
        """Make the error for a row that cannot be refreshed."""
        return MissingTokenDataError(self.namespace, self.resource_server, problem)


Plan = Generator[Step, Any, Refreshed]


def snapshot_from_row(
    request: RefreshRequest, row: Mapping[str, Any], keys: KeyRing | None
) -> RowSnapshot:
    """Build a snapshot from a row of ``select_for_refresh``.

    :raises UnreadableTokenDataError: the row cannot be read back
    """
    return RowSnapshot(
        data=token_data_from_row(request.namespace, row, keys),
        stored_refresh_token=row["refresh_token"],
        lease_owner=row["refresh_lease_owner"],
        lease_until=row["refresh_lease_until"],
    )


def step_parameters(
    request: RefreshRequest, step: TakeLease | ReleaseLease | StoreRenewed, keys: KeyRing | None
) -> dict[str, Any]:
    """Give the bind values of the statement that performs ``step`` on the request's row.

    A result to store is validated and sealed (with ``keys``) as any stored token is.
    """
    params: dict[str, Any] = {
        "row_namespace": request.namespace,
        "row_resource_server": request.resource_server,
    }
    if isinstance(step, TakeLease):
        params.update(owner=step.owner, now=step.now, until=step.until)
    elif isinstance(step, ReleaseLease):
        params["owner"] = step.owner
    else:
        row = rows_for_storage(request.namespace, {request.resource_server: step.data}, keys)[0]
        row["updated_at"] = utc_now()
        params.update({f"new_{name}": row[name] for name in REFRESHED_COLUMNS})
        params["spent_refresh_token"] = step.witness
    return params


def refresh_plan(request: RefreshRequest) -> Plan:
    """Yield the steps of one refresh, as described in the module docstring.

    Send each step's reply back in (or throw its exception in); the plan returns the
    :class:`Refreshed` answer.

    :raises MissingTokenDataError: no row, or no refresh token
    :raises StorageUnavailableError: another worker's lease outlasted ``wait_seconds``
    :raises globus_sdk.AuthAPIError: Auth refused, and no newer token was stored
    """
    owner = uuid.uuid4().hex
    pauses = _Pauses(request)
    while True:
        row = yield ReadRow()
        if row is None:
            raise request.missing("no token data")
        if is_usable(row.data, request.rejected_access_token):
            return Refreshed(row.data)
        _spendable(request, row)
        now = utc_now()
        if row.lease_is_free(now):
            until = now + timedelta(seconds=request.lease_seconds)
            if (yield TakeLease(owner, now, until)):
                break
        yield Pause(pauses.next())
    return (yield from _refresh_under_lease(request, owner))


def _refresh_under_lease(request: RefreshRequest, owner: str) -> Plan:
    keep_lease = False
    try:
        row = yield ReadRow()  # another worker may have refreshed before our lease
        if row is None:
            raise request.missing("no token data")
        if is_usable(row.data, request.rejected_access_token):
            return Refreshed(row.data)
        spent = _spendable(request, row)
        try:
            response = yield CallAuth(spent)
        except Exception as exc:
            if not is_invalid_grant(exc):
                raise
            newer = yield ReadRow()  # a worker whose lease ran out may have stored one
            if (
                newer is not None
                and newer.data.refresh_token != spent
                and is_usable(newer.data, request.rejected_access_token)
            ):
                return Refreshed(newer.data)
            raise
        renewed = renewed_data(row.data, response)
        outcome = yield from _store(row, renewed, spent)
        # Stored: the compare-and-swap cleared the lease. Parked: the row still holds the
        # spent token, so the lease stays until the kept result is stored (which clears
        # it) or expires; released now, it would let another worker spend that token.
        keep_lease = outcome is not StoreOutcome.SUPERSEDED
        return Refreshed(renewed, response)
    finally:
        if not keep_lease:
            yield ReleaseLease(owner)


def _store(
    row: RowSnapshot, renewed: TokenStorageData, spent: str
) -> Generator[Step, Any, StoreOutcome]:
    witness = row.stored_refresh_token
    assert witness is not None  # _spendable checked it
    for _ in range(3):
        outcome: StoreOutcome = yield StoreRenewed(renewed, witness)
        if outcome is not StoreOutcome.SUPERSEDED:
            return outcome
        # Re-sealed under another key (the same token), or replaced by a new login
        # (keep that: the caller still gets this refresh's token for its request).
        latest = yield ReadRow()
        if latest is None or latest.data.refresh_token != spent:
            return outcome
        assert latest.stored_refresh_token is not None
        witness = latest.stored_refresh_token
    return StoreOutcome.SUPERSEDED


def _spendable(request: RefreshRequest, row: RowSnapshot) -> str:
    refresh_token = row.data.refresh_token
    if refresh_token is None or row.stored_refresh_token is None:
        raise request.missing("the stored token data has no refresh token")
    return refresh_token


class _Pauses:
    """A waiter's pauses: jittered, growing to half a second, bounded in total."""

    def __init__(self, request: RefreshRequest) -> None:
        self.request = request
        self.deadline = time.monotonic() + request.wait_seconds
        self.pause = FIRST_PAUSE_SECONDS

    def next(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StorageUnavailableError(
                f"get a refreshed token within {self.request.wait_seconds:g} s "
                "(another worker holds the refresh lease)",
                self.request.database,
            )
        pause = min(self.pause * (0.5 + random.random()), left)
        self.pause = min(self.pause * 1.5, MAX_PAUSE_SECONDS)
        return pause


def run_plan(plan: Plan, perform: Callable[[Step], Any]) -> Refreshed:
    """Drive a plan: perform each step and hand back its reply or its exception."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = plan.send(reply) if error is None else plan.throw(error)
        except StopIteration as done:
            result: Refreshed = done.value
            return result
        try:
            reply, error = perform(step), None
        except Exception as exc:
            reply, error = None, exc
