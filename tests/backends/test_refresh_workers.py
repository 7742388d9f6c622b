"""Refresh coordination across processes, over HTTP to a fake Globus Auth on 127.0.0.1.

Each worker process is spawned fresh and points globus-sdk at the fake Auth through
``GLOBUS_SDK_SERVICE_URL_AUTH``; the fake rotates refresh tokens, counts calls and
answers ``invalid_grant`` to a spent one.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import URL, select

from tests.support.fake_auth import TRANSFER, FakeAuth, serving
from tests.support.refreshing import run_workers, seed, start_workers
from tokenstore_sql import SQLAlchemyTokenStorage
from tokenstore_sql.models import tokens_table


def _assert_one_refresh(auth: FakeAuth, storage: SQLAlchemyTokenStorage, reports: list) -> None:
    stored = storage.get_token_data(TRANSFER)
    assert stored is not None
    outcomes = [outcome for report in reports for outcome in report["outcomes"]]
    assert auth.refresh_calls == 1
    assert auth.rejected_refreshes == 0
    assert set(outcomes) == {("ok", stored.access_token)}
    assert auth.is_live_refresh_token(stored.refresh_token)
    # The one worker that called Auth held no pooled connection while it waited.
    assert [n for report in reports for n in report["checked_out"]] == [0]


@pytest.mark.parametrize(
    ("processes", "callers", "tasks"),
    [(8, 4, False), (3, 20, True)],
    ids=["8-processes-of-4-threads", "3-processes-of-20-asyncio-tasks"],
)
def test_workers_refresh_an_expired_token_once(
    database_url: URL, namespace: str, processes: int, callers: int, tasks: bool
) -> None:
    auth = FakeAuth(refresh_delay=1.0)
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        seed(storage, auth)
        reports = run_workers(
            database_url, namespace, auth, processes=processes, callers=callers, tasks=tasks
        )
        assert sum(len(report["outcomes"]) for report in reports) == processes * callers
        _assert_one_refresh(auth, storage, reports)


def test_a_holder_killed_during_the_auth_call_is_taken_over_when_its_lease_ends(
    database_url: URL, namespace: str
) -> None:
    auth = FakeAuth(refresh_delays=[4.0])  # the holder's call is slow; the next one is not
    lease = 2.0
    with SQLAlchemyTokenStorage(database_url, namespace=namespace) as storage:
        original = seed(storage, auth)
        assert original.refresh_token is not None
        with serving(auth) as auth_url:
            holder = start_workers(
                database_url, namespace, auth_url, auth, processes=1, callers=1, lease_seconds=lease
            )
            assert auth.refresh_started.wait(timeout=60), "the holder never called Auth"
            (process,) = holder.processes
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=10)
            killed_at = time.monotonic()

            takers = start_workers(
                database_url, namespace, auth_url, auth, processes=2, callers=2, lease_seconds=lease
            )
            reports = takers.collect()
            deadline = time.monotonic() + 10
            while auth.abandoned_refreshes < 1 and time.monotonic() < deadline:
                time.sleep(0.1)  # the holder's call ends when its slow answer is due

        stored = storage.get_token_data(TRANSFER)
        with storage.engine.connect() as connection:
            table = tokens_table()
            lease_owner = connection.execute(
                select(table.c.refresh_lease_owner).where(table.c.namespace == namespace)
            ).scalar_one()
    assert stored is not None
    outcomes = {outcome for report in reports for outcome in report["outcomes"]}
    assert outcomes == {("ok", stored.access_token)}
    assert auth.abandoned_refreshes == 1  # the killed holder spent nothing
    assert auth.refresh_calls == 2
    assert auth.rejected_refreshes == 0
    # One rotation chain: the original token spent once, its successor stored and live.
    assert auth.chain(original.refresh_token) == [original.refresh_token, stored.refresh_token]
    assert auth.is_live_refresh_token(stored.refresh_token)
    assert lease_owner is None
    assert time.monotonic() - killed_at < 60
