"""Refreshing once: the authorizer, refused tokens, named locks, and workers racing."""

from __future__ import annotations

import threading
import time
from typing import Any

import globus_sdk
import pytest
from sqlalchemy import URL, Engine

from tests.support.databases import BACKENDS, SERVER_PARAMS
from tests.support.fake_auth import TRANSFER, FakeAuth, mocked
from tests.support.refreshing import IDENTITY, client_of, refresh_transfer, run_workers, seed
from tests.support.sdk import TokenStorageData
from tokenstore_sql import (
    MissingTokenDataError,
    RetryPolicy,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
)
from tokenstore_sql.locks import lock_name, locked_transaction, mysql_lock_name, postgresql_lock_key
from tokenstore_sql.refresh import LockingRefreshTokenAuthorizer, refresh_once

SQLITE_ONLY = [p for p in BACKENDS if p.values[0] == "sqlite"]
WORKERS = 4


def test_a_fresh_token_is_returned_without_asking_auth(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth, expired=False)
    data = refresh_transfer(storage, auth)
    assert data.access_token == seeded.access_token
    assert auth.refresh_calls == 0


def test_an_expired_token_is_refreshed_stored_and_keeps_identity_and_extra(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth)
    seen: list[Any] = []
    data = refresh_transfer(storage, auth, on_refresh=seen.append)

    stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert auth.refresh_calls == 1
    assert len(seen) == 1
    assert stored.access_token == data.access_token != seeded.access_token
    assert stored.expires_at_seconds > time.time() + 3600
    assert auth.is_live_refresh_token(stored.refresh_token)
    assert stored.identity_id == IDENTITY
    assert stored.extra == {"kept": True}


def test_a_token_a_service_refused_is_refreshed_even_before_it_expires(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth, expired=False)
    with mocked(auth):
        authorizer = LockingRefreshTokenAuthorizer(storage, TRANSFER, client_of(auth))
        assert authorizer.get_authorization_header() == f"Bearer {seeded.access_token}"
        assert authorizer.handle_missing_authorization() is True  # as after a 401
        header = authorizer.get_authorization_header()

    assert auth.refresh_calls == 1
    stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert header == f"Bearer {stored.access_token}"
    assert stored.access_token != seeded.access_token


def test_an_authorizer_needs_a_stored_refresh_token(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    with pytest.raises(MissingTokenDataError, match="no token data"):
        LockingRefreshTokenAuthorizer(storage, TRANSFER, client_of(auth))
    seeded = seed(storage, auth)
    storage.store_token_data_by_resource_server(
        {TRANSFER: TokenStorageData(**{**seeded.to_dict(), "refresh_token": None})}
    )
    with pytest.raises(MissingTokenDataError, match="no refresh token"):
        refresh_once(storage, TRANSFER, client_of(auth))


def test_a_refused_refresh_leaves_the_row_as_it_was(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth)
    with mocked(auth):
        refresh_once(storage, TRANSFER, client_of(auth))  # spends the seeded refresh token
        storage.store_token_data_by_resource_server({TRANSFER: seeded})  # a stale writer
        with pytest.raises(globus_sdk.AuthAPIError):
            refresh_once(storage, TRANSFER, client_of(auth))

    assert auth.rejected_refreshes == 1
    stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert stored.access_token == seeded.access_token


def test_lock_names_fit_every_database() -> None:
    assert lock_name("a:b", "c") != lock_name("a", "b:c")
    name = lock_name("refresh", "x" * 255, "y" * 255)
    assert len(mysql_lock_name(name)) <= 64
    assert mysql_lock_name(name) != mysql_lock_name(lock_name("refresh", "x" * 255, "z"))
    assert -(2**63) <= postgresql_lock_key(name) < 2**63


@pytest.mark.parametrize("backend", SERVER_PARAMS, indirect=True)
def test_a_held_lock_blocks_its_name_only(engine: Engine) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with locked_transaction(engine, "held"):
            held.set()
            release.wait(timeout=10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=10)
        with locked_transaction(engine, "other", timeout=1):
            pass  # a different name is not blocked
        started = time.monotonic()
        with (
            pytest.raises(StorageUnavailableError, match="lock"),
            locked_transaction(engine, "held", timeout=1),
        ):
            pass
        assert time.monotonic() - started < 5
    finally:
        release.set()
        thread.join(timeout=10)
    with locked_transaction(engine, "held", timeout=1):
        pass  # released when its holder finished


@pytest.mark.parametrize("backend", SQLITE_ONLY, indirect=True)
def test_on_sqlite_a_refresh_waits_for_the_write_lock(database_url: URL, namespace: str) -> None:
    engine_options = {"sqlite_busy_timeout_ms": 300}
    quick = RetryPolicy(attempts=1)
    with SQLAlchemyTokenStorage(
        database_url, namespace=namespace, engine_options=engine_options, retry=quick
    ) as storage:
        auth = FakeAuth()
        seed(storage, auth)
        with (
            locked_transaction(storage.engine, "anything"),
            mocked(auth),
            pytest.raises(StorageUnavailableError),
        ):
            refresh_once(storage, TRANSFER, client_of(auth))
        assert auth.refresh_calls == 0


def test_workers_that_all_find_the_token_expired_refresh_it_once(
    database_url: URL, namespace: str
) -> None:
    auth = FakeAuth(refresh_delay=0.5)
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seeded = seed(storage, auth)

        reports = run_workers(
            database_url, namespace, auth, processes=WORKERS, callers=1, via="authorizer"
        )

        stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert auth.refresh_calls == 1
    assert auth.rejected_refreshes == 0
    outcomes = [outcome for report in reports for outcome in report["outcomes"]]
    assert outcomes == [("ok", stored.access_token)] * WORKERS
    assert stored.access_token != seeded.access_token
    assert auth.is_live_refresh_token(stored.refresh_token)


@pytest.mark.parametrize("backend", SQLITE_ONLY, indirect=True)
def test_without_the_lock_workers_spend_one_refresh_token_several_times(
    database_url: URL, namespace: str
) -> None:
    # The control: the SDK's own RefreshTokenAuthorizer, one per worker, races.
    auth = FakeAuth(refresh_delay=0.5)
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seed(storage, auth)

    reports = run_workers(database_url, namespace, auth, processes=WORKERS, callers=1, via="sdk")

    outcomes = [outcome for report in reports for outcome in report["outcomes"]]
    assert auth.refresh_calls == WORKERS
    assert auth.rejected_refreshes == WORKERS - 1
    assert sorted(kind for kind, _ in outcomes) == ["error"] * (WORKERS - 1) + ["ok"]
