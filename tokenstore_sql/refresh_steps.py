"""Performing a refresh plan's steps, less the I/O: statements, values, replies, failures.

:class:`RefreshSteps` is the half that the sync and async performers
(:mod:`tokenstore_sql.refresh`, :mod:`tokenstore_sql.async_refresh`) share: which statement
carries out a step and with what bind values (a result to store is validated and sealed
as any stored token is), what its result means to the plan, which failures the plan
outlives, and when a result kept in this process is the answer. Each performer adds the
I/O alone: running the statement through its API's execution seam, sleeping, calling
Auth, and storing parked results in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Executable

from .codec import rows_for_storage, token_data_from_row
from .columns import utc_now
from .crypto import KeyRing
from .engines import describe_database
from .errors import DatabaseOperationError, StorageUnavailableError, TokenStoreError
from .inflight import ParkedResult, ParkedResults, RowKey, logger
from .models import Placement
from .refresh_plan import ReadRow, ReleaseLease, StoreRenewed, TakeLease
from .refresh_request import (
    Refreshed,
    RefreshOptions,
    RefreshRequest,
    RowSnapshot,
    StoreOutcome,
    is_usable,
)
from .retries import RetryPolicy
from .statements import REFRESHED_COLUMNS, key_params, statements_for

if TYPE_CHECKING:
    from globus_sdk import AuthLoginClient

RowStep = ReadRow | TakeLease | ReleaseLease | StoreRenewed


class RefreshedStorage(Protocol):
    """What a refresh needs of a storage, sync or async."""

    namespace: str

    @property
    def placement(self) -> Placement:
        """Where the storage's tables are."""

    @property
    def retry(self) -> RetryPolicy:
        """The storage's retry policy."""

    @property
    def keys(self) -> KeyRing | None:
        """The storage's encryption keys, or None."""

    @property
    def engine(self) -> Any:
        """The storage's engine (an ``Engine`` or an ``AsyncEngine``)."""


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


@dataclass(frozen=True)
class RowStatement:
    """The one statement that carries out a step on the refreshed row."""

    operation: str
    statement: Executable
    params: Mapping[str, Any] = field(repr=False)
    reads: bool
    retry: RetryPolicy

    def run(self, execution: Callable[[Any, RetryPolicy], Any], engine: Any) -> Any:
        """Run it on an execution seam (``Execution`` or its async twin); give what it gives."""
        seam = execution(engine, self.retry)
        if self.reads:
            return seam.read_rows(self.operation, self.statement, self.params)
        return seam.write_rows(self.operation, self.statement, [self.params])


class RefreshSteps:
    """The I/O-free half of performing one refresh on one storage."""

    def __init__(
        self,
        storage: RefreshedStorage,
        resource_server: str,
        auth_client: AuthLoginClient,
        options: RefreshOptions,
        parked: ParkedResults,
    ) -> None:
        self.storage, self.auth_client, self.parked = storage, auth_client, parked
        self.request = RefreshRequest.build(
            storage.namespace,
            resource_server,
            auth_client,
            database=describe_database(storage.engine.url),
            rejected_access_token=options.get("rejected_access_token"),
            lock_timeout=options.get("lock_timeout"),
            lease_seconds=options.get("lease_seconds"),
        )
        self.store_retry = options.get("store_retry") or storing_policy(storage.retry)
        self.key = RowKey(storage.engine, storage.placement, storage.namespace, resource_server)
        self.statements = statements_for(storage.placement)

    def statement_for(self, step: RowStep, retry: RetryPolicy | None = None) -> RowStatement:
        """Give the statement that carries out ``step``, its values bound.

        Built before the first attempt: a result Auth got wrong fails here, unparked.

        :param retry: the policy of a parked result's single attempt, for a store
        """
        request, statements, policy = self.request, self.statements, self.storage.retry
        if isinstance(step, ReadRow):
            params = key_params(request.namespace, request.resource_server)
            return RowStatement(
                "read token data", statements.select_for_refresh, params, True, policy
            )
        params = self._parameters(step)
        if isinstance(step, TakeLease):
            return RowStatement(
                "take the refresh lease", statements.take_lease, params, False, policy
            )
        if isinstance(step, ReleaseLease):
            operation = "release the refresh lease"
            return RowStatement(operation, statements.release_lease, params, False, policy)
        policy = retry or self.store_retry
        return RowStatement(
            "store a refreshed token", statements.store_refreshed, params, False, policy
        )

    def reply(self, step: RowStep, result: Any) -> Any:
        """Give the plan what a step's statement result means: a row, a lease, an outcome."""
        if isinstance(step, ReadRow):
            return self._snapshot(result[0]) if result else None
        if isinstance(step, TakeLease):
            return result > 0
        if isinstance(step, ReleaseLease):
            return None
        return StoreOutcome.STORED if result else StoreOutcome.SUPERSEDED

    def absorb(self, step: RowStep, exc: TokenStoreError, *, flushing: bool) -> Any:
        """Give the plan's reply to a failed statement that it outlives, else raise ``exc``.

        A lease not released expires by itself (the next worker waits until then). A
        result the database did not take is parked for storing later, unless this was a
        parked result's own attempt (``flushing``), which leaves it parked.
        """
        if isinstance(step, ReleaseLease):
            logger.warning(
                "could not release the refresh lease of %s; it expires within %g s",
                self.key,
                self.request.lease_seconds,
            )
            return None
        if not isinstance(step, StoreRenewed) or not isinstance(
            exc, (StorageUnavailableError, DatabaseOperationError)
        ):
            raise exc
        if not flushing:
            self._park(step)
        return StoreOutcome.PARKED

    def parked_answer(self, parked: ParkedResult, outcome: StoreOutcome) -> Refreshed | None:
        """Give a result kept in this process as the answer, after one more try to store it.

        None when it has left the parking (stored, or dropped for newer tokens) or is
        not usable: then the plan runs.
        """
        if self.parked.settle(self.key, parked, outcome):
            return None
        usable = is_usable(parked.data, self.request.rejected_access_token)
        return Refreshed(parked.data) if usable else None

    def _park(self, step: StoreRenewed) -> None:
        """Keep a result the database did not take, and see that it gets stored."""
        raise NotImplementedError

    def _snapshot(self, row: Mapping[str, Any]) -> RowSnapshot:
        return RowSnapshot(
            data=token_data_from_row(self.request.namespace, row, self.storage.keys),
            stored_refresh_token=row["refresh_token"],
            lease_owner=row["refresh_lease_owner"],
            lease_until=row["refresh_lease_until"],
        )

    def _parameters(self, step: TakeLease | ReleaseLease | StoreRenewed) -> dict[str, Any]:
        request = self.request
        params: dict[str, Any] = {
            "row_namespace": request.namespace,
            "row_resource_server": request.resource_server,
        }
        if isinstance(step, TakeLease):
            params.update(owner=step.owner, now=step.now, until=step.until)
        elif isinstance(step, ReleaseLease):
            params["owner"] = step.owner
        else:
            data = {request.resource_server: step.data}
            row = rows_for_storage(request.namespace, data, self.storage.keys)[0]
            row["updated_at"] = utc_now()
            params.update({f"new_{name}": row[name] for name in REFRESHED_COLUMNS})
            params["spent_refresh_token"] = step.witness
        return params
