"""The refresh lease in one process: waiting, taking over, recovering, sharing, parking.

Each test runs on SQLite, PostgreSQL and MySQL (one SQLite-only test holds the file's
write lock) with a fake Globus Auth answering through ``responses``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from datetime import timedelta
from typing import Any

import globus_sdk
import pytest
from sqlalchemy import URL, Engine, select

from tests.support.databases import BACKENDS
from tests.support.fake_auth import TRANSFER, FakeAuth, mocked
from tests.support.refreshing import client_of, refresh_transfer, seed
from tests.support.sdk import TokenStorageData
from tests.support.tracing import sent_statements
from tokenstore_sql import (
    AsyncSQLAlchemyTokenStorage,
    RetryPolicy,
    SQLAlchemyTokenStorage,
    StorageUnavailableError,
)
from tokenstore_sql.async_refresh import async_refresh_once
from tokenstore_sql.columns import utc_now
from tokenstore_sql.engines import sqlite_file_path
from tokenstore_sql.models import tokens_table
from tokenstore_sql.refresh import refresh_once
from tokenstore_sql.refresh_plan import CallAuth, StoreRenewed
from tokenstore_sql.refresh_request import RefreshRequest, RowSnapshot, lease_seconds_for
from tokenstore_sql.statements import statements_for

SQLITE_ONLY = [p for p in BACKENDS if p.values[0] == "sqlite"]


class HookedClient(globus_sdk.ConfidentialAppAuthClient):
    """An Auth client that runs ``before`` and ``after`` around each refresh call."""

    def __init__(self, auth: FakeAuth, before: Any = None, after: Any = None) -> None:
        super().__init__(auth.client_id, "client-secret")
        self.before, self.after = before, after

    def oauth2_refresh_token(self, *args: Any, **kwargs: Any) -> Any:
        if self.before is not None:
            self.before()
        response = super().oauth2_refresh_token(*args, **kwargs)
        if self.after is not None:
            self.after()
        return response


def _lease_of(engine: Engine, namespace: str) -> tuple[Any, Any]:
    table = tokens_table()
    columns = (table.c.refresh_lease_owner, table.c.refresh_lease_until)
    with engine.connect() as connection:
        row = connection.execute(select(*columns).where(table.c.namespace == namespace)).one()
    return row[0], row[1]


def _lease(engine: Engine, namespace: str, owner: str, seconds: float) -> None:
    """Set the row's lease as another worker would (``seconds`` < 0: already expired)."""
    now = utc_now()
    params = {
        "row_namespace": namespace,
        "row_resource_server": TRANSFER,
        "owner": owner,
        "now": now,
        "until": now + timedelta(seconds=seconds),
    }
    with engine.begin() as connection:
        assert connection.execute(statements_for().take_lease, params).rowcount == 1


def test_a_refresh_clears_its_lease_once_the_result_is_stored(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    seed(storage, auth)
    during: list[tuple[Any, Any]] = []
    client = HookedClient(
        auth, before=lambda: during.append(_lease_of(storage.engine, storage.namespace))
    )
    with mocked(auth):
        refresh_once(storage, TRANSFER, client, lease_seconds=30)
    ((owner, until),) = during
    assert owner is not None
    assert utc_now() + timedelta(seconds=25) < until <= utc_now() + timedelta(seconds=30)
    assert _lease_of(storage.engine, storage.namespace) == (None, None)


def test_a_live_lease_is_waited_for_without_calling_auth(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth)
    _lease(storage.engine, storage.namespace, "another-worker", 60)
    started = time.monotonic()
    with mocked(auth), pytest.raises(StorageUnavailableError) as raised:
        refresh_once(storage, TRANSFER, client_of(auth), lock_timeout=0.5)
    assert time.monotonic() - started < 3
    assert auth.refresh_calls == 0
    assert "refresh lease" in str(raised.value)
    assert seeded.refresh_token not in str(raised.value)


def test_a_waiter_gets_the_token_the_lease_holder_stores(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth)
    _lease(storage.engine, storage.namespace, "another-worker", 60)
    tokens = auth.grant(seeded.identity_id or "", TRANSFER)
    fresh = TokenStorageData(
        **{
            **seeded.to_dict(),
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "expires_at_seconds": int(time.time()) + 3600,
        }
    )

    def holder_finishes() -> None:
        time.sleep(0.3)
        storage.store_token_data_by_resource_server({TRANSFER: fresh})
        with storage.engine.begin() as connection:
            connection.execute(
                statements_for().release_lease,
                {
                    "row_namespace": storage.namespace,
                    "row_resource_server": TRANSFER,
                    "owner": "another-worker",
                },
            )

    holder = threading.Thread(target=holder_finishes)
    holder.start()
    data = refresh_transfer(storage, auth, lock_timeout=10)
    holder.join()
    assert data.access_token == fresh.access_token
    assert auth.refresh_calls == 0


def test_an_expired_lease_of_a_dead_worker_is_taken_over_at_once(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    seed(storage, auth)
    _lease(storage.engine, storage.namespace, "a-dead-worker", -1)
    started = time.monotonic()
    data = refresh_transfer(storage, auth, lock_timeout=10)
    assert time.monotonic() - started < 2
    assert auth.refresh_calls == 1
    stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    assert stored.access_token == data.access_token


def test_after_invalid_grant_a_token_another_worker_stored_is_used(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth()
    seeded = seed(storage, auth)
    assert seeded.refresh_token is not None
    rival: dict[str, Any] = {}

    def rival_refreshes_first() -> None:
        # A worker whose lease had run out spends the token and stores its result.
        status, body = auth.token(
            {"grant_type": "refresh_token", "refresh_token": seeded.refresh_token}
        )
        assert status == 200
        rival.update(body)
        newer = {
            **seeded.to_dict(),
            "access_token": body["access_token"],
            "refresh_token": body["refresh_token"],
            "expires_at_seconds": int(time.time()) + 3600,
        }
        storage.store_token_data_by_resource_server({TRANSFER: TokenStorageData(**newer)})

    with mocked(auth):
        data = refresh_once(storage, TRANSFER, HookedClient(auth, before=rival_refreshes_first))
    assert auth.rejected_refreshes == 1
    assert data.access_token == rival["access_token"]
    assert _lease_of(storage.engine, storage.namespace) == (None, None)


def test_threads_of_one_process_share_one_refresh_and_one_set_of_statements(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth(refresh_delay=0.5)
    seed(storage, auth)
    results: list[str] = []
    client = client_of(auth)

    def call() -> None:
        results.append(refresh_once(storage, TRANSFER, client).access_token)

    with mocked(auth), sent_statements(storage.engine) as sent:
        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert auth.refresh_calls == 1
    assert len(results) == 16
    assert len(set(results)) == 1
    # One caller read, took the lease, read again and stored; the other 15 sent nothing.
    assert [s.verb for s in sent if s.verb in ("SELECT", "UPDATE")] == [
        "SELECT",
        "UPDATE",
        "SELECT",
        "UPDATE",
    ]


def test_no_pooled_connection_is_held_while_auth_answers(storage: SQLAlchemyTokenStorage) -> None:
    auth = FakeAuth()
    seed(storage, auth)
    held: list[int] = []
    client = HookedClient(auth, before=lambda: held.append(storage.engine.pool.checkedout()))  # type: ignore[attr-defined]
    with mocked(auth):
        refresh_once(storage, TRANSFER, client)
    assert held == [0]


def test_asyncio_tasks_share_one_refresh_and_hold_no_connection_during_it(
    database_url: URL, namespace: str
) -> None:
    auth = FakeAuth(refresh_delay=0.3)
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seed(storage, auth)

    async def scenario() -> list[str]:
        async with AsyncSQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
            pool = storage.engine.sync_engine.pool
            client = HookedClient(auth, before=lambda: held.append(pool.checkedout()))  # type: ignore[attr-defined]
            found = await asyncio.gather(
                *(async_refresh_once(storage, TRANSFER, client) for _ in range(50))
            )
            return [data.access_token for data in found]

    held: list[int] = []
    with mocked(auth):
        tokens = asyncio.run(scenario())
    assert auth.refresh_calls == 1
    assert len(set(tokens)) == 1
    assert held == [0]


@pytest.mark.parametrize("backend", SQLITE_ONLY, indirect=True)
def test_a_result_the_database_does_not_take_is_kept_and_stored_later(
    database_url: URL, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = FakeAuth()
    path = sqlite_file_path(database_url)
    assert path is not None
    blocker = sqlite3.connect(path, isolation_level=None)
    seen: list[Any] = []
    options = {"sqlite_busy_timeout_ms": 50}
    with SQLAlchemyTokenStorage(
        database_url, namespace=namespace, engine_options=options
    ) as storage:
        seeded = seed(storage, auth)
        # Once Auth has answered, another process holds the file's write lock.
        client = HookedClient(auth, after=lambda: blocker.execute("BEGIN IMMEDIATE"))
        quick = RetryPolicy(attempts=2, first_delay=0.01, deadline=0.2)
        caplog.set_level(logging.DEBUG)
        with mocked(auth):
            data = refresh_once(
                storage, TRANSFER, client, on_refresh=seen.append, store_retry=quick
            )
            again = refresh_once(storage, TRANSFER, client)  # still locked: the kept token
            stored_while_locked = storage.get_token_data(TRANSFER)
            # Kept, not stored: the lease stays, so no other worker spends the old token.
            lease_while_kept = _lease_of(storage.engine, namespace)
        blocker.execute("ROLLBACK")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stored = storage.get_token_data(TRANSFER)
            if stored is not None and stored.access_token == data.access_token:
                break
            time.sleep(0.2)
        lease_after = _lease_of(storage.engine, namespace)
    blocker.close()

    assert auth.refresh_calls == 1
    assert len(seen) == 1
    assert again.access_token == data.access_token != seeded.access_token
    assert stored_while_locked is not None
    assert stored_while_locked.access_token == seeded.access_token
    assert stored is not None
    assert stored.access_token == data.access_token
    assert auth.is_live_refresh_token(stored.refresh_token)
    assert lease_while_kept[0] is not None
    assert lease_after == (None, None)
    warnings = [
        r
        for r in caplog.records
        if r.name == "tokenstore_sql.refresh" and r.levelno == logging.WARNING
    ]
    assert warnings, "no warning about the kept token"
    secrets = {seeded.access_token, seeded.refresh_token, data.access_token, data.refresh_token}
    for record in caplog.records:
        assert not any(secret and secret in record.getMessage() for secret in secrets)


def test_lease_length_follows_the_auth_clients_http_timeout() -> None:
    client = client_of(FakeAuth())
    client.transport.http_timeout = 5
    assert lease_seconds_for(client) == 15
    client.transport.http_timeout = None  # type: ignore[assignment]
    assert lease_seconds_for(client) == 70


def test_refresh_steps_show_no_token_in_their_repr() -> None:
    data = TokenStorageData(TRANSFER, None, "scope", "access-secret", "refresh-secret", 1, None, {})
    shown = [
        repr(CallAuth("refresh-secret")),
        repr(StoreRenewed(data, "refresh-secret")),
        repr(RowSnapshot(data, "refresh-secret", None, None)),
        repr(RefreshRequest("ns", TRANSFER, "access-secret", 10, 15, "sqlite://x")),
    ]
    for text in shown:
        assert "secret" not in text


def test_a_forked_child_does_not_wait_for_its_parents_flights(
    storage: SQLAlchemyTokenStorage,
) -> None:
    auth = FakeAuth(refresh_delay=1.0)
    seed(storage, auth)
    client = client_of(auth)
    with mocked(auth):
        leader = threading.Thread(target=lambda: refresh_once(storage, TRANSFER, client))
        leader.start()
        assert auth.refresh_started.wait(timeout=10)
        pid = os.fork()  # while this process's flight for the row is in the air
        if pid == 0:
            from tokenstore_sql import refresh as refresh_module

            os._exit(0 if len(refresh_module._flights._by_row) == 0 else 1)
        leader.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
