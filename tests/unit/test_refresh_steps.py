"""The I/O-free half of a refresh that both APIs share: statements, replies, failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine

from tests.support.sdk import make_token_data
from tokenstore_sql import RetryPolicy, generate_key
from tokenstore_sql.columns import utc_now
from tokenstore_sql.crypto import KeyRing
from tokenstore_sql.errors import (
    InvalidTokenDataError,
    StorageUnavailableError,
)
from tokenstore_sql.inflight import ParkedResult, ParkedResults
from tokenstore_sql.models import DEFAULT_PLACEMENT
from tokenstore_sql.refresh_plan import ReadRow, ReleaseLease, StoreRenewed, TakeLease
from tokenstore_sql.refresh_request import StoreOutcome
from tokenstore_sql.refresh_steps import RefreshSteps

RS = "transfer.api.globus.org"
SECRET = "SECRET-refresh-token-never-shown"


class _Recording(RefreshSteps):
    def __init__(self, storage: Any, **options: Any) -> None:
        super().__init__(storage, RS, object(), {"lease_seconds": 30, **options}, ParkedResults())  # type: ignore[arg-type]
        self.parked_steps: list[StoreRenewed] = []

    def _park(self, step: StoreRenewed) -> None:
        self.parked_steps.append(step)


@pytest.fixture
def storage() -> Iterator[Any]:
    engine = create_engine("sqlite://")
    yield SimpleNamespace(
        namespace="user-1",
        placement=DEFAULT_PLACEMENT,
        retry=RetryPolicy(attempts=2),
        keys=KeyRing.coerce([generate_key()]),
        engine=engine,
    )
    engine.dispose()


def _renewed(**fields: Any) -> StoreRenewed:
    data = make_token_data(RS, refresh_token=SECRET, **fields)
    return StoreRenewed(data, witness=SECRET)


def test_a_store_statement_is_sealed_and_shows_no_token(storage: Any) -> None:
    steps = _Recording(storage)
    statement = steps.statement_for(_renewed())
    assert statement.operation == "store a refreshed token"
    assert not statement.reads
    assert statement.retry.attempts >= 30  # the storing budget, not a call's
    assert statement.params["new_refresh_token"] != SECRET  # sealed with the storage's keys
    assert statement.params["spent_refresh_token"] == SECRET  # the witness, as stored
    assert SECRET not in repr(statement)


def test_a_parked_results_own_attempt_uses_its_single_try_policy(storage: Any) -> None:
    single = RetryPolicy(attempts=1)
    assert _Recording(storage).statement_for(_renewed(), single).retry is single
    lease = _Recording(storage).statement_for(TakeLease("me", utc_now(), utc_now()), single)
    assert lease.retry is storage.retry  # only a store takes the parked policy


def test_bad_data_from_auth_fails_before_any_statement(storage: Any) -> None:
    with pytest.raises(InvalidTokenDataError):
        _Recording(storage).statement_for(_renewed(access_token="nul\x00inside"))


def test_replies_mean_what_the_plan_expects(storage: Any) -> None:
    steps = _Recording(storage)
    assert steps.reply(ReadRow(), []) is None
    assert steps.reply(TakeLease("me", utc_now(), utc_now() + timedelta(seconds=5)), 1) is True
    assert steps.reply(TakeLease("me", utc_now(), utc_now()), 0) is False
    assert steps.reply(_renewed(), 1) is StoreOutcome.STORED
    assert steps.reply(_renewed(), 0) is StoreOutcome.SUPERSEDED


def test_a_lease_not_released_is_logged_not_raised(
    storage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failure = StorageUnavailableError("release the refresh lease", "sqlite")
    with caplog.at_level(logging.WARNING, logger="tokenstore_sql.refresh"):
        assert _Recording(storage).absorb(ReleaseLease("me"), failure, flushing=False) is None
    assert "expires within 30 s" in caplog.text


def test_a_lease_not_taken_is_raised(storage: Any) -> None:
    failure = StorageUnavailableError("take the refresh lease", "sqlite")
    lease = TakeLease("me", utc_now(), utc_now())
    with pytest.raises(StorageUnavailableError):
        _Recording(storage).absorb(lease, failure, flushing=False)


def test_a_result_not_stored_is_parked_once(storage: Any) -> None:
    failure = StorageUnavailableError("store a refreshed token", "sqlite")
    steps = _Recording(storage)
    step = _renewed()
    assert steps.absorb(step, failure, flushing=False) is StoreOutcome.PARKED
    assert steps.absorb(step, failure, flushing=True) is StoreOutcome.PARKED
    assert steps.parked_steps == [step]  # the flusher's own failed attempt parks nothing new


def test_a_kept_result_is_the_answer_only_while_parked_and_usable(storage: Any) -> None:
    steps = _Recording(storage)
    fresh = make_token_data(RS, expires_at_seconds=int(time.time()) + 3600)
    parked = ParkedResult(fresh, lambda: None)
    steps.parked.park(steps.key, parked)
    answer = steps.parked_answer(parked, StoreOutcome.PARKED)
    assert answer is not None
    assert answer.data is fresh
    assert steps.parked_answer(parked, StoreOutcome.STORED) is None
    assert steps.parked.get(steps.key) is None
