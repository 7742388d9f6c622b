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

:func:`refresh_plan` yields the steps and :class:`PlanRun` drives it; the performers of
:mod:`tokenstore_sql.refresh` and :mod:`tokenstore_sql.async_refresh` only do each step's
I/O, so the sync and async APIs share one protocol (and :mod:`tokenstore_sql.refresh_steps`
the statements that carry it out). The request, the row as read and the answer are in
:mod:`tokenstore_sql.refresh_request`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from ._sdk import TokenStorageData
from .columns import utc_now
from .refresh_request import (
    Refreshed,
    RefreshRequest,
    RowSnapshot,
    StoreOutcome,
    is_invalid_grant,
    is_usable,
    renewed_data,
)

# A waiter re-reads the row after 20 ms, then backs off up to half a second.
FIRST_PAUSE_SECONDS: Final = 0.02
MAX_PAUSE_SECONDS: Final = 0.5


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
Plan = Generator[Step, Any, Refreshed]


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
            raise self.request.waited_too_long("another worker holds the refresh lease")
        pause = min(self.pause * (0.5 + random.random()), left)
        self.pause = min(self.pause * 1.5, MAX_PAUSE_SECONDS)
        return pause


class PlanRun:
    """A plan being driven: the step to perform next, until the plan gives its answer.

    A performer loops while :attr:`step` is not None, setting :attr:`reply` (or
    :attr:`error`) and calling :meth:`advance`, outside any ``except`` block: an error
    the plan raises then carries no other exception as its context.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self.reply: Any = None
        self.error: Exception | None = None
        self.answer: Refreshed | None = None
        self.step: Step | None = None
        self.advance()

    def advance(self) -> None:
        """Hand the plan the last reply (or error) and take its next step, or its answer."""
        reply, error, self.reply, self.error = self.reply, self.error, None, None
        try:
            self.step = self._plan.send(reply) if error is None else self._plan.throw(error)
        except StopIteration as done:
            self.step, self.answer = None, done.value


def run_plan(plan: Plan, perform: Callable[[Step], Any]) -> Refreshed:
    """Drive a plan, performing each step with ``perform`` (the sync performers' loop)."""
    run = PlanRun(plan)
    while run.step is not None:
        try:
            run.reply = perform(run.step)
        except Exception as exc:
            run.error = exc
        run.advance()
    assert run.answer is not None
    return run.answer
