"""Refreshing through real server faults, each on a private PostgreSQL of the test's own.

- The server stops while Auth is answering and starts again a few seconds later: the
  caller gets the new token, and the row holds it, once the server is back.
- The server stays down longer than the budget for storing Auth's answer: the caller
  still gets the new token, the process keeps it (and hands it out without calling Auth
  again), and a background thread stores it once the server is back.
- A role with a 1 s ``idle_in_transaction_session_timeout`` or a 500 ms
  ``statement_timeout``: 8 processes refresh once, and no session is left idle in a
  transaction while Auth answers.

The shared servers are never touched (see ``tests/support/private_servers.py``); Auth is the
fake of ``tests/support/fake_auth.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import globus_sdk
import pytest
from sqlalchemy import Engine, select

from tests.support.fake_auth import TRANSFER, FakeAuth, mocked
from tests.support.private_servers import PrivatePostgres, StopMode, private_postgresql
from tests.support.refreshing import run_workers, seed
from tests.support.sdk import TokenStorageData, make_token_data
from tokenstore_sql import RetryPolicy, SQLAlchemyTokenStorage
from tokenstore_sql.models import tokens_table
from tokenstore_sql.refresh import _parked, refresh_once
from tokenstore_sql.refresh_request import StoreOutcome

pytestmark = [pytest.mark.postgresql, pytest.mark.topology]

T = TypeVar("T")

AUTH_SECONDS = 2.0  # how long Auth takes to answer the refresh that meets the outage
OUTAGE_SECONDS = 4.0  # how long the server stays down, at least
STOP_MODES = ["fast", "immediate"]
WAIT_SECONDS = 30.0  # the bound on any wait for another thread
FLUSH_SECONDS = 15.0  # the bound on the flusher storing a kept token once the server is up
REFRESH_LOGGER = "tokenstore_sql.refresh"
ROLE = "app"
ROLE_TIMEOUTS = {"idle_in_transaction_session_timeout": "1s", "statement_timeout": "500ms"}


class Outage:
    """A private server stopped once Auth is answering, and started again when told."""

    def __init__(self, server: PrivatePostgres, mode: StopMode) -> None:
        self.server = server
        self.mode = mode
        self.down = threading.Event()
        self.up = threading.Event()
        self.given_up = threading.Event()  # the test ended: stop waiting for Auth
        self.stopped_at = 0.0

    def stop_when(self, auth_answering: threading.Event) -> None:
        """Stop the server as soon as Auth has a refresh in hand."""
        if not _wait_for(auth_answering, WAIT_SECONDS, self.given_up):
            raise AssertionError("Auth was never called")
        self.server.stop(self.mode)
        self.stopped_at = time.monotonic()
        self.down.set()

    def start(self) -> None:
        """Start the server again, once it has been down for OUTAGE_SECONDS."""
        if not self.down.wait(WAIT_SECONDS):
            raise AssertionError("the server was never stopped")
        time.sleep(max(0.0, self.stopped_at + OUTAGE_SECONDS - time.monotonic()))
        self.server.start()
        self.up.set()

    def stop_then_start(self, auth_answering: threading.Event) -> None:
        """Stop the server while Auth answers; start it OUTAGE_SECONDS later."""
        self.stop_when(auth_answering)
        self.start()

    def is_down(self) -> bool:
        """Tell whether the server is stopped and not yet started again."""
        return self.down.is_set() and not self.up.is_set() and not self.server.running


class WatchedClient(globus_sdk.ConfidentialAppAuthClient):
    """The fake Auth's client; notes each response, and whether the server was down then."""

    def __init__(self, auth: FakeAuth, outage: Outage) -> None:
        super().__init__(auth.client_id, "client-secret")
        self.outage = outage
        self.responses: list[globus_sdk.OAuthRefreshTokenResponse] = []
        self.down_at_answer: list[bool] = []

    def oauth2_refresh_token(self, *args: Any, **kwargs: Any) -> Any:
        response = super().oauth2_refresh_token(*args, **kwargs)
        self.responses.append(response)
        self.down_at_answer.append(self.outage.is_down())
        return response


def _wait_for(event: threading.Event, timeout: float, given_up: threading.Event) -> bool:
    """Wait for ``event`` until ``timeout`` seconds pass or the test gives up."""
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        if given_up.is_set() or time.monotonic() > deadline:
            return False
    return True


@contextmanager
def helper_thread() -> Iterator[ThreadPoolExecutor]:
    """One thread for what happens beside the refresh; joined before the server goes."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refresh-faults") as pool:
        yield pool


def _stored(storage: SQLAlchemyTokenStorage) -> TokenStorageData:
    data = storage.get_token_data(TRANSFER)
    assert data is not None
    return data


def _lease_owner(storage: SQLAlchemyTokenStorage) -> str | None:
    table = tokens_table()
    with storage.engine.connect() as connection:
        owner: str | None = connection.execute(
            select(table.c.refresh_lease_owner).where(
                table.c.namespace == storage.namespace, table.c.resource_server == TRANSFER
            )
        ).scalar_one()
    return owner


def _kept_for(engine: Engine) -> list[TokenStorageData]:
    """What this process keeps, not yet stored, for rows of ``engine``'s database."""
    return [parked.data for key, parked in _parked.items() if key.engine is engine]


def _forget_kept(engine: Engine) -> None:
    """Drop what a failed test left kept for ``engine``, so no flusher outlives the test."""
    for key, parked in _parked.items():
        if key.engine is engine:
            _parked.settle(key, parked, StoreOutcome.SUPERSEDED)


def _expire(storage: SQLAlchemyTokenStorage, data: TokenStorageData) -> None:
    expired = TokenStorageData(**{**data.to_dict(), "expires_at_seconds": int(time.time()) - 10})
    storage.store_token_data_by_resource_server({TRANSFER: expired})


def _poll(check: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T | None:
    """Call ``check()`` until it gives something other than None, for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(interval)


def _assert_spent_once_into(auth: FakeAuth, original: TokenStorageData, *issued: str) -> None:
    """The original refresh token rotated exactly into ``issued``, the last one live."""
    assert original.refresh_token is not None
    assert auth.chain(original.refresh_token) == [original.refresh_token, *issued]
    assert auth.is_live_refresh_token(issued[-1])
    assert auth.rejected_refreshes == 0


@contextmanager
def _outage(
    auth: FakeAuth, mode: StopMode, namespace: str
) -> Iterator[tuple[SQLAlchemyTokenStorage, Outage, WatchedClient, ThreadPoolExecutor]]:
    """A storage on a private server that ``mode`` can stop, with Auth mocked, for one test."""
    with private_postgresql() as server, mocked(auth), helper_thread() as helper:
        outage = Outage(server, mode)
        client = WatchedClient(auth, outage)
        url = server.create_database("tokens")
        with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            try:
                yield storage, outage, client, helper
            finally:
                outage.given_up.set()
                _forget_kept(storage.engine)


@pytest.mark.parametrize("mode", STOP_MODES)
def test_a_server_restarted_while_auth_answers_stores_the_new_token(
    mode: StopMode, namespace: str
) -> None:
    auth = FakeAuth(refresh_delays=[AUTH_SECONDS])  # the first refresh is slow, the next not
    with _outage(auth, mode, namespace) as (storage, outage, client, helper):
        original = seed(storage, auth)
        restarting = helper.submit(outage.stop_then_start, auth.refresh_started)

        data = refresh_once(storage, TRANSFER, client)

        returned = time.monotonic()
        restarting.result(timeout=2 * WAIT_SECONDS)
        assert client.down_at_answer == [True], "Auth answered outside the outage"
        # Storing waited through the outage (the default budget outlasts it).
        assert returned - outage.stopped_at >= OUTAGE_SECONDS
        assert data.access_token != original.access_token
        assert data.refresh_token is not None
        _assert_spent_once_into(auth, original, data.refresh_token)
        stored = _stored(storage)
        assert (stored.access_token, stored.refresh_token) == (
            data.access_token,
            data.refresh_token,
        )
        assert stored.identity_id == original.identity_id
        assert _lease_owner(storage) is None
        assert _kept_for(storage.engine) == []

        # The next refresh after the restart: one more Auth call, nothing refused.
        _expire(storage, stored)
        renewed = refresh_once(storage, TRANSFER, client)

        assert auth.refresh_calls == 2
        assert renewed.refresh_token is not None
        _assert_spent_once_into(auth, original, data.refresh_token, renewed.refresh_token)
        assert _stored(storage).access_token == renewed.access_token


@pytest.mark.parametrize("mode", STOP_MODES)
def test_a_token_the_database_did_not_take_in_time_is_kept_then_stored(
    mode: StopMode, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the host application logs everything,
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy's pool and engines too
    auth = FakeAuth(refresh_delays=[AUTH_SECONDS])
    seen: list[globus_sdk.OAuthRefreshTokenResponse] = []
    with _outage(auth, mode, namespace) as (storage, outage, client, helper):
        original = seed(storage, auth)
        stopping = helper.submit(outage.stop_when, auth.refresh_started)

        started = time.monotonic()
        data = refresh_once(
            storage,
            TRANSFER,
            client,
            on_refresh=seen.append,
            store_retry=RetryPolicy(attempts=3, deadline=1.0),
        )

        took = time.monotonic() - started
        stopping.result(timeout=WAIT_SECONDS)
        assert client.down_at_answer == [True], "Auth answered outside the outage"
        assert outage.is_down()
        assert took < AUTH_SECONDS + 10  # the small budget, not the default 60 s
        assert data.refresh_token is not None
        _assert_spent_once_into(auth, original, data.refresh_token)
        assert seen == client.responses
        assert seen[0].by_resource_server[TRANSFER]["access_token"] == data.access_token
        assert [kept.refresh_token for kept in _kept_for(storage.engine)] == [data.refresh_token]
        assert any(
            record.name == REFRESH_LOGGER
            and record.levelno == logging.WARNING
            and "could not store a refreshed token" in record.getMessage()
            for record in caplog.records
        )

        # Still down: the same process gets the kept token, without asking Auth.
        again = refresh_once(storage, TRANSFER, client, on_refresh=seen.append)

        assert outage.is_down(), "the second refresh did not meet the outage"
        assert (again.access_token, again.refresh_token) == (
            data.access_token,
            data.refresh_token,
        )
        assert auth.refresh_calls == 1
        assert len(seen) == 1

        outage.start()

        def holds_the_kept_token() -> TokenStorageData | None:
            found = _stored(storage)
            return found if found.refresh_token == data.refresh_token else None

        stored = _poll(holds_the_kept_token, timeout=FLUSH_SECONDS)
        assert stored is not None, f"not stored within {FLUSH_SECONDS:g} s of the restart"
        assert stored.access_token == data.access_token
        assert _lease_owner(storage) is None  # the store cleared the lease
        assert _kept_for(storage.engine) == []
        assert any(
            record.name == REFRESH_LOGGER
            and record.threadName == "tokenstore-sql-refresh-flusher"
            and "stored the refreshed token kept" in record.getMessage()
            for record in caplog.records
        )

        # The stored refresh token is the live one: a forced refresh spends it.
        forced = refresh_once(
            storage,
            TRANSFER,
            client,
            rejected_access_token=data.access_token,
            lock_timeout=WAIT_SECONDS,
        )

        assert auth.refresh_calls == 2
        assert forced.refresh_token is not None
        _assert_spent_once_into(auth, original, data.refresh_token, forced.refresh_token)
        assert _stored(storage).access_token == forced.access_token

        tokens = [
            token
            for token_data in (original, data, forced)
            for token in (token_data.access_token, token_data.refresh_token)
            if token is not None
        ]
        assert len(set(tokens)) == 6
        leaked = [
            (record.name, record.getMessage())
            for record in caplog.records
            if any(token in record.getMessage() for token in tokens)
        ]
        assert leaked == []
        assert not any(token in caplog.text for token in tokens)


def _sessions_while_auth_answers(
    server: PrivatePostgres, auth: FakeAuth, role: str, given_up: threading.Event
) -> tuple[int, int]:
    """Count the role's sessions, and those idle in a transaction, while Auth answers."""
    if not _wait_for(auth.refresh_started, 120, given_up):
        raise AssertionError("Auth was never called")
    # Soon, before a 1 s idle-in-transaction timeout could end such a session.
    time.sleep(0.2)
    ((idle_in_transaction, sessions),) = server.execute(
        "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%%'), count(*)"
        " FROM pg_stat_activity WHERE usename = %s",
        (role,),
    )
    return int(idle_in_transaction), int(sessions)


@pytest.mark.parametrize("setting", sorted(ROLE_TIMEOUTS))
def test_a_role_with_short_timeouts_refreshes_once_across_processes(
    setting: str, namespace: str
) -> None:
    value = ROLE_TIMEOUTS[setting]
    auth = FakeAuth(refresh_delay=3.0)
    with private_postgresql() as server:
        server.execute(f"CREATE ROLE {ROLE} LOGIN; ALTER ROLE {ROLE} SET {setting} = '{value}'")
        server.create_database("tokens", owner=ROLE)
        url = server.url_for("tokens", user=ROLE)
        assert server.execute(f"SHOW {setting}", database="tokens", user=ROLE) == [(value,)]
        # The role's storage creates the schema on first use.
        with SQLAlchemyTokenStorage(url, namespace=namespace) as storage:
            assert server.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'tokenstore_sql_tokens'",
                database="tokens",
            ) == [(ROLE,)]
            original = seed(storage, auth)
            given_up = threading.Event()
            with helper_thread() as helper:
                watching = helper.submit(_sessions_while_auth_answers, server, auth, ROLE, given_up)
                try:
                    reports = run_workers(url, namespace, auth, processes=8, callers=1)
                finally:
                    given_up.set()
                idle_in_transaction, sessions = watching.result(timeout=WAIT_SECONDS)
            stored = _stored(storage)

        outcomes = [outcome for report in reports for outcome in report["outcomes"]]
        assert len(reports) == 8
        assert auth.refresh_calls == 1
        assert stored.refresh_token is not None
        _assert_spent_once_into(auth, original, stored.refresh_token)
        assert outcomes == [("ok", stored.access_token)] * 8
        assert stored.access_token != original.access_token
        # The one worker that called Auth held no pooled connection meanwhile.
        assert [n for report in reports for n in report["checked_out"]] == [0]
        assert sessions > 0, "the role had no session to look at"
        assert idle_in_transaction == 0
        log = server.log()
        assert "idle-in-transaction timeout" not in log
        assert "statement timeout" not in log


def test_a_kept_result_keeps_the_lease_so_no_other_worker_spends_the_old_token() -> None:
    # The server comes back half a second after Auth answered: too late for storing the
    # answer (one attempt), in time for releasing the lease (the storage's policy).
    auth = FakeAuth(refresh_delays=[1.0])
    patient = RetryPolicy(attempts=100, max_delay=0.2, deadline=30)
    with private_postgresql() as server, mocked(auth), helper_thread() as helper:
        url = server.create_database("tokens")
        outage = Outage(server, "fast")

        class Client(globus_sdk.ConfidentialAppAuthClient):
            def oauth2_refresh_token(self, *args: Any, **kwargs: Any) -> Any:
                response = super().oauth2_refresh_token(*args, **kwargs)
                restart.append(helper.submit(lambda: (time.sleep(0.5), server.start())))
                return response

        restart: list[Any] = []
        client = Client(auth.client_id, "client-secret")
        with SQLAlchemyTokenStorage(url, namespace="u", retry=patient) as first:
            try:
                seed(first, auth)
                stopping = threading.Thread(target=outage.stop_when, args=(auth.refresh_started,))
                stopping.start()
                kept = refresh_once(first, TRANSFER, client, store_retry=RetryPolicy(attempts=1))
                stopping.join(WAIT_SECONDS)
                restart[0].result(WAIT_SECONDS)
                owner_while_kept = _lease_owner(first)
                # Another worker, on an engine of its own: it does not see the kept result.
                with SQLAlchemyTokenStorage(url, namespace="u") as second:
                    other = refresh_once(second, TRANSFER, client, lock_timeout=WAIT_SECONDS)
            finally:
                _forget_kept(first.engine)
    assert owner_while_kept is not None
    assert other.access_token == kept.access_token
    assert auth.refresh_calls == 1
    assert auth.rejected_refreshes == 0


def test_after_a_restart_stale_pooled_connections_cost_one_retry_not_one_each() -> None:
    with private_postgresql() as server:
        url = server.create_database("tokens")
        one_retry = RetryPolicy(attempts=2, first_delay=0.01)
        options = {"pool_size": 10}
        with SQLAlchemyTokenStorage(
            url, namespace="u", engine_options=options, retry=one_retry
        ) as storage:
            storage.store_token_data_by_resource_server({TRANSFER: make_token_data(TRANSFER)})
            held = [storage.engine.raw_connection() for _ in range(10)]
            for connection in held:
                connection.close()
            assert storage.engine.pool.checkedin() == 10  # type: ignore[attr-defined]
            server.restart("fast")
            # The first statement finds its connection dead; the retry must not meet
            # the next of the ten stale ones.
            assert storage.get_token_data(TRANSFER) is not None
